"""
Evaluate a trained agent on held-out sentences and on sentences longer than any trained on, beside the baselines.

    python scripts/evaluate.py logs/ppo_mask/LinguisticParse-v0_1 --json results/ppo_mask.json
    python scripts/evaluate.py path/to/model.zip --algo ppo

Without a model (``--baselines-only``) it prints the baselines alone. ``--env-kwargs '{"grammar": "arithmetic"}'``
evaluates on the task an agent was trained on when that is not the registered default; reward shaping from a zoo
config (``constituent_bonus``, ``step_penalty``) is for training only and is left out on purpose.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.evaluation import (
    ALGORITHMS,
    BASELINES,
    ModelPlayer,
    Player,
    TopDownPlayer,
    evaluate_player,
    load_agent,
    longer_sentences,
)

_NO_LIMIT = 10**6


def _table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    header = (
        f"{'sentences':<10} {'player':<18} {'n':>5} {'success':>8} {'attempts':>9} {'att/min':>8} "
        f"{'solved att/min':>15} {'chart cells':>12}"
    )
    lines = [header, "-" * len(header)]
    for split, players in results.items():
        for name, m in players.items():
            solved = m["solved_attempts_per_min_actions"]
            lines.append(
                f"{split:<10} {name:<18} {m['n_sentences']:>5} {m['success_rate']:>8.1%} {m['attempts']:>9.2f} "
                f"{m['attempts_per_min_actions']:>8.3f} {'-' if solved is None else f'{solved:.3f}':>15} "
                f"{m['chart_share']:>12.1%}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="rl_zoo3 log folder (logs/<algo>/<env_id>_<n>) or a saved .zip")
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), help="default: from the log folder's args.yml or the path")
    parser.add_argument("--env", help="env id (default: the one the agent was trained on, else LinguisticParse-v0)")
    parser.add_argument("--best", action="store_true", help="load best_model.zip of the log folder, not the final model")
    parser.add_argument("--stochastic", action="store_true", help="sample the agent's actions instead of greedy ones")
    parser.add_argument("--n-test", type=int, default=0, help="at most this many held-out sentences (0: all)")
    parser.add_argument("--n-long", type=int, default=200, help="longer sentences to sample (0: skip)")
    parser.add_argument("--baselines-only", action="store_true", help="evaluate the baselines only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON keyword arguments of the env (its task)")
    args = parser.parse_args()
    if args.model is None and not args.baselines_only:
        parser.error("give a model (log folder or .zip) or --baselines-only")
    th.set_num_threads(1)

    players: dict[str, Player] = {}
    env_id = args.env or "LinguisticParse-v0"
    report: dict[str, Any] = {}
    if not args.baselines_only:
        model, env_id = load_agent(args.model, args.algo, args.env, args.best, args.env_kwargs)
        players[f"agent ({type(model).__name__})"] = ModelPlayer(model, deterministic=not args.stochastic)
        report.update(model=str(args.model), algo=type(model).__name__, num_timesteps=model.num_timesteps)
    for name, baseline in BASELINES.items():
        players[name] = baseline(args.seed) if name.startswith("random") else baseline()  # type: ignore[call-arg]

    task = args.env_kwargs
    test_env = gym.make(env_id, **{**task, "split": "test"})
    held_out = list(test_env.unwrapped.sentences)  # type: ignore[attr-defined]
    if args.n_test:
        held_out = held_out[: args.n_test]
    splits = {"held-out": (test_env, held_out)}
    if args.n_long:
        base = test_env.unwrapped
        long = longer_sentences(test_env, args.n_long)
        long_task = {**task, "sentences": [" ".join(s) for s in long], "split": "all", "max_len": base.obs_len}  # type: ignore[attr-defined]
        long_env = gym.make(env_id, **long_task)
        splits[f"{base.max_len + 1}-{base.obs_len} tok"] = (long_env, long)  # type: ignore[attr-defined]
    splits = {name: (env, [tuple(s) for s in sentences]) for name, (env, sentences) in splits.items()}

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for split, (env, sentences) in splits.items():
        results[split] = {}
        for name, player in players.items():
            start = time.perf_counter()
            results[split][name] = evaluate_player(env, player, sentences)
            results[split][name]["seconds"] = time.perf_counter() - start
        # The seed's search as it was meant: attempts counted until it finds the parse, with no step limit
        max_len = env.unwrapped.max_len  # type: ignore[attr-defined]
        unlimited_task = {**task, "sentences": [" ".join(s) for s in sentences], "split": "all", "max_len": max_len}
        unlimited = gym.make(env_id, **{**unlimited_task, "max_steps": _NO_LIMIT})
        results[split]["top-down, no limit"] = evaluate_player(unlimited, TopDownPlayer(), sentences)
    report.update(env_id=env_id, results=results)
    print(_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
