"""Every registered task id, tested the moment it is registered: checkers, determinism, pickling, the expert."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_parsing
from sb3_parsing import LinguisticParseEnv
from sb3_parsing.trees import tree_tokens

# Few sentences: the flagship's pool would take seconds to sample in full.
SMALL = dict(n_sentences=30)
TASK_IDS = sorted(sb3_parsing.TASKS)


def test_v0_is_not_called_out_of_date() -> None:
    code = "import gymnasium as gym, sb3_parsing; gym.make('LinguisticParse-v0', n_sentences=5)"
    result = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "out of date" not in result.stderr, result.stderr


def test_every_package_id_is_in_tasks() -> None:
    ours = {spec.id for spec in gym.registry.values() if str(spec.entry_point).startswith("sb3_parsing.env")}
    assert ours == set(sb3_parsing.TASKS)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_checkers_pass(task_id: str) -> None:
    env = gym.make(task_id, **SMALL)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_expert_wins_in_min_actions_and_shows_its_tree(task_id: str) -> None:
    nltk = pytest.importorskip("nltk")
    env = gym.make(task_id, **SMALL)
    base = env.unwrapped
    assert isinstance(base, LinguisticParseEnv)
    for seed in range(3):
        _, info = env.reset(seed=seed)
        for _ in range(info["min_actions"]):
            *_, terminated, truncated, info = env.step(base.expert_action())
        assert terminated and not truncated and info["is_success"]
        tree = nltk.Tree.fromstring(info["parse"])
        assert tree_tokens(tree) == tuple(info["sentence"].split())
        assert tree == base.parse_tree()
        if base.target == "tree":
            assert info["parse"] == base.trees[base.sentences.index(tuple(info["sentence"].split()))]


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_same_seed_same_episode_and_pickling_keeps_the_state(task_id: str) -> None:
    def play(env: gym.Env, seed: int, n_steps: int) -> list:
        obs, info = env.reset(seed=seed)
        trace = [info["sentence"]]
        rng = np.random.default_rng(seed)
        for _ in range(n_steps):
            action = int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))
            obs, reward, terminated, truncated, info = env.step(action)
            trace.append((action, float(reward), terminated, obs["history"].sum()))
            if terminated or truncated:
                break
        return trace

    env = gym.make(task_id, **SMALL)
    assert play(env, 5, 10) == play(gym.make(task_id, **SMALL), 5, 10)
    env.reset(seed=1)
    env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))
    copy = pickle.loads(pickle.dumps(env))
    action = int(np.flatnonzero(env.unwrapped.action_masks())[0])
    a, b = env.step(action), copy.step(action)
    assert all(np.array_equal(a[0][k], b[0][k]) for k in a[0]) and a[1:4] == b[1:4]
