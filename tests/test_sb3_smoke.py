"""A few thousand steps of each SB3 learner on LinguisticParse-v0, through the plain SB3 API."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO

import sb3_parsing  # noqa: F401  (registers the env ids)

TINY_NET = dict(net_arch=[32])


def _make_env() -> gym.Env:
    return gym.make("LinguisticParse-v0", max_steps=20)


@pytest.mark.parametrize(
    ("algo", "kwargs"),
    [
        (MaskablePPO, dict(n_steps=256, batch_size=64, n_epochs=2)),
        (PPO, dict(n_steps=256, batch_size=64, n_epochs=2)),
        (DQN, dict(learning_starts=200, buffer_size=2000, train_freq=4, batch_size=32)),
    ],
)
def test_learner_runs_and_predicts_valid_actions(algo: type, kwargs: dict) -> None:
    env = _make_env()
    model = algo("MultiInputPolicy", env, policy_kwargs=TINY_NET, seed=0, **kwargs)
    model.learn(2048)
    assert model.num_timesteps >= 2048
    obs, _ = env.reset(seed=0)
    predict_kwargs = {"action_masks": env.unwrapped.action_masks()} if algo is MaskablePPO else {}
    action, _ = model.predict(obs, deterministic=True, **predict_kwargs)
    assert env.action_space.contains(int(action))
    if algo is MaskablePPO:
        assert env.unwrapped.action_masks()[int(action)]
    ep_info = list(model.ep_info_buffer)
    assert ep_info and all(np.isfinite(e["r"]) for e in ep_info)


def test_quickstart_script_trains_and_reports_held_out_success() -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "quickstart.py"
    result = subprocess.run(
        [sys.executable, str(script), "--steps", "256", "--sentences", "5"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Training MaskablePPO"), "the quick start says what it does before training"
    assert "agent: held-out parse success" in result.stdout
