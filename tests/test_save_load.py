"""Save and reload: a trained model, loaded in a fresh process with its stored env settings, plays exactly as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import yaml
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.persistence import load_env_settings, load_with_env, save_with_env

# Short Dyck sentences and 8 actions per episode: a few hundred steps of training give a policy that wins sometimes.
ENV_KWARGS = dict(grammar="dyck", min_len=2, max_len=4, obs_len=6, max_steps=8, n_sentences=50, split="all", corpus_seed=3)
SEEDS = list(range(20))


def play(model: BaseAlgorithm, env: gym.Env, seeds: list[int]) -> list[dict[str, Any]]:
    """One deterministic episode per seed: the sentence, the actions, and whether it was won."""
    results = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        actions: list[int] = []
        done = False
        while not done:
            masks = {"action_masks": env.unwrapped.action_masks()} if isinstance(model, MaskablePPO) else {}
            action, _ = model.predict(obs, deterministic=True, **masks)
            actions.append(int(action))
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        results.append({"sentence": info["sentence"], "actions": actions, "is_success": bool(info["is_success"])})
    return results


FRESH_PROCESS = """
import json, sys
sys.path.insert(0, {tests!r})
from sb3_parsing.persistence import load_with_env
from test_save_load import play
model, env = load_with_env({path!r}, device="cpu")
print(json.dumps(play(model, env, {seeds!r})))
"""
FRESH_PROCESS_ZOO = """
import json, sys
import gymnasium as gym
from stable_baselines3 import PPO
sys.path.insert(0, {tests!r})
from test_save_load import play, zoo_yaml
config = zoo_yaml({config!r})
model, env = PPO.load({path!r}, device="cpu"), gym.make("LinguisticParse-v0", **config["env_kwargs"])
print(json.dumps(play(model, env, {seeds!r})))
"""


class _ZooLoader(yaml.SafeLoader):
    """Reads rl_zoo3's ``config.yml`` / ``args.yml`` (OrderedDict dumps) without running any tag."""


_ZooLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict",
    lambda loader, node: dict(loader.construct_sequence(node.value[0], deep=True)),  # type: ignore[attr-defined]
)


def zoo_yaml(path: str | Path) -> dict[str, Any]:
    with open(path) as file:
        return yaml.load(file, Loader=_ZooLoader)


@pytest.mark.parametrize("algo", [PPO, MaskablePPO])
def test_saved_model_plays_the_same_in_a_fresh_process(algo: type[BaseAlgorithm], tmp_path: Path) -> None:
    env = gym.make("LinguisticParse-v0", **ENV_KWARGS)
    model = algo("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(256)
    before = play(model, env, SEEDS)

    path = save_with_env(model, tmp_path / "parser", "LinguisticParse-v0", ENV_KWARGS)
    assert path == tmp_path / "parser.zip" and path.is_file()
    settings = load_env_settings(path)
    assert settings == {"env_id": "LinguisticParse-v0", "env_kwargs": ENV_KWARGS, "algo": algo.__name__}

    code = FRESH_PROCESS.format(tests=str(Path(__file__).parent), path=str(path), seeds=SEEDS)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = json.loads(result.stdout.strip().splitlines()[-1])
    assert after == before
    assert [r["sentence"] for r in after] == [r["sentence"] for r in before]  # the env was rebuilt with the same corpus
    success = sum(r["is_success"] for r in after) / len(after)
    assert success == sum(r["is_success"] for r in before) / len(before)


def test_model_saved_without_settings_says_how_to_fix(tmp_path: Path) -> None:
    model = PPO("MultiInputPolicy", gym.make("LinguisticParse-v0", **ENV_KWARGS), n_steps=64, device="cpu")
    model.save(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"holds no env settings: it was saved with model\.save"):
        load_with_env(tmp_path / "plain.zip")
    with pytest.raises(FileNotFoundError, match="no saved model"):
        load_env_settings(tmp_path / "missing.zip")


@pytest.mark.slow
def test_zoo_run_stores_its_env_settings_and_replays_in_a_fresh_process(tmp_path: Path) -> None:
    """rl_zoo3 keeps the env kwargs of a run in its config.yml: they rebuild the game the model was trained on."""
    env_kwargs = [f"{key}:{value!r}" for key, value in ENV_KWARGS.items()]
    small = ["n_envs:1", "n_steps:64", "batch_size:32", "n_epochs:1"]
    config_file = Path(__file__).parents[1] / "zoo_configs" / "ppo.yml"
    train = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "LinguisticParse-v0", "--gym-packages", "sb3_parsing",
        "--conf-file", str(config_file), "-n", "128", "--seed", "0", "-f", str(tmp_path / "logs"), "--eval-freq", "-1",
        "--env-kwargs", *env_kwargs, "--hyperparams", *small,
    ]  # fmt: skip
    result = subprocess.run(train, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "logs" / "ppo" / "LinguisticParse-v0_1"
    config = folder / "LinguisticParse-v0" / "config.yml"
    assert zoo_yaml(config)["env_kwargs"] == ENV_KWARGS
    assert zoo_yaml(folder / "LinguisticParse-v0" / "args.yml")["env_kwargs"] == ENV_KWARGS

    path = folder / "LinguisticParse-v0.zip"
    before = play(PPO.load(path, device="cpu"), gym.make("LinguisticParse-v0", **zoo_yaml(config)["env_kwargs"]), SEEDS)
    code = FRESH_PROCESS_ZOO.format(tests=str(Path(__file__).parent), config=str(config), path=str(path), seeds=SEEDS)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == before
