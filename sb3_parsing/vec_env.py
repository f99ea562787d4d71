"""
A batched SB3 ``VecEnv`` of the parsing game: N envs on one :class:`~sb3_parsing.game.ParseBoards`.

:class:`LinguisticParseVecEnv` behaves exactly as N copies of :class:`~sb3_parsing.env.LinguisticParseEnv`
under SB3's ``DummyVecEnv`` with the same seeds and actions (same observations, rewards, dones, infos,
``terminal_observation`` and ``TimeLimit.truncated``, automatic resets): its N envs are real
``LinguisticParseEnv`` objects, each playing one row of shared boards (:meth:`LinguisticParseEnv.on_board`), so
``get_attr``, ``set_attr`` and ``env_method`` reach each env's own state. A step plays every board at once through
the game's one implementation of the rules (:meth:`ParseBoards.step`) and reads the N observations as array
copies (one per key), instead of N gym calls through wrappers and N observation copies into buffers. It has ``action_masks()``
itself, so MaskablePPO, PPO and DQN train on it unchanged.

From Python::

    from sb3_contrib import MaskablePPO
    from sb3_parsing.vec_env import make_parse_vec_env

    vec_env = make_parse_vec_env("LinguisticParse-v0", n_envs=64, seed=0)  # VecMonitor-wrapped, like make_vec_env
    model = MaskablePPO("MultiInputPolicy", vec_env).learn(10_000)

From rl_zoo3: rl_zoo3 builds every training and evaluation env with ``make_vec_env(..., vec_env_cls=DummyVecEnv
or SubprocVecEnv)``; the only hyperparameter that reaches the VecEnv is ``vec_env_wrapper``, applied right after.
:func:`batched_vec_env` is such a wrapper: it reads the env id, the env kwargs (``env_kwargs`` of the YAML or the
command line included), the seeds and the Monitor settings from the ``DummyVecEnv`` that rl_zoo3 built, closes it, and
returns a ``VecMonitor(LinguisticParseVecEnv)`` with the same ``n_envs``, seeds and monitor file. In the YAML::

    LinguisticParse-v0:
      n_envs: 64
      vec_env_wrapper: sb3_parsing.vec_env.batched_vec_env

The ``DummyVecEnv`` is still built (and thrown away) first; the sentence analyses are shared by every env of the
process, so building it costs no parsing twice.
``env_wrapper`` (gym wrappers such as the goal wrapper) cannot be batched: :func:`batched_vec_env` refuses them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from sb3_parsing.env import LinguisticParseEnv

__all__ = ["LinguisticParseVecEnv", "batched_vec_env", "make_parse_vec_env"]

# Methods that change an env: they go through the VecEnv's own reset/step, never through env_method.
_STATEFUL_METHODS = frozenset({"reset", "step", "close"})


class LinguisticParseVecEnv(VecEnv):
    """
    N :class:`~sb3_parsing.env.LinguisticParseEnv` stepped at once on shared :class:`~sb3_parsing.game.ParseBoards`.

    Same semantics as ``DummyVecEnv([lambda: LinguisticParseEnv(**env_kwargs)] * num_envs)``: env ``i`` has its own
    ``np_random`` (seeded with ``seed + i`` by :meth:`seed`, as SB3 does), draws its own sentences, and is reset
    automatically when its episode ends (``infos[i]["terminal_observation"]`` holds the last observation,
    ``infos[i]["TimeLimit.truncated"]`` says the episode was truncated). The grammar, oracle and sentence pool are
    made once and shared.

    :param num_envs: number of envs N
    :param env_kwargs: keyword arguments of :class:`~sb3_parsing.env.LinguisticParseEnv` (its defaults otherwise)
    """

    def __init__(self, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.env_kwargs = dict(env_kwargs or {})
        template = LinguisticParseEnv(**self.env_kwargs)
        self.observe_derived = template.observe_derived
        self.boards = template.new_boards(num_envs)
        self.envs = [template.on_board(self.boards, i) for i in range(num_envs)]
        self.spec: gym.envs.registration.EnvSpec | None = None  # the registered id, when made from one (VecMonitor logs it)
        self._actions = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = True
        super().__init__(num_envs, template.observation_space, template.action_space)
        self.metadata = {**template.metadata, **self.metadata}
        self.render_mode = template.render_mode

    def reset(self) -> VecEnvObs:
        for i, env in enumerate(self.envs):
            options = {"options": self._options[i]} if self._options[i] else {}
            _, self.reset_infos[i] = env.reset(seed=self._seeds[i], **options)
        self._reset_seeds()
        self._reset_options()
        self._needs_reset = False
        return self._observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        rewards, terminated, truncated = self.boards.step(self._actions)
        infos = [env.info() for env in self.envs]
        dones = terminated | truncated
        for i, (info, done, cut) in enumerate(zip(infos, dones.tolist(), truncated.tolist(), strict=True)):
            info["TimeLimit.truncated"] = cut  # truncated never holds with terminated: the game ends on success first
            if done:
                info["terminal_observation"] = self.boards.observation(i, self.observe_derived)
                _, self.reset_infos[i] = self.envs[i].reset()
        return self._observation(), rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """The action masks of the N envs, shape ``(num_envs, action_space.n)`` (for MaskablePPO)."""
        return self.boards.mask.copy()

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [env.render() for env in self.envs]  # type: ignore[misc]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        if method_name in _STATEFUL_METHODS:
            raise ValueError(f"{method_name!r} changes an env: call the VecEnv's own {method_name}() instead of env_method")
        return [getattr(self.envs[i], method_name)(*method_args, **method_kwargs) for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def _observation(self) -> dict[str, np.ndarray]:
        """The N envs' observations (copies)."""
        return self.boards.observation(slice(None), self.observe_derived)


