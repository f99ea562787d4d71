import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rl_zoo3.exp_manager
import yaml
from stable_baselines3 import DQN, HerReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.callbacks import LengthCurriculumCallback
from sb3_parsing.her import ConstituentHerReplayBuffer
from sb3_parsing.policies import TokenDQNPolicy
from sb3_parsing.wrappers import LinguisticParseGoalEnv, constituents_of, make_goal_env
from script_loader import load_script

ROOT = Path(__file__).parents[1]
GOAL_ID = "LinguisticParseGoal-v0"
ENV_KWARGS = dict(grammar="english", min_len=3, max_len=10, n_sentences=100)


def _buffer(constituent: str = "uniform", strategy: str = "final", **kwargs: Any) -> ConstituentHerReplayBuffer:
    vec_env = DummyVecEnv([lambda: make_goal_env(**ENV_KWARGS)])
    return ConstituentHerReplayBuffer(
        1_000,
        vec_env.observation_space,  # type: ignore[arg-type]
        vec_env.action_space,
        env=vec_env,
        n_sampled_goal=4,
        goal_selection_strategy=strategy,
        constituent=constituent,
        **kwargs,
    )


def _play(buffer: ConstituentHerReplayBuffer, actions: str, sentence: str) -> LinguisticParseGoalEnv:
    """
    Add one episode of ``sentence`` to the buffer.

    :param actions: ``"expert"`` (a shortest parse) or ``"wasted"`` (a cell of the last row, padding: nothing is derived)
    """
    env: LinguisticParseGoalEnv = buffer.env.envs[0]  # type: ignore[union-attr]
    obs, _ = env.reset(options={"sentence": sentence})
    done = False
    while not done:
        action = env.expert_action() if actions == "expert" else (env.obs_len - 1) * env.n_columns
        next_obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        batch = {key: value[None] for key, value in obs.items()}
        next_batch = {key: value[None] for key, value in next_obs.items()}
        buffer.add(batch, next_batch, np.array([action]), np.array([reward]), np.array([done]), [info])
        obs = next_obs
    return env


def _episode_indices(buffer: ConstituentHerReplayBuffer) -> tuple[np.ndarray, np.ndarray]:
    indices = np.arange(buffer.pos)
    return indices, np.zeros_like(indices)


def test_largest_relabels_a_won_episode_with_its_root() -> None:
    buffer = _buffer("largest")
    env = _play(buffer, "expert", "the dog saw a man in the park")
    root = env.root_constituent()
    goals = buffer._sample_goals(*_episode_indices(buffer))
    assert [constituents_of(goal) for goal in goals] == [[root]] * buffer.pos


def test_uniform_draws_every_achieved_constituent() -> None:
    buffer = _buffer("uniform")
    _play(buffer, "expert", "the dog saw a man in the park")
    final_achieved = constituents_of(buffer.next_observations["achieved_goal"][buffer.pos - 1, 0])
    np.random.seed(0)
    indices = np.full(3_000, buffer.pos // 2)
    drawn = [tuple(constituents_of(goal)) for goal in buffer._sample_goals(indices, np.zeros_like(indices))]
    assert all(len(goal) == 1 for goal in drawn), "a relabeled goal is one constituent"
    counts = {goal[0]: drawn.count(goal) for goal in set(drawn)}
    assert set(counts) == set(final_achieved)
    assert min(counts.values()) > 3_000 / len(counts) / 2  # about uniform


@pytest.mark.parametrize("constituent", ["uniform", "largest"])
def test_future_goals_are_achieved_later_in_the_same_episode(constituent: str) -> None:
    buffer = _buffer(constituent, strategy="future")
    for sentence in ("the dog saw a man", "a man saw the dog in a park with John"):
        _play(buffer, "expert", sentence)
    np.random.seed(1)
    indices, env_indices = _episode_indices(buffer)
    for _ in range(20):
        goals = buffer._sample_goals(indices, env_indices)
        for index, goal in zip(indices, goals, strict=True):
            (chosen,) = constituents_of(goal)
            end = buffer.ep_start[index, 0] + buffer.ep_length[index, 0] - 1
            later = [constituents_of(buffer.next_observations["achieved_goal"][t, 0]) for t in range(index, end + 1)]
            assert any(chosen in achieved for achieved in later)


def test_nothing_achieved_keeps_the_real_goal() -> None:
    buffer = _buffer("uniform")
    _play(buffer, "wasted", "the dog saw a man")
    assert not buffer.next_observations["achieved_goal"][: buffer.pos].any()
    goals = buffer._sample_goals(*_episode_indices(buffer))
    np.testing.assert_array_equal(goals, buffer.observations["desired_goal"][: buffer.pos, 0])


def test_sampled_rewards_follow_compute_reward() -> None:
    buffer = _buffer("uniform", strategy="future")
    for sentence in ("the dog saw a man", "a man saw the dog in the park"):
        _play(buffer, "expert", sentence)
    _play(buffer, "wasted", "the dog saw a man")
    np.random.seed(2)
    samples = buffer.sample(512)
    achieved = samples.next_observations["achieved_goal"].numpy().astype(np.uint8)
    desired = samples.observations["desired_goal"].numpy().astype(np.uint8)
    np.testing.assert_array_equal(desired, samples.next_observations["desired_goal"].numpy())
    rewards = samples.rewards.numpy().reshape(-1)
    env = buffer.env.envs[0]  # type: ignore[union-attr]
    np.testing.assert_array_equal(rewards, env.compute_reward(achieved, desired, None))
    assert {len(constituents_of(goal)) for goal in desired} == {1}
    assert (rewards == 0).any() and (rewards == -1).any()


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="constituent="):
        _buffer("smallest")
    vec_env = DummyVecEnv([lambda: make_goal_env(**ENV_KWARGS)])
    space = vec_env.observation_space
    flat_goals = {**space.spaces, "achieved_goal": space["text"], "desired_goal": space["text"]}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="n_labels \\* obs_len"):
        ConstituentHerReplayBuffer(100, type(space)(flat_goals), vec_env.action_space, env=vec_env)  # type: ignore[arg-type]


