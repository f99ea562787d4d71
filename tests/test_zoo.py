"""rl_zoo3 integration: each shipped config trains a few hundred steps through the real entry points, saves and loads."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import rl_zoo3.exp_manager
import rl_zoo3.utils
import yaml
from sb3_contrib import MaskablePPO

from sb3_parsing import zoo
from sb3_parsing.evaluation import load_agent

ROOT = Path(__file__).resolve().parents[1]
# Small runs: every value a test does not care about is shrunk so that the whole file takes about a minute
SMALL_PPO = ["n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1"]
SMALL_DQN = ["n_envs:2", "learning_starts:128", "batch_size:32", "buffer_size:2000"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _saved_model(log_folder: Path, algo: str, env_id: str) -> Path:
    model = log_folder / algo / f"{env_id}_1" / f"{env_id}.zip"
    assert model.is_file(), f"expected the trained model at {model}, found {sorted(log_folder.rglob('*'))}"
    return model


@pytest.mark.parametrize("algo", ["ppo", "dqn", "ppo_mask"])
def test_shipped_configs(algo):
    path = zoo.config_path(algo)
    assert path.parent.name == "zoo_configs" and path.parent.parent.name == "sb3_parsing"
    assert (ROOT / "zoo_configs" / f"{algo}.yml").resolve() == path.resolve(), "zoo_configs/ must be the shipped configs"
    config = yaml.safe_load(path.read_text())
    assert "LinguisticParse-v0" in config
    for entry in config.values():
        assert list(entry)[:2] == ["n_timesteps", "policy"]
        assert "is_success" in entry["monitor_kwargs"]
        assert entry["callback"] == "sb3_parsing.callbacks.ParseMetricsCallback"
    if algo == "dqn":
        assert config["LinguisticParseGoal-v0"]["replay_buffer_class"] == "HerReplayBuffer"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "env_id", "small"),
    [
        ("ppo", "LinguisticParse-v0", SMALL_PPO),
        ("dqn", "LinguisticParse-v0", SMALL_DQN),
        ("dqn", "LinguisticParseGoal-v0", SMALL_DQN),
    ],
)
def test_plain_rl_zoo3_train_enjoy(tmp_path, algo, env_id, small):
    """The documented plain rl_zoo3 commands, unmodified, then the saved model loads and evaluates."""
    common = ["--algo", algo, "--env", env_id, "--gym-packages", "sb3_parsing", "-f", str(tmp_path / "logs")]
    out = _run(
        "-m", "rl_zoo3.train", *common, "--conf-file", str(ROOT / "zoo_configs" / f"{algo}.yml"),
        "-n", "256", "--eval-freq", "128", "--eval-episodes", "2", "--seed", "0", "--hyperparams", *small,
        cwd=tmp_path,
    )  # fmt: skip
    assert "attempts_per_min_actions" in out.stdout, "ParseMetricsCallback must log to the progress output"
    monitor = (tmp_path / "logs" / algo / f"{env_id}_1" / "0.monitor.csv").read_text().splitlines()
    assert monitor[1].split(",")[3:] == ["is_success", "n_actions", "min_actions"]
    _saved_model(tmp_path / "logs", algo, env_id)
    _run("-m", "rl_zoo3.enjoy", *common, "--no-render", "-n", "60", cwd=tmp_path)


@pytest.mark.slow
def test_ppo_mask_train_enjoy_evaluate(tmp_path):
    logs = tmp_path / "logs"
    common = ["--algo", "ppo_mask", "--env", "LinguisticParse-v0", "-f", str(logs)]
    out = _run(
        "-m", "sb3_parsing.zoo", "train", *common, "-n", "256", "--eval-freq", "128", "--eval-episodes", "2",
        "--seed", "0", "--hyperparams", *SMALL_PPO,
        cwd=tmp_path,
    )  # fmt: skip
    assert "eval/" in out.stdout and "attempts_per_min_actions" in out.stdout
    folder = logs / "ppo_mask" / "LinguisticParse-v0_1"
    assert "zoo_configs/ppo_mask.yml" in (folder / "LinguisticParse-v0" / "args.yml").read_text()
    assert (folder / "evaluations.npz").is_file()
    model, env_id = load_agent(folder)
    assert isinstance(model, MaskablePPO) and env_id == "LinguisticParse-v0"

    _run("-m", "sb3_parsing.zoo", "enjoy", *common, "--no-render", "-n", "60", cwd=tmp_path)

    report = tmp_path / "eval.json"
    script = str(ROOT / "scripts" / "evaluate.py")
    out = _run(script, str(folder), "--n-test", "5", "--n-long", "3", "--json", str(report), cwd=tmp_path)
    assert "top-down search" in out.stdout and "expert" in out.stdout
    results = yaml.safe_load(report.read_text())["results"]
    for players in results.values():
        assert players["expert"]["success_rate"] == 1.0
        assert players["expert"]["attempts_per_min_actions"] == 1.0
        assert 0.0 <= players["agent (MaskablePPO)"]["success_rate"] <= 1.0


@pytest.mark.slow
def test_ppo_mask_optimize_shared_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _run(
        "-m", "sb3_parsing.zoo", "optimize", "--algo", "ppo_mask", "--env", "LinguisticParse-v0",
        "-f", str(tmp_path / "logs"), "-n", "256", "--n-trials", "1", "--n-jobs", "1", "--sampler", "random",
        "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "2", "--no-optim-plots",
        "--storage", storage, "--study-name", "shared", "--hyperparams", "n_envs:2",
        cwd=tmp_path,
    )  # fmt: skip
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert {"embed_dim", "n_layers", "learning_rate", "n_steps_pow"} <= set(study.trials[0].params)


def test_ppo_mask_sampler_stays_in_the_game_sized_ranges():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        params = zoo.sample_ppo_mask_params(trial, n_actions=352, n_envs=8, additional_args={})
        assert 64 <= params["batch_size"] <= 512 and 64 <= params["n_steps"] <= 512
        assert params["n_epochs"] in (2, 4, 8) and 0.9 <= params["gamma"] <= 0.99
        assert params["policy_kwargs"]["net_arch"]["pi"] == []
        assert params["policy_kwargs"]["features_extractor_kwargs"]["n_layers"] in (1, 2, 3)
        assert trial.user_attrs["gamma"] == params["gamma"]
        study.tell(trial, 0.0)


def test_patch_is_local_and_idempotent():
    zoo.patch_rl_zoo3()
    zoo.patch_rl_zoo3()
    assert rl_zoo3.utils.ALGOS["ppo_mask"] is MaskablePPO
    assert rl_zoo3.exp_manager.EvalCallback is zoo.MaskAwareEvalCallback


def test_mask_aware_eval_callback_masks_only_maskable_models():
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import sb3_parsing  # noqa: F401

    for algo, masked in ((MaskablePPO, True), (PPO, False)):
        model = algo("MultiInputPolicy", make_vec_env("LinguisticParse-v0", n_envs=1), n_steps=64, batch_size=64)
        callback = zoo.MaskAwareEvalCallback(make_vec_env("LinguisticParse-v0", n_envs=1), eval_freq=64, n_eval_episodes=2)
        model.learn(64, callback=callback)
        assert callback.use_masking is masked
        assert np.isfinite(callback.last_mean_reward)
    assert gym.spec("LinguisticParse-v0") is not None


def test_defaults_added():
    args = zoo._with_defaults("train", ["--algo", "ppo_mask", "--env", "LinguisticParse-v0"])
    assert args[args.index("--gym-packages") + 1] == "sb3_parsing"
    assert args[args.index("--conf-file") + 1] == str(zoo.config_path("ppo_mask"))
    mine = zoo._with_defaults("optimize", ["--algo=dqn", "-conf", "mine.yml", "--gym-packages", "other"])
    assert "--optimize-hyperparameters" in mine and mine.count("--gym-packages") == 1 and "--conf-file" not in mine
    assert "--conf-file" not in zoo._with_defaults("enjoy", ["--algo", "ppo"])
    with pytest.raises(SystemExit, match="usage"):
        zoo.main(["fly"])
