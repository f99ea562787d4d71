"""
A batched SB3 ``VecEnv`` of the parsing game: N sentences stepped at once with numpy.

:class:`LinguisticParseVecEnv` behaves exactly as N copies of :class:`~sb3_parsing.env.LinguisticParseEnv`
under SB3's ``DummyVecEnv`` with the same seeds and actions (same observations, rewards, dones, infos,
``terminal_observation`` and ``TimeLimit.truncated``, automatic resets), but one ``step`` is a few numpy
operations over all N envs instead of N Python calls. It has ``action_masks()`` itself and answers
``env_method("action_masks")``, so MaskablePPO, PPO and DQN train on it unchanged.

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

The ``DummyVecEnv`` is still built (and thrown away) first, so the N envs' construction is paid once at start-up.
``env_wrapper`` (gym wrappers such as the goal wrapper) cannot be batched: :func:`batched_vec_env` refuses them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from sb3_parsing.corpus import check_sentences
from sb3_parsing.env import LinguisticParseEnv
from sb3_parsing.oracle import SentenceAnalysis

__all__ = ["LinguisticParseVecEnv", "batched_vec_env", "make_parse_vec_env"]

# Counter of the unused gold-set slots: never reaches zero, whatever the number of steps.
_NEVER = np.iinfo(np.int32).max // 2
# Methods that change an env: they go through the VecEnv's own reset/step, never through env_method.
_STATEFUL_METHODS = frozenset({"reset", "step", "close"})


class _Sentence:
    """What a reset copies into the batched arrays for one sentence (computed once per sentence)."""

    def __init__(self, env: LinguisticParseEnv, analysis: SentenceAnalysis) -> None:
        n_actions = env.obs_len * env.n_columns
        tokens = analysis.tokens
        self.analysis = analysis
        self.text = np.zeros_like(env._text)
        self.text[np.arange(len(tokens)), [env._terminal_column[t] for t in tokens]] = 1
        self.constituent = np.zeros(n_actions, dtype=bool)
        self.constituent[: analysis.n_cells] = analysis.constituent_mask
        in_sentence = np.zeros(n_actions, dtype=bool)
        in_sentence[: analysis.n_cells] = True
        self.masks = {"history": in_sentence, "oracle": self.constituent}  # action masks at reset, by mask_mode
        gold_cells = np.flatnonzero(analysis.gold_cell_mask)
        # gold_index[cell]: row of the cell in ``member`` (-1: in no gold set); member[k, g]: cell k is in gold set g.
        self.gold_index = np.full(n_actions, -1, dtype=np.int32)
        self.gold_index[gold_cells] = np.arange(len(gold_cells), dtype=np.int32)
        self.member = np.ascontiguousarray(analysis.gold_membership[:, gold_cells].T, dtype=np.int32)
        self.gold_sizes = analysis.gold_sizes
        self.info = (" ".join(tokens), analysis.n_parses, analysis.parses_capped, analysis.min_actions)
        self.base_info = dict(zip(("sentence", "n_parses", "parses_capped", "min_actions"), self.info, strict=True))


class LinguisticParseVecEnv(VecEnv):
    """
    N copies of :class:`~sb3_parsing.env.LinguisticParseEnv` stepped at once with numpy.

    Same semantics as ``DummyVecEnv([lambda: LinguisticParseEnv(**env_kwargs)] * num_envs)``: env ``i`` has its own
    ``np_random`` (seeded with ``seed + i`` by :meth:`seed`, as SB3 does), draws its own sentences, and is reset
    automatically when its episode ends (``infos[i]["terminal_observation"]`` holds the last observation,
    ``infos[i]["TimeLimit.truncated"]`` says the episode was truncated). The grammar, oracle, sentences and
    reward settings are shared: ``set_attr`` changes them for every env at once.

    ``get_attr``, ``env_method`` and rendering run on a snapshot of env ``i`` loaded into one
    ``LinguisticParseEnv`` (``env_method("expert_action")``, ``get_attr("analysis")``, ...); ``action_masks()``
    and ``env_method("action_masks")`` are batched.

    :param num_envs: number of envs N
    :param env_kwargs: keyword arguments of :class:`~sb3_parsing.env.LinguisticParseEnv` (its defaults otherwise)
    """

    def __init__(self, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.env = env = LinguisticParseEnv(**(env_kwargs or {}))
        self.env_kwargs = dict(env_kwargs or {})
        n, n_actions = num_envs, env.obs_len * env.n_columns
        self._rows = np.arange(n)
        self._row_offsets = self._rows * n_actions
        self._text = np.zeros((n, *env._text.shape), dtype=np.uint8)
        self._history = np.zeros((n, *env._history.shape), dtype=np.uint8)
        self._flat_history = self._history.reshape(n, n_actions)
        self._mask = np.zeros((n, n_actions), dtype=bool)
        self._constituent = np.zeros((n, n_actions), dtype=bool)
        self._gold_index = np.full((n, n_actions), -1, dtype=np.int32)
        self._member = np.zeros((n, 0, 0), dtype=np.int32)
        self._missing = np.full((n, 0), _NEVER, dtype=np.int32)
        self._n_cells = np.zeros(n, dtype=np.int64)
        self._n_actions = np.zeros(n, dtype=np.int64)
        self._matched = np.zeros(n, dtype=bool)
        self._sentences: list[_Sentence | None] = [None] * n
        self._base_infos: list[dict[str, Any]] = [{} for _ in range(n)]  # each env's _Sentence.base_info
        self._np_randoms: list[np.random.Generator | None] = [None] * n
        self._compiled: dict[tuple[str, ...], _Sentence] = {}
        self._actions = np.zeros(n, dtype=np.int64)
        self._needs_reset = True
        self.spec: gym.envs.registration.EnvSpec | None = None  # the registered id, when made from one (VecMonitor logs it)
        super().__init__(n, env.observation_space, env.action_space)
        self.metadata = {**env.metadata, **self.metadata}

    # --- VecEnv API ----------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        for i in range(self.num_envs):
            self.reset_infos[i] = self._reset_env(i, self._seeds[i], self._options[i])
        self._reset_seeds()
        self._reset_options()
        self._needs_reset = False
        return self._observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        env, rows, cells, n_actions = self.env, self._rows, self._actions, self._mask.shape[1]
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        if cells.min() < 0 or cells.max() >= n_actions:
            bad = cells[(cells < 0) | (cells >= n_actions)]
            raise ValueError(f"actions {bad.tolist()} are outside the action space Discrete({n_actions})")
        self._n_actions += 1
        # Flat indices into the (N * n_actions) arrays: one gather or scatter per array, whatever N.
        flat = self._row_offsets + cells
        self._matched = self._constituent.ravel().take(flat)  # False past the sentence: padded
        new = (cells < self._n_cells) & (self._flat_history.ravel().take(flat) == 0)
        new_flat = flat[new]
        self._flat_history.ravel()[new_flat] = 1
        self._mask.ravel()[new_flat] = False
        gold = self._gold_index.ravel().take(flat)
        hit = new & (gold >= 0)
        rewards = np.full(self.num_envs, -env.step_penalty)
        rewards[hit] += env.constituent_bonus
        success = np.zeros(self.num_envs, dtype=bool)
        if hit.any():
            hit_rows = rows[hit]
            self._missing[hit_rows] -= self._member[hit_rows, gold[hit]]
            success[hit_rows] = (self._missing[hit_rows] == 0).any(axis=1)
        rewards[success] += env.success_reward
        truncated = ~success & (self._n_actions >= env.max_steps)
        dones = success | truncated
        infos = self._infos(success, truncated)
        for i in np.flatnonzero(dones).tolist():
            infos[i]["terminal_observation"] = {"text": self._text[i].copy(), "history": self._history[i].copy()}
            self.reset_infos[i] = self._reset_env(i, None, {})
        return self._observation(), rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """The action masks of the N envs, shape ``(num_envs, action_space.n)`` (for MaskablePPO)."""
        return self._mask.copy()

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [self._snapshot(i).render() for i in range(self.num_envs)]  # type: ignore[misc]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        values = []
        for i in self._get_indices(indices):
            value = getattr(self._snapshot(i), attr_name)
            if inspect.ismethod(value) and value.__self__ is self.env:
                value = self._method_of(i, attr_name)
            values.append(value)
        return values

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(set(self._get_indices(indices))) != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}) on envs {list(self._get_indices(indices))}: the batched envs share their "
                "settings; set it for all envs (indices=None)"
            )
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        if method_name == "action_masks" and not method_args and not method_kwargs:
            return list(self.action_masks()[list(self._get_indices(indices))])
        return [self._method_of(i, method_name)(*method_args, **method_kwargs) for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    # --- internals ------------------------------------------------------------------------------
    def _compile(self, tokens: tuple[str, ...]) -> _Sentence:
        sentence = self._compiled.get(tokens)
        if sentence is None:
            sentence = _Sentence(self.env, self.env.oracle.analyze(tokens))
            if len(self._compiled) < 65536:  # bounded: reset options may bring any number of new sentences
                self._compiled[tokens] = sentence
        return sentence

    def _reset_env(self, i: int, seed: int | None, options: dict[str, Any] | None) -> dict[str, Any]:
        """Start env ``i`` on a new sentence, as ``LinguisticParseEnv.reset`` does; return its reset info."""
        env = self.env
        if seed is not None or self._np_randoms[i] is None:
            self._np_randoms[i], _ = seeding.np_random(seed)
        if options and "sentence" in options:
            given = options["sentence"]
            tokens = tuple(given.split()) if isinstance(given, str) else tuple(given)
            check_sentences(env.oracle, [tokens], env.obs_len)
        else:
            tokens = env.sentences[int(self._np_randoms[i].integers(len(env.sentences)))]  # type: ignore[union-attr]
        sentence = self._sentences[i] = self._compile(tokens)
        n_sets, n_gold = sentence.member.shape[1], sentence.member.shape[0]
        if n_sets > self._missing.shape[1] or n_gold > self._member.shape[1]:
            self._grow(max(n_gold, self._member.shape[1]), max(n_sets, self._missing.shape[1]))
        self._text[i] = sentence.text
        self._history[i] = 0
        self._constituent[i] = sentence.constituent
        self._gold_index[i] = sentence.gold_index
        self._member[i, :n_gold, :n_sets] = sentence.member
        self._missing[i] = _NEVER
        self._missing[i, :n_sets] = sentence.gold_sizes
        self._n_cells[i] = sentence.analysis.n_cells
        self._mask[i] = sentence.masks[env.mask_mode]
        self._n_actions[i] = 0
        self._matched[i] = False
        self._base_infos[i] = sentence.base_info
        return {**sentence.base_info, "n_actions": 0, "matched": False, "is_success": False}

    def _grow(self, n_gold: int, n_sets: int) -> None:
        """Make room for a sentence with more gold cells or gold sets than any so far."""
        member = np.zeros((self.num_envs, n_gold, n_sets), dtype=np.int32)
        member[:, : self._member.shape[1], : self._member.shape[2]] = self._member
        missing = np.full((self.num_envs, n_sets), _NEVER, dtype=np.int32)
        missing[:, : self._missing.shape[1]] = self._missing
        self._member, self._missing = member, missing

    def _infos(self, success: np.ndarray, truncated: np.ndarray) -> list[dict[str, Any]]:
        infos = []
        columns = (self._n_actions.tolist(), self._matched.tolist(), success.tolist(), truncated.tolist())
        for base, n_actions, matched, is_success, is_truncated in zip(self._base_infos, *columns, strict=True):
            info = base.copy()  # copying the sentence's four fixed entries is the cheapest way to a new dict
            info["n_actions"] = n_actions
            info["matched"] = matched
            info["is_success"] = is_success
            info["TimeLimit.truncated"] = is_truncated
            infos.append(info)
        return infos

    def _observation(self) -> dict[str, np.ndarray]:
        return {"text": self._text.copy(), "history": self._history.copy()}

    def _snapshot(self, i: int) -> LinguisticParseEnv:
        """Load env ``i``'s state into the shared ``LinguisticParseEnv`` (before any reset: leave it as it is)."""
        env, sentence = self.env, self._sentences[i]
        if sentence is None:
            return env
        analysis = sentence.analysis
        env._analysis = analysis
        env._text[...] = self._text[i]
        env._history[...] = self._history[i]
        env._cells = set(np.flatnonzero(self._flat_history[i]).tolist())
        env._missing = analysis.gold_sizes - analysis.gold_membership[:, sorted(env._cells)].sum(axis=1, dtype=np.int32)
        env._mask[...] = self._mask[i]
        env._sentence_info = sentence.info
        env._n_actions = int(self._n_actions[i])
        env._matched = bool(self._matched[i])
        env._is_success = False  # a won episode is reset at once
        env._np_random = self._np_randoms[i]
        return env

    def _method_of(self, i: int, name: str) -> Callable[..., Any]:
        """Env ``i``'s method ``name``, run on its snapshot when called."""
        if name in _STATEFUL_METHODS:
            raise ValueError(f"{name!r} changes an env: call the VecEnv's own {name}() instead of env_method/get_attr")

        def method(*args: Any, **kwargs: Any) -> Any:
            return getattr(self._snapshot(i), name)(*args, **kwargs)

        return method


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
