"""The batched VecEnv is N copies of LinguisticParseEnv under DummyVecEnv, only faster."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import sb3_parsing  # noqa: F401 - registers the ids
from sb3_parsing.env import LinguisticParseEnv
from sb3_parsing.vec_env import LinguisticParseVecEnv, batched_vec_env, make_parse_vec_env

SMALL = dict(grammar="english", min_len=3, max_len=8, obs_len=10, max_steps=12, n_sentences=60)


def _dummy(n_envs: int, kwargs: dict[str, Any]) -> DummyVecEnv:
    return DummyVecEnv([lambda: LinguisticParseEnv(**kwargs) for _ in range(n_envs)])


def _assert_infos_equal(batched: list[dict[str, Any]], reference: list[dict[str, Any]]) -> None:
    assert len(batched) == len(reference)
    for got, want in zip(batched, reference, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if key == "terminal_observation":
                for name in value:
                    np.testing.assert_array_equal(got[key][name], value[name])
            else:
                assert got[key] == value and type(got[key]) is type(value), key


def _assert_obs_equal(batched: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    assert batched.keys() == reference.keys()
    for key in reference:
        assert batched[key].dtype == reference[key].dtype
        np.testing.assert_array_equal(batched[key], reference[key])


@pytest.mark.parametrize(
    "kwargs",
    [
        SMALL,
        dict(SMALL, mask_mode="oracle", step_penalty=0.01, constituent_bonus=0.1, success_reward=2.0),
        dict(SMALL, max_len=16, obs_len=16, max_steps=40),  # up to 95 gold sets: the tables grow during the rollout
        dict(SMALL, observe_derived=True),
        dict(grammar="arithmetic", min_len=1, max_len=7, max_steps=30, columns="labels", n_sentences=40, split="all"),
        dict(grammar="dyck", min_len=2, max_len=8, max_steps=20, n_sentences=40, split="test"),
    ],
)
def test_same_trajectories_as_dummy_vec_env(kwargs: dict[str, Any]) -> None:
    _assert_same_trajectories(LinguisticParseVecEnv(5, kwargs), _dummy(5, kwargs))


def test_each_env_answers_for_itself() -> None:
    """get_attr, set_attr and env_method reach env i's own state, as under DummyVecEnv."""
    vec_env = LinguisticParseVecEnv(3, SMALL)
    vec_env.seed(0)
    vec_env.reset()
    actions = np.array([0, vec_env.envs[1].n_columns, 2 * vec_env.envs[2].n_columns + 1])
    vec_env.step(actions)
    assert vec_env.env_method("history_cells") == [{int(a)} for a in actions]
    histories = [np.flatnonzero(h).tolist() for h in vec_env.step(np.array([1, 1, 1]))[0]["history"]]
    assert [sorted(cells) for cells in vec_env.env_method("history_cells")] == histories
    assert [a.tokens for a in vec_env.get_attr("analysis")] == [tuple(i["sentence"].split()) for i in vec_env.reset_infos]
    vec_env.set_attr("success_reward", 5.0, indices=[1])
    assert vec_env.get_attr("success_reward") == [1.0, 5.0, 1.0]


def _assert_same_trajectories(batched: LinguisticParseVecEnv, reference: DummyVecEnv) -> None:
    n_envs, rng = batched.num_envs, np.random.default_rng(1)
    batched.seed(7)
    reference.seed(7)
    _assert_obs_equal(batched.reset(), reference.reset())
    _assert_infos_equal(batched.reset_infos, reference.reset_infos)
    n_done = 0
    for step in range(400):
        masks = batched.action_masks()
        np.testing.assert_array_equal(masks, np.stack(reference.env_method("action_masks")))
        if step % 3 == 0:  # unmasked actions too: padding rows and set cells are wasted attempts
            actions = rng.integers(batched.action_space.n, size=n_envs)
        else:
            actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs, rewards, dones, infos = batched.step(actions)
        ref_obs, ref_rewards, ref_dones, ref_infos = reference.step(actions)
        _assert_obs_equal(obs, ref_obs)
        assert rewards.dtype == ref_rewards.dtype and dones.dtype == ref_dones.dtype
        np.testing.assert_array_equal(rewards, ref_rewards)
        np.testing.assert_array_equal(dones, ref_dones)
        _assert_infos_equal(infos, ref_infos)
        _assert_infos_equal(batched.reset_infos, reference.reset_infos)
        n_done += int(dones.sum())
    assert n_done > 20, "the rollout should cover many episode ends and automatic resets"


