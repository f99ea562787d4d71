"""
Train MaskablePPO on LinguisticParse-v0 with the shipped ppo_mask.yml settings and print its parse success on held-out
sentences, beside the seed's top-down search and the expert.
"""

import argparse
import time

import gymnasium as gym
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers LinguisticParse-v0)
from sb3_parsing.evaluation import ExpertPlayer, ModelPlayer, TopDownPlayer, evaluate_player
from sb3_parsing.policies import BitMaskDictRolloutBuffer, FactoredMaskableTokenPolicy

# The settings of the shipped sb3_parsing/zoo_configs/ppo_mask.yml (tests/test_zoo.py checks that they agree; also
# used by compare_policies.py). Each new cell of a parse earns what a step costs, so only wasted attempts cost: the
# agent learns to parse in few attempts. Success is the unchanged +1 of the default game.
N_ENVS = 8
SHAPING = dict(constituent_bonus=0.1, step_penalty=0.1)
MASKABLE_PPO_KWARGS = dict(n_steps=128, batch_size=256, n_epochs=4, learning_rate=1e-3, gamma=0.95, ent_coef=0.005)
TRANSFORMER_KWARGS = dict(
    embed_dim=64, n_layers=1, n_heads=4, ff_dim=128, positional_encoding="relative_keys", mark_boundaries=True
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150_000, help="training environment steps")
    parser.add_argument("--sentences", type=int, default=200, help="held-out sentences to evaluate on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # These networks are small: more threads than one only slow a small CPU machine down
    th.set_num_threads(1)

    train_env = make_vec_env("LinguisticParse-v0", n_envs=N_ENVS, seed=args.seed, env_kwargs=SHAPING)
    model = MaskablePPO(
        FactoredMaskableTokenPolicy,
        train_env,
        **MASKABLE_PPO_KWARGS,
        policy_kwargs=dict(grammar="english", features_extractor_kwargs=TRANSFORMER_KWARGS),
        rollout_buffer_class=BitMaskDictRolloutBuffer,
        seed=args.seed,
    )
    sentences, ruleset = (train_env.get_attr(name, indices=0)[0] for name in ("sentences", "ruleset"))
    print(
        f"Training MaskablePPO (FactoredMaskableTokenPolicy, the ppo_mask.yml settings) on LinguisticParse-v0 ({ruleset.name} "
        f"grammar, {len(sentences)} training sentences): {args.steps:,} steps on {N_ENVS} envs, seed {args.seed}; then a "
        "greedy evaluation on held-out sentences",
        flush=True,
    )
    start = time.perf_counter()
    model.learn(args.steps, progress_bar=True)
    minutes = (time.perf_counter() - start) / 60

    test_env = gym.make("LinguisticParse-v0", split="test")
    held_out = test_env.unwrapped.sentences[: args.sentences]
    print(f"trained {args.steps:,} steps in {minutes:.1f} min; evaluating on {len(held_out)} held-out sentences")
    for name, player in [("agent", ModelPlayer(model)), ("top-down search", TopDownPlayer()), ("expert", ExpertPlayer())]:
        result = evaluate_player(test_env, player, held_out)
        print(
            f"{name:>16}: held-out parse success {result['success_rate']:.1%}, "
            f"attempts / min_actions {result['attempts_per_min_actions']:.2f}"
        )


if __name__ == "__main__":
    main()