def make_parse_vec_env(
    env_id: str = "LinguisticParse-v0",
    n_envs: int = 1,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    monitor_dir: str | None = None,
    monitor_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """
    The batched counterpart of SB3's ``make_vec_env``: a ``VecMonitor(LinguisticParseVecEnv)``.

    :param env_id: a registered id whose entry point is :class:`~sb3_parsing.env.LinguisticParseEnv`
    :param n_envs: number of envs
    :param seed: env ``i`` is seeded with ``seed + i`` at the first reset
    :param env_kwargs: overrides of the registered kwargs, as in ``gym.make(env_id, **env_kwargs)``
    :param monitor_dir: folder of the monitor file (``None``: no file)
    :param monitor_kwargs: keyword arguments of ``VecMonitor`` (e.g. ``info_keywords=("is_success",)``)
    """
    import sb3_parsing  # noqa: F401 - registers the ids

    spec = gym.spec(env_id)
    if spec.entry_point not in (LinguisticParseEnv, "sb3_parsing.env:LinguisticParseEnv"):
        raise ValueError(f"{env_id} is made by {spec.entry_point}, not LinguisticParseEnv: it cannot be batched")
    vec_env = LinguisticParseVecEnv(n_envs, {**spec.kwargs, **(env_kwargs or {})})
    vec_env.spec = spec
    vec_env.seed(seed)
    filename = None if monitor_dir is None else os.path.join(monitor_dir, "0")
    return VecMonitor(vec_env, filename=filename, **(monitor_kwargs or {}))


def batched_vec_env(venv: VecEnv) -> VecEnv:
    """
    Replace a ``DummyVecEnv`` of ``LinguisticParseEnv`` by the equivalent batched env (an rl_zoo3 ``vec_env_wrapper``).

    The kwargs, seeds and monitor settings are read from ``venv``, which is then closed.

    :param venv: the ``DummyVecEnv`` that ``make_vec_env`` built (each env optionally in a ``Monitor``)
    :return: ``VecMonitor(LinguisticParseVecEnv)`` when ``venv``'s envs had a Monitor, else the bare batched env
    """
    if not isinstance(venv, DummyVecEnv):
        raise TypeError(f"batched_vec_env replaces a DummyVecEnv (rl_zoo3's --vec-env dummy), got {type(venv).__name__}")
    first = venv.envs[0]
    if not isinstance(first.unwrapped, LinguisticParseEnv):
        raise TypeError(f"batched_vec_env batches LinguisticParseEnv, got {type(first.unwrapped).__name__}")
    monitor: Monitor | None = None
    layer: gym.Env = first
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, Monitor):
            monitor = layer
        elif not isinstance(layer, (gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)):
            raise TypeError(f"batched_vec_env cannot batch the gym wrapper {type(layer).__name__}; remove env_wrapper")
        layer = layer.env
    spec = first.unwrapped.spec
    if spec is None:
        raise TypeError("batched_vec_env needs envs made by gym.make (their spec holds the kwargs)")
    filename = None
    if monitor is not None and monitor.results_writer is not None:
        filename = monitor.results_writer.file_handler.name
    seeds = list(venv._seeds)
    venv.close()  # closes the Monitor files, which the VecMonitor below takes over
    batched = LinguisticParseVecEnv(venv.num_envs, dict(spec.kwargs))
    batched._seeds = seeds
    batched.spec = spec
    if monitor is None:
        return batched
    return VecMonitor(batched, filename=filename, info_keywords=monitor.info_keywords)