def test_expert_solves_every_env_through_env_method() -> None:
    n_envs = 4
    vec_env = LinguisticParseVecEnv(n_envs, dict(SMALL, max_steps=40))
    vec_env.seed(0)
    vec_env.reset()
    min_actions = [info["min_actions"] for info in vec_env.reset_infos]
    for step in range(max(min_actions)):
        actions = np.array(vec_env.env_method("expert_action"))
        _, rewards, dones, infos = vec_env.step(actions)
        for i in range(n_envs):
            if step + 1 == min_actions[i]:
                assert dones[i] and infos[i]["is_success"] and rewards[i] == 1.0
    assert vec_env.get_attr("analysis", indices=[0])[0].tokens == tuple(vec_env.reset_infos[0]["sentence"].split())


def test_reset_options_and_attribute_access() -> None:
    vec_env = LinguisticParseVecEnv(3, SMALL)
    vec_env.set_options({"sentence": "John saw Mary"})
    vec_env.reset()
    assert [info["sentence"] for info in vec_env.reset_infos] == ["John saw Mary"] * 3
    assert vec_env.get_attr("max_steps") == [12, 12, 12]
    vec_env.set_attr("success_reward", 5.0)
    assert vec_env.get_attr("success_reward", indices=[1]) == [5.0]
    with pytest.raises(ValueError, match="reset"):
        vec_env.env_method("reset")
    with pytest.raises(ValueError, match="outside the action space"):
        vec_env.step(np.array([0, 0, vec_env.action_space.n]))
    masks = vec_env.get_attr("action_masks", indices=[2])[0]()
    np.testing.assert_array_equal(masks, vec_env.action_masks()[2])


def test_rl_zoo3_vec_env_wrapper_replaces_the_dummy_vec_env(tmp_path: Any) -> None:
    venv = make_vec_env(
        lambda **kw: gym.make("LinguisticParse-v0", **kw),
        n_envs=3,
        seed=4,
        env_kwargs=dict(max_steps=9),
        monitor_dir=str(tmp_path),
        monitor_kwargs=dict(info_keywords=("is_success",)),
    )
    batched = batched_vec_env(venv)
    assert isinstance(batched, VecMonitor) and isinstance(batched.venv, LinguisticParseVecEnv)
    assert batched.num_envs == 3 and batched.get_attr("max_steps") == [9, 9, 9]
    reference = make_vec_env("LinguisticParse-v0", n_envs=3, seed=4, env_kwargs=dict(max_steps=9))
    _assert_obs_equal(batched.reset(), reference.reset())
    for _ in range(20):
        batched.step(np.zeros(3, dtype=np.int64))
    batched.close()
    assert (tmp_path / "0.monitor.csv").read_text().count("\n") > 2  # header lines and episodes


@pytest.mark.parametrize("algo", ["ppo", "ppo_mask", "dqn"])
def test_sb3_algorithms_train_on_the_batched_env(algo: str) -> None:
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import DQN, PPO

    monitor_kwargs = dict(info_keywords=("is_success",))
    vec_env = make_parse_vec_env(n_envs=4, seed=0, env_kwargs=dict(n_sentences=50), monitor_kwargs=monitor_kwargs)
    if algo == "dqn":
        model: Any = DQN("MultiInputPolicy", vec_env, learning_starts=50, buffer_size=1000, seed=0)
    else:
        model = (MaskablePPO if algo == "ppo_mask" else PPO)("MultiInputPolicy", vec_env, n_steps=32, batch_size=64, seed=0)
    model.learn(256)
    assert model.num_timesteps >= 256


def test_every_success_carries_its_tree() -> None:
    nltk = pytest.importorskip("nltk")
    vec_env = LinguisticParseVecEnv(4, dict(SMALL, max_steps=40))
    vec_env.seed(1)
    vec_env.reset()
    wins = 0
    for _ in range(60):
        _, _, dones, infos = vec_env.step(np.array(vec_env.env_method("expert_action")))
        for done, info in zip(dones, infos, strict=True):
            if done and info["is_success"]:
                wins += 1
                tree = nltk.Tree.fromstring(info["parse"])
                assert " ".join(tree.leaves()) == info["sentence"]
            else:
                assert "parse" not in info
    assert wins >= 4
