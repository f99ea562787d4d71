"""
A results table over seeds, from the JSON files that ``scripts/evaluate.py --json`` writes (one per seed).

For each player and split: the mean, standard deviation and range over the files of success, attempts /
``min_actions`` and, when the sentences had trees, exact match and labeled bracket F1. The README's tables are this
script's output::

    python scripts/results_table.py docs/results/tree_v0_ppo_mask_seed*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# The metrics shown, by key of evaluate.py's JSON: (column title, shown as a percentage).
METRICS = {
    "success_rate": ("success", True),
    "attempts_per_min_actions": ("att/min", False),
    "exact_match": ("exact match", True),
    "bracket_f1": ("bracket F1", True),
}


def _cell(values: list[float], percent: bool) -> str:
    scale, unit = (100.0, "%") if percent else (1.0, "")
    array = np.array(values) * scale
    if len(array) == 1:
        return f"{array[0]:.1f}{unit}" if percent else f"{array[0]:.3f}"
    digits = 1 if percent else 3
    return (
        f"{array.mean():.{digits}f}{unit} ± {array.std(ddof=1):.{digits}f} ({array.min():.{digits}f}-{array.max():.{digits}f})"
    )


def results_table(paths: list[Path]) -> str:
    """
    The Markdown table of ``paths`` (evaluate.py JSON files, typically one per seed of one config).

    :param paths: the files
    """
    runs = [json.loads(path.read_text()) for path in paths]
    metrics = [key for key in METRICS if any(key in m for run in runs for p in run["results"].values() for m in p.values())]
    lines = [
        f"{len(runs)} runs: {', '.join(path.name for path in paths)}; mean ± std (min-max) over runs",
        "| split | player | " + " | ".join(METRICS[key][0] for key in metrics) + " |",
        "|---|---|" + "---:|" * len(metrics),
    ]
    for split, players in runs[0]["results"].items():
        for player in players:
            cells = []
            for key in metrics:
                values = [run["results"][split][player][key] for run in runs if key in run["results"][split][player]]
                cells.append(_cell(values, METRICS[key][1]) if values else "-")
            lines.append(f"| {split} | {player} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+", help="evaluate.py JSON files, one per seed")
    print(results_table(parser.parse_args().paths))


if __name__ == "__main__":
    main()