def test_dqn_trains_with_it_and_the_zoo_config_names_it() -> None:
    env = DummyVecEnv([lambda: make_goal_env(**ENV_KWARGS, max_steps=16)] * 2)
    model = DQN(
        TokenDQNPolicy,
        env,
        replay_buffer_class=ConstituentHerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, constituent="largest"),
        learning_starts=64,
        buffer_size=1_000,
        batch_size=16,
        policy_kwargs=dict(features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16)),
        seed=0,
    )
    model.learn(160)
    assert isinstance(model.replay_buffer, ConstituentHerReplayBuffer) and model.replay_buffer.constituent == "largest"
    # rl_zoo3 evaluates the YAML strings in exp_manager's namespace
    entry = yaml.safe_load((ROOT / "sb3_parsing" / "zoo_configs" / "dqn.yml").read_text())[GOAL_ID]
    namespace = vars(rl_zoo3.exp_manager)
    assert eval(entry["replay_buffer_class"], namespace) is ConstituentHerReplayBuffer
    assert issubclass(ConstituentHerReplayBuffer, HerReplayBuffer)
    assert eval(entry["replay_buffer_kwargs"], namespace)["constituent"] in ("uniform", "largest")


def _script() -> Any:
    return load_script("her_vs_no_her")


def test_benchmark_reads_the_zoo_config() -> None:
    policy, n_envs, env_kwargs, kwargs = _script().zoo_hyperparameters()
    entry = yaml.safe_load((ROOT / "sb3_parsing" / "zoo_configs" / "dqn.yml").read_text())[GOAL_ID]
    assert policy is TokenDQNPolicy and n_envs == entry["n_envs"] and env_kwargs == entry.get("env_kwargs", {})
    assert kwargs["gamma"] == entry["gamma"] and "replay_buffer_class" not in kwargs
    assert callable(kwargs["learning_rate"]) == entry["learning_rate"].startswith("lin_")


def test_benchmark_trains_with_the_zoo_entrys_callbacks(tmp_path: Path) -> None:
    entry = yaml.safe_load((ROOT / "sb3_parsing" / "zoo_configs" / "dqn.yml").read_text())[GOAL_ID]
    entry["callback"] = [{"sb3_parsing.callbacks.LengthCurriculumCallback": {"start_len": 5, "fraction": 0.3}}]
    config = tmp_path / "dqn.yml"
    config.write_text(yaml.safe_dump({GOAL_ID: entry}))
    (callback,) = _script().zoo_callbacks(config)
    assert isinstance(callback, LengthCurriculumCallback) and (callback.start_len, callback.fraction) == (5, 0.3)


def test_benchmark_script_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "her.json"
    small = dict(learning_starts=100, buffer_size=1_000, batch_size=16, policy_kwargs=dict(net_arch=[]))
    env_kwargs = dict(ENV_KWARGS, max_len=5, max_steps=10)
    argv = ["her_vs_no_her.py", "--steps", "200", "--seeds", "0", "--eval-points", "2", "--eval-sentences", "3"]
    argv += ["--hyperparams", json.dumps(small), "--env-kwargs", json.dumps(env_kwargs), "--output", str(output)]
    argv += ["--lock", str(tmp_path / "lock")]
    monkeypatch.setattr(sys, "argv", argv)
    _script().main()
    assert "| ConstituentHerReplayBuffer (largest, n_sampled_goal=4) | 0 |" in capsys.readouterr().out
    results = json.loads(output.read_text())["results"]
    assert [r["buffer"].split()[0] for r in results] == ["ConstituentHerReplayBuffer", "HerReplayBuffer", "DictReplayBuffer"]
    monkeypatch.setattr(sys, "argv", ["her_vs_no_her.py", "--tables-from", str(output), str(output)])
    _script().main()
    tables = capsys.readouterr().out
    assert tables.count("| ConstituentHerReplayBuffer (largest, n_sampled_goal=4) | 0 |") == 2  # both files' runs
    assert "| replay buffer | 100 steps | 200 steps |" in tables  # the curve
    for result in results:
        assert 0.0 <= result["success_rate"] <= 1.0
        by_length = result["success_by_length"]  # the 3 held-out sentences, by their number of tokens
        assert by_length and all(3 <= int(n) <= 5 and 0.0 <= rate <= 1.0 for n, rate in by_length.items())
        steps = [point["steps"] for point in result["curve"]]
        assert steps[:2] == [100, 200] and steps[-1] >= 200 and steps == sorted(set(steps))  # and the end of training
