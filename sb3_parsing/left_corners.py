"""
What a grammar says about a cell ``(row m, column n)`` before any parsing: the *left corners* of column ``n`` (the first
symbols of its rule, or of its label's rules with ``columns="labels"``) can only start at row ``m`` if row ``m``'s token
is one of them, or if a constituent of one of them starts at row ``m``. Both are read off the observation with fixed
sparse matrices built from the RuleSet: the text row, and the ``derived`` row of an env with ``observe_derived=True``
(the constituents that start there), else the history row (the labels of the cells attempted there, whether or not
they took).

On a grammar with thousands of rules most cells are neither, and an agent exploring at random almost never sets a
cell of the chart: on ``LinguisticParse-v1`` a sentence starts with a median of 20,704 allowed cells, 46 of them in
the chart, and the ``word`` feature marks 11 (the tokens' own lexical rules). With these features a policy can learn
once that a rule whose first word is the token, or whose first label was just attempted, is worth trying, instead of
once per word and rule. :class:`~sb3_parsing.policies.FactoredMaskableTokenPolicy` adds them to its column
logits with ``grammar=``. They say what *may* start at a cell, never what the chart holds: that stays the agent's to
find (``mask_mode="oracle"`` is the env's option that gives the chart away).
"""

from __future__ import annotations

import torch as th
from torch import nn

from sb3_parsing.grammar import RuleSet, Symbol

__all__ = ["LEFT_CORNER_KEYS", "LeftCornerFeatures"]

#: The observation keys that the features read, row by row (``derived`` only where the env observes it)
LEFT_CORNER_KEYS = ("text", "history", "derived")

COLUMN_MODES = ("rules", "labels")


