"""
The rules of the parsing game (seed 002), once, for N boards at a time.

:class:`ParseBoards` holds the state of N games: text and history matrices, action masks, action counts, and for each
board the sentence's analysis and a :class:`~sb3_parsing.oracle.Derivation` (what the history derives). ``reset_board``
starts a board on a sentence; ``step`` plays one action on every board. :class:`~sb3_parsing.env.LinguisticParseEnv`
plays one board (N = 1) and :class:`~sb3_parsing.vec_env.LinguisticParseVecEnv` N boards, so both follow the same
rules by construction, as gymnax and Jumanji get a batched env from one step function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sb3_parsing.oracle import Derivation, SentenceAnalysis

__all__ = ["TARGETS", "ParseBoards", "Target"]

TARGETS = ("any", "tree")


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

    Per-board settings are arrays, so each board can have its own (``VecEnv.set_attr`` with indices).

    :param n_boards: number of boards N
    :param obs_len: rows of the matrices
    :param n_columns: columns of the history matrix
    :param n_symbols: columns of the text matrix (the alphabet)
    """

    def __init__(self, n_boards: int, obs_len: int, n_columns: int, n_symbols: int) -> None:
        self.n_boards = n_boards
        self.n_columns = n_columns
        self.text = np.zeros((n_boards, obs_len, n_symbols), dtype=np.uint8)
        self.history = np.zeros((n_boards, obs_len, n_columns), dtype=np.uint8)
        self.mask = np.zeros((n_boards, obs_len * n_columns), dtype=bool)
        self.n_actions = np.zeros(n_boards, dtype=np.int64)
        self.matched = np.zeros(n_boards, dtype=bool)
        self.is_success = np.zeros(n_boards, dtype=bool)
        # Settings, per board
        self.max_steps = np.ones(n_boards, dtype=np.int64)
        self.success_reward = np.ones(n_boards)
        self.step_penalty = np.zeros(n_boards)
        self.constituent_bonus = np.zeros(n_boards)
        self.oracle_mask = np.zeros(n_boards, dtype=bool)
        self.analyses: list[SentenceAnalysis | None] = [None] * n_boards
        self.derivations: list[Derivation | None] = [None] * n_boards
        self.targets: list[Target] = [ANY_PARSE] * n_boards

    @property
    def n_actions_per_board(self) -> int:
        """Size of the action space, ``obs_len * n_columns``."""
        return self.mask.shape[1]

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
        mask = self.mask[board]
        mask[:] = False
        if self.oracle_mask[board]:
            mask[analysis.chart_cells] = True
        else:
            mask[: analysis.n_cells] = True
        self.n_actions[board] = 0
        self.matched[board] = False
        self.is_success[board] = False
        self.analyses[board] = analysis
        self.derivations[board] = Derivation(analysis)
        self.targets[board] = target

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Play ``actions[i]`` on board ``i``: set that cell of ``H``.

        :param actions: one cell per board, ``m * n_columns + n``
        :return: rewards (float64), terminated (success) and truncated (``max_steps`` reached without success)
        """
        n_cells = self.n_actions_per_board
        bad = (actions < 0) | (actions >= n_cells)
        if bad.any():
            raise ValueError(f"actions {actions[bad].tolist()} are outside the action space Discrete({n_cells})")
        if self.is_success.any():
            raise RuntimeError("an episode is over (success): reset its board before stepping it again")
        self.n_actions += 1
        rewards = -self.step_penalty
        flat_history = self.history.reshape(self.n_boards, -1)  # a view: setting a cell is one store
        for board, cell in enumerate(actions.tolist()):
            self.matched[board] = False
            if cell >= self.analyses[board].n_cells or flat_history[board, cell]:  # type: ignore[union-attr]
                continue  # a padding row or a cell already set: a wasted attempt
            flat_history[board, cell] = 1
            self.mask[board, cell] = False
            won, useful = self._set_cell(board, cell)
            rewards[board] += self.constituent_bonus[board] * useful + self.success_reward[board] * won
            self.is_success[board] = won
        truncated = ~self.is_success & (self.n_actions >= self.max_steps)
        return rewards, self.is_success.copy(), truncated

    def _set_cell(self, board: int, cell: int) -> tuple[bool, bool]:
        """Record a new cell of ``board``: (the board is won, the cell belongs to a winning tree)."""
        derivation, target = self.derivations[board], self.targets[board]
        self.matched[board] = derivation.set_cell(cell)  # type: ignore[union-attr]
        if target.tree is None:
            return derivation.is_won, _contains(derivation.analysis.useful_cells, cell)  # type: ignore[union-attr]
        return target.cells <= derivation.cells, cell in target.cells  # type: ignore[union-attr]

    # --- what a board knows -----------------------------------------------------------------
    def cells(self, board: int) -> set[int]:
        """The cells set on ``board``."""
        return self.derivations[board].cells  # type: ignore[union-attr]

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


def _contains(sorted_array: np.ndarray, value: int) -> bool:
    """Whether ``value`` is in ``sorted_array``."""
    index = int(sorted_array.searchsorted(value))
    return index < len(sorted_array) and int(sorted_array[index]) == value
