"""
A results table over seeds, from the JSON files that ``scripts/evaluate.py --json`` writes (one per seed).

The runs' steps and training time (where the JSON has them), then for each player and split: the mean, standard
deviation and range over the files of success, attempts / ``min_actions``, the share of attempts on dead ends (where
the runs have it) and, when the sentences had trees, exact match and labeled bracket F1; then, for each metric, the
interquartile mean over the files with its 95% stratified-bootstrap confidence interval (rliable, Agarwal et al.
2021). The README's tables are this script's output::

    python scripts/results_table.py docs/results/tree_v0_ppo_mask_seed*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rliable import library as rly
from rliable import metrics as rly_metrics

# The metrics shown, by key of evaluate.py's JSON: (column title, shown as a percentage).
METRICS = {
    "success_rate": ("success", True),
    "attempts_per_min_actions": ("att/min", False),
    "dead_end_share": ("dead ends", True),
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


def iqm_with_ci(values: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """
    Interquartile mean of one metric over runs, with rliable's 95% stratified-bootstrap confidence interval.

    :param values: the metric of each run (seed)
    :param reps: bootstrap resamples
    :param seed: of the bootstrap
    :return: the IQM, and the lower and upper ends of the interval
    """
    scores = {"runs": np.asarray(values, dtype=float).reshape(-1, 1)}  # runs x tasks
    # rliable's StratifiedBootstrap draws its resamples from numpy's global RNG (np.random.choice), whatever
    # random_state it is given: seed the global RNG for the bootstrap, so the interval is the same whatever ran
    # before, and give the caller's RNG state back afterwards.
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        point, interval = rly.get_interval_estimates(scores, lambda x: np.array([rly_metrics.aggregate_iqm(x)]), reps=reps)
    finally:
        np.random.set_state(global_state)
    return float(point["runs"][0]), float(interval["runs"][0, 0]), float(interval["runs"][1, 0])


def _iqm_cell(values: list[float], percent: bool) -> str:
    scale, unit, digits = (100.0, "%", 1) if percent else (1.0, "", 3)
    iqm, low, high = (scale * v for v in iqm_with_ci(values))
    return f"{iqm:.{digits}f}{unit} [{low:.{digits}f}, {high:.{digits}f}]"


def _span(values: list[float], fmt: str) -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}-{high}"


def _training(runs: list[dict]) -> list[str]:
    """A line with the runs' steps and training wall time, where every run's JSON has them."""
    if not all(run.get("train_seconds") for run in runs):
        return []
    steps = _span([run["num_timesteps"] for run in runs], ",")
    minutes = _span([run["train_seconds"] / 60 for run in runs], ".0f")
    return ["", f"Trained {steps} steps in {minutes} minutes of wall-clock time each (the runs' Monitor files)"]


def results_table(paths: list[Path]) -> str:
    """
    The Markdown table of ``paths`` (evaluate.py JSON files, typically one per seed of one config).

    :param paths: the files
    """
    runs = [json.loads(path.read_text()) for path in paths]
    metrics = [key for key in METRICS if any(key in m for run in runs for p in run["results"].values() for m in p.values())]
    header = [
        "| split | player | " + " | ".join(METRICS[key][0] for key in metrics) + " |",
        "|---|---|" + "---:|" * len(metrics),
    ]
    names = ", ".join(path.name for path in paths)
    spread = [f"{len(runs)} runs: {names}; mean ± std (min-max) over runs", *_training(runs), "", *header]
    iqm = ["", f"IQM over the {len(runs)} runs [95% stratified-bootstrap CI] (rliable)", "", *header]
    for split, players in runs[0]["results"].items():
        for player in players:
            spread_cells, iqm_cells = [], []
            for key in metrics:
                values = [run["results"][split][player][key] for run in runs if key in run["results"][split][player]]
                spread_cells.append(_cell(values, METRICS[key][1]) if values else "-")
                iqm_cells.append(_iqm_cell(values, METRICS[key][1]) if values else "-")
            spread.append(f"| {split} | {player} | " + " | ".join(spread_cells) + " |")
            iqm.append(f"| {split} | {player} | " + " | ".join(iqm_cells) + " |")
    return "\n".join(spread + iqm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+", help="evaluate.py JSON files, one per seed")
    print(results_table(parser.parse_args().paths))


if __name__ == "__main__":
    main()
