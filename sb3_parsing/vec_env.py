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
# Codes of the cells that are in no gold set (gold cells hold their row in the gold-membership table, >= 0).
_NOT_GOLD = -1  # a chart constituent: the action "matched"
_NO_CONSTITUENT = -2  # no chart constituent, or a padding cell


class _Sentence:
    """
    What a reset copies into the batched arrays for one sentence (computed once per sentence, at its first reset).

    Kept cheap to build: a short rollout meets most sentences of the pool for the first time.
    """

    __slots__ = (
        "_constituent",
        "analysis",
        "code",
        "gold_cells",
        "gold_sizes",
        "info",
        "member",
        "n_gold",
        "n_sets",
        "reset_info",
        "step_info",
        "text",
    )

    def __init__(self, env: LinguisticParseEnv, analysis: SentenceAnalysis, n_actions: int) -> None:
        tokens = analysis.tokens
        self.analysis = analysis
        self.text = np.zeros(env._text.shape, dtype=np.uint8)
        n_symbols, columns = self.text.shape[1], env._terminal_column
        self.text.put([m * n_symbols + columns[token] for m, token in enumerate(tokens)], 1)
        # code[cell]: _NO_CONSTITUENT (padding or no chart constituent), _NOT_GOLD (a constituent in no gold set),
        # else the cell's row in the gold-membership table (gold cells are chart constituents: the gold cell sets
        # are the cells of the chart items of complete parses).
        self.code = code = np.empty(n_actions, dtype=np.int32)
        code.fill(_NO_CONSTITUENT)
        code[: analysis.n_cells][analysis.constituent_mask] = _NOT_GOLD
        self.gold_cells = gold_cells = analysis.gold_cell_mask.nonzero()[0]
        code[gold_cells] = np.arange(len(gold_cells), dtype=np.int32)
        self.n_gold, self.n_sets = len(gold_cells), len(analysis.gold_sizes)
        # member[k, g]: gold cell k (see code) is in gold set g; gold_sizes[g]: how many cells gold set g has.
        self.member = analysis.gold_membership.take(gold_cells, axis=1).T
        self.gold_sizes = analysis.gold_sizes
        self._constituent: np.ndarray | None = None
        self.info = (" ".join(tokens), analysis.n_parses, analysis.parses_capped, analysis.min_actions)
        sentence, n_parses, parses_capped, min_actions = self.info
        self.reset_info = {
            "sentence": sentence,
            "n_parses": n_parses,
            "parses_capped": parses_capped,
            "min_actions": min_actions,
            "n_actions": 0,
            "matched": False,
            "is_success": False,
        }
        # The info of a step: copied, then n_actions and matched (and is_success or TimeLimit.truncated) overwritten.
        # Holding all its keys already, the copy is never resized.
        self.step_info = {**self.reset_info, "TimeLimit.truncated": False}

    def constituent(self) -> np.ndarray:
        """The chart cells: the action mask at reset with ``mask_mode="oracle"``."""
        if self._constituent is None:
            self._constituent = self.code != _NO_CONSTITUENT
        return self._constituent


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
        self._row_offsets = np.arange(n) * n_actions
        self._text = np.zeros((n, *env._text.shape), dtype=np.uint8)
        self._history = np.zeros((n, *env._history.shape), dtype=np.uint8)
        self._mask = np.zeros((n, n_actions), dtype=bool)
        self._code = np.full((n, n_actions), _NO_CONSTITUENT, dtype=np.int32)  # see _Sentence.code
        self._fresh = np.zeros((n, n_actions), dtype=bool)  # cells of the sentence not set yet
        # _in_sentence[n_tokens]: the cells of the first n_tokens rows (the cells of a sentence of n_tokens tokens).
        self._in_sentence = np.repeat(np.tri(env.obs_len + 1, env.obs_len, -1, dtype=bool), env.n_columns, axis=1)
        # Flat views of the (N, n_actions) arrays: a step is one gather or scatter per array, whatever N.
        self._flat_history = self._history.reshape(n * n_actions)
        self._flat_mask = self._mask.reshape(n * n_actions)
        self._flat_code = self._code.reshape(n * n_actions)
        self._flat_fresh = self._fresh.reshape(n * n_actions)
        self._member = np.zeros((n, 0, 0), dtype=np.int32)  # _member[i, k, g]: gold cell k of env i is in its set g
        self._flat_member = self._member.reshape(0, 0)  # rows: (env, gold cell) pairs
        self._missing = np.full((n, 0), _NEVER, dtype=np.int32)  # per env and gold set, how many cells are unset
        self._n_actions = np.zeros(n, dtype=np.int64)
        self._matched = np.zeros(n, dtype=bool)
        self._sentences: list[_Sentence | None] = [None] * n
        self._step_infos: list[dict[str, Any]] = [{} for _ in range(n)]  # each env's _Sentence.step_info
        self._np_randoms: list[np.random.Generator | None] = [None] * n
        self._compiled: dict[tuple[str, ...], _Sentence] = {}
        # The float32 rewards of a step (without, with a new gold cell, and on success), as LinguisticParseEnv adds
        # them up in Python floats and DummyVecEnv stores them: set from the env's reward settings by _set_rewards.
        self._rewards_key: tuple[float, float, float] | None = None
        self._no_hit_rewards = np.zeros(n, dtype=np.float32)
        self._hit_reward = self._success_reward = np.float32(0.0)
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
        env, cells, n_actions = self.env, self._actions, self._mask.shape[1]
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        if np.maximum.reduce(cells.view(np.uint64)) >= n_actions:  # one test for both ends: a negative action is huge unsigned
            bad = cells[(cells < 0) | (cells >= n_actions)]
            raise ValueError(f"actions {bad.tolist()} are outside the action space Discrete({n_actions})")
        rewards_key = (env.step_penalty, env.constituent_bonus, env.success_reward)
        if rewards_key != self._rewards_key:
            self._set_rewards(*rewards_key)
        steps = self._n_actions
        steps += 1
        # Flat indices into the (N * n_actions) arrays: one gather or scatter per array, whatever N.
        flat = self._row_offsets + cells
        code = self._flat_code.take(flat)
        self._matched = matched = code > _NO_CONSTITUENT  # False past the sentence: padded
        new = self._flat_fresh.take(flat)
        new_flat = flat[new]
        self._flat_fresh[new_flat] = False
        self._flat_history[new_flat] = 1
        self._flat_mask[new_flat] = False
        hit_rows = (new & (code >= 0)).nonzero()[0]  # envs that set a cell of a gold set
        rewards = self._no_hit_rewards.copy()
        dones = steps >= env.max_steps
        won: list[int] = []
        if hit_rows.size:
            rewards[hit_rows] = self._hit_reward
            # The counters of the gold sets holding the new cells move: member rows are (env, gold cell) pairs.
            missing = self._missing.take(hit_rows, axis=0)
            missing -= self._flat_member.take(hit_rows * self._member.shape[1] + code.take(hit_rows), axis=0)
            self._missing[hit_rows] = missing
            if not missing.all():  # some gold set is complete: those envs won
                won_rows = hit_rows[(missing == 0).any(axis=1)]
                rewards[won_rows] = self._success_reward
                dones[won_rows] = True
                won = won_rows.tolist()
        # A dict with all the keys already, copied: the fastest way to N new dicts.
        infos: list[dict[str, Any]] = list(map(dict.copy, self._step_infos))
        for info, n_steps, is_matched in zip(infos, steps.tolist(), matched.tolist(), strict=True):
            info["n_actions"] = n_steps
            info["matched"] = is_matched
        for i in won:
            infos[i]["is_success"] = True
        text, history = self._text, self._history
        for i in dones.nonzero()[0].tolist():
            info = infos[i]
            if not info["is_success"]:
                info["TimeLimit.truncated"] = True
            info["terminal_observation"] = {"text": text[i].copy(), "history": history[i].copy()}
            self.reset_infos[i] = self._auto_reset(i)
        return self._observation(), rewards, dones, infos

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
            sentence = _Sentence(self.env, self.env.oracle.analyze(tokens), self._mask.shape[1])
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
        return self._load(i, self._compile(tokens))

    def _auto_reset(self, i: int) -> dict[str, Any]:
        """``_reset_env(i, None, None)`` after the first reset (env ``i`` has its ``np_random``)."""
        sentences = self.env.sentences
        tokens = sentences[int(self._np_randoms[i].integers(len(sentences)))]  # type: ignore[union-attr]
        sentence = self._compiled.get(tokens)
        return self._load(i, self._compile(tokens) if sentence is None else sentence)

    def _load(self, i: int, sentence: _Sentence) -> dict[str, Any]:
        """Copy ``sentence`` into env ``i``'s rows of the batched arrays; return its reset info."""
        _, max_gold, max_sets = self._member.shape
        if sentence.n_gold > max_gold or sentence.n_sets > max_sets:
            self._grow(max(sentence.n_gold, max_gold), max(sentence.n_sets, max_sets))
        self._sentences[i] = sentence
        self._text[i] = sentence.text
        self._history[i] = 0
        self._code[i] = sentence.code
        in_sentence = self._in_sentence[len(sentence.analysis.tokens)]
        self._fresh[i] = in_sentence
        self._mask[i] = sentence.constituent() if self.env.mask_mode == "oracle" else in_sentence
        # Past the sentence's gold cells and sets, _member keeps older sentences' entries: those rows are never
        # read, and those sets' counters start at _NEVER, which they cannot count down to zero.
        self._member[i, : sentence.n_gold, : sentence.n_sets] = sentence.member
        self._missing[i] = _NEVER
        self._missing[i, : sentence.n_sets] = sentence.gold_sizes
        self._n_actions[i] = 0
        self._matched[i] = False
        self._step_infos[i] = sentence.step_info
        return sentence.reset_info.copy()

    def _set_rewards(self, step_penalty: float, constituent_bonus: float, success_reward: float) -> None:
        self._rewards_key = (step_penalty, constituent_bonus, success_reward)
        reward = -step_penalty
        self._no_hit_rewards = np.full(self.num_envs, reward, dtype=np.float32)
        reward += constituent_bonus
        self._hit_reward = np.float32(reward)
        reward += success_reward
        self._success_reward = np.float32(reward)

    def _grow(self, n_gold: int, n_sets: int) -> None:
        """Make room for a sentence with more gold cells or gold sets than any so far."""
        member = np.zeros((self.num_envs, n_gold, n_sets), dtype=np.int32)
        member[:, : self._member.shape[1], : self._member.shape[2]] = self._member
        missing = np.full((self.num_envs, n_sets), _NEVER, dtype=np.int32)
        missing[:, : self._missing.shape[1]] = self._missing
        self._member, self._missing = member, missing
        self._flat_member = member.reshape(self.num_envs * n_gold, n_sets)

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
        env._cells = set(np.flatnonzero(self._history[i]).tolist())
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