class LeftCornerFeatures(nn.Module):
    """
    Two features per cell: whether a left corner of the column is the row's token (``word``), and whether it is the
    label of a constituent derived from the row (``corner``; without the ``derived`` rows, of a cell set in the row).

    :param ruleset: the env's grammar
    :param columns: the env's column mode, ``"rules"`` or ``"labels"``
    """

    columns_started: th.Tensor
    symbol_of_label: th.Tensor
    column_label: th.Tensor

    def __init__(self, ruleset: RuleSet, columns: str = "rules") -> None:
        super().__init__()
        if columns not in COLUMN_MODES:
            raise ValueError(f"columns must be one of {COLUMN_MODES}, got {columns!r}")
        if columns == "rules":
            left_corners = [{rule.pattern[0]} for rule in ruleset.rules]
            produced = [rule.label for rule in ruleset.rules]
        else:
            left_corners = [{rule.pattern[0] for rule in ruleset.rules if rule.label == label} for label in ruleset.labels]
            produced = list(ruleset.labels)
        symbol_index = {symbol: i for i, symbol in enumerate(ruleset.alphabet)}
        columns_starting_with: dict[Symbol, list[int]] = {}
        for column, corners in enumerate(left_corners):
            for symbol in corners:
                columns_starting_with.setdefault(symbol, []).append(column)
        word_pairs = [
            (column, symbol_index[symbol])
            for symbol, starting in columns_starting_with.items()
            if not symbol.is_label
            for column in starting
        ]
        corner_pairs = [
            (column, made_by)
            for made_by, label in enumerate(produced)
            for column in columns_starting_with.get(Symbol(label, True), [])
        ]
        derived_pairs = [
            (column, label_index)
            for label_index, label in enumerate(ruleset.labels)
            for column in columns_starting_with.get(Symbol(label, True), [])
        ]
        self.n_columns = len(produced)
        self.n_labels = len(ruleset.labels)
        self.alphabet_size = len(ruleset.alphabet)
        # The columns each symbol starts (a row per alphabet symbol, padded with -1), each label's symbol and each
        # column's label: what marks_unset_cells reads instead of every column
        started = _padded([columns_starting_with.get(symbol, []) for symbol in ruleset.alphabet])
        label_index = {label: i for i, label in enumerate(ruleset.labels)}
        label_symbols = [symbol_index[Symbol(label, True)] for label in ruleset.labels]
        self.register_buffer("columns_started", started, persistent=False)
        self.register_buffer("symbol_of_label", th.tensor(label_symbols), persistent=False)
        self.register_buffer("column_label", th.tensor([label_index[label] for label in produced]), persistent=False)
        # (columns x alphabet) and (columns x columns), 0/1; rebuilt from the grammar, never saved with the weights
        self.register_buffer("word_corners", _sparse(word_pairs, (self.n_columns, self.alphabet_size)), persistent=False)
        self.register_buffer("label_corners", _sparse(corner_pairs, (self.n_columns, self.n_columns)), persistent=False)
        # (columns x labels): the labels that start each column
        self.register_buffer("derived_corners", _sparse(derived_pairs, (self.n_columns, self.n_labels)), persistent=False)

    def forward(self, text: th.Tensor, history: th.Tensor, derived: th.Tensor | None = None) -> th.Tensor:
        """
        :param text: text rows ``(..., alphabet_size)``
        :param history: the same rows of the history ``(..., n_columns)``
        :param derived: the same rows of the ``derived`` key ``(..., n_labels * obs_len)``, if the env observes it
        :return: ``(..., 2, n_columns)``: the ``word`` and ``corner`` features of every cell of those rows, 0 or 1
        """
        leading = text.shape[:-1]
        text = text.reshape(-1, self.alphabet_size).float()
        word = th.sparse.mm(self.word_corners, text.T).T
        if derived is None:
            corner = th.sparse.mm(self.label_corners, history.reshape(-1, self.n_columns).float().T).T
        else:
            starts = derived.reshape(text.shape[0], self.n_labels, -1).float().amax(dim=-1)  # labels starting there
            corner = th.sparse.mm(self.derived_corners, starts.T).T
        return th.stack([word, corner.clamp(max=1.0)], dim=-2).view(*leading, 2, self.n_columns)

    def marks_unset_cells(self, text: th.Tensor, history: th.Tensor, derived: th.Tensor | None = None) -> th.Tensor:
        """
        Whether each row has an unset cell that each feature marks: :meth:`forward` over the row's unset cells, maxed
        over columns, read off the few columns each symbol starts instead of every column.

        :param text: text rows ``(..., alphabet_size)``
        :param history: the same rows of the history ``(..., n_columns)``
        :param derived: the same rows of the ``derived`` key, if the env observes it
        :return: ``(..., 2)``, 0 or 1
        """
        leading = text.shape[:-1]
        text, history = text.reshape(-1, self.alphabet_size), history.reshape(-1, self.n_columns)
        word_rows = text.any(dim=-1).nonzero().squeeze(-1)
        word = self._starts_unset(history, word_rows, text[word_rows].argmax(dim=-1))
        if derived is None:  # the labels of the cells set in the row
            corner_rows, columns = history.nonzero().unbind(dim=-1)
            labels = self.column_label[columns]
        else:  # the labels derived from the row
            starts = derived.reshape(text.shape[0], self.n_labels, -1).amax(dim=-1)
            corner_rows, labels = starts.nonzero().unbind(dim=-1)
        corner = self._starts_unset(history, corner_rows, self.symbol_of_label[labels])
        return th.stack([word, corner], dim=-1).view(*leading, 2)

    def _starts_unset(self, history: th.Tensor, rows: th.Tensor, symbols: th.Tensor) -> th.Tensor:
        """
        :param history: history rows ``(n, n_columns)``
        :param rows: row indices, one per symbol
        :param symbols: alphabet indices
        :return: ``(n,)``: 1 where one of the symbols given for the row starts a column that is unset there, else 0
        """
        columns = self.columns_started[symbols]  # (k, most columns a symbol starts), -1 padding
        unset = history[rows.unsqueeze(-1), columns.clamp(min=0)].eq(0) & columns.ge(0)
        marks = th.zeros(history.shape[0], device=history.device)
        marks[rows[unset.any(dim=-1)]] = 1.0
        return marks


def _sparse(pairs: list[tuple[int, int]], shape: tuple[int, int]) -> th.Tensor:
    """A 0/1 sparse COO matrix with ones at ``pairs`` (row, column)."""
    indices = th.tensor(pairs, dtype=th.long).T if pairs else th.zeros((2, 0), dtype=th.long)
    return th.sparse_coo_tensor(indices, th.ones(indices.shape[1]), shape, check_invariants=True).coalesce()


def _padded(lists: list[list[int]]) -> th.Tensor:
    """The lists as the rows of a long tensor, padded with -1."""
    padded = th.full((len(lists), max(1, *(len(values) for values in lists))), -1, dtype=th.long)
    for row, values in enumerate(lists):
        padded[row, : len(values)] = th.tensor(values, dtype=th.long)
    return padded
