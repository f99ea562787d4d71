"""
Throughput benchmark of the parsing game, in one process and one run (ratios are measured side by side).

Measures and prints a Markdown table (and writes JSON with ``--output``):

1. steps/s of ``gym.make("LinguisticParse-v0")`` with random masked actions, resets included, beside
   ``gym.make("CartPole-v1")`` with random actions: once with the policy's cost (masks and sampling), once
   counting only the time spent in ``env.step``/``env.reset``;
2. the oracle's first analysis of a sentence (a cold reset) and a cached reset, against sentence length
   (8, 16, 32, 64 tokens) and grammar size (the English grammar plus extra lexical rules), with the step time;
3. the batched :class:`~sb3_parsing.vec_env.LinguisticParseVecEnv` against ``DummyVecEnv`` at N = 1, 16, 64, 256
   (env-steps/s with random actions, both with a monitor, the oracle's cache warm in both, each side timed over
   at least a second of runs that each start from a fresh env);
4. the core on a treebank-scale grammar (``scripts/large_grammar.py``, about 5,800 rules), in both column modes:
   cold analysis time, bytes per analysis, the memory of an env with every sentence analysed, reset and step time;
5. the share of PPO and MaskablePPO wall time spent inside the env (``step_wait``/``reset``/masks), for a
   ``DummyVecEnv`` and for the batched env.

Usage::

    python scripts/benchmark_env.py --output benchmark_env.json
    python scripts/benchmark_env.py --quick  # seconds: a smoke run, numbers meaningless
    python scripts/benchmark_env.py --only vec_env  # sections: single_env reset_scaling vec_env large_grammar training
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecMonitor

import sb3_parsing
from sb3_parsing.env import LinguisticParseEnv
from sb3_parsing.grammar import RuleSet
from sb3_parsing.oracle import Oracle
from sb3_parsing.vec_env import LinguisticParseVecEnv


def single_env_throughput(n_steps: int, seed: int = 0) -> dict[str, float]:
    """Steps/s of LinguisticParse-v0 (random masked actions) and CartPole-v1 (random actions), resets included."""
    rng = np.random.default_rng(seed)
    uniform = rng.random(n_steps)
    results: dict[str, float] = {}

    env = gym.make("LinguisticParse-v0")
    base = env.unwrapped
    assert isinstance(base, LinguisticParseEnv)
    _warm_oracle(base)  # steady state: each sentence of the pool analyzed once, as in any training run
    env.reset(seed=seed)
    env_time, episodes = 0.0, 0
    start = time.perf_counter()
    for k in range(n_steps):
        valid = np.flatnonzero(base.action_masks())
        action = valid[int(uniform[k] * len(valid))]
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
            episodes += 1
        env_time += time.perf_counter() - t0
    total = time.perf_counter() - start
    results["parse_steps_per_s"] = n_steps / total
    results["parse_env_only_steps_per_s"] = n_steps / env_time
    results["parse_mean_episode_length"] = n_steps / max(episodes, 1)

    cartpole = gym.make("CartPole-v1")
    cartpole.reset(seed=seed)
    cartpole.action_space.seed(seed)
    env_time = 0.0
    start = time.perf_counter()
    for _ in range(n_steps):
        action = cartpole.action_space.sample()
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = cartpole.step(action)
        if terminated or truncated:
            cartpole.reset()
        env_time += time.perf_counter() - t0
    total = time.perf_counter() - start
    results["cartpole_steps_per_s"] = n_steps / total
    results["cartpole_env_only_steps_per_s"] = n_steps / env_time
    results["ratio"] = results["parse_steps_per_s"] / results["cartpole_steps_per_s"]
    results["ratio_env_only"] = results["parse_env_only_steps_per_s"] / results["cartpole_env_only_steps_per_s"]
    return results


def _english_sentence(n_tokens: int) -> tuple[str, ...]:
    """'John saw the man' followed by prepositional phrases: every PP can attach to several phrases."""
    rest = n_tokens - 4
    for n_long in range(rest // 4 + 1):  # 3 * n_short + 4 * n_long == rest
        if (rest - 4 * n_long) % 3 == 0:
            n_short = (rest - 4 * n_long) // 3
            break
    else:
        raise ValueError(f"no sentence of {n_tokens} tokens")
    return tuple("John saw the man".split() + "with a dog".split() * n_short + "in the big park".split() * n_long)


def _grammar_with_extra_words(n_extra: int) -> RuleSet:
    english = RuleSet.builtin("english")
    return RuleSet.from_text(english.text + "".join(f"\nword{i} => N" for i in range(n_extra)), f"english+{n_extra}")


def _time_per_call(function: Callable[[], Any], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def reset_scaling(lengths: list[int], extra_words: list[int], repeats: int) -> list[dict[str, Any]]:
    """Cold analysis, cached reset and step time against sentence length and grammar size."""
    rows = []
    for n_extra in extra_words:
        ruleset = _grammar_with_extra_words(n_extra)
        for length in lengths:
            sentence = _english_sentence(length)
            oracle = Oracle(ruleset)
            t0 = time.perf_counter()
            analysis = oracle.analyze(sentence)
            cold = time.perf_counter() - t0
            env = LinguisticParseEnv(ruleset, sentences=[" ".join(sentence)], split="all", max_len=length, max_steps=10**9)
            env.reset(seed=0)
            reset = _time_per_call(env.reset, repeats)
            actions = iter(np.random.default_rng(0).integers(env.action_space.n, size=repeats).tolist())

            def step(env: LinguisticParseEnv = env, actions: Any = actions) -> None:
                if env.step(next(actions))[2]:  # a won episode (rare with random actions) restarts
                    env.reset()

            rows.append(
                dict(
                    tokens=length,
                    rules=ruleset.n_rules,
                    n_parses_digits=len(str(analysis.n_parses)),
                    chart_items=analysis.n_items,
                    analysis_kib=analysis.nbytes / 1024,
                    cold_analysis_ms=cold * 1e3,
                    cached_reset_us=reset * 1e6,
                    step_us=_time_per_call(step, repeats) * 1e6,
                )
            )
    return rows


def large_grammar(
    n_sentences: int, length: int, repeats: int, seed: int = 0, parses: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """
    The core on a treebank-scale grammar (``scripts/large_grammar.py``: ~5,800 rules, ~350 labels), in both column
    modes: cold analysis time (CPU time of this process, so that another process on the machine counts less), the
    bytes of each analysis, the memory of a whole env with every sentence analysed (tracemalloc, numpy included),
    reset and step time, and whether the step time depends on the number of parses.

    :param n_sentences: sentences analysed (all of ``length`` tokens)
    :param length: tokens per sentence
    :param repeats: resets and steps timed per sentence
    :param seed: seed of the grammar and of the sentences
    :param parses: keep only sentences with this many parses (low, high), as real test sentences have
    """
    import gc
    import tracemalloc

    sys.path.insert(0, str(os.path.dirname(os.path.abspath(__file__))))
    from large_grammar import large_grammar_sentences, make_large_grammar

    ruleset = RuleSet.from_text(make_large_grammar(seed=seed), "large")
    sentences = [" ".join(s) for s in large_grammar_sentences(ruleset, n_sentences, length=length, seed=seed, parses=parses)]
    rows = []
    for columns in ("rules", "labels"):
        oracle = Oracle(ruleset, columns)  # type: ignore[arg-type]
        cold, analyses = [], []
        for sentence in sentences:
            start = time.process_time()
            analyses.append(oracle.analyze(tuple(sentence.split())))
            cold.append(time.process_time() - start)
        tracemalloc.start()
        env = LinguisticParseEnv(ruleset, sentences=sentences, max_len=length, columns=columns)  # analyses them all
        gc.collect()
        env_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        resets, steps = [], []
        rng = np.random.default_rng(seed)
        for sentence in sentences:
            env.reset(options={"sentence": sentence})
            resets.append(_time_per_call(lambda env=env, s=sentence: env.reset(options={"sentence": s}), repeats))
            cells = iter(rng.permutation(env.analysis.chart_cells)[:repeats].tolist())
            n_cells = min(repeats, len(env.analysis.chart_cells))

            def step(env: LinguisticParseEnv = env, cells: Any = cells) -> None:
                env.step(next(cells))

            steps.append(_time_per_call(step, n_cells))
        parses = np.array([float(a.n_parses) for a in analyses])
        many = parses > np.median(parses)
        rows.append(
            dict(
                columns=columns,
                rules=ruleset.n_rules,
                tokens=length,
                sentences=len(sentences),
                parses_median=float(np.median(parses)),
                parses_max=float(parses.max()),
                min_actions_exact=sum(a.min_actions_exact for a in analyses),
                cold_median_s=float(np.median(cold)),
                cold_max_s=float(np.max(cold)),
                analysis_kib_median=float(np.median([a.nbytes for a in analyses]) / 1024),
                analysis_kib_max=float(np.max([a.nbytes for a in analyses]) / 1024),
                env_mib=env_bytes / 2**20,
                reset_us=float(np.median(resets)) * 1e6,
                step_us=float(np.median(steps)) * 1e6,
                step_us_few_parses=float(np.median(np.array(steps)[~many])) * 1e6,
                step_us_many_parses=float(np.median(np.array(steps)[many])) * 1e6,
            )
        )
    return rows


def _warm_oracle(env: LinguisticParseEnv) -> None:
    for sentence in env.sentences:
        env.oracle.analyze(sentence)


def _env_steps_per_s(make_vec_env: Callable[[], VecEnv], actions: np.ndarray, seed: int, min_seconds: float) -> float:
    """
    Env-steps/s of a fresh ``make_vec_env()`` stepped through ``actions`` (shape ``(n_steps, n_envs)``).

    A run shorter than ``min_seconds`` is repeated, each time on a fresh env (so each run starts as cold as the first),
    until the runs add up to ``min_seconds``: a fast env then gets as much wall time as a slow one, and both see the
    other load of a shared machine alike (a single run of a tenth of a second can lose a third of it to another process).

    :param make_vec_env: builds the VecEnv to time
    :param actions: the actions of each step
    :param seed: the VecEnv's seed
    :param min_seconds: the least total time of the timed runs
    """
    n_env_steps, seconds = 0, 0.0
    while n_env_steps == 0 or seconds < min_seconds:
        vec_env = make_vec_env()
        vec_env.seed(seed)
        vec_env.reset()
        start = time.perf_counter()
        for step_actions in actions:
            vec_env.step(step_actions)
        seconds += time.perf_counter() - start
        n_env_steps += actions.size
        vec_env.close()
    return n_env_steps / seconds


def vec_env_throughput(
    n_envs_list: list[int], n_env_steps: int, seed: int = 0, min_seconds: float = 1.0
) -> list[dict[str, Any]]:
    """
    Env-steps/s of DummyVecEnv (N copies, each in a Monitor) and of the batched env (in a VecMonitor).

    :param n_envs_list: the values of N
    :param n_env_steps: env-steps of a run (``n_env_steps // N`` steps, at least 20)
    :param seed: seed of the envs and of the random actions
    :param min_seconds: each side is timed over runs that add up to this long at least (see ``_env_steps_per_s``)
    """
    rows = []
    template = gym.make("LinguisticParse-v0").unwrapped
    assert isinstance(template, LinguisticParseEnv)
    _warm_oracle(template)
    kwargs = dict(sb3_parsing.DEFAULT_ENV_KWARGS)
    for n_envs in n_envs_list:
        n_steps = max(n_env_steps // n_envs, 20)
        actions = np.random.default_rng(seed).integers(template.action_space.n, size=(n_steps, n_envs))

        def copy_env() -> gym.Env:
            # N copies of one env (same sentences) sharing its warm oracle: constructing 256 envs would take minutes.
            env = copy.deepcopy(template)
            env.oracle = template.oracle
            return Monitor(env)

        def dummy(n_envs: int = n_envs) -> VecEnv:
            return DummyVecEnv([copy_env for _ in range(n_envs)])

        def batched(n_envs: int = n_envs) -> VecEnv:
            return VecMonitor(LinguisticParseVecEnv(n_envs, kwargs))  # its envs share the process's oracle

        row: dict[str, Any] = dict(n_envs=n_envs)
        for name, make_vec_env in (("dummy", dummy), ("batched", batched)):
            row[f"{name}_env_steps_per_s"] = _env_steps_per_s(make_vec_env, actions, seed, min_seconds)
        row["speedup"] = row["batched_env_steps_per_s"] / row["dummy_env_steps_per_s"]
        rows.append(row)
    return rows


class _EnvTimer(VecEnvWrapper):
    """Accumulates the wall time spent inside the wrapped VecEnv (steps, resets, action masks)."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self) -> Any:
        t0 = time.perf_counter()
        obs = self.venv.reset()
        self.seconds += time.perf_counter() - t0
        return obs

    def step_wait(self) -> Any:
        t0 = time.perf_counter()
        result = self.venv.step_wait()
        self.seconds += time.perf_counter() - t0
        return result

    def step_async(self, actions: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.venv.step_async(actions)
        self.seconds += time.perf_counter() - t0

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        t0 = time.perf_counter()
        result = self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)
        self.seconds += time.perf_counter() - t0
        return result


def training_share(n_timesteps: int, n_envs_list: list[int], seed: int = 0) -> list[dict[str, Any]]:
    """
    Share of PPO / MaskablePPO wall time spent inside the env, DummyVecEnv against the batched env.

    Torch runs on one thread: on a small shared machine two threads thrash (20x slower here), which would
    make the env's share look smaller than it is.
    """
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    threads = th.get_num_threads()
    th.set_num_threads(1)

    template = gym.make("LinguisticParse-v0").unwrapped
    assert isinstance(template, LinguisticParseEnv)
    _warm_oracle(template)
    rows = []

    def copy_env() -> gym.Env:
        env = copy.deepcopy(template)
        env.oracle = template.oracle
        return Monitor(env)

    for (algo_name, algo), n_envs, kind in itertools.product(
        (("PPO", PPO), ("MaskablePPO", MaskablePPO)), n_envs_list, ("dummy", "batched")
    ):
        if kind == "dummy":
            venv: VecEnv = DummyVecEnv([copy_env for _ in range(n_envs)])
        else:
            venv = VecMonitor(LinguisticParseVecEnv(n_envs, dict(sb3_parsing.DEFAULT_ENV_KWARGS)))
        timed = _EnvTimer(venv)
        timed.seed(seed)
        model = algo("MultiInputPolicy", timed, n_steps=128, batch_size=256, seed=seed, device="cpu")  # type: ignore[operator]
        start = time.perf_counter()
        model.learn(n_timesteps)
        wall = time.perf_counter() - start
        rows.append(
            dict(
                algo=algo_name,
                vec_env=kind,
                n_envs=n_envs,
                timesteps=model.num_timesteps,
                steps_per_s=model.num_timesteps / wall,
                env_share=timed.seconds / wall,
            )
        )
        timed.close()
    th.set_num_threads(threads)
    return rows


def _single_env_table(single: dict[str, float]) -> list[str]:
    return [
        "| single env, resets included | LinguisticParse-v0 | CartPole-v1 | ratio |",
        "|---|---:|---:|---:|",
        f"| random (masked) policy, steps/s | {single['parse_steps_per_s']:,.0f} | {single['cartpole_steps_per_s']:,.0f} "
        f"| {single['ratio']:.2f}x |",
        f"| time in env.step/reset only, steps/s | {single['parse_env_only_steps_per_s']:,.0f} "
        f"| {single['cartpole_env_only_steps_per_s']:,.0f} | {single['ratio_env_only']:.2f}x |",
    ]


def _reset_scaling_table(rows: list[dict[str, Any]]) -> list[str]:
    return [
        "| tokens | rules | parses (digits) | chart items | analysis (KiB) | cold analysis (ms) | cached reset (µs) "
        "| step (µs) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ] + [
        f"| {r['tokens']} | {r['rules']} | {r['n_parses_digits']} | {r['chart_items']} | {r['analysis_kib']:.0f} "
        f"| {r['cold_analysis_ms']:.2f} | {r['cached_reset_us']:.1f} | {r['step_us']:.2f} |"
        for r in rows
    ]


def _vec_env_table(rows: list[dict[str, Any]]) -> list[str]:
    return [
        "| N envs | DummyVecEnv env-steps/s | batched env-steps/s | speedup |",
        "|---:|---:|---:|---:|",
    ] + [
        f"| {r['n_envs']} | {r['dummy_env_steps_per_s']:,.0f} | {r['batched_env_steps_per_s']:,.0f} | {r['speedup']:.1f}x |"
        for r in rows
    ]


def _large_grammar_table(rows: list[dict[str, Any]]) -> list[str]:
    return [
        "| columns | rules | tokens | sentences | parses (median / max) | min_actions exact "
        "| cold analysis median / max (s) | analysis KiB median / max | env with all analysed (MiB) | reset (µs) "
        "| step (µs): all / fewer parses / more parses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ] + [
        f"| {r['columns']} | {r['rules']} | {r['tokens']} | {r['sentences']} "
        f"| {r['parses_median']:,.0f} / {r['parses_max']:,.0f} "
        f"| {r['min_actions_exact']}/{r['sentences']} | {r['cold_median_s']:.3f} / {r['cold_max_s']:.3f} "
        f"| {r['analysis_kib_median']:.0f} / {r['analysis_kib_max']:.0f} | {r['env_mib']:.1f} | {r['reset_us']:.0f} "
        f"| {r['step_us']:.1f} / {r['step_us_few_parses']:.1f} / {r['step_us_many_parses']:.1f} |"
        for r in rows
    ]


def _training_table(rows: list[dict[str, Any]]) -> list[str]:
    return ["| algorithm | VecEnv | N envs | steps/s | share of wall time in the env |", "|---|---|---:|---:|---:|"] + [
        f"| {r['algo']} | {r['vec_env']} | {r['n_envs']} | {r['steps_per_s']:,.0f} | {100 * r['env_share']:.1f}% |"
        for r in rows
    ]


# Each section of the results: the key of its results and the function that prints them as a table.
_TABLES: dict[str, Callable[[Any], list[str]]] = {
    "single_env": _single_env_table,
    "reset_scaling": _reset_scaling_table,
    "vec_env": _vec_env_table,
    "large_grammar": _large_grammar_table,
    "training": _training_table,
}


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']}"]
    for key, table in _TABLES.items():
        if key in results:
            lines += ["", *table(results[key])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="write the results as JSON to this file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run whose numbers mean nothing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only", nargs="+", choices=list(_TABLES), default=list(_TABLES), help="run these sections only (default: all)"
    )
    args = parser.parse_args()
    quick = args.quick
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {th.__version__} (1 thread for training), no GPU",
        "command": "python scripts/benchmark_env.py"
        + (" --quick" if quick else "")
        + ("" if args.only == list(_TABLES) else " --only " + " ".join(args.only)),
    }
    if "single_env" in args.only:
        print("single env ...", file=sys.stderr, flush=True)
        results["single_env"] = single_env_throughput(2_000 if quick else 200_000, args.seed)
    if "reset_scaling" in args.only:
        print("reset scaling ...", file=sys.stderr, flush=True)
        results["reset_scaling"] = reset_scaling(
            [8, 16] if quick else [8, 16, 32, 64], [0, 100] if quick else [0, 1_000, 3_000], 20 if quick else 2_000
        )
    if "vec_env" in args.only:
        print("batched env against DummyVecEnv ...", file=sys.stderr, flush=True)
        results["vec_env"] = vec_env_throughput(
            [1, 16] if quick else [1, 16, 64, 256], 2_000 if quick else 200_000, args.seed, 0.0 if quick else 1.0
        )
    if "large_grammar" in args.only:
        print("large grammar ...", file=sys.stderr, flush=True)
        results["large_grammar"] = (
            large_grammar(4, 12, 5, args.seed) if quick else large_grammar(60, 20, 200, args.seed, parses=(10**3, 10**5))
        )
    if "training" in args.only:
        print("share of training time ...", file=sys.stderr, flush=True)
        results["training"] = training_share(512 if quick else 20_480, [4] if quick else [8, 64], args.seed)
    print(_markdown(results))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
