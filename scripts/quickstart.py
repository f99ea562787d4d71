"""Train MaskablePPO on LinguisticParse-v0 and print its parse success on held-out sentences."""

import argparse

import gymnasium as gym
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers LinguisticParse-v0)
from sb3_parsing.evaluation import ExpertPlayer, ModelPlayer, TopDownPlayer, evaluate_player
from sb3_parsing.policies import MaskableTokenPolicy

# Each new cell of a parse earns what a step costs, so only wasted attempts cost: the agent learns to parse
# in few attempts. Success is the unchanged +1 of the default game.
SHAPING = dict(constituent_bonus=0.1, step_penalty=0.1)
# The hyperparameters of the shipped ppo_mask.yml (also used by compare_policies.py)
MASKABLE_PPO_KWARGS = dict(n_steps=128, batch_size=256, n_epochs=4, learning_rate=1e-3, gamma=0.95, ent_coef=0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150_000, help="training environment steps")
    parser.add_argument("--sentences", type=int, default=200, help="held-out sentences to evaluate on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(1)

    train_env = make_vec_env("LinguisticParse-v0", n_envs=8, seed=args.seed, env_kwargs=SHAPING)
    model = MaskablePPO(
        MaskableTokenPolicy,
        train_env,
        **MASKABLE_PPO_KWARGS,
        policy_kwargs=dict(features_extractor_kwargs=dict(embed_dim=64, n_layers=1, n_heads=4, ff_dim=128)),
        seed=args.seed,
    )
    model.learn(args.steps)

    test_env = gym.make("LinguisticParse-v0", split="test")
    sentences = test_env.unwrapped.sentences[: args.sentences]
    print(f"trained {args.steps} steps; evaluating on {len(sentences)} held-out sentences")
    for name, player in [("agent", ModelPlayer(model)), ("top-down search", TopDownPlayer()), ("expert", ExpertPlayer())]:
        result = evaluate_player(test_env, player, sentences)
        print(
            f"{name:>16}: held-out parse success {result['success_rate']:.1%}, "
            f"attempts / min_actions {result['attempts_per_min_actions']:.2f}"
        )


if __name__ == "__main__":
    main()
