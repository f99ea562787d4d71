"""
The rules of the parsing game (seed 002), once, for N boards at a time.

:class:`ParseBoards` holds the state of N games: text and history matrices, action masks, action counts, and for each
board the sentence's analysis and a :class:`~sb3_parsing.oracle.Derivation` (what the history derives, also kept as a
matrix of constituents, ``derived``, when the env observes it). ``reset_board``
starts a board on a sentence; ``step`` plays one action on every board. :class:`~sb3_parsing.env.LinguisticParseEnv`
plays one board (N = 1) and :class:`~sb3_parsing.vec_env.LinguisticParseVecEnv` N boards, so both follow the same
rules by construction, as gymnax and Jumanji get a batched env from one step function.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sb3_parsing.oracle import Derivation, SentenceAnalysis

__all__ = ["TARGETS", "Constituent", "ParseBoards", "Target", "mark_constituents"]

TARGETS = ("any", "tree")

# A constituent: (start, end, label index), a label over the tokens [start, end).
Constituent = tuple[int, int, int]


def mark_constituents(rows: np.ndarray, constituents: Iterable[Constituent]) -> None:
    """
    Set the bits of ``constituents`` in ``rows``, an array of shape ``(obs_len, n_labels * obs_len)``: row ``m`` holds
    one bit per (label, length) of the constituents that start at token ``m``, ``rows[start, label * obs_len + end -
    start - 1]``.

    :param rows: the array, changed in place
    :param constituents: ``(start, end, label)`` triples, ``0 <= start < end <= obs_len``
    """
    obs_len = rows.shape[0]
    for start, end, label in constituents:
        rows[start, label * obs_len + end - start - 1] = 1


@dataclass(frozen=True)
class Target:
    """
    What wins a board: any complete parse (``tree=None``), or one given tree.

    :param tree: the bracketed tree that alone wins, or ``None`` for any complete parse
    :param cells: the cells of that tree (empty for any parse)
    """

    tree: str | None = None
    cells: frozenset[int] = frozenset()


ANY_PARSE = Target()


class ParseBoards:
    """
    N boards of the parsing game: the state that the single env and the batched env step.

    The matrices and masks are numpy arrays (observations, ``action_masks``); counters, flags and settings are Python
    lists, which a step reads and writes several times per board (a list item costs a tenth of a numpy scalar).
    Settings are per board, so that each env of a VecEnv can have its own (``VecEnv.set_attr`` with indices).

    :param n_boards: number of boards N
    :param obs_len: rows of the matrices
    :param n_columns: columns of the history matrix
    :param n_symbols: columns of the text matrix (the alphabet)
    :param n_labels: labels of the grammar, to keep ``derived`` (the constituents each history derives, in the layout
        of :func:`mark_constituents`) up to date; 0 keeps no such array
    """

    def __init__(self, n_boards: int, obs_len: int, n_columns: int, n_symbols: int, n_labels: int = 0) -> None:
        self.n_boards = n_boards
        self.n_columns = n_columns
        self.text = np.zeros((n_boards, obs_len, n_symbols), dtype=np.uint8)
        self.history = np.zeros((n_boards, obs_len, n_columns), dtype=np.uint8)
        self.mask = np.zeros((n_boards, obs_len * n_columns), dtype=bool)
        self.derived = np.zeros((n_boards, obs_len, n_labels * obs_len), dtype=np.uint8) if n_labels else None
        self.n_actions = [0] * n_boards
        self.matched = [False] * n_boards
        self.dead_end = [False] * n_boards
        self.is_success = [False] * n_boards
        # Settings, per board
        self.max_steps = [1] * n_boards
        self.success_reward = [1.0] * n_boards
        self.step_penalty = [0.0] * n_boards
        self.constituent_bonus = [0.0] * n_boards
        self.oracle_mask = [False] * n_boards
        self.analyses: list[SentenceAnalysis | None] = [None] * n_boards
        self.derivations: list[Derivation | None] = [None] * n_boards
        self.targets: list[Target] = [ANY_PARSE] * n_boards
        self._n_cells = [0] * n_boards  # cells of each board's sentence rows
        self._useful: list[Sequence[int]] = [()] * n_boards  # sorted cells of winning trees (a memoryview)

    # Memoryviews cannot be pickled: they travel as nothing and are made again from the analyses.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_useful": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._useful = [() if a is None else a.useful_cells.data for a in self.analyses]

    def reset_board(self, board: int, analysis: SentenceAnalysis, text_columns: list[int], target: Target = ANY_PARSE) -> None:
        """
        Start ``board`` on a sentence: ``T`` one-hot of its tokens, ``H`` empty.

        :param board: the board
        :param analysis: the sentence's analysis
        :param text_columns: the text-matrix column of each token
        :param target: what wins
        """
        n = len(analysis.tokens)
        self.text[board] = 0
        self.text[board, np.arange(n), text_columns] = 1
        self.history[board] = 0
        if self.derived is not None:
            self.derived[board] = 0
        mask = self.mask[board]
        mask[:] = False
        if self.oracle_mask[board]:
            mask[analysis.chart_cells] = True
        else:
            mask[: analysis.n_cells] = True
        self.n_actions[board] = 0
        self.matched[board] = False
        self.dead_end[board] = False
        self.is_success[board] = False
        self.analyses[board] = analysis
        self.derivations[board] = Derivation(analysis)
        self.targets[board] = target
        self._n_cells[board] = analysis.n_cells
        self._useful[board] = analysis.useful_cells.data

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Play ``actions[i]`` on board ``i``: set that cell of ``H``.

        :param actions: one cell per board, ``m * n_columns + n``
        :return: rewards (float64), terminated (success) and truncated (``max_steps`` reached without success)
        """
        outcomes = [self.step_board(board, cell) for board, cell in enumerate(actions.tolist())]
        rewards, terminated, truncated = zip(*outcomes, strict=True)
        return np.array(rewards), np.array(terminated), np.array(truncated)

    def step_board(self, board: int, cell: int) -> tuple[float, bool, bool]:
        """
        Play ``cell`` on ``board``: the rules of a step, for one board.

        :param board: the board
        :param cell: ``m * n_columns + n``
        :return: reward, terminated (success), truncated (``max_steps`` reached without success)
        """
        if not 0 <= cell < self.mask.shape[1]:
            raise ValueError(f"action {cell} is outside the action space Discrete({self.mask.shape[1]})")
        if self.is_success[board]:
            raise RuntimeError("the episode is over (success): reset the env")
        n_actions = self.n_actions[board] = self.n_actions[board] + 1
        reward = -self.step_penalty[board]
        matched = useful = won = False
        history = self.history[board].reshape(-1)  # a view: setting a cell is one store
        # A padding row or a cell already set is a wasted attempt: nothing changes.
        if cell < self._n_cells[board] and not history[cell]:
            history[cell] = 1
            self.mask[board, cell] = False
            derivation, target = self.derivations[board], self.targets[board]
            matched = derivation.set_cell(cell)  # type: ignore[union-attr]
            if matched and self.derived is not None:  # only a cell of the chart can derive something new
                mark_constituents(self.derived[board], derivation.derived_spans())  # type: ignore[union-attr]
            if target.tree is None:
                won = derivation.is_won  # type: ignore[union-attr]
                useful = matched and _contains(self._useful[board], cell)
            else:
                useful = cell in target.cells
                won = useful and target.cells <= derivation.cells  # type: ignore[union-attr]
            if useful:
                reward += self.constituent_bonus[board]
            if won:
                reward += self.success_reward[board]
                self.is_success[board] = True
        self.matched[board] = matched
        self.dead_end[board] = matched and not useful
        return reward, won, not won and n_actions >= self.max_steps[board]

    # --- what a board knows -----------------------------------------------------------------
    def observation(self, boards: int | slice, derived: bool = False) -> dict[str, np.ndarray]:
        """
        The observation of a board, or of several (a slice), as copies: ``text``, ``history`` and, with ``derived``,
        the constituents the history derives.

        :param boards: a board, or a slice of boards
        :param derived: add the ``derived`` key (boards made with ``n_labels``)
        """
        observation = {"text": self.text[boards].copy(), "history": self.history[boards].copy()}
        if derived:
            if self.derived is None:
                raise ValueError("these boards keep no derived constituents: make them with n_labels")
            observation["derived"] = self.derived[boards].copy()
        return observation

    def cells(self, board: int) -> set[int]:
        """The cells set on ``board``."""
        return set(np.flatnonzero(self.history[board]).tolist())

    def min_actions(self, board: int) -> int:
        """The fewest actions that win ``board``'s sentence from an empty history."""
        target = self.targets[board]
        return self.analyses[board].min_actions if target.tree is None else len(target.cells)  # type: ignore[union-attr]

    def expert_action(self, board: int) -> int:
        """The next action of a shortest winning completion of ``board``'s history."""
        target, cells = self.targets[board], self.cells(board)
        if target.tree is None:
            return self.analyses[board].expert_action(cells)  # type: ignore[union-attr]
        missing = target.cells - cells
        if not missing:
            raise ValueError("the history already holds the target tree: the episode is won, reset the env")
        return min(missing)

    def parse(self, board: int) -> str | None:
        """The tree that won ``board`` (bracketed), ``None`` before it is won."""
        if not self.is_success[board]:
            return None
        target = self.targets[board]
        return target.tree if target.tree is not None else self.derivations[board].parse()  # type: ignore[union-attr]

    def useful_cells(self, board: int) -> np.ndarray:
        """The cells of ``board``'s sentence that belong to a winning tree, sorted."""
        target = self.targets[board]
        if target.tree is None:
            return self.analyses[board].useful_cells  # type: ignore[union-attr]
        return np.array(sorted(target.cells), dtype=np.int64)


def _contains(sorted_values: Sequence[int], value: int) -> bool:
    """Whether ``value`` is in ``sorted_values``."""
    index = bisect_left(sorted_values, value)
    return index < len(sorted_values) and sorted_values[index] == value
