"""Every exported extractor trains with PPO, MaskablePPO and DQN on both env ids; DQN trains with HerReplayBuffer."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3 import DQN, PPO, HerReplayBuffer
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing import extractors
from sb3_parsing.extractors import TokenConvExtractor, TokenMLPExtractor, TokenTransformerExtractor
from sb3_parsing.wrappers import LinguisticParseGoalEnv, constituents_of

ENV_IDS = ["LinguisticParse-v0", "LinguisticParseGoal-v0"]
TINY = dict(features_dim=16, embed_dim=16)
EXTRACTOR_KWARGS: dict[type, dict[str, Any]] = {
    TokenMLPExtractor: TINY,
    TokenConvExtractor: TINY,
    TokenTransformerExtractor: dict(TINY, n_heads=2, ff_dim=32, n_layers=1),
}
ALGOS: dict[type[BaseAlgorithm], dict[str, Any]] = {
    PPO: dict(n_steps=64, batch_size=32, n_epochs=1),
    MaskablePPO: dict(n_steps=64, batch_size=32, n_epochs=1),
    DQN: dict(learning_starts=64, buffer_size=1_000, batch_size=32, train_freq=4, target_update_interval=64),
}
N_STEPS = 192


def test_every_exported_extractor_is_covered() -> None:
    exported = [getattr(extractors, name) for name in extractors.__all__]
    classes = {obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseFeaturesExtractor)}
    classes.remove(extractors.TokenExtractor)  # their shared base, not an extractor of its own
    assert set(EXTRACTOR_KWARGS) == classes


def _extractors(model: BaseAlgorithm) -> list[th.nn.Module]:
    # DQN keeps its extractor in q_net (and q_net_target), PPO on the policy
    return [module for module in model.policy.modules() if isinstance(module, tuple(EXTRACTOR_KWARGS))]


def _extractor_weights(model: BaseAlgorithm) -> list[th.Tensor]:
    return [p.detach().clone() for extractor in _extractors(model) for p in extractor.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("algo", list(ALGOS), ids=lambda a: a.__name__)
@pytest.mark.parametrize("extractor_class", list(EXTRACTOR_KWARGS), ids=lambda c: c.__name__)
def test_extractor_trains(env_id: str, algo: type[BaseAlgorithm], extractor_class: type) -> None:
    env = make_vec_env(env_id, n_envs=1, seed=0)
    policy_kwargs = dict(
        features_extractor_class=extractor_class,
        features_extractor_kwargs=EXTRACTOR_KWARGS[extractor_class],
        net_arch=[16],
    )
    model = algo("MultiInputPolicy", env, policy_kwargs=policy_kwargs, seed=0, device="cpu", **ALGOS[algo])
    assert _extractors(model) and all(type(e) is extractor_class for e in _extractors(model))
    before = _extractor_weights(model)
    model.learn(N_STEPS)
    assert model.num_timesteps >= N_STEPS
    after = _extractor_weights(model)
    assert any(not th.equal(b, a) for b, a in zip(before, after, strict=True)), "the extractor was never updated"

    obs = env.reset()
    if algo is MaskablePPO:
        masks = get_action_masks(env)
        action, _ = model.predict(obs, action_masks=masks, deterministic=True)  # type: ignore[call-arg]
        assert masks[0, action[0]], "MaskablePPO chose a masked action"
    else:
        action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action[0]))


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("extractor_class", list(EXTRACTOR_KWARGS), ids=lambda c: c.__name__)
def test_extractor_ignores_padding_of_real_observations(env_id: str, extractor_class: type) -> None:
    env = gym.make(env_id, obs_len=16)  # rows past max_len=12: padding whatever the sentence
    extractor = extractor_class(env.observation_space, **EXTRACTOR_KWARGS[extractor_class])
    obs, _ = env.reset(seed=2)
    for _ in range(5):
        obs, *_ = env.step(env.get_wrapper_attr("expert_action")())
    n_tokens = len(env.get_wrapper_attr("analysis").tokens)
    assert n_tokens < env.get_wrapper_attr("obs_len"), "the test needs padding rows"
    junk = {key: value.copy() for key, value in obs.items()}
    for key, value in junk.items():
        if key != "text":  # padding is where text is zero
            value[n_tokens:] = 1
    with th.no_grad():
        clean, dirty = (extractor({k: th.as_tensor(v[None], dtype=th.float32) for k, v in o.items()}) for o in (obs, junk))
    th.testing.assert_close(clean, dirty)


def test_dqn_with_her_replay_buffer() -> None:
    env = make_vec_env("LinguisticParseGoal-v0", n_envs=1, seed=0)
    model = DQN(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(goal_selection_strategy="future", n_sampled_goal=4),
        learning_starts=200,
        buffer_size=2_000,
        batch_size=32,
        train_freq=4,
        policy_kwargs=dict(features_extractor_class=TokenMLPExtractor, features_extractor_kwargs=TINY, net_arch=[16]),
        seed=0,
        device="cpu",
    )
    model.learn(400)
    assert model.num_timesteps >= 400
    buffer = model.replay_buffer
    assert isinstance(buffer, HerReplayBuffer)
    samples = buffer.sample(512)
    achieved = samples.next_observations["achieved_goal"].cpu().numpy()
    desired = samples.observations["desired_goal"].cpu().numpy()
    rewards = samples.rewards.cpu().numpy().reshape(-1)
    goal_env = env.envs[0]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(rewards, goal_env.get_wrapper_attr("compute_reward")(achieved, desired, [{}] * 512))
    n_real = len(desired) - int(buffer.her_ratio * len(desired))  # SB3 samples the real transitions first
    assert all(len(constituents_of(g)) == 1 and constituents_of(g)[0][0] == 0 for g in desired[:n_real]), "real: the root"
    # a relabeled goal (what a failed episode did derive) is reached: the signal that failed episodes lack
    assert (rewards[n_real:] == 0.0).any()


def test_maskable_ppo_reads_masks_through_the_goal_wrapper() -> None:
    env = make_vec_env("LinguisticParseGoal-v0", n_envs=2, seed=1, env_kwargs=dict(mask_mode="oracle"))
    assert isinstance(env.envs[0].get_wrapper_attr("compute_reward").__self__, LinguisticParseGoalEnv)  # type: ignore[attr-defined]
    model = MaskablePPO(
        "MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=dict(net_arch=[16]), seed=1
    )
    model.learn(64)
    obs = env.reset()
    for _ in range(20):
        masks = get_action_masks(env)
        base = env.envs[0].unwrapped  # type: ignore[attr-defined]
        chart = np.zeros(env.action_space.n, dtype=bool)  # type: ignore[attr-defined]
        chart[base.analysis.chart_cells] = True
        assert not (masks[0] & ~chart).any(), "oracle masks hide non-constituents"
        action, _ = model.predict(obs, action_masks=masks)
        assert masks[np.arange(2), action].all()
        obs, *_ = env.step(action)


def test_goal_env_id_is_wrapped() -> None:
    env = gym.make("LinguisticParseGoal-v0")
    assert isinstance(env.get_wrapper_attr("compute_reward").__self__, LinguisticParseGoalEnv)
