"""
rl_zoo3 for the parsing game: ``python -m sb3_parsing.zoo train|enjoy|optimize|record_video|plot_train [arguments]``.

Plain rl_zoo3 trains ``ppo`` and ``dqn`` on ``LinguisticParse-v0`` unmodified. For ``ppo_mask`` it lacks four
things, which this module patches into rl_zoo3's own module globals, in this process only, before calling
rl_zoo3's ``train()`` / ``enjoy()`` / ``record_video``:

1. ``rl_zoo3.utils.ALGOS["ppo_mask"] = MaskablePPO``: train.py / enjoy.py build their ``--algo`` choices from
   this dict before they import ``--gym-packages``.
2. ``rl_zoo3.exp_manager.EvalCallback`` and ``TrialEvalCallback`` are replaced by :class:`MaskAwareEvalCallback`
   and :class:`MaskAwareTrialEvalCallback`, which evaluate ``MaskablePPO`` with the env's action masks (and
   any other model exactly as before), during training and in ``--optimize`` trials.
3. ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER["ppo_mask"]`` (and ``HYPERPARAMS_CONVERTER``): an Optuna sampler
   for MaskablePPO, :func:`sample_ppo_mask_params` (with the Transformer's size), so ``--optimize`` works
   (``--storage`` / ``--study-name`` for studies shared by several machines are rl_zoo3's own).
4. In ``enjoy`` and ``record_video``, ``ppo_mask`` loads as :class:`_EnjoyMaskablePPO`, whose ``predict`` asks the
   env that rl_zoo3 created for the action masks (rl_zoo3 passes none).

The YAML's ``env_kwargs`` and the command line's ``--env-kwargs`` are merged, the command line winning key by key
(rl_zoo3 alone replaces the whole dict: ``--env-kwargs grammar:...`` would silently drop the config's reward shaping).
A policy that reads the grammar (``policy_kwargs`` with a ``grammar``, as the ``LinguisticParse-v1`` entry's
``FactoredMaskableTokenPolicy``) is given the env's grammar and column mode (:func:`env_grammar`).

Defaults added when absent: ``--gym-packages sb3_parsing`` and, for ``train`` / ``optimize``, ``--conf-file`` = the
config shipped in the package for ``--algo`` (``sb3_parsing/zoo_configs/<algo>.yml``; an algorithm without one is
refused with a message saying how to pass a config). ``optimize`` is ``train --optimize``.

``enjoy`` and ``record_video`` play the plain game on held-out sentences by default (:func:`plain_game_env_kwargs`):
the training-only keys of the run's ``env_kwargs`` (reward shaping) are dropped and ``split="test"`` is
set, unless ``--env-kwargs`` gives them. ``record_video`` is rl_zoo3's ``record_video`` script (which has no
``--gym-packages`` of its own) with the run's config ``env_kwargs`` applied as ``enjoy`` applies them.
``plot_train`` is rl_zoo3's ``plots.plot_train``, which only calls ``plt.show()``, with the figure saved to
``--output`` (default ``plot_train.png``) instead: it works without a display.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import runpy
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna
import rl_zoo3.enjoy
import rl_zoo3.exp_manager
import rl_zoo3.hyperparams_opt
import rl_zoo3.train
import rl_zoo3.utils
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.vec_env import VecEnv

from sb3_parsing.env import LinguisticParseEnv

__all__ = [
    "COMMANDS",
    "MaskAwareEvalCallback",
    "MaskAwareTrialEvalCallback",
    "config_path",
    "env_grammar",
    "main",
    "patch_rl_zoo3",
    "plain_game_env_kwargs",
    "sample_ppo_mask_params",
]

COMMANDS = ("train", "enjoy", "optimize", "record_video", "plot_train")
# env_kwargs of the shipped configs that shape training only; enjoy and record_video drop them to play the plain game
TRAINING_ONLY_ENV_KWARGS = ("constituent_bonus", "step_penalty")


def config_path(algo: str) -> Path:
    """
    The hyperparameter file shipped in the package for ``algo`` (``ppo``, ``dqn`` or ``ppo_mask``).

    :param algo: rl_zoo3 algorithm name
    :raises FileNotFoundError: no config ships for ``algo``; the message lists the shipped ones and how to pass one
    """
    path = Path(str(resources.files("sb3_parsing") / "zoo_configs" / f"{algo}.yml"))
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.yml"))
        raise FileNotFoundError(
            f"no zoo config ships for --algo {algo} (shipped: {', '.join(shipped)}). Pass your own with "
            f"--conf-file my_{algo}.yml: a file with a 'LinguisticParse-v0:' entry, for instance a copy of "
            f"{path.parent / 'ppo.yml'} keeping only the arguments {algo} accepts"
        )
    return path


class MaskAwareEvalCallback(MaskableEvalCallback):
    """
    rl_zoo3's ``EvalCallback``, masked when the model is a ``MaskablePPO``: sb3-contrib's
    ``MaskableEvalCallback`` with ``use_masking`` decided by the model, so one class serves every algorithm.
    """

    def _init_callback(self) -> None:
        super()._init_callback()
        self.use_masking = isinstance(self.model, MaskablePPO)


class MaskAwareTrialEvalCallback(MaskAwareEvalCallback):
    """
    rl_zoo3's ``TrialEvalCallback`` (reports to Optuna, prunes) on top of :class:`MaskAwareEvalCallback`.

    :param eval_env: the evaluation env
    :param trial: the Optuna trial to report to
    :param n_eval_episodes: episodes per evaluation
    :param eval_freq: evaluate every ``eval_freq`` calls
    :param deterministic: greedy actions
    :param verbose: verbosity level
    :param best_model_save_path: where to save the best model
    :param log_path: where to save ``evaluations.npz``
    """

    def __init__(
        self,
        eval_env: VecEnv,
        trial: optuna.Trial,
        n_eval_episodes: int = 5,
        eval_freq: int = 10000,
        deterministic: bool = True,
        verbose: int = 0,
        best_model_save_path: str | None = None,
        log_path: str | None = None,
    ) -> None:
        super().__init__(
            eval_env=eval_env,
            n_eval_episodes=n_eval_episodes,
            eval_freq=eval_freq,
            deterministic=deterministic,
            verbose=verbose,
            best_model_save_path=best_model_save_path,
            log_path=log_path,
        )
        self.trial = trial
        self.eval_idx = 0
        self.is_pruned = False

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            super()._on_step()
            self.eval_idx += 1
            self.trial.report(self.last_mean_reward, self.eval_idx)
            if self.trial.should_prune():
                self.is_pruned = True
                return False
        return True


def sample_ppo_mask_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for MaskablePPO with the shipped ``MaskableTokenPolicy``, in rl_zoo3's parametrization (its
    ``convert_onpolicy_params`` turns the sample into hyperparameters) but over ranges sized for this game:

    - the Transformer's width and depth are searched; the policy MLP is dropped (the per-row action head reads the
      token features directly) and the value MLP comes from ``net_arch``;
    - ``gamma`` in [0.9, 0.99]: episodes last at most ``max_steps`` (48) attempts (rl_zoo3's PPO space, from 0.97
      to 0.9999, leaves out the shipped 0.95);
    - ``batch_size`` 64 to 512 and ``n_epochs`` 2 to 8: rl_zoo3's batches of 4 with 20 epochs make a trial of a
      Transformer policy 20 times slower than the shipped config, for no gain.

    :param trial: the Optuna trial
    :param n_actions: unused (rl_zoo3's sampler signature)
    :param n_envs: unused (rl_zoo3's sampler signature)
    :param additional_args: rl_zoo3's extra arguments (unused)
    """
    sampled = {
        "batch_size_pow": trial.suggest_int("batch_size_pow", 6, 9),
        "n_steps_pow": trial.suggest_int("n_steps_pow", 6, 9),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.01, 0.1, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 0.001, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-4, 0.05, log=True),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
        "n_epochs": trial.suggest_categorical("n_epochs", [2, 4, 8]),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
        "net_arch": trial.suggest_categorical("net_arch", ["tiny", "small"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    embed_dim = trial.suggest_categorical("embed_dim", [32, 64, 128])
    n_layers = trial.suggest_int("n_layers", 1, 3)
    hyperparams = rl_zoo3.hyperparams_opt.convert_onpolicy_params(sampled)
    for name in ("gamma", "n_steps", "batch_size"):
        trial.set_user_attr(name, hyperparams[name])
    policy_kwargs = hyperparams["policy_kwargs"]
    policy_kwargs["net_arch"] = dict(pi=[], vf=policy_kwargs["net_arch"]["vf"])
    policy_kwargs["features_extractor_kwargs"] = dict(embed_dim=embed_dim, n_layers=n_layers, n_heads=4, ff_dim=2 * embed_dim)
    return hyperparams


class _EnjoyMaskablePPO(MaskablePPO):
    """MaskablePPO whose ``predict`` takes the masks from ``mask_env`` when given none (rl_zoo3's ``enjoy`` passes none)."""

    mask_env: VecEnv | None = None

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        if action_masks is None and self.mask_env is not None:
            action_masks = get_action_masks(self.mask_env)
        return super().predict(observation, state, episode_start, deterministic, action_masks)


def plain_game_env_kwargs(env_kwargs: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """
    The env_kwargs that ``enjoy`` and ``record_video`` play with: a run's training ``env_kwargs`` without the
    training-only keys (:data:`TRAINING_ONLY_ENV_KWARGS`: shaping) and with ``split="test"`` (the held-out
    sentences), except for the keys given on the command line (``given``), which stay as given. A run trained on the
    user's own ``sentences`` without a ``split`` has no held-out part: its sentences are played as they are.

    :param env_kwargs: the run's env_kwargs, merged with the command line's
    :param given: the keys given by ``--env-kwargs``
    """
    kwargs = {key: value for key, value in env_kwargs.items() if key in given or key not in TRAINING_ONLY_ENV_KWARGS}
    if "split" not in kwargs and "sentences" not in kwargs:
        kwargs["split"] = "test"
    return kwargs


def _make_create_test_env(given: set[str]) -> Any:
    """rl_zoo3's ``create_test_env`` playing the plain game (:func:`plain_game_env_kwargs`) and keeping the env for masks."""

    def create_test_env(env_id: str, **kwargs: Any) -> VecEnv:
        # enjoy has moved the config's env_kwargs into env_kwargs; record_video leaves them in hyperparams
        merged = {**(kwargs["hyperparams"].pop("env_kwargs", None) or {}), **(kwargs.get("env_kwargs") or {})}
        kwargs["env_kwargs"] = plain_game_env_kwargs(merged, given)
        dropped = sorted(set(merged) - set(kwargs["env_kwargs"]))
        print(
            f"sb3_parsing.zoo: playing with env_kwargs={kwargs['env_kwargs']}"
            + (f" (training-only {dropped} dropped)" if dropped else "")
            + "; --env-kwargs overrides"
        )
        env = _original_create_test_env(env_id, **kwargs)
        _EnjoyMaskablePPO.mask_env = env
        return env

    return create_test_env


_original_create_test_env = rl_zoo3.utils.create_test_env


_original_preprocess_hyperparams = rl_zoo3.exp_manager.ExperimentManager._preprocess_hyperparams


def _preprocess_hyperparams(self: rl_zoo3.exp_manager.ExperimentManager, hyperparams: dict[str, Any]) -> Any:
    """
    rl_zoo3's, importing a ``rollout_buffer_class`` named in the YAML (rl_zoo3 does it for replay buffers only), and
    giving a policy that reads the grammar (``policy_kwargs`` with ``grammar``) the env's grammar and column mode.
    """
    if isinstance(hyperparams.get("rollout_buffer_class"), str):
        hyperparams["rollout_buffer_class"] = rl_zoo3.utils.get_class_by_name(hyperparams["rollout_buffer_class"])
    processed = _original_preprocess_hyperparams(self, hyperparams)
    policy_kwargs = processed[0].get("policy_kwargs")
    if isinstance(policy_kwargs, dict) and "grammar" in policy_kwargs:
        policy_kwargs.update(env_grammar(self.env_name.gym_id, self.env_kwargs))
    return processed


def env_grammar(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """
    The grammar and column mode of a parsing env, as a policy reading the grammar needs them.

    :param env_id: a registered id
    :param env_kwargs: the kwargs it is made with
    :return: ``grammar`` and ``columns``: those of ``env_kwargs``, else of the id's registration, else the env's defaults
    """
    defaults = inspect.signature(LinguisticParseEnv).parameters
    given = {**gym.spec(env_id).kwargs, **env_kwargs}
    return {key: given.get(key, defaults[key].default) for key in ("grammar", "columns")}


_original_read_hyperparameters = rl_zoo3.exp_manager.ExperimentManager.read_hyperparameters


def _read_hyperparameters(self: rl_zoo3.exp_manager.ExperimentManager) -> Any:
    """rl_zoo3's, with the YAML's ``env_kwargs`` updated by the command line's rather than replaced."""
    given = self.env_kwargs
    self.env_kwargs = {}  # rl_zoo3 keeps the YAML's env_kwargs when none are given
    try:
        hyperparams, saved_hyperparams = _original_read_hyperparameters(self)
    finally:
        self.env_kwargs = given
    if given:
        merged = {**hyperparams.get("env_kwargs", {}), **given}
        hyperparams["env_kwargs"] = saved_hyperparams["env_kwargs"] = merged
        if self._eval_env_kwargs_args is None:
            self.eval_env_kwargs = merged
    return hyperparams, saved_hyperparams


def patch_rl_zoo3(enjoy: bool = False, given_env_kwargs: set[str] | None = None) -> None:
    """
    Add ``ppo_mask`` to rl_zoo3 in this process (idempotent); see the module docstring.

    :param enjoy: for ``enjoy`` / ``record_video``: load ``ppo_mask`` models with masks taken from the env rl_zoo3
        creates, and play the plain game on held-out sentences (:func:`plain_game_env_kwargs`)
    :param given_env_kwargs: with ``enjoy``, the keys the command line's ``--env-kwargs`` gives, which stay as given
    """
    rl_zoo3.utils.ALGOS["ppo_mask"] = _EnjoyMaskablePPO if enjoy else MaskablePPO
    rl_zoo3.exp_manager.EvalCallback = MaskAwareEvalCallback  # type: ignore[misc]
    rl_zoo3.exp_manager.TrialEvalCallback = MaskAwareTrialEvalCallback  # type: ignore[misc, assignment]
    rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER["ppo_mask"] = sample_ppo_mask_params
    rl_zoo3.hyperparams_opt.HYPERPARAMS_CONVERTER["ppo_mask"] = rl_zoo3.hyperparams_opt.convert_onpolicy_params
    rl_zoo3.exp_manager.ExperimentManager._preprocess_hyperparams = _preprocess_hyperparams  # type: ignore[method-assign]
    rl_zoo3.exp_manager.ExperimentManager.read_hyperparameters = _read_hyperparameters  # type: ignore[method-assign]
    if enjoy:
        create_test_env = _make_create_test_env(given_env_kwargs or set())
        # enjoy.py imported the name already; record_video.py, run later, imports it from rl_zoo3.utils
        rl_zoo3.enjoy.create_test_env = create_test_env  # type: ignore[attr-defined]
        rl_zoo3.utils.create_test_env = create_test_env


def _option(args: Sequence[str], *names: str) -> str | None:
    """The value of the first of ``names`` in ``args`` (``--name value`` or ``--name=value``), else None."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _env_kwargs_keys(args: Sequence[str]) -> set[str]:
    """The keys of ``--env-kwargs key:value ...`` in ``args``, read as rl_zoo3 reads them."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--env-kwargs", nargs="+", default=[])
    known, _ = parser.parse_known_args(args)
    return {item.split(":")[0] for item in known.env_kwargs}


def _with_defaults(command: str, args: list[str]) -> list[str]:
    """``args`` plus ``--gym-packages sb3_parsing`` and, for training, the shipped ``--conf-file`` when absent."""
    args = list(args)
    if command == "plot_train":
        return args
    if command == "optimize" and not {"-optimize", "--optimize-hyperparameters"} & set(args):
        args.append("--optimize-hyperparameters")
    if _option(args, "--gym-packages") is None:
        args += ["--gym-packages", "sb3_parsing"]
    if command in ("train", "optimize") and _option(args, "-conf", "--conf-file") is None:
        try:
            args += ["--conf-file", str(config_path(_option(args, "--algo") or "ppo"))]
        except FileNotFoundError as error:
            raise SystemExit(f"python -m sb3_parsing.zoo {command}: {error}") from None
    return args


def _record_video(args: list[str]) -> None:
    """rl_zoo3's ``record_video`` script, after importing the ``--gym-packages`` it does not accept."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--gym-packages", nargs="+", default=[])
    known, rest = parser.parse_known_args(args)
    for package in known.gym_packages:
        importlib.import_module(package)
    sys.argv = [sys.argv[0], *rest]
    runpy.run_module("rl_zoo3.record_video", run_name="__main__")


def _plot_train(args: list[str]) -> None:
    """rl_zoo3's ``plot_train`` with the figure written to ``--output`` instead of shown."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-o", "--output", type=Path, default=Path("plot_train.png"))
    known, rest = parser.parse_known_args(args)
    import matplotlib

    matplotlib.use("Agg")
    # the module, not the function of the same name that rl_zoo3.plots exports
    plot_train = importlib.import_module("rl_zoo3.plots.plot_train")

    def save() -> None:
        figure = plot_train.plt.gcf()
        if not any(axes.lines for axes in figure.axes):
            raise SystemExit(
                "python -m sb3_parsing.zoo plot_train: no curve to draw: no run folder under -f for this --algo / --env "
                "has a Monitor file with at least --episode-window (-w, default 100) episodes; lower -w or train longer"
            )
        known.output.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(known.output, dpi=120)
        print(f"wrote {known.output}")

    plot_train.plt.show = save
    sys.argv = [sys.argv[0], *rest]
    plot_train.plot_train()


def main(argv: Sequence[str] | None = None) -> None:
    """
    ``python -m sb3_parsing.zoo train|enjoy|optimize|record_video|plot_train [rl_zoo3 arguments]``.

    :param argv: the arguments after the program name (default ``sys.argv[1:]``)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python -m sb3_parsing.zoo {{{','.join(COMMANDS)}}} [rl_zoo3 arguments]")
    command, args = argv[0], _with_defaults(argv[0], argv[1:])
    plays = command in ("enjoy", "record_video")
    patch_rl_zoo3(enjoy=plays, given_env_kwargs=_env_kwargs_keys(args) if plays else None)
    saved_argv = sys.argv
    sys.argv = [f"python -m sb3_parsing.zoo {command}", *args]
    try:
        if command == "enjoy":
            rl_zoo3.enjoy.enjoy()
        elif command == "record_video":
            _record_video(args)
        elif command == "plot_train":
            _plot_train(args)
        else:
            rl_zoo3.train.train()
    finally:
        sys.argv = saved_argv


if __name__ == "__main__":
    main()
