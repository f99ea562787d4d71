"""
Learning curves of rl_zoo3 runs from their Monitor files: success rate and attempts / min_actions against env steps.

    python scripts/plot_learning_curves.py -f logs --out docs/learning_curves.png

Each run folder ``<log folder>/<algo>/<env_id>_<n>`` is one curve. The Monitor CSVs hold ``is_success``,
``n_actions`` and ``min_actions`` because the shipped configs set ``monitor_kwargs``; episodes of all envs are
merged in wall-clock order, so the x axis counts the env steps of every env.
(``python -m sb3_parsing.zoo plot_train -a ppo_mask -e LinguisticParse-v0 -f logs -y success -o success.png`` draws
rl_zoo3's own.) Works without a display: the figure is written to ``--out``.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter


def load_run(folder: Path) -> pd.DataFrame:
    """Every episode of a run, in wall-clock order, with the cumulative env steps ``timesteps``."""
    frames = [pd.read_csv(path, skiprows=1) for path in sorted(folder.glob("*.monitor.csv"))]
    if not frames:
        raise FileNotFoundError(f"no *.monitor.csv in {folder}")
    episodes = pd.concat(frames).sort_values("t", kind="stable").reset_index(drop=True)
    episodes["timesteps"] = episodes["l"].cumsum()
    episodes["ratio"] = episodes["n_actions"] / episodes["min_actions"]
    return episodes


def plot_runs(runs: Sequence[Path], labels: Sequence[str], window: int) -> Figure:
    """
    The two panels: success rate and attempts / ``min_actions`` (log scale) against env steps, one curve per run.

    :param runs: rl_zoo3 run folders
    :param labels: one legend label per run
    :param window: episodes in the rolling mean
    """
    fig, (ax_success, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4))
    for run, label in zip(runs, labels, strict=True):
        episodes = load_run(run)
        rolling = episodes.rolling(window, min_periods=1)
        ax_success.plot(episodes["timesteps"], rolling["is_success"].mean(), label=label)
        ax_ratio.plot(episodes["timesteps"], rolling["ratio"].mean(), label=label)
    # A margin below 0 and above 1, so that a curve at 0 or 1 is not hidden under the frame
    ax_success.set(xlabel="env steps", ylabel="success rate (training episodes)", ylim=(-0.04, 1.04))
    ax_ratio.set(xlabel="env steps", ylabel="attempts / min_actions (training episodes)", yscale="log")
    # Plain numbers (1, 1.5, 2, 3, ...) on the log axis instead of matplotlib's 6x10^0 ... 10^0
    ax_ratio.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax_ratio.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax_ratio.yaxis.set_minor_formatter(NullFormatter())
    ax_ratio.axhline(1.0, color="grey", linestyle=":", label="expert")
    for ax in (ax_success, ax_ratio):
        ax.grid(alpha=0.3)
    ax_ratio.legend(fontsize="small")
    env_ids = sorted({run.name.rsplit("_", 1)[0] for run in runs})  # rl_zoo3 names a run folder <env_id>_<n>
    fig.suptitle(f"{', '.join(env_ids)}, rolling mean over {window} episodes")
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-f", "--log-folder", type=Path, default=Path("logs"), help="rl_zoo3 log folder")
    parser.add_argument("--runs", nargs="*", type=Path, help="run folders (default: every run under the log folder)")
    parser.add_argument("--labels", nargs="*", help="one legend label per run (default: <algo> / <run folder>)")
    parser.add_argument("--window", type=int, default=500, help="episodes in the rolling mean")
    parser.add_argument("--out", type=Path, default=Path("docs/learning_curves.png"))
    args = parser.parse_args()

    runs = args.runs or sorted(p.parent for p in args.log_folder.glob("*/*/0.monitor.csv"))
    if not runs:
        parser.error(f"no rl_zoo3 runs under {args.log_folder}")
    labels = args.labels or [f"{run.parent.name} / {run.name}" for run in runs]
    if len(labels) != len(runs):
        parser.error(f"{len(labels)} labels for {len(runs)} runs")
    fig = plot_runs(runs, labels, args.window)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
