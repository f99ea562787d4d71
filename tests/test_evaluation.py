"""The evaluation loop, its baselines, agent loading and the training callback."""

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

import sb3_parsing  # noqa: F401
from sb3_parsing.callbacks import ParseMetricsCallback
from sb3_parsing.evaluation import (
    ExpertPlayer,
    ModelPlayer,
    RandomPlayer,
    TopDownPlayer,
    evaluate_player,
    load_agent,
    longer_sentences,
)


@pytest.fixture(scope="module")
def env():
    return gym.make("LinguisticParse-v0", split="test")


@pytest.fixture(scope="module")
def sentences(env):
    return list(env.unwrapped.sentences[:20])


def test_expert_needs_min_actions(env, sentences):
    result = evaluate_player(env, ExpertPlayer(), sentences)
    assert result["n_sentences"] == 20
    assert result["success_rate"] == 1.0
    assert result["attempts_per_min_actions"] == result["solved_attempts_per_min_actions"] == 1.0
    assert result["chart_share"] == 1.0  # every expert action sets a constituent of the chart


class _OffChartPlayer:
    """Sets, in order, the unset cells of the sentence's rows that no chart constituent holds."""

    def start(self, env):
        analysis = env.unwrapped.analysis
        self.cells = iter(c for c in range(analysis.n_cells) if not analysis.constituent_mask[c])

    def act(self, env, obs):
        return next(self.cells)


def test_chart_share_counts_the_actions_that_set_chart_constituents(env, sentences):
    result = evaluate_player(env, _OffChartPlayer(), sentences[:5])
    assert result["success_rate"] == 0.0
    assert result["chart_share"] == 0.0


def test_top_down_without_limit_always_parses_and_never_beats_the_expert(sentences):
    unlimited = gym.make("LinguisticParse-v0", sentences=[" ".join(s) for s in sentences], split="all", max_steps=10**6)
    result = evaluate_player(unlimited, TopDownPlayer(), sentences)
    assert result["success_rate"] == 1.0
    assert result["attempts_per_min_actions"] >= 1.0


def test_top_down_plays_the_oracle_search_in_order(env, sentences):
    player = TopDownPlayer()
    obs, _ = env.reset(options={"sentence": list(sentences[0])})
    player.start(env)
    expected = [c for c in env.unwrapped.oracle.top_down_attempts(sentences[0])]
    first = player.act(env, obs)
    assert first == expected[0]


def test_random_is_masked_and_seeded(env, sentences):
    player = RandomPlayer(seed=3)
    obs, _ = env.reset(options={"sentence": list(sentences[0])})
    for _ in range(10):
        mask = env.unwrapped.action_masks()
        action = player.act(env, obs)
        assert mask[action]
        obs, *_ = env.step(action)
    a = evaluate_player(env, RandomPlayer(seed=1), sentences[:5])
    b = evaluate_player(env, RandomPlayer(seed=1), sentences[:5])
    assert a == b


def test_model_player_uses_masks_for_maskable_ppo(env, sentences):
    model = MaskablePPO("MultiInputPolicy", make_vec_env("LinguisticParse-v0", n_envs=1), seed=0)
    player = ModelPlayer(model)
    assert player.masked
    obs, _ = env.reset(options={"sentence": list(sentences[0])})
    for _ in range(20):
        action = player.act(env, obs)
        assert env.unwrapped.action_masks()[action], "a masked model must never repeat a set cell or pick padding"
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break


def test_longer_sentences_fit_the_observation(env):
    long = longer_sentences(env, n_sentences=5)
    base = env.unwrapped
    assert long and all(base.max_len < len(s) <= base.obs_len for s in long)
    long_env = gym.make("LinguisticParse-v0", sentences=[" ".join(s) for s in long], split="all", max_len=base.obs_len)
    assert long_env.observation_space == env.observation_space
    assert evaluate_player(long_env, ExpertPlayer(), long)["success_rate"] == 1.0


def test_evaluate_player_rejects_no_sentences(env):
    with pytest.raises(ValueError, match="at least one sentence"):
        evaluate_player(env, ExpertPlayer(), [])


def test_load_agent_from_zip(tmp_path):
    model = PPO("MultiInputPolicy", make_vec_env("LinguisticParse-v0", n_envs=1), n_steps=32, batch_size=32)
    model.save(tmp_path / "ppo" / "agent.zip")
    loaded, env_id = load_agent(tmp_path / "ppo" / "agent.zip")
    assert isinstance(loaded, PPO) and env_id == "LinguisticParse-v0"
    with pytest.raises(ValueError, match="cannot tell the algorithm"):
        model.save(tmp_path / "agent.zip")
        load_agent(tmp_path / "agent.zip")


def test_load_agent_with_the_env_kwargs_it_was_trained_with(tmp_path):
    task = dict(grammar="dyck", max_len=6, obs_len=8)
    model = PPO("MultiInputPolicy", make_vec_env("LinguisticParse-v0", n_envs=1, env_kwargs=task), n_steps=32, batch_size=32)
    model.save(tmp_path / "ppo" / "dyck.zip")
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        load_agent(tmp_path / "ppo" / "dyck.zip")  # the default task has other spaces
    loaded, _ = load_agent(tmp_path / "ppo" / "dyck.zip", env_kwargs=task)
    assert loaded.observation_space == model.observation_space


def test_parse_metrics_callback_logs_attempts(tmp_path):
    env = make_vec_env("LinguisticParse-v0", n_envs=2, env_kwargs=dict(max_steps=8))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = ParseMetricsCallback()
    model.learn(64, callback=callback)
    progress = (tmp_path / "progress.csv").read_text().splitlines()
    assert {"rollout/attempts", "rollout/attempts_per_min_actions"} <= set(progress[0].split(","))
    assert len(callback.attempts) > 0 and np.mean(callback.attempts) == 8.0, "every episode is truncated after 8 actions"
    assert "rollout/chart_share" in progress[0].split(",")
    assert np.mean(callback.chart_shares) < 0.5, "an untrained agent sets mostly cells outside the chart"


def test_parse_metrics_callback_chart_share_is_one_when_only_chart_cells_can_be_set():
    env = make_vec_env("LinguisticParse-v0", n_envs=2, env_kwargs=dict(max_steps=8, mask_mode="oracle"))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1)
    callback = ParseMetricsCallback()
    model.learn(64, callback=callback)
    assert len(callback.chart_shares) > 0 and set(callback.chart_shares) == {1.0}
