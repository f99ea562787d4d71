"""Train MaskablePPO on LinguisticParse-v0 and print its parse success on held-out sentences."""

import argparse

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.evaluation import evaluate_policy

import sb3_parsing  # noqa: F401  (registers LinguisticParse-v0)
from sb3_parsing.extractors import TokenTransformerExtractor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150_000, help="training environment steps")
    parser.add_argument("--episodes", type=int, default=200, help="held-out evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_env = gym.make("LinguisticParse-v0")
    model = MaskablePPO(
        "MultiInputPolicy",
        train_env,
        n_steps=1024,
        batch_size=256,
        learning_rate=5e-4,
        ent_coef=0.01,
        policy_kwargs=dict(features_extractor_class=TokenTransformerExtractor, net_arch=[128]),
        seed=args.seed,
        verbose=0,
    )
    model.learn(args.steps, progress_bar=False)

    test_env = gym.make("LinguisticParse-v0", split="test")
    test_env.reset(seed=args.seed + 1)
    rewards, lengths = evaluate_policy(
        model, test_env, n_eval_episodes=args.episodes, deterministic=True, return_episode_rewards=True
    )
    success = np.asarray(rewards) > 0
    print(f"trained {args.steps} steps; held-out sentences: {len(test_env.unwrapped.sentences)}")
    print(f"held-out parse success: {success.mean():.1%} over {args.episodes} episodes")
    print(f"attempts per solved sentence: {np.mean(np.asarray(lengths)[success]):.1f}" if success.any() else "no sentence solved")


if __name__ == "__main__":
    main()
