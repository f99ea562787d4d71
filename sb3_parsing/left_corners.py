"""
What a grammar says about a cell ``(row m, column n)`` before any parsing: the *left corners* of column ``n`` (the first
symbols of its rule, or of its label's rules with ``columns="labels"``) can only start at row ``m`` if row ``m``'s token
is one of them, or if a cell already set in row ``m`` makes one of them (its rule's label). Both are read off the
observation (the text row and the history row) with two fixed sparse matrices built from the RuleSet.

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

__all__ = ["LeftCornerFeatures"]

COLUMN_MODES = ("rules", "labels")


class LeftCornerFeatures(nn.Module):
    """
    Two features per cell: whether a left corner of the column is the row's token (``word``), and whether it is the
    label of a cell already set in the row (``corner``).

    :param ruleset: the env's grammar
    :param columns: the env's column mode, ``"rules"`` or ``"labels"``
    """

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
        self.n_columns = len(produced)
        self.alphabet_size = len(ruleset.alphabet)
        # (columns x alphabet) and (columns x columns), 0/1; rebuilt from the grammar, never saved with the weights
        self.register_buffer("word_corners", _sparse(word_pairs, (self.n_columns, self.alphabet_size)), persistent=False)
        self.register_buffer("label_corners", _sparse(corner_pairs, (self.n_columns, self.n_columns)), persistent=False)

    def forward(self, text: th.Tensor, history: th.Tensor) -> th.Tensor:
        """
        :param text: text rows ``(..., alphabet_size)``
        :param history: the same rows of the history ``(..., n_columns)``
        :return: ``(..., 2, n_columns)``: the ``word`` and ``corner`` features of every cell of those rows, 0 or 1
        """
        leading = text.shape[:-1]
        text, history = text.reshape(-1, self.alphabet_size).float(), history.reshape(-1, self.n_columns).float()
        word = th.sparse.mm(self.word_corners, text.T).T
        corner = th.sparse.mm(self.label_corners, history.T).T.clamp(max=1.0)
        return th.stack([word, corner], dim=-2).view(*leading, 2, self.n_columns)


def _sparse(pairs: list[tuple[int, int]], shape: tuple[int, int]) -> th.Tensor:
    """A 0/1 sparse COO matrix with ones at ``pairs`` (row, column)."""
    indices = th.tensor(pairs, dtype=th.long).T if pairs else th.zeros((2, 0), dtype=th.long)
    return th.sparse_coo_tensor(indices, th.ones(indices.shape[1]), shape, check_invariants=True).coalesce()
