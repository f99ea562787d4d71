"""
Length generalization of MaskablePPO on LinguisticParse-v0: train on sentences of at most 12 tokens, evaluate on longer.

Each run trains ``MaskableTokenPolicy`` (``FactoredMaskableTokenPolicy`` for the variant with the grammar's left corners,
the shipped policy) with the hyperparameters and shaping of the shipped ``ppo_mask.yml`` on
``LinguisticParse-v0`` with ``max_len=12`` and ``obs_len=24`` (rows 13 to 24 are padding in training), then plays
greedily the held-out sentences of 3 to 12 tokens (``split="test"``) and sentences sampled from the grammar in the
buckets 13-16, 17-20 and 21-24 tokens (never trained on: they are longer than any training sentence), each bucket
with the step limit of the plain game (4 actions per token of the bucket's longest sentence). Only the features
extractor's positional encoding (and for ``factored_left_corners`` the policy) changes between variants::

    python scripts/length_generalization.py --variants sinusoidal relative_keys_boundaries --seeds 1 2 3 \\
        --json docs/results/length_generalization.json
    python scripts/length_generalization.py --merge docs/results/length_generalization.json  # the tables again

prints one row per run and the mean (min-max) over seeds per variant, and writes every figure to the JSON.
"""

import argparse
import json
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers LinguisticParse-v0)
from quickstart import MASKABLE_PPO_KWARGS, SHAPING  # scripts/ is on sys.path when a script in it runs
from sb3_parsing.corpus import sample_sentences
from sb3_parsing.evaluation import ModelPlayer, evaluate_player
from sb3_parsing.policies import FactoredMaskableTokenPolicy, MaskableTokenPolicy

ENV_ID = "LinguisticParse-v0"
TRAIN_MAX_LEN, OBS_LEN = 12, 24
LONG_BUCKETS = ((13, 16), (17, 20), (21, 24))
_TRANSFORMER = dict(embed_dim=64, n_layers=1, n_heads=4, ff_dim=128)
# The policy_kwargs of each variant; everything else is the same
VARIANTS: dict[str, dict[str, Any]] = {
    "sinusoidal": dict(features_extractor_kwargs=dict(_TRANSFORMER, positional_encoding="sinusoidal")),
    "relative": dict(features_extractor_kwargs=dict(_TRANSFORMER, positional_encoding="relative")),
    "relative_keys": dict(features_extractor_kwargs=dict(_TRANSFORMER, positional_encoding="relative_keys")),
    "relative_keys_boundaries": dict(
        features_extractor_kwargs=dict(_TRANSFORMER, positional_encoding="relative_keys", mark_boundaries=True)
    ),
    # The shipped ppo_mask.yml policy: relative_keys_boundaries features, a row then a column, the grammar's left corners
    "factored_left_corners": dict(
        grammar="english",
        features_extractor_kwargs=dict(_TRANSFORMER, positional_encoding="relative_keys", mark_boundaries=True),
    ),
}


def evaluation_sets(n_sentences: int, seed: int) -> dict[str, list[tuple[str, ...]]]:
    """
    :param n_sentences: most sentences per bucket
    :param seed: seed of the sampler of the longer sentences
    :return: the sentences of each length bucket, keyed ``"3-12"``, ``"13-16"``, ...
    """
    test_env = gym.make(ENV_ID, max_len=TRAIN_MAX_LEN, obs_len=OBS_LEN, split="test")
    sets = {f"3-{TRAIN_MAX_LEN}": list(test_env.unwrapped.sentences[:n_sentences])}
    ruleset = test_env.unwrapped.ruleset
    for low, high in LONG_BUCKETS:
        sets[f"{low}-{high}"] = sample_sentences(ruleset, n_sentences, low, high, seed=seed)
    return sets


def evaluate(model: MaskablePPO, sets: dict[str, list[tuple[str, ...]]]) -> dict[str, dict[str, Any]]:
    """Greedy play of every bucket, in an env whose step limit is that of the bucket's longest sentences."""
    results = {}
    for bucket, sentences in sets.items():
        high = int(bucket.split("-")[1])
        env = gym.make(ENV_ID, max_len=high, obs_len=OBS_LEN, n_sentences=1)
        results[bucket] = evaluate_player(env, ModelPlayer(model), sentences)
    return results


