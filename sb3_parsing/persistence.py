"""
Keep the environment's settings inside a saved model, so that it is evaluated on the game it was trained on.

:func:`save_with_env` sets the model attribute ``parse_env`` = ``{"env_id", "env_kwargs", "algo"}`` and calls
``model.save``: SB3 stores every plain attribute of a model in the zip's ``data`` and restores it on ``load``,
so one file holds the weights and the settings (grammar, lengths, columns, split, corpus seed, ...).
:func:`load_env_settings` reads them back without building the model; :func:`load_with_env` returns the model
and a fresh env made from them. Models trained by rl_zoo3 keep their settings in rl_zoo3's own
``<env_id>/args.yml`` (``env``, ``env_kwargs``) and ``config.yml`` beside the model.

.. code-block:: python

    save_with_env(model, "parser.zip", "LinguisticParse-v0", {"grammar": "dyck", "max_len": 6})
    model, env = load_with_env("parser.zip")  # in a later process: the same game, the same sentences
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
from sb3_contrib import MaskablePPO, QRDQN, RecurrentPPO, TRPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file

__all__ = ["ENV_SETTINGS_ATTRIBUTE", "load_env_settings", "load_with_env", "save_with_env"]

ENV_SETTINGS_ATTRIBUTE = "parse_env"
_ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    cls.__name__: cls for cls in (A2C, DQN, PPO, MaskablePPO, QRDQN, RecurrentPPO, TRPO)
}


def save_with_env(
    model: BaseAlgorithm, path: str | Path, env_id: str = "LinguisticParse-v0", env_kwargs: dict[str, Any] | None = None
) -> Path:
    """
    Save ``model`` with the settings of the env it was trained on.

    :param model: the trained model
    :param path: where to save (``.zip`` is added when there is no suffix, as SB3 does)
    :param env_id: the registered id the model was trained on
    :param env_kwargs: the keyword arguments given to ``gym.make`` (only those that differ from the id's defaults)
    :return: the path of the saved file
    """
    settings = {"env_id": env_id, "env_kwargs": dict(env_kwargs or {}), "algo": type(model).__name__}
    setattr(model, ENV_SETTINGS_ATTRIBUTE, settings)
    model.save(path)
    path = Path(path)
    return path if path.suffix else path.with_suffix(".zip")


def load_env_settings(path: str | Path) -> dict[str, Any]:
    """
    The env settings stored by :func:`save_with_env`: ``{"env_id": ..., "env_kwargs": {...}, "algo": ...}``.

    :param path: a model saved by :func:`save_with_env`
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no saved model at {path}")
    data, _, _ = load_from_zip_file(path, load_data=True, device="cpu")
    if not data or ENV_SETTINGS_ATTRIBUTE not in data:
        raise ValueError(
            f"{path} holds no env settings: it was saved with model.save, not sb3_parsing.persistence.save_with_env; "
            "rebuild the env yourself (for rl_zoo3 runs, from env_kwargs in the run's args.yml)"
        )
    return data[ENV_SETTINGS_ATTRIBUTE]


def load_with_env(
    path: str | Path, algo: type[BaseAlgorithm] | None = None, **load_kwargs: Any
) -> tuple[BaseAlgorithm, gym.Env]:
    """
    Load a model saved by :func:`save_with_env`, with a new env built from the stored settings.

    :param path: the saved model
    :param algo: the algorithm class; default: the one recorded at saving (SB3 and sb3-contrib algorithms)
    :param load_kwargs: passed on to ``algo.load`` (``device``, ``custom_objects``, ...)
    :return: the model and the env
    """
    settings = load_env_settings(path)
    if algo is None:
        if settings["algo"] not in _ALGORITHMS:
            raise ValueError(f"unknown algorithm {settings['algo']!r} in {path}; pass algo=, the class that trained it")
        algo = _ALGORITHMS[settings["algo"]]
    env = gym.make(settings["env_id"], **settings["env_kwargs"])
    return algo.load(path, **load_kwargs), env
