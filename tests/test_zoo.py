"""
rl_zoo3 integration: each shipped config trains a few hundred steps through the real entry points, saves and loads,
plays (enjoy), records a video and plots; the quick start's settings are the shipped ones; the package's types reach
mypy.
"""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import imageio
import numpy as np
import optuna
import pandas as pd
import pytest
import rl_zoo3.enjoy
import rl_zoo3.exp_manager
import rl_zoo3.utils
import yaml
from sb3_contrib import MaskablePPO
from PIL import Image
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3 import A2C

import sb3_parsing
from sb3_parsing import zoo
from sb3_parsing.evaluation import _ZooArgsLoader, load_agent
from sb3_parsing.policies import FactoredMaskableTokenPolicy, TokenPolicy
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
# Small runs: every value a test does not care about is shrunk so that the whole file takes about a minute
SMALL_PPO = ["n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1"]
SMALL_DQN = ["n_envs:2", "learning_starts:128", "batch_size:32", "buffer_size:2000"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _record_video(common: list[str], cwd: Path) -> None:
    """``sb3_parsing.zoo record_video`` writes an mp4 whose frames are the env's rgb_array pictures."""
    out = _run("-m", "sb3_parsing.zoo", "record_video", *common, "-n", "30", "-o", str(cwd / "videos"), cwd=cwd)
    assert "split': 'test'" in out.stdout, "record_video plays the held-out sentences"
    videos = list((cwd / "videos").glob("*.mp4"))
    assert len(videos) == 1, f"expected one video, found {sorted((cwd / 'videos').iterdir())}"
    with imageio.get_reader(videos[0]) as reader:  # its length is inf (unknown): list(reader) would not end
        frames = [frame for frame in reader.iter_data()]
    assert len(frames) == 31 and frames[0].ndim == 3 and frames[0].shape[2] == 3
    assert frames[0].shape[0] >= 96 and frames[0].shape[1] >= 256, "readable at video size"


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
    missing = set(sb3_parsing.TASKS) - set(config)
    assert not missing, f"{algo}.yml has no entry for the registered ids {sorted(missing)}"
    for env_id, entry in config.items():
        assert env_id in sb3_parsing.TASKS or env_id == "LinguisticParseGoal-v0", f"{env_id} is not a registered id"
        assert list(entry)[:2] == ["n_timesteps", "policy"]
        assert "is_success" in entry["monitor_kwargs"]
        assert entry["callback"] == "sb3_parsing.callbacks.ParseMetricsCallback"
    if algo == "dqn":
        assert "HerReplayBuffer" in config["LinguisticParseGoal-v0"]["replay_buffer_class"]


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
    _record_video(common, cwd=tmp_path)


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
    # played on another task, the folder's model is still the one saved for the task it was trained on
    model, env_id = load_agent(folder, env_id="LinguisticParseTree-v0")
    assert env_id == "LinguisticParseTree-v0" and model.env.get_attr("target") == ["tree"]

    out = _run("-m", "sb3_parsing.zoo", "enjoy", *common, "--no-render", "-n", "60", cwd=tmp_path)
    assert "sb3_parsing.zoo: playing with env_kwargs={'split': 'test'}" in out.stdout
    assert "training-only ['constituent_bonus', 'step_penalty'] dropped" in out.stdout
    _record_video(common, cwd=tmp_path)

    report = tmp_path / "eval.json"
    script = str(ROOT / "scripts" / "evaluate.py")
    out = _run(script, str(folder), "--n-test", "5", "--n-long", "3", "--json", str(report), cwd=tmp_path)
    assert "top-down search" in out.stdout and "expert" in out.stdout
    assert "agent (MaskablePPO), held-out, by sentence length" in out.stdout
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


def test_algo_without_shipped_config_is_refused_with_how_to_pass_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no zoo config ships for --algo a2c \(shipped: dqn, .*ppo_mask"):
        zoo.config_path("a2c")
    result = subprocess.run(
        [sys.executable, "-m", "sb3_parsing.zoo", "train", "--algo", "a2c", "--env", "LinguisticParse-v0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no zoo config ships for --algo a2c" in result.stderr and "--conf-file my_a2c.yml" in result.stderr


@pytest.mark.slow
def test_a2c_trains_with_a_users_config_and_token_policy(tmp_path):
    """The route the refusal message gives: a2c with the package's TokenPolicy from the user's own --conf-file."""
    config = {"LinguisticParse-v0": {"n_timesteps": 256, "policy": "sb3_parsing.policies.TokenPolicy", "n_envs": 2,
                                     "n_steps": 8, "env_kwargs": {"constituent_bonus": 0.1, "step_penalty": 0.1}}}  # fmt: skip
    (tmp_path / "my_a2c.yml").write_text(yaml.safe_dump(config))
    _run(
        "-m", "sb3_parsing.zoo", "train", "--algo", "a2c", "--env", "LinguisticParse-v0", "--conf-file", "my_a2c.yml",
        "-f", "logs", "--eval-freq", "-1", "--seed", "0",
        cwd=tmp_path,
    )  # fmt: skip
    model = A2C.load(_saved_model(tmp_path / "logs", "a2c", "LinguisticParse-v0"))
    assert isinstance(model.policy, TokenPolicy)


def test_a_policy_reading_the_grammar_gets_the_envs():
    assert zoo.env_grammar("LinguisticParse-v1", {}) == {"grammar": "english_v1", "columns": "rules"}
    assert zoo.env_grammar("LinguisticParse-v0", {}) == {"grammar": "english", "columns": "rules"}
    given = {"grammar": "my.rules", "columns": "labels", "max_len": 20}
    assert zoo.env_grammar("LinguisticParse-v1", given) == {"grammar": "my.rules", "columns": "labels"}


def test_plain_game_env_kwargs():
    trained = {"grammar": "english", "constituent_bonus": 0.1, "step_penalty": 0.1}
    assert zoo.plain_game_env_kwargs(trained, given=set()) == {"grammar": "english", "split": "test"}
    given = {**trained, "split": "train"}
    assert zoo.plain_game_env_kwargs(given, given={"step_penalty", "split"}) == {
        "grammar": "english", "step_penalty": 0.1, "split": "train"
    }  # fmt: skip
    own = {"sentences": "mine.txt", "step_penalty": 0.1}
    assert zoo.plain_game_env_kwargs(own, given=set()) == {"sentences": "mine.txt"}, "a user's file has no held-out part"
    assert zoo._env_kwargs_keys(["--algo", "ppo", "--env-kwargs", "split:'train'", "max_steps:10", "-n", "5"]) == {
        "split", "max_steps"
    }  # fmt: skip


def test_enjoy_env_plays_plain_game_and_gives_masks(monkeypatch):
    for module in (rl_zoo3.utils, rl_zoo3.enjoy):  # restored after the test
        monkeypatch.setattr(module, "create_test_env", module.create_test_env)
    monkeypatch.setitem(rl_zoo3.utils.ALGOS, "ppo_mask", MaskablePPO)
    monkeypatch.setattr(zoo._EnjoyMaskablePPO, "mask_env", None)
    zoo.patch_rl_zoo3(enjoy=True, given_env_kwargs={"max_steps"})
    assert rl_zoo3.enjoy.create_test_env is rl_zoo3.utils.create_test_env
    env = rl_zoo3.utils.create_test_env(
        "LinguisticParse-v0", n_envs=1, stats_path=None, seed=0, log_dir=None, should_render=False,
        hyperparams={"env_kwargs": {"constituent_bonus": 0.1, "step_penalty": 0.1}}, env_kwargs={"max_steps": 20},
    )  # fmt: skip
    assert env.get_attr("split") == ["test"] and env.get_attr("max_steps") == [20]
    assert env.get_attr("constituent_bonus") == [0.0] and env.get_attr("step_penalty") == [0.0]
    # ppo_mask loads as a model whose predict takes the masks from that env: never a padding row or a set cell
    model_class = rl_zoo3.utils.ALGOS["ppo_mask"]
    model = model_class("MultiInputPolicy", env, n_steps=64, seed=0)
    obs = env.reset()
    for _ in range(200):
        masks = get_action_masks(env)
        action, _ = model.predict(obs, deterministic=False)
        assert masks[0, action[0]], f"action {action[0]} is masked"
        obs, *_ = env.step(action)


def _fake_monitor(folder: Path, successes: list[float]) -> None:
    """A Monitor file as the shipped configs' monitor_kwargs write it."""
    folder.mkdir(parents=True)
    episodes = pd.DataFrame(
        {"r": successes, "l": 20, "t": np.arange(len(successes)) * 0.1, "is_success": successes, "n_actions": 20,
         "min_actions": 10}
    )  # fmt: skip
    (folder / "0.monitor.csv").write_text('#{"t_start": 0.0, "env_id": "LinguisticParse-v0"}\n' + episodes.to_csv(index=False))


def test_plot_train_writes_a_png_without_display(tmp_path):
    _fake_monitor(tmp_path / "logs" / "ppo_mask" / "LinguisticParse-v0_1", [0.0] * 80 + [1.0] * 80)
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MPLBACKEND")}
    command = [sys.executable, "-m", "sb3_parsing.zoo", "plot_train", "-a", "ppo_mask", "-e", "LinguisticParse-v0",
               "-f", "logs", "-y", "success"]  # fmt: skip
    result = subprocess.run([*command, "-o", "plots/success.png"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "plots" / "success.png") as image:
        assert image.size[0] > 300 and image.size[1] > 200
    too_short = subprocess.run([*command, "-w", "1000"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert too_short.returncode != 0 and "no curve to draw" in too_short.stderr


def test_learning_curves_figure_shows_curves_at_zero_and_plain_ticks(tmp_path):
    plot_learning_curves = load_script("plot_learning_curves")
    _fake_monitor(tmp_path / "ppo" / "run_1", [0.0] * 300)
    figure = plot_learning_curves.plot_runs([tmp_path / "ppo" / "run_1"], ["ppo"], window=50)
    ax_success, ax_ratio = figure.axes
    assert ax_success.get_ylim()[0] < 0 < 1 < ax_success.get_ylim()[1], "a curve at 0 or 1 stays above the frame"
    figure.canvas.draw()
    labels = [label.get_text() for label in ax_ratio.get_yticklabels() if label.get_text()]
    assert labels and all(text.replace(".", "").isdigit() for text in labels), f"plain numbers, got {labels}"
    assert "2" in labels and "1" in labels


def test_quickstart_uses_the_shipped_ppo_mask_settings():
    quickstart = load_script("quickstart")
    entry = yaml.safe_load(zoo.config_path("ppo_mask").read_text())["LinguisticParse-v0"]
    assert entry["policy"] == "sb3_parsing.policies.FactoredMaskableTokenPolicy"
    assert entry["rollout_buffer_class"] == "sb3_parsing.policies.BitMaskDictRolloutBuffer"
    assert entry["n_envs"] == quickstart.N_ENVS and entry["env_kwargs"] == quickstart.SHAPING
    for key, value in quickstart.MASKABLE_PPO_KWARGS.items():
        assert float(entry[key]) == value, f"quickstart's {key}={value}, ppo_mask.yml's {entry[key]}"
    expected = eval(entry["policy_kwargs"])  # the string rl_zoo3 evaluates
    assert expected == {"grammar": "english", "features_extractor_kwargs": quickstart.TRANSFORMER_KWARGS}
    source = (ROOT / "scripts" / "quickstart.py").read_text()
    assert "FactoredMaskableTokenPolicy," in source and 'grammar="english"' in source and "BitMaskDictRolloutBuffer," in source


def test_package_types_reach_a_users_mypy(tmp_path):
    """With py.typed, mypy checks a user's script against the package's hints (without it: import-untyped errors)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["sb3_parsing"], "py.typed must ship in the wheel"
    site = tmp_path / "site"  # the package as a non-editable install lays it out
    shutil.copytree(Path(sb3_parsing.__file__).parent, site / "sb3_parsing", ignore=shutil.ignore_patterns("__pycache__"))
    heavy = "torch.*,stable_baselines3.*,sb3_contrib.*,gymnasium.*,rl_zoo3.*,optuna.*,matplotlib.*,PIL.*,nltk.*,pandas.*"
    (tmp_path / "mypy.ini").write_text(f"[mypy]\ncache_dir = {tmp_path / 'cache'}\n\n[mypy-{heavy}]\nfollow_imports = skip\n")
    (tmp_path / "good.py").write_text(
        "import sb3_parsing\n"
        "from sb3_parsing import RuleSet\n"
        "from sb3_parsing.env import LinguisticParseEnv\n"
        "grammar: RuleSet = RuleSet.from_text('the => Det\\ndog => N\\nDet N => NP')\n"
        "env = LinguisticParseEnv(grammar=grammar, sentences=['the dog'], max_len=2)\n"
        "expert: int = env.expert_action()\n"
        "names: list[str] = sb3_parsing.available_grammars()\n"
    )
    (tmp_path / "bad.py").write_text("from sb3_parsing import RuleSet\nRuleSet.from_text(3)\n")
    env = dict(os.environ, PYTHONPATH=str(site))

    def mypy(script: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", script]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    good = mypy("good.py")
    assert good.returncode == 0, good.stdout
    bad = mypy("bad.py")
    assert bad.returncode == 1 and 'incompatible type "int"; expected "str"' in bad.stdout, bad.stdout


@pytest.mark.slow
def test_flagship_config_names_its_bit_mask_rollout_buffer(tmp_path: Path) -> None:
    """rl_zoo3 imports a replay_buffer_class given by name but not a rollout_buffer_class: sb3_parsing.zoo does."""
    config = yaml.safe_load((ROOT / "sb3_parsing" / "zoo_configs" / "ppo_mask.yml").read_text())["LinguisticParse-v1"]
    assert config["rollout_buffer_class"] == "sb3_parsing.policies.BitMaskDictRolloutBuffer"
    _run(
        "-m", "sb3_parsing.zoo", "train", "--algo", "ppo_mask", "--env", "LinguisticParse-v1", "-n", "64",
        "-params", "n_envs:2", "n_steps:32", "batch_size:32", "--env-kwargs", "n_sentences:20",
        "-f", "logs", "--eval-freq", "-1", "--seed", "0",
        cwd=tmp_path,
    )  # fmt: skip
    model = MaskablePPO.load(_saved_model(tmp_path / "logs", "ppo_mask", "LinguisticParse-v1"))
    assert isinstance(model.policy, FactoredMaskableTokenPolicy)
    assert (model.policy.grammar, model.policy.columns) == ("english_v1", "rules")
    # --env-kwargs adds to the config's env_kwargs (its reward shaping stays) instead of replacing them
    saved = (tmp_path / "logs" / "ppo_mask" / "LinguisticParse-v1_1" / "LinguisticParse-v1" / "config.yml").read_text()
    env_kwargs = yaml.load(saved, Loader=_ZooArgsLoader)["env_kwargs"]
    assert env_kwargs == {**config["env_kwargs"], "n_sentences": 20}


def test_length_generalization_script_writes_and_merges_its_runs(tmp_path: Path) -> None:
    script, out = str(ROOT / "scripts" / "length_generalization.py"), tmp_path / "runs.json"
    _run(script, "--variants", "relative_keys_boundaries", "--seeds", "0", "--steps", "256", "--sentences", "2",
         "--json", str(out), cwd=tmp_path)  # fmt: skip
    runs = json.loads(out.read_text())["runs"]
    assert [run["variant"] for run in runs] == ["relative_keys_boundaries"]
    assert list(runs[0]["results"]) == ["3-12", "13-16", "17-20", "21-24"]
    assert all(result["n_sentences"] == 2 for result in runs[0]["results"].values())
    assert "| relative_keys_boundaries | 0, 0 |" in _run(script, "--merge", str(out), str(out), cwd=tmp_path).stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                    reason="no PostgreSQL server installed")  # fmt: skip
def test_two_workers_share_one_study_in_a_real_postgresql(tmp_path: Path) -> None:
    out = tmp_path / "study.json"
    script = str(ROOT / "scripts" / "optuna_postgres.py")
    _run(script, "--workers", "2", "--trials-per-worker", "1", "--steps", "256", "--json", str(out), cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["complete_trials"] == 2
    assert sorted(n for numbers in result["trials_by_worker"].values() for n in numbers) == [0, 1]
    assert all(len(numbers) == 1 for numbers in result["trials_by_worker"].values()), "each worker ran its own trial"
