"""
Evaluate a trained agent on held-out sentences and on sentences longer than any trained on, beside the baselines.

    python scripts/evaluate.py logs/ppo_mask/LinguisticParse-v0_1 --json results/ppo_mask.json
    python scripts/evaluate.py path/to/model.zip --algo ppo

Without a model (``--baselines-only``) it prints the baselines alone. ``--env-kwargs '{"grammar": "arithmetic"}'``
evaluates on the task an agent was trained on when that is not the registered default; reward shaping from a zoo
config (``constituent_bonus``, ``step_penalty``) is for training only and is left out on purpose.

When the held-out sentences come with their trees (``target="tree"``, or ``--trees FILE``: a file with one bracketed
tree per line, played instead of the held-out split), each player's first complete parse is also scored against
them: exact match and labeled bracket F1 (PARSEVAL, EVALB's COLLINS.prm way). For a weighted grammar the Viterbi parse
joins the baselines.

    python scripts/evaluate.py --baselines-only --trees trees.txt --env-kwargs '{"grammar": "english_pcfg"}'
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.corpus import TreeSentence, load_trees
from sb3_parsing.evaluation import (
    ALGORITHMS,
    ModelPlayer,
    Player,
    TopDownPlayer,
    baseline_players,
    evaluate_player,
    load_agent,
    longer_sentences,
    observed_env_kwargs,
    training_seconds,
)

_NO_LIMIT = 10**6


def _table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    with_trees = any("exact_match" in m for players in results.values() for m in players.values())
    header = (
        f"{'sentences':<10} {'player':<20} {'n':>5} {'success':>8} {'attempts':>9} {'att/min':>8} "
        f"{'solved att/min':>15} {'chart cells':>12} {'dead ends':>10}" + (f" {'exact':>7} {'F1':>7}" if with_trees else "")
    )
    lines = [header, "-" * len(header)]
    for split, players in results.items():
        for name, m in players.items():
            solved = m["solved_attempts_per_min_actions"]
            line = (
                f"{split:<10} {name:<20} {m['n_sentences']:>5} {m['success_rate']:>8.1%} {m['attempts']:>9.2f} "
                f"{m['attempts_per_min_actions']:>8.3f} {'-' if solved is None else f'{solved:.3f}':>15} "
                f"{m['chart_share']:>12.1%} {m['dead_end_share']:>10.1%}"
            )
            if "exact_match" in m:
                line += f" {m['exact_match']:>7.1%} {m['bracket_f1']:>7.1%}"
            lines.append(line)
    return "\n".join(lines)


def _length_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The agent's results by sentence length, then by the kind of rule it attempted, for each split."""
    lines = []
    for split, players in results.items():
        for name, m in players.items():
            if name.startswith("agent"):
                trees = "exact_match" in m
                lines += [
                    f"\n{name}, {split}, by sentence length",
                    f"{'tokens':>6} {'n':>5} {'success':>8} {'att/min':>8} {'dead ends':>10}"
                    + (f" {'exact':>7} {'F1':>7}" if trees else ""),
                ]
                lines += [
                    f"{length:>6} {row['n_sentences']:>5} {row['success_rate']:>8.1%} "
                    f"{row['attempts_per_min_actions']:>8.3f} {row['dead_end_share']:>10.1%}"
                    + (f" {row['exact_match']:>7.1%} {row['bracket_f1']:>7.1%}" if trees else "")
                    for length, row in m["by_length"].items()
                ]
                if "by_rule_kind" in m:
                    lines += [
                        f"\n{name}, {split}, by the kind of rule attempted",
                        f"{'rule':>8} {'attempts':>9} {'dead ends':>10}",
                    ]
                    lines += [
                        f"{kind:>8} {row['attempt_share']:>9.1%} {row['dead_end_share']:>10.1%}"
                        for kind, row in m["by_rule_kind"].items()
                    ]
    return "\n".join(lines)


def _as_lines(sentences: list[tuple[str, ...]] | list[TreeSentence]) -> list[str]:
    """Sentences as an env's ``sentences`` argument: a tree keeps its tree, a sentence its tokens."""
    return [s.tree if isinstance(s, TreeSentence) else " ".join(s) for s in sentences]


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
    parser.add_argument("--trees", type=Path, help="a tree file to evaluate on instead of the held-out sentences")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON keyword arguments of the env (its task)")
    parser.add_argument(
        "--top-down-limit",
        type=int,
        default=_NO_LIMIT,
        help=f"attempts of the top-down search run to the end (default {_NO_LIMIT:,}: no limit in practice on small "
        "grammars; a backtracking search on a large one can need many more; 0: skip it)",
    )
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
        if Path(args.model).is_dir():  # a run's final model: its Monitor files time the whole run
            report.update(train_seconds=training_seconds(args.model))

    task = args.env_kwargs
    if not args.baselines_only:
        task = {**observed_env_kwargs(model.observation_space), **task}
    if args.trees:
        trees = load_trees(args.trees)
        test_env = gym.make(env_id, **{**task, "sentences": _as_lines(trees), "split": "all"})
        held_out: list[tuple[str, ...]] | list[TreeSentence] = trees
    else:
        test_env = gym.make(env_id, **{**task, "split": "test"})
        base_env = test_env.unwrapped
        trees_of = base_env.trees  # type: ignore[attr-defined]
        held_out = (
            list(base_env.sentences)
            if trees_of is None
            else [TreeSentence(t, tree) for t, tree in zip(base_env.sentences, trees_of, strict=True)]
        )  # type: ignore[attr-defined]
    base = test_env.unwrapped
    players.update(baseline_players(base.ruleset, args.seed))  # type: ignore[attr-defined]
    if args.n_test:
        held_out = held_out[: args.n_test]
    splits: dict[str, tuple[gym.Env, list[tuple[str, ...]] | list[TreeSentence]]] = {
        "trees" if args.trees else "held-out": (test_env, held_out)
    }
    if args.n_long and base.obs_len > base.max_len:  # type: ignore[attr-defined]
        with_trees = all(isinstance(s, TreeSentence) for s in held_out)
        long = longer_sentences(test_env, args.n_long, with_trees=with_trees)
        long_env = gym.make(env_id, **{**task, "sentences": _as_lines(long), "split": "all", "max_len": base.obs_len})  # type: ignore[attr-defined]
        splits[f"{base.max_len + 1}-{base.obs_len} tok"] = (long_env, long)  # type: ignore[attr-defined]
    elif args.n_long:
        print(f"no longer sentences: the env's obs_len is its max_len ({base.max_len}); give obs_len in --env-kwargs")  # type: ignore[attr-defined]

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for split, (env, sentences) in splits.items():
        results[split] = {}
        for name, player in players.items():
            start = time.perf_counter()
            results[split][name] = evaluate_player(env, player, sentences)
            results[split][name]["seconds"] = time.perf_counter() - start
        if not args.top_down_limit:
            continue
        # The seed's search as it was meant: attempts counted until it finds the parse, with no step limit
        max_len = env.unwrapped.max_len  # type: ignore[attr-defined]
        unlimited_task = {**task, "sentences": _as_lines(sentences), "split": "all", "max_len": max_len}
        unlimited = gym.make(env_id, **{**unlimited_task, "max_steps": args.top_down_limit})
        name = "top-down, no limit" if args.top_down_limit == _NO_LIMIT else f"top-down, {args.top_down_limit:,} attempts"
        results[split][name] = evaluate_player(unlimited, TopDownPlayer(), sentences)
    report.update(env_id=env_id, env_kwargs=task, results=results)
    print(_table(results))
    print(_length_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
