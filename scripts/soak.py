"""
Soak test: a long random run of ``LinguisticParse-v0`` that reports memory before, during and after.

A leak (a growing cache, history kept across episodes, observations retained) shows as resident
memory that keeps climbing after the warm-up, when every training sentence has been analysed once.

    python scripts/soak.py --steps 1000000 --output soak.json
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import sb3_parsing  # noqa: F401  (registers the env ids)


def rss_mib() -> float:
    """Resident memory of this process in MiB, read from ``/proc/self/status`` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: the soak test needs Linux")


def _format_row(row: dict) -> str:
    return f"{row['steps']:>10} {row['episodes']:>9} {row['success_rate']:>8.3f} {row['rss_mib']:>9.1f} {row['seconds']:>8.1f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--env", default="LinguisticParse-v0", help="registered env id")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="gym.make keyword arguments as JSON")
    parser.add_argument("--steps", type=int, default=1_000_000, help="environment steps in all")
    parser.add_argument("--checkpoints", type=int, default=10, help="rows of the memory table")
    parser.add_argument("--policy", choices=("masked", "uniform"), default="masked", help="random over allowed or all actions")
    parser.add_argument(
        "--expert-fraction", type=float, default=0.3, help="share of steps taking the expert action (episodes end both ways)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="write the numbers as JSON here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.steps < args.checkpoints or args.checkpoints < 1:
        raise SystemExit(f"need --steps >= --checkpoints >= 1, got --steps {args.steps} --checkpoints {args.checkpoints}")
    gc.collect()
    rss_start = rss_mib()
    env = gym.make(args.env, **args.env_kwargs)
    parse_env = env.unwrapped
    rng = np.random.default_rng(args.seed)
    env.reset(seed=args.seed)
    gc.collect()
    rss_after_make = rss_mib()
    # Analyse every sentence once, so that the oracle's cache is full (or evicting) before memory is watched.
    for sentence in parse_env.sentences:
        parse_env.oracle.analyze(sentence)
    gc.collect()
    rss_warm = rss_mib()

    rows = []
    episodes = successes = 0
    every = args.steps // args.checkpoints
    print(f"{'steps':>10} {'episodes':>9} {'success':>8} {'rss_MiB':>9} {'seconds':>8}", flush=True)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        if rng.random() < args.expert_fraction:
            action = parse_env.expert_action()
        elif args.policy == "masked":
            action = int(rng.choice(np.flatnonzero(parse_env.action_masks())))
        else:
            action = int(rng.integers(parse_env.action_space.n))
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            episodes += 1
            successes += bool(info["is_success"])
            env.reset()
        if step % every == 0 or step == args.steps:
            gc.collect()
            rows.append(
                {
                    "steps": step,
                    "episodes": episodes,
                    "success_rate": successes / max(episodes, 1),
                    "rss_mib": round(rss_mib(), 1),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(_format_row(rows[-1]), flush=True)
    env.close()

    growth = rows[-1]["rss_mib"] - rows[0]["rss_mib"]
    summary = {
        "env": args.env,
        "env_kwargs": args.env_kwargs,
        "policy": args.policy,
        "expert_fraction": args.expert_fraction,
        "success_rate": successes / max(episodes, 1),
        "steps": args.steps,
        "episodes": episodes,
        "rss_mib_start": round(rss_start, 1),
        "rss_mib_after_make": round(rss_after_make, 1),
        "rss_mib_after_warmup": round(rss_warm, 1),
        "rss_mib_first_checkpoint": rows[0]["rss_mib"],
        "rss_mib_end": rows[-1]["rss_mib"],
        "growth_after_first_checkpoint_mib": round(growth, 1),
        "steps_per_second": round(args.steps / (time.perf_counter() - started)),
        "checkpoints": rows,
    }
    print(
        f"RSS: start {summary['rss_mib_start']} MiB, after make {summary['rss_mib_after_make']} MiB, "
        f"after analysing all {len(parse_env.sentences)} sentences {summary['rss_mib_after_warmup']} MiB, "
        f"first checkpoint {summary['rss_mib_first_checkpoint']} MiB, end {summary['rss_mib_end']} MiB "
        f"(growth {summary['growth_after_first_checkpoint_mib']:+} MiB over {args.steps - rows[0]['steps']} steps)"
    )
    if args.output is not None:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
