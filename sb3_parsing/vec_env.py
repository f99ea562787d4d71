"""
A batched SB3 ``VecEnv`` of the parsing game: N sentences stepped at once with numpy.

:class:`LinguisticParseVecEnv` behaves exactly as N copies of :class:`~sb3_parsing.env.LinguisticParseEnv`
under SB3's ``DummyVecEnv`` with the same seeds and actions (same observations, rewards, dones, infos,
``terminal_observation`` and ``TimeLimit.truncated``, automatic resets), but one ``step`` is a few numpy
operations over all N envs instead of N Python calls. It has ``action_masks()`` itself and answers
``env_method("action_masks")``, so MaskablePPO, PPO and DQN train on it unchanged.

Each sentence is compiled once, the first time an env draws it, into one row of shared tables (its text matrix, a code
per cell, the gold sets holding each gold cell); a reset copies that row into the env's, and a step gathers and
scatters one cell per env. Python loops over envs only where something happened: the envs whose episode ended, and
the info dicts (one new dict per env and step, as ``DummyVecEnv`` returns).

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

# Counter of the unused gold-set columns (their member entries are 0: it never moves, so never reaches zero).
_NEVER = np.iinfo(np.int16).max
# Methods that change an env: they go through the VecEnv's own reset/step, never through env_method.
_STATEFUL_METHODS = frozenset({"reset", "step", "close"})
# Codes of the cells, in increasing order; a gold cell's code is its row in the gold-membership table (member).
_PADDING = 0  # a cell past the sentence's last token (0: the tables start zeroed)
_NO_CONSTITUENT = 1  # a cell of the sentence that no chart constituent has
_NOT_GOLD = 2  # a chart constituent in no gold set (or a gold cell already set): the action "matched"
_FIRST_GOLD_ROW = 3  # the first row of member that a code can name
# Constants of a step as 0-d arrays: numpy compares or adds an array and a 0-d array faster than a Python scalar.
_PADDING_0D, _NO_CONSTITUENT_0D, _NOT_GOLD_0D = (np.array(c, dtype=np.int32) for c in (_PADDING, _NO_CONSTITUENT, _NOT_GOLD))
_ONE_0D, _FALSE_0D = np.array(1, dtype=np.int64), np.array(False)
# dtype objects: a view is faster to make with one than with a scalar type.
_UINT8, _UINT64 = np.dtype(np.uint8), np.dtype(np.uint64)
# Past this many sentences, the tables are emptied but for the envs' current sentences: memory stays bounded.
_MAX_SENTENCES = 65536


class _Sentence:
    """
    A sentence met by the envs: its slot in the :class:`_SentenceTables` and the info dicts of its episodes.

    :param analysis: the oracle's analysis of the sentence
    :param slot: its row in the tables
    """

    __slots__ = ("analysis", "reset_info", "slot", "step_info")

    def __init__(self, analysis: SentenceAnalysis, slot: int) -> None:
        self.analysis = analysis
        self.slot = slot
        self.reset_info = {
            "sentence": " ".join(analysis.tokens),
            "n_parses": analysis.n_parses,
            "parses_capped": analysis.parses_capped,
            "min_actions": analysis.min_actions,
            "n_actions": 0,
            "matched": False,
            "is_success": False,
        }
        # The info of a step: copied, then n_actions and matched (and is_success or TimeLimit.truncated) overwritten.
        # Holding all its keys already, the copy is never resized.
        self.step_info = {**self.reset_info, "TimeLimit.truncated": False}


class _SentenceTables:
    """
    The arrays of the sentences met so far, one slot (row) per sentence: what a reset loads and a step reads.

    - ``text[slot]``: the sentence's text matrix;
    - ``code[slot, cell]``: ``_PADDING``, ``_NO_CONSTITUENT``, ``_NOT_GOLD``, or for a gold cell its row in ``member``;
    - ``member[row, g]``: 1 when that gold cell is in gold set ``g`` of its sentence;
    - ``sizes[slot, g]``: how many cells gold set ``g`` of the sentence has (``_NEVER`` past its gold sets).

    Allocated zeroed for ``capacity`` sentences (the memory of a slot is only touched when a sentence fills it),
    grown by doubling past that: adding a sentence costs a few row writes. ``member`` and ``sizes`` are int16 (int32
    if a gold set, at most one cell per action, could have more cells than that holds), as the counters they set.

    :param env: the env whose sentences these are (its matrix shapes and terminal columns)
    :param capacity: how many sentences the tables hold before they grow
    """

    def __init__(self, env: LinguisticParseEnv, capacity: int) -> None:
        self._columns = env._terminal_column
        self._row_starts = range(0, env._text.size, env._text.shape[1])  # where each row of a text matrix starts
        self.by_tokens: dict[tuple[str, ...], _Sentence] = {}
        self.sentences: list[_Sentence] = []  # by slot
        self.n_rows = _FIRST_GOLD_ROW  # rows of member in use (or never used: those that the codes below gold name)
        self.text = np.zeros((capacity, *env._text.shape), dtype=np.uint8)
        self.code = np.zeros((capacity, env.n_history_cells), dtype=np.int32)
        counts = np.int16 if env.n_history_cells <= np.iinfo(np.int16).max else np.int32
        sets = 64 // np.dtype(counts).itemsize  # gold sets before the first growth: a member row fills a cache line
        self.member = np.zeros((32 * capacity, sets), dtype=counts)
        self.sizes = np.full((capacity, sets), _NEVER, dtype=counts)

    def add(self, analysis: SentenceAnalysis) -> _Sentence:
        """
        Write the arrays of a sentence not in the tables yet into a new slot.

        :param analysis: the oracle's analysis of the sentence
        """
        tokens, slot, row = analysis.tokens, len(self.sentences), self.n_rows
        gold_cells = analysis.gold_cell_mask.nonzero()[0]
        n_gold, n_sets = len(gold_cells), len(analysis.gold_sizes)
        if slot == len(self.code) or row + n_gold > len(self.member) or n_sets > self.sizes.shape[1]:
            self._grow(slot + 1, row + n_gold, n_sets)
        ones = [start + self._columns[token] for start, token in zip(self._row_starts, tokens, strict=False)]
        self.text[slot].put(ones, 1)
        code = self.code[slot]
        np.add(analysis.constituent_mask, _NO_CONSTITUENT_0D, out=code[: analysis.n_cells])
        code.put(gold_cells, np.arange(row, row + n_gold))
        self.member[row : row + n_gold, :n_sets] = analysis.gold_membership.take(gold_cells, axis=1).T
        self.sizes[slot, :n_sets] = analysis.gold_sizes
        self.n_rows += n_gold
        sentence = _Sentence(analysis, slot)
        self.sentences.append(sentence)
        self.by_tokens[tokens] = sentence
        return sentence

    def _grow(self, n_slots: int, n_rows: int, n_sets: int) -> None:
        """Make room for ``n_slots`` sentences, ``n_rows`` member rows and sentences of ``n_sets`` gold sets."""
        used, slots = len(self.sentences), _doubled(len(self.code), n_slots)
        rows, sets = _doubled(len(self.member), n_rows), _doubled(self.sizes.shape[1], n_sets)
        if slots > len(self.code):
            self.text = _enlarged(self.text[:used], (slots, *self.text.shape[1:]), 0)
            self.code = _enlarged(self.code[:used], (slots, self.code.shape[1]), _PADDING)
        if (slots, sets) != self.sizes.shape:
            self.sizes = _enlarged(self.sizes[:used], (slots, sets), _NEVER)
        if (rows, sets) != self.member.shape:
            self.member = _enlarged(self.member[: self.n_rows], (rows, sets), 0)


def _doubled(capacity: int, needed: int) -> int:
    """``capacity``, doubled if needed to hold ``needed`` (or more if that is not enough)."""
    return capacity if needed <= capacity else max(needed, 2 * capacity)


def _enlarged(array: np.ndarray, shape: tuple[int, ...], fill: int) -> np.ndarray:
    """
    A copy of ``array`` in the leading corner of a new array.

    :param array: the entries to keep
    :param shape: the new shape, no smaller than ``array``'s along any axis
    :param fill: the value of the other entries
    """
    larger = np.zeros(shape, dtype=array.dtype) if fill == 0 else np.full(shape, fill, dtype=array.dtype)
    larger[tuple(slice(size) for size in array.shape)] = array
    return larger


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
        n, n_cells = num_envs, env.n_history_cells
        self._slots = np.zeros(n, dtype=np.intp)  # env i's sentence: its slot in the tables
        # Flat views of the (N, n_cells) arrays: a step is one gather or scatter per array, whatever N.
        self._row_offsets = np.arange(n) * n_cells
        # The codes of env i's cells: its sentence's row of the tables' code, but for the gold cells already set,
        # which become _NOT_GOLD (still constituents, no longer new gold cells).
        self._code = np.zeros((n, n_cells), dtype=np.int32)
        self._flat_code = self._code.reshape(n * n_cells)
        self._history = np.zeros((n, *env._history.shape), dtype=np.uint8)
        self._flat_history = self._history.reshape(n * n_cells)
        self._mask = np.zeros((n, n_cells), dtype=bool)
        self._flat_mask = self._mask.reshape(n * n_cells)
        self._n_actions = np.zeros(n, dtype=np.int64)
        self._matched = np.zeros(n, dtype=bool)
        self._step_infos: list[dict[str, Any]] = [{} for _ in range(n)]  # each env's _Sentence.step_info
        self._np_randoms: list[np.random.Generator | None] = [None] * n
        self._n_cells = np.array(n_cells, dtype=np.uint64)  # 0-d arrays: numpy compares faster with them than with ints
        # The env's settings that a step reads (set_attr may change them): reward settings and max_steps, as last seen
        # by _apply_settings, which sets the float32 rewards of a step (without, with a new gold cell, and on success:
        # LinguisticParseEnv adds them up in Python floats, DummyVecEnv stores them as float32) and max_steps.
        self._settings: tuple[float, float, float, int] | None = None
        self._no_hit_rewards = np.zeros(n, dtype=np.float32)
        self._hit_reward = self._success_reward = np.float32(0.0)
        self._max_steps = np.array(0, dtype=np.int64)
        self._actions = np.zeros(n, dtype=np.int64)
        self._needs_reset = True
        self.spec: gym.envs.registration.EnvSpec | None = None  # the registered id, when made from one (VecMonitor logs it)
        super().__init__(n, env.observation_space, env.action_space)
        self.metadata = {**env.metadata, **self.metadata}
        self._tables = self._new_tables()
        self._missing = np.zeros((n, 0), dtype=self._tables.sizes.dtype)  # per env and gold set, how many cells are unset
        self._fit_missing()

    # --- VecEnv API ----------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        sentences = [self._first_sentence(i, self._seeds[i], self._options[i]) for i in range(self.num_envs)]
        self._load(np.arange(self.num_envs), sentences)
        self._reset_seeds()
        self._reset_options()
        self._needs_reset = False
        return self._observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        env, cells = self.env, self._actions
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        self._check_actions(cells)
        settings = (env.step_penalty, env.constituent_bonus, env.success_reward, env.max_steps)
        if settings != self._settings:
            self._apply_settings(*settings)
        steps = self._n_actions
        steps += _ONE_0D
        flat = self._row_offsets + cells
        code = self._flat_code[flat]
        # Setting a cell again changes nothing, and a padding cell is never set: no need to pick the new cells.
        self._flat_history[flat] = (code > _PADDING_0D).view(_UINT8)
        self._flat_mask[flat] = _FALSE_0D
        self._matched = matched = code > _NO_CONSTITUENT_0D
        hit_rows = (code > _NOT_GOLD_0D).nonzero()[0]  # the envs that set a gold cell for the first time
        rewards = self._no_hit_rewards.copy()
        dones = steps >= self._max_steps
        won: list[int] = []
        if hit_rows.size:
            rewards[hit_rows] = self._hit_reward
            self._flat_code[flat[hit_rows]] = _NOT_GOLD_0D  # set: still a constituent, no longer a new gold cell
            won = self._count_down(hit_rows, code[hit_rows])
            if won:
                rewards[won] = self._success_reward
                dones[won] = True
        infos = self._infos(steps, matched)
        for i in won:
            infos[i]["is_success"] = True
        done_rows = dones.nonzero()[0]
        if done_rows.size:
            self._end_episodes(done_rows, infos)
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

    # --- internals: a step ----------------------------------------------------------------------
    def _check_actions(self, cells: np.ndarray) -> None:
        """Raise ``ValueError`` unless every action is in the action space."""
        if np.count_nonzero(cells.view(_UINT64) >= self._n_cells):  # both ends at once: a negative action is huge unsigned
            n_cells = self._mask.shape[1]
            bad = cells[(cells < 0) | (cells >= n_cells)]
            raise ValueError(f"actions {bad.tolist()} are outside the action space Discrete({n_cells})")

    def _count_down(self, rows: np.ndarray, member_rows: np.ndarray) -> list[int]:
        """
        Count the new gold cells of envs ``rows`` in the counters of their gold sets; return the envs that won.

        :param rows: the envs that set a gold cell for the first time
        :param member_rows: the rows of those cells in the tables' ``member``
        """
        missing = self._missing.take(rows, axis=0)
        np.subtract(missing, self._tables.member.take(member_rows, axis=0), out=missing)
        self._missing[rows] = missing
        if np.count_nonzero(missing) == missing.size:  # no gold set complete
            return []
        return rows[(missing == 0).any(axis=1)].tolist()

    def _infos(self, steps: np.ndarray, matched: np.ndarray) -> list[dict[str, Any]]:
        """The infos of a step: each env's ``step_info`` with its ``n_actions`` and ``matched``."""
        # A dict with all the keys already, copied: the fastest way to N new dicts.
        infos: list[dict[str, Any]] = list(map(dict.copy, self._step_infos))
        for info, n_steps, is_matched in zip(infos, steps.tolist(), matched.tolist(), strict=True):
            info["n_actions"] = n_steps
            info["matched"] = is_matched
        return infos

    def _end_episodes(self, rows: np.ndarray, infos: list[dict[str, Any]]) -> None:
        """
        Close the episodes of envs ``rows`` in their ``infos``, as ``DummyVecEnv`` does, and reset those envs.

        :param rows: the envs whose episode ended
        :param infos: the infos of the step, completed in place
        """
        envs = rows.tolist()
        texts, histories = self._tables.text[self._slots[rows]], self._history[rows]
        for i, text, history in zip(envs, texts, histories, strict=True):
            info = infos[i]
            if not info["is_success"]:
                info["TimeLimit.truncated"] = True
            info["terminal_observation"] = {"text": text, "history": history}
        self._load(rows, list(map(self._draw, envs)))

    def _observation(self) -> dict[str, np.ndarray]:
        """The N envs' observations (copies)."""
        return {"text": self._tables.text.take(self._slots, axis=0), "history": self._history.copy()}

    # --- internals: resets ----------------------------------------------------------------------
    def _first_sentence(self, i: int, seed: int | None, options: dict[str, Any] | None) -> _Sentence:
        """The sentence of env ``i`` at a reset, as ``LinguisticParseEnv.reset`` picks it."""
        env = self.env
        if seed is not None or self._np_randoms[i] is None:
            self._np_randoms[i], _ = seeding.np_random(seed)
        if options and "sentence" in options:
            given = options["sentence"]
            tokens = tuple(given.split()) if isinstance(given, str) else tuple(given)
            check_sentences(env.oracle, [tokens], env.obs_len)
            return self._sentence(tokens)
        return self._draw(i)

    def _draw(self, i: int) -> _Sentence:
        """A sentence drawn from the split with env ``i``'s ``np_random`` (after its first reset)."""
        sentences = self.env.sentences
        tokens = sentences[self._np_randoms[i].integers(len(sentences))]  # type: ignore[union-attr]
        return self._sentence(tokens)

    def _sentence(self, tokens: tuple[str, ...]) -> _Sentence:
        """The sentence ``tokens`` in the tables, added the first time."""
        sentence = self._tables.by_tokens.get(tokens)
        return self._tables.add(self.env.oracle.analyze(tokens)) if sentence is None else sentence

    def _load(self, rows: np.ndarray, sentences: list[_Sentence]) -> None:
        """
        Start envs ``rows`` on ``sentences``, as ``LinguisticParseEnv.reset`` does once it has drawn them.

        :param rows: the envs to reset
        :param sentences: their new sentences, in the same order
        """
        step_infos, reset_infos = self._step_infos, self.reset_infos
        for i, sentence in zip(rows.tolist(), sentences, strict=True):
            step_infos[i] = sentence.step_info
            reset_infos[i] = sentence.reset_info.copy()
        tables = self._tables
        if self._missing.shape[1] != tables.sizes.shape[1]:
            self._fit_missing()
        slots = np.array([sentence.slot for sentence in sentences], dtype=np.intp)
        self._slots[rows] = slots
        self._code[rows] = code = tables.code[slots]
        self._history[rows] = 0
        self._mask[rows] = code > (_NO_CONSTITUENT_0D if self.env.mask_mode == "oracle" else _PADDING_0D)
        self._missing[rows] = tables.sizes[slots]
        self._n_actions[rows] = 0
        self._matched[rows] = False
        if len(tables.sentences) > _MAX_SENTENCES:
            self._compact()

    def _new_tables(self) -> _SentenceTables:
        """Empty tables, with room for every sentence of the split and one more per env (given by reset options)."""
        return _SentenceTables(self.env, min(len(self.env.sentences) + self.num_envs, _MAX_SENTENCES))

    def _fit_missing(self) -> None:
        """Give the gold-set counters as many columns as the tables have gold sets (new columns: ``_NEVER``)."""
        width = self._tables.sizes.shape[1]
        missing = np.full((self.num_envs, width), _NEVER, dtype=self._tables.sizes.dtype)
        kept = min(width, self._missing.shape[1])
        missing[:, :kept] = self._missing[:, :kept]
        self._missing = missing

    def _compact(self) -> None:
        """Replace the tables by new ones that hold the envs' current sentences only (memory stays bounded)."""
        current = [self._tables.sentences[slot].analysis for slot in self._slots.tolist()]
        self._tables = self._new_tables()
        for i, analysis in enumerate(current):
            sentence = self._sentence(analysis.tokens)
            self._slots[i] = sentence.slot
            self._step_infos[i] = sentence.step_info
        code = self._tables.code[self._slots]  # the gold cells' codes are their rows in the new tables' member
        code[(code > _NOT_GOLD) & (self._history.reshape(code.shape) == 1)] = _NOT_GOLD
        self._code[...] = code
        self._fit_missing()

    def _apply_settings(self, step_penalty: float, constituent_bonus: float, success_reward: float, max_steps: int) -> None:
        """Take the env's reward settings and ``max_steps`` (see ``__init__``)."""
        self._settings = (step_penalty, constituent_bonus, success_reward, max_steps)
        reward = -step_penalty
        self._no_hit_rewards = np.full(self.num_envs, reward, dtype=np.float32)
        reward += constituent_bonus
        self._hit_reward = np.float32(reward)
        reward += success_reward
        self._success_reward = np.float32(reward)
        self._max_steps = np.array(max_steps, dtype=np.int64)

    # --- internals: one env ---------------------------------------------------------------------
    def _snapshot(self, i: int) -> LinguisticParseEnv:
        """Load env ``i``'s state into the shared ``LinguisticParseEnv`` (before any reset: leave it as it is)."""
        env = self.env
        if self._needs_reset:
            return env
        sentence = self._tables.sentences[self._slots[i]]
        analysis, info = sentence.analysis, sentence.reset_info
        env._analysis = analysis
        env._text[...] = self._tables.text[self._slots[i]]
        env._history[...] = self._history[i]
        env._cells = set(np.flatnonzero(self._history[i]).tolist())
        env._missing = analysis.gold_sizes - analysis.gold_membership[:, sorted(env._cells)].sum(axis=1, dtype=np.int32)
        env._mask[...] = self._mask[i]
        env._sentence_info = (info["sentence"], info["n_parses"], info["parses_capped"], info["min_actions"])
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