def train(variant: str, seed: int, steps: int) -> tuple[MaskablePPO, float]:
    """Train MaskablePPO with the shipped hyperparameters; return the model and the training minutes."""
    env = make_vec_env(ENV_ID, n_envs=8, seed=seed, env_kwargs=dict(SHAPING, max_len=TRAIN_MAX_LEN, obs_len=OBS_LEN))
    policy_kwargs = VARIANTS[variant]
    policy = FactoredMaskableTokenPolicy if "grammar" in policy_kwargs else MaskableTokenPolicy
    model = MaskablePPO(policy, env, **MASKABLE_PPO_KWARGS, policy_kwargs=policy_kwargs, seed=seed)
    start = time.perf_counter()
    model.learn(steps)
    return model, (time.perf_counter() - start) / 60


def _run_row(run: dict[str, Any]) -> str:
    """One run as a markdown row: success (attempts / min_actions) per bucket."""
    cells = " | ".join(f"{m['success_rate']:.1%} ({m['attempts_per_min_actions']:.2f}x)" for m in run["results"].values())
    return f"| {run['variant']} | {run['seed']} | {run['train_minutes']:.1f} | {cells} |"


def _summary_rows(runs: list[dict[str, Any]]) -> list[str]:
    """Per variant and bucket: success mean (min-max) over seeds and mean attempts / min_actions, as markdown rows."""
    rows = []
    for variant in dict.fromkeys(run["variant"] for run in runs):
        of_variant = [run for run in runs if run["variant"] == variant]
        cells = []
        for bucket in of_variant[0]["results"]:
            rates = np.array([run["results"][bucket]["success_rate"] for run in of_variant])
            ratio = np.mean([run["results"][bucket]["attempts_per_min_actions"] for run in of_variant])
            cells.append(f"{rates.mean():.1%} ({rates.min():.1%}-{rates.max():.1%}), {ratio:.2f}x")
        seeds = ", ".join(str(run["seed"]) for run in of_variant)
        rows.append(f"| {variant} | {seeds} | {' | '.join(cells)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["sinusoidal", "relative_keys_boundaries"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=150_000, help="training steps per run (ppo_mask.yml: 150k)")
    parser.add_argument("--sentences", type=int, default=200, help="most sentences per length bucket")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="train nothing: tabulate (and --json merge) these runs")
    args = parser.parse_args()
    th.set_num_threads(1)

    runs: list[dict[str, Any]] = []
    policy_kwargs: dict[str, str] = {}

    def save() -> None:
        if args.json:  # after every run, so that an interrupted sweep keeps what it measured
            with open(args.json, "w") as file:
                json.dump(dict(policy_kwargs=policy_kwargs, runs=runs), file, indent=2)

    buckets = " | ".join(f"{low}-{high} tokens" for low, high in ((3, TRAIN_MAX_LEN), *LONG_BUCKETS))
    print(f"| variant | seed | train min | {buckets} |\n" + "|---" * (3 + len(LONG_BUCKETS) + 1) + "|")
    if args.merge:
        for path in args.merge:
            with open(path) as file:
                saved = json.load(file)
            policy_kwargs.update(saved["policy_kwargs"])
            runs += saved["runs"]
        print("\n".join(_run_row(run) for run in runs))
        save()
    else:
        sets = evaluation_sets(args.sentences, seed=1)
        policy_kwargs = {variant: repr(VARIANTS[variant]) for variant in args.variants}
        for variant in args.variants:
            for seed in args.seeds:
                model, minutes = train(variant, seed, args.steps)
                runs.append(
                    dict(variant=variant, seed=seed, steps=args.steps, train_minutes=minutes, results=evaluate(model, sets))
                )
                print(_run_row(runs[-1]), flush=True)
                save()

    n_sentences = ", ".join(str(m["n_sentences"]) for m in runs[0]["results"].values())
    print(f"\nheld-out success, mean (min-max) over seeds, and mean attempts / min_actions; greedy; n = {n_sentences}")
    print(f"| variant | seeds | {buckets} |\n" + "|---" * (2 + len(LONG_BUCKETS) + 1) + "|")
    print("\n".join(_summary_rows(runs)))


if __name__ == "__main__":
    main()
