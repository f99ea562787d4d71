"""Held-out success of MaskablePPO on LinguisticParse-v0: the token policy against SB3's pooled policies, at equal steps."""

import argparse
import json
import time
from typing import Any

import gymnasium as gym
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers LinguisticParse-v0)

# scripts/ is on sys.path when a script in it runs
from quickstart import MASKABLE_PPO_KWARGS, N_ENVS, SHAPING, TRANSFORMER_KWARGS
from sb3_parsing.evaluation import ModelPlayer, evaluate_player
from sb3_parsing.extractors import TokenTransformerExtractor
from sb3_parsing.policies import MaskableTokenPolicy

POLICIES: dict[str, tuple[Any, dict[str, Any]]] = {
    "MaskableTokenPolicy (per-row head)": (MaskableTokenPolicy, dict(features_extractor_kwargs=TRANSFORMER_KWARGS)),
    "MultiInputPolicy + pooled Transformer": (
        "MultiInputPolicy",
        dict(features_extractor_class=TokenTransformerExtractor, features_extractor_kwargs=TRANSFORMER_KWARGS, net_arch=[256]),
    ),
    "MultiInputPolicy (flattened matrices)": ("MultiInputPolicy", dict(net_arch=[256, 256])),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", type=int, default=200, help="held-out sentences evaluated")
    parser.add_argument("--output", default="compare_policies.json")
    args = parser.parse_args()
    th.set_num_threads(1)

    test_env = gym.make("LinguisticParse-v0", split="test")
    sentences = test_env.unwrapped.sentences[: args.sentences]
    rows = []
    for name, (policy, policy_kwargs) in POLICIES.items():
        env = make_vec_env("LinguisticParse-v0", n_envs=N_ENVS, seed=args.seed, env_kwargs=SHAPING)
        model = MaskablePPO(policy, env, **MASKABLE_PPO_KWARGS, policy_kwargs=policy_kwargs, seed=args.seed)
        start = time.perf_counter()
        model.learn(args.steps)
        minutes = (time.perf_counter() - start) / 60
        result = evaluate_player(test_env, ModelPlayer(model), sentences)
        rows.append({"policy": name, "steps": args.steps, "train_minutes": minutes, **result})
        print(f"{name}: success {result['success_rate']:.1%}", flush=True)

    print(f"\nMaskablePPO, {args.steps} steps, seed {args.seed}, {len(sentences)} held-out sentences")
    print("| policy | held-out success | attempts / min_actions | train minutes |")
    print("|---|---|---|---|")
    for row in rows:
        ratio, minutes = row["attempts_per_min_actions"], row["train_minutes"]
        print(f"| {row['policy']} | {row['success_rate']:.1%} | {ratio:.2f} | {minutes:.1f} |")
    with open(args.output, "w") as file:
        json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
