"""
What a grammar says about a cell ``(row m, column n)`` before any parsing: the *left corners* of column ``n`` (the first
symbols of its rule, or of its label's rules with ``columns="labels"``) can only start at row ``m`` if row ``m``'s token
is one of them, or if a constituent of one of them starts at row ``m``. Both are read off the observation with fixed
sparse matrices built from the RuleSet: the text row, and the ``derived`` row of an env with ``observe_derived=True``
(the constituents that start there), else the history row (the labels of the cells attempted there, whether or not
they took). With the ``derived`` rows a third feature says whether the column's *whole* pattern (one of its rules')
follows from row ``m`` on, through the tokens and the derived constituents: whether setting the cell would derive a
constituent now.

On a grammar with thousands of rules most cells are neither, and an agent exploring at random almost never sets a
cell of the chart: on ``LinguisticParse-v1`` a sentence starts with a median of 20,704 allowed cells, 46 of them in
the chart, and the ``word`` feature marks 11 (the tokens' own lexical rules). With these features a policy can learn
once that a rule whose first word is the token, or whose first label was just attempted, is worth trying, instead of
once per word and rule. :class:`~sb3_parsing.policies.FactoredMaskableTokenPolicy` adds them to its column
logits with ``grammar=``. They say what *may* start or be built at a cell from what the observation shows (what a
chart parser would compute from the text and the history), never which cells lead to a parse: that stays the agent's
to find (``mask_mode="oracle"`` is the env's option that gives the chart away).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch as th
from torch import nn

from sb3_parsing.grammar import RuleSet, Symbol
from sb3_parsing.sparse import expand_ranges, matching_pairs, observed_entries, set_entries

__all__ = ["LEFT_CORNER_KEYS", "N_FEATURES", "FittingCells", "LeftCornerFeatures", "SentenceReading"]

#: The observation keys that the features read, row by row (``derived`` only where the env observes it)
LEFT_CORNER_KEYS = ("text", "history", "derived")

COLUMN_MODES = ("rules", "labels")

#: Features per cell: ``word``, ``corner`` and ``fits`` (0 without the ``derived`` rows)
N_FEATURES = 3


class FittingCells(NamedTuple):
    """
    Cells whose whole pattern fits (:meth:`LeftCornerFeatures.fits`), one entry per constituent a cell would derive
    (a cell can derive several, over constituents of different lengths).

    :param rows: the row of each cell
    :param columns: its column
    :param ends: the position just past the constituent it would derive
    """

    rows: th.Tensor
    columns: th.Tensor
    ends: th.Tensor

    def as_matrix(self, n_rows: int, n_columns: int) -> th.Tensor:
        """
        :param n_rows: rows the cells' ``rows`` index
        :param n_columns: columns of a row
        :return: ``(n_rows, n_columns)``, 1 at each cell, else 0
        """
        matrix = th.zeros(n_rows, n_columns, device=self.rows.device)
        matrix[self.rows, self.columns] = 1.0
        return matrix


class SentenceReading(NamedTuple):
    """
    What ``fits`` reads off a batch of observations, read once per batch: the tokens, the derived constituents sorted
    by (batch item, start), and the cells of every real row whose pattern fits.

    :param tokens: the alphabet index of each token ``(batch, obs_len)``, -1 past the sentence
    :param span_keys: ``item * obs_len + start`` of each constituent, sorted
    :param span_symbols: the alphabet index of each constituent's label
    :param span_lengths: the tokens each constituent covers
    :param fitting: the fitting cells of every real row, ``rows`` indexing the flattened ``(batch * obs_len)`` rows,
        sorted by row
    """

    tokens: th.Tensor
    span_keys: th.Tensor
    span_symbols: th.Tensor
    span_lengths: th.Tensor
    fitting: FittingCells


class LeftCornerFeatures(nn.Module):
    """
    Three features per cell: whether a left corner of the column is the row's token (``word``), whether it is the
    label of a constituent derived from the row (``corner``; without the ``derived`` rows, of a cell set in the row),
    and whether a whole pattern of the column follows from the row through the tokens and the derived constituents
    (``fits``; only with the ``derived`` rows).

    :param ruleset: the env's grammar
    :param columns: the env's column mode, ``"rules"`` or ``"labels"``
    """

    columns_started: th.Tensor
    symbol_of_label: th.Tensor
    column_label: th.Tensor
    prefix_keys: th.Tensor
    prefix_nodes: th.Tensor
    node_column_offsets: th.Tensor
    node_columns: th.Tensor

    def __init__(self, ruleset: RuleSet, columns: str = "rules") -> None:
        super().__init__()
        if columns not in COLUMN_MODES:
            raise ValueError(f"columns must be one of {COLUMN_MODES}, got {columns!r}")
        label_index = {label: i for i, label in enumerate(ruleset.labels)}
        if columns == "rules":
            left_corners = [{rule.pattern[0]} for rule in ruleset.rules]
            produced = [rule.label for rule in ruleset.rules]
            rule_columns = list(range(len(ruleset.rules)))
        else:
            left_corners = [{rule.pattern[0] for rule in ruleset.rules if rule.label == label} for label in ruleset.labels]
            produced = list(ruleset.labels)
            rule_columns = [label_index[rule.label] for rule in ruleset.rules]
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
        label_symbols = [symbol_index[Symbol(label, True)] for label in ruleset.labels]
        self.register_buffer("columns_started", started, persistent=False)
        self.register_buffer("symbol_of_label", th.tensor(label_symbols), persistent=False)
        self.register_buffer("column_label", th.tensor([label_index[label] for label in produced]), persistent=False)
        # (columns x alphabet) and (columns x columns), 0/1; rebuilt from the grammar, never saved with the weights
        self.register_buffer("word_corners", _sparse(word_pairs, (self.n_columns, self.alphabet_size)), persistent=False)
        self.register_buffer("label_corners", _sparse(corner_pairs, (self.n_columns, self.n_columns)), persistent=False)
        # (columns x labels): the labels that start each column
        self.register_buffer("derived_corners", _sparse(derived_pairs, (self.n_columns, self.n_labels)), persistent=False)
        # The rules' patterns as a prefix tree, for fits: rules that share a prefix are followed once
        patterns = [[symbol_index[symbol] for symbol in rule.pattern] for rule in ruleset.rules]
        keys, nodes, column_offsets, node_columns = _prefix_tree(patterns, rule_columns, self.alphabet_size)
        self.register_buffer("prefix_keys", keys, persistent=False)
        self.register_buffer("prefix_nodes", nodes, persistent=False)
        self.register_buffer("node_column_offsets", column_offsets, persistent=False)
        self.register_buffer("node_columns", node_columns, persistent=False)

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

    def read(self, observations: Mapping[str, th.Tensor]) -> SentenceReading:
        """
        :param observations: a batch with the ``text`` matrices ``(batch, obs_len, alphabet_size)`` and the ``derived``
            key ``(batch, obs_len, n_labels * obs_len)`` (:func:`~sb3_parsing.sparse.observed_entries` finds their
            entries)
        :return: what :meth:`fits` reads of them, with the fitting cells of every real row (the rules' prefix tree followed
            from each, :meth:`fitting_cells`)
        """
        batch, obs_len = observations["text"].shape[:2]
        word_items, word_rows, words = observed_entries(observations, "text")  # one word per real row
        tokens = th.full((batch, obs_len), -1, dtype=th.long, device=observations["text"].device)
        tokens[word_items, word_rows] = words
        items, starts, labels, lengths = observed_entries(observations, "derived", (batch, obs_len, self.n_labels, obs_len))
        spans = (items * obs_len + starts, self.symbol_of_label[labels], lengths + 1)
        real_rows = tokens.reshape(-1).ge(0).nonzero().squeeze(-1)
        found = self._walk(tokens, *spans, real_rows // obs_len, real_rows % obs_len)
        by_row = th.argsort(found.rows, stable=True)  # each row's cells stay in the order found
        fitting = FittingCells(real_rows[found.rows[by_row]], found.columns[by_row], found.ends[by_row])
        return SentenceReading(tokens, *spans, fitting)

    def fits(self, reading: SentenceReading, samples: th.Tensor, rows: th.Tensor) -> th.Tensor:
        """
        The ``fits`` feature of the cells of some rows: whether a rule of the column matches, from the row on, tokens
        and derived constituents end to end (setting the cell would derive a constituent now).

        :param reading: the observations, :meth:`read`
        :param samples: the batch item of each row to score ``(n,)``
        :param rows: the rows to score ``(n,)``
        :return: ``(n, n_columns)``, 0 or 1
        """
        return self.fitting_cells(reading, samples, rows).as_matrix(rows.shape[0], self.n_columns)

    def unset_fitting_cells(self, reading: SentenceReading, history: th.Tensor) -> FittingCells:
        """
        The unset cells whose pattern fits (:meth:`fits`), in every real row.

        :param reading: :meth:`read` of the observations
        :param history: their history matrices ``(batch, obs_len, n_columns)``, or those rows flattened
        :return: the cells, ``rows`` indexing the flattened ``(batch * obs_len)`` rows
        """
        rows, columns, ends = reading.fitting
        unset = history.reshape(-1, self.n_columns)[rows, columns].eq(0)
        return FittingCells(rows[unset], columns[unset], ends[unset])

    def marks_unset_cells(
        self,
        text: th.Tensor,
        history: th.Tensor,
        derived: th.Tensor | None = None,
        reading: SentenceReading | None = None,
        fitting: FittingCells | None = None,
    ) -> th.Tensor:
        """
        Whether each row has an unset cell that each feature marks: the features over the row's unset cells, maxed
        over columns, read off the few columns each symbol starts instead of every column.

        :param text: text matrices ``(..., obs_len, alphabet_size)``
        :param history: the history matrices ``(..., obs_len, n_columns)``
        :param derived: the ``derived`` key ``(..., obs_len, n_labels * obs_len)``, if the env observes it
        :param reading: :meth:`read` of the same observations (with ``derived``), if already read
        :param fitting: :meth:`unset_fitting_cells` of the same observations, if already found
        :return: ``(..., obs_len, 3)``, 0 or 1 (``fits`` is 0 without ``derived``)
        """
        leading, obs_len = text.shape[:-1], text.shape[-2]
        flat_history = history.reshape(-1, self.n_columns)
        fits = th.zeros(flat_history.shape[0], device=history.device)
        if derived is None:  # the tokens, and the labels of the cells set in the row
            flat_text = text.reshape(-1, self.alphabet_size)
            word_rows, words = set_entries(flat_text)  # one word per real row
            corner_rows, columns = set_entries(flat_history)
            corner_symbols = self.symbol_of_label[self.column_label[columns]]
        else:  # the tokens, the labels derived from the row, and the cells whose pattern follows from it
            if reading is None:
                texts = text.reshape(-1, obs_len, self.alphabet_size)
                reading = self.read({"text": texts, "derived": derived.reshape(-1, *derived.shape[-2:])})
            tokens = reading.tokens.reshape(-1)
            word_rows = tokens.ge(0).nonzero().squeeze(-1)
            words = tokens[word_rows]
            corner_rows, corner_symbols = reading.span_keys, reading.span_symbols
            if fitting is None:
                fitting = self.unset_fitting_cells(reading, flat_history)
            fits[fitting.rows] = 1.0
        word = self._starts_unset(flat_history, word_rows, words)
        corner = self._starts_unset(flat_history, corner_rows, corner_symbols)
        return th.stack([word, corner, fits], dim=-1).view(*leading, N_FEATURES)

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

    def fitting_cells(self, reading: SentenceReading, samples: th.Tensor, rows: th.Tensor) -> FittingCells:
        """
        The cells of some rows whose pattern fits (:meth:`fits`), with where the constituent each would derive ends: the
        reading's cells of those rows.

        :param reading: the observations, :meth:`read`
        :param samples: the batch item of each row to score ``(n,)``
        :param rows: the rows to score ``(n,)``
        :return: the cells, their ``rows`` indexing into ``rows``
        """
        scored, cells = matching_pairs(reading.fitting.rows, samples * reading.tokens.shape[1] + rows)
        return FittingCells(scored, reading.fitting.columns[cells], reading.fitting.ends[cells])

    def _walk(
        self,
        tokens: th.Tensor,
        span_keys: th.Tensor,
        span_symbols: th.Tensor,
        span_lengths: th.Tensor,
        samples: th.Tensor,
        rows: th.Tensor,
    ) -> FittingCells:
        """
        The fitting cells of some rows: the prefix tree of the rules' patterns followed from each, one symbol at a time,
        over the tokens and the derived constituents (a state is (scored row, tree node, next position)).

        :param tokens: :class:`SentenceReading`'s
        :param span_keys: :class:`SentenceReading`'s
        :param span_symbols: :class:`SentenceReading`'s
        :param span_lengths: :class:`SentenceReading`'s
        :param samples: the batch item of each row to score ``(n,)``
        :param rows: the rows to score ``(n,)``
        :return: the cells, their ``rows`` indexing into ``rows``
        """
        obs_len = tokens.shape[1]
        state_rows = th.arange(rows.shape[0], device=rows.device)
        state_nodes = th.zeros_like(state_rows)  # the root
        state_positions = rows.clone()
        found_rows, found_columns, found_ends = [], [], []
        while state_rows.numel():
            at = samples[state_rows] * obs_len + state_positions.clamp(max=obs_len - 1)
            inside = state_positions < obs_len
            # Moves over the next token (length 1), then over each constituent derived from the next position
            token_states = (inside & tokens.reshape(-1)[at].ge(0)).nonzero().squeeze(-1)
            span_states, span_index = matching_pairs(span_keys, at.masked_fill(~inside, -1))
            move_states = th.cat([token_states, span_states])
            move_symbols = th.cat([tokens.reshape(-1)[at[token_states]], span_symbols[span_index]])
            move_lengths = th.cat([th.ones_like(token_states), span_lengths[span_index]])
            edges = state_nodes[move_states] * self.alphabet_size + move_symbols
            child_moves, children = _lookup(self.prefix_keys, self.prefix_nodes, edges)
            state_rows = state_rows[move_states[child_moves]]
            state_nodes = children
            state_positions = state_positions[move_states[child_moves]] + move_lengths[child_moves]
            key = (state_rows * (self.prefix_nodes.numel() + 1) + state_nodes) * (obs_len + 1) + state_positions
            unique = _first_of_each(key)
            state_rows, state_nodes, state_positions = state_rows[unique], state_nodes[unique], state_positions[unique]
            ending_states, column_index = _ranges(self.node_column_offsets, state_nodes)
            found_rows.append(state_rows[ending_states])
            found_columns.append(self.node_columns[column_index])
            found_ends.append(state_positions[ending_states])
        found = (found_rows, found_columns, found_ends)
        return FittingCells(*(th.cat(parts) if parts else rows.new_zeros(0) for parts in found))


def _prefix_tree(
    patterns: list[list[int]], rule_columns: list[int], alphabet_size: int
) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """
    The patterns as a prefix tree, node 0 the root.

    :return: the sorted edge keys ``node * alphabet_size + symbol`` and the child of each; per node, the offsets into
        and the columns of the rules whose pattern ends there (columns sorted by node, without repeats)
    """
    children: dict[tuple[int, int], int] = {}
    ending: dict[int, set[int]] = {}
    for pattern, column in zip(patterns, rule_columns, strict=True):
        node = 0
        for symbol in pattern:
            node = children.setdefault((node, symbol), len(children) + 1)
        ending.setdefault(node, set()).add(column)
    edges = sorted((node * alphabet_size + symbol, child) for (node, symbol), child in children.items())
    n_nodes = len(children) + 1
    counts = th.tensor([len(ending.get(node, ())) for node in range(n_nodes)])
    offsets = th.cat([th.zeros(1, dtype=th.long), counts.cumsum(0)])
    columns = th.tensor([column for node in range(n_nodes) for column in sorted(ending.get(node, ()))], dtype=th.long)
    return th.tensor([key for key, _ in edges]), th.tensor([child for _, child in edges]), offsets, columns


def _ranges(offsets: th.Tensor, items: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Every (index into ``items``, position) pair with the position in ``offsets[item]:offsets[item + 1]``."""
    return expand_ranges(offsets[items], offsets[items + 1] - offsets[items])


def _lookup(sorted_keys: th.Tensor, values: th.Tensor, queries: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """The queries found among ``sorted_keys`` (not empty; their indices) and the value of each."""
    found = th.searchsorted(sorted_keys, queries).clamp(max=sorted_keys.numel() - 1)
    hit = (sorted_keys[found] == queries).nonzero().squeeze(-1)
    return hit, values[found[hit]]


def _first_of_each(keys: th.Tensor) -> th.Tensor:
    """The index of one occurrence of each distinct key."""
    unique, inverse = th.unique(keys, return_inverse=True)
    return th.zeros_like(unique).scatter_(0, inverse, th.arange(keys.numel(), device=keys.device))


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
