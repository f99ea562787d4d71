"""
The environment's deterministic parser: a packed chart per sentence, parse counts, ``min_actions``, the expert,
the Viterbi parse and the seed's top-down search.

The chart of a sentence is an AND-OR graph of *facts* and *clauses*. Facts:

- a **span** ``(start, end, label)``: some rule with that label matches ``[start, end)``;
- an **edge** ``(start, trie node, end)``: a prefix shared by one or more rule patterns (a node of the pattern trie)
  matches ``[start, end)``, so a long rule is never expanded into every way of splitting it.

Clauses, each concluding one fact from at most two requirements:

- an **item** ``(start, end, rule)`` concludes its span from its cell of the history matrix and its pattern's edge;
- a **link** concludes an edge from the edge of the prefix one symbol shorter (none for a pattern's first symbol)
  and the span of the prefix's last symbol (none for a terminal).

A span *holds* in a history (a set of cells) exactly when the history holds every cell of some tree of that span:
the episode is won when a root span holds. :class:`Derivation` keeps what holds up to date cell by cell (forward
chaining: a counter of unmet requirements per clause). Memory and time grow with the chart, never with the number
of parse trees.
"""

from __future__ import annotations

import gc
import hashlib
import math
import pickle
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from sb3_parsing.grammar import GrammarError, Rule, RuleSet
from sb3_parsing.trees import token_leaf, tree_label

__all__ = ["COLUMN_MODES", "MAX_SEARCH_STATES", "Derivation", "Oracle", "SentenceAnalysis", "shared_oracle"]

COLUMN_MODES = ("rules", "labels")
ColumnMode = Literal["rules", "labels"]

# A label constituent: (start, end, label index).
Span = tuple[int, int, int]
# No requirement: a pattern's first symbol has no shorter prefix, a terminal needs no span.
NONE = -1
# Most states of the exact min_actions / expert search per sentence; past it the result is reported as a bound.
MAX_SEARCH_STATES = 200_000


@dataclass(frozen=True, eq=False)
class SentenceAnalysis:
    """
    Everything the game needs to know about one sentence, computed once by :class:`Oracle`. Every array is read-only.

    Cells are numbered as actions are: ``cell = position * n_columns + column``. Facts are numbered spans first,
    then edges; clauses items first, then links. Items are grouped by span (in rule order), links by edge.

    :param tokens: the sentence
    :param n_columns: columns of the history matrix
    :param n_parses: number of complete parse trees (exact, however large; as NLTK's chart parser counts them)
    :param min_actions: the fewest cells that win
    :param min_actions_exact: False when the search passed ``MAX_SEARCH_STATES`` and ``min_actions`` is the size of
        the smallest tree it found (an upper bound)
    :param span_start: start of each span
    :param span_end: end of each span
    :param span_label: label index of each span
    :param span_items: ``span_items[s]:span_items[s + 1]`` are the items of span ``s``
    :param item_rule: rule index of each item
    :param item_cell: history cell of each item
    :param item_edge: the edge (fact) each item requires
    :param edge_links: ``edge_links[e]:edge_links[e + 1]`` are the links of edge ``n_spans + e``
    :param link_prefix: the edge (fact) of the shorter prefix each link requires, or ``NONE``
    :param link_span: the span each link requires, or ``NONE`` (a terminal)
    :param roots: the spans of goal labels over the whole sentence
    :param chart_cells: the distinct cells of the items, sorted
    :param cell_items: ``cell_items[cell_ptr[k]:cell_ptr[k + 1]]`` are the items of cell ``chart_cells[k]``
    :param cell_ptr: see ``cell_items``
    :param fact_clauses: ``fact_clauses[fact_ptr[f]:fact_ptr[f + 1]]`` are the clauses that require fact ``f``
    :param fact_ptr: see ``fact_clauses``
    :param clause_fact: the fact each clause concludes (items: their span; links: their edge)
    :param start_needs: unmet requirements of each clause in the empty history
    :param start_holds: the facts that hold in the empty history (edges over terminals only)
    :param useful_cells: the cells of the items of some complete parse tree, sorted
    :param oracle: the oracle that made it (grammar, columns)
    """

    tokens: tuple[str, ...]
    n_columns: int
    n_parses: int
    min_actions: int
    min_actions_exact: bool
    span_start: np.ndarray = field(repr=False)
    span_end: np.ndarray = field(repr=False)
    span_label: np.ndarray = field(repr=False)
    span_items: np.ndarray = field(repr=False)
    item_rule: np.ndarray = field(repr=False)
    item_cell: np.ndarray = field(repr=False)
    item_edge: np.ndarray = field(repr=False)
    edge_links: np.ndarray = field(repr=False)
    link_prefix: np.ndarray = field(repr=False)
    link_span: np.ndarray = field(repr=False)
    roots: np.ndarray = field(repr=False)
    chart_cells: np.ndarray = field(repr=False)
    cell_items: np.ndarray = field(repr=False)
    cell_ptr: np.ndarray = field(repr=False)
    fact_clauses: np.ndarray = field(repr=False)
    fact_ptr: np.ndarray = field(repr=False)
    clause_fact: np.ndarray = field(repr=False)
    start_needs: np.ndarray = field(repr=False)
    start_holds: np.ndarray = field(repr=False)
    useful_cells: np.ndarray = field(repr=False)
    oracle: Oracle = field(repr=False)

    @property
    def n_cells(self) -> int:
        """Cells of the sentence's rows, ``len(tokens) * n_columns``."""
        return len(self.tokens) * self.n_columns

    @property
    def n_spans(self) -> int:
        """Number of spans (label constituents) in the chart."""
        return len(self.span_start)

    @property
    def n_items(self) -> int:
        """Number of items (rule constituents) in the chart."""
        return len(self.item_rule)

    @property
    def nbytes(self) -> int:
        """Bytes held by the analysis' arrays."""
        return sum(array.nbytes for array in self.arrays().values())

    def arrays(self) -> dict[str, np.ndarray]:
        """The analysis' arrays by field name."""
        return {name: value for name, value in vars(self).items() if isinstance(value, np.ndarray)}

    def span(self, span: int) -> Span:
        """``(start, end, label)`` of span ``span``."""
        return int(self.span_start[span]), int(self.span_end[span]), int(self.span_label[span])

    # --- what a history derives -------------------------------------------------------------
    def derivation(self, history: Iterable[int] = ()) -> Derivation:
        """
        A :class:`Derivation` of this sentence with the cells of ``history`` set.

        :param history: the cells already set
        """
        derivation = Derivation(self)
        for cell in history:
            derivation.set_cell(int(cell))
        return derivation

    def derived_constituents(self, history: Iterable[int]) -> list[Span]:
        """
        Label constituents whose whole derivation is in ``history``: ``(start, end, label)``, in chart order.

        :param history: the cells already set
        """
        return self.derivation(history).derived_spans()

    def is_won(self, history: Iterable[int]) -> bool:
        """
        Whether ``history`` holds every cell of some complete parse tree.

        :param history: the cells already set
        """
        return self.derivation(history).is_won

    def parse(self, history: Iterable[int]) -> str | None:
        """
        The complete parse tree whose cells are all in ``history``, bracketed (``None`` when there is none).

        See :meth:`Derivation.parse` for which tree when the history holds several.

        :param history: the cells already set
        """
        return self.derivation(history).parse()

    # --- min_actions, the expert, Viterbi ---------------------------------------------------
    def cheapest_tree(self, history: Iterable[int] = ()) -> tuple[frozenset[int], bool]:
        """
        The cells of a complete parse tree with the fewest cells missing from ``history``, and whether that is exact.

        :param history: the cells already set
        """
        return _cheapest_tree(self, frozenset(int(c) for c in history))

    def expert_action(self, history: Iterable[int]) -> int:
        """
        Next action of a shortest winning completion of ``history``.

        :param history: the cells already set
        :return: the lowest missing cell of a tree with the fewest cells missing
        """
        history = frozenset(int(c) for c in history)
        missing = _cheapest_tree(self, history)[0] - history
        if not missing:
            raise ValueError("the history already holds a complete parse: the episode is won, reset the env")
        return min(missing)

    def viterbi_tree(self) -> str:
        """The most probable parse tree under the grammar's rule probabilities, bracketed (a weighted grammar only)."""
        return _viterbi(self)

    def tree_string(self, item: int, choose: Callable[[int], int]) -> str:
        """
        The bracketed string of the tree below ``item``.

        :param item: an item
        :param choose: picks, for a span, one of its items, and for an edge (a fact ``>= n_spans``), one of its links
        """
        ruleset = self.oracle.ruleset
        tokens = self.tokens

        def node(item: int) -> str:
            rule = ruleset.rules[int(self.item_rule[item])]
            links = []
            edge = int(self.item_edge[item])
            while edge != NONE:
                links.append(choose(edge))
                edge = int(self.link_prefix[links[-1]])
            position, children = int(self.span_start[self.clause_fact[item]]), []
            for link in reversed(links):
                span = int(self.link_span[link])
                if span == NONE:
                    children.append(token_leaf(tokens[position]))
                    position += 1
                else:
                    children.append(node(choose(span)))
                    position = int(self.span_end[span])
            return f"({tree_label(rule.label)} {' '.join(children)})"

        with _deep_recursion(self):
            return node(item)


class Derivation:
    """
    What a history derives in one sentence's chart, kept up to date as cells are set (forward chaining).

    Each clause counts its unmet requirements; setting a cell meets a requirement of its items; a clause with none
    left makes its fact hold, which meets a requirement of the clauses that need that fact, and so on. A cell costs
    the clauses it touches, whatever the number of parses. The counters are a ``bytearray`` and the chart is read
    through memoryviews: a step is a few dozen Python-level reads, no numpy call.

    :param analysis: the sentence
    """

    __slots__ = ("_chart", "analysis", "cells", "holds", "is_won", "needs")

    def __init__(self, analysis: SentenceAnalysis) -> None:
        self.analysis = analysis
        self.needs = bytearray(analysis.start_needs.tobytes())
        self.holds = bytearray(analysis.start_holds.tobytes())
        self.cells: set[int] = set()
        self.is_won = False
        self._chart = _ChartViews(analysis)

    def __getstate__(self) -> tuple:
        return self.analysis, self.needs, self.holds, self.cells, self.is_won

    def __setstate__(self, state: tuple) -> None:
        self.analysis, self.needs, self.holds, self.cells, self.is_won = state
        self._chart = _ChartViews(self.analysis)

    def set_cell(self, cell: int) -> bool:
        """
        Set ``cell`` (setting it again changes nothing); return whether it is a cell of some chart item.

        :param cell: ``position * n_columns + column``
        """
        chart = self._chart
        slot = bisect_left(chart.cells, cell)
        if slot == len(chart.cells) or chart.cells[slot] != cell:
            return False
        if cell not in self.cells:
            self.cells.add(cell)
            needs, conclusion, items = self.needs, chart.clause_fact, chart.cell_items
            facts = []
            for k in range(chart.cell_ptr[slot], chart.cell_ptr[slot + 1]):
                clause = items[k]
                needs[clause] -= 1
                if not needs[clause]:
                    facts.append(conclusion[clause])
            if facts:
                self._conclude(facts)
        return True

    def _conclude(self, facts: list[int]) -> None:
        """Make ``facts`` hold, and everything that follows."""
        chart, needs, holds = self._chart, self.needs, self.holds
        conclusion, fact_ptr, fact_clauses = chart.clause_fact, chart.fact_ptr, chart.fact_clauses
        stack = facts
        while stack:
            fact = stack.pop()
            if holds[fact]:
                continue
            holds[fact] = 1
            if fact in chart.roots:
                self.is_won = True
            for k in range(fact_ptr[fact], fact_ptr[fact + 1]):
                clause = fact_clauses[k]
                needs[clause] -= 1
                if not needs[clause]:
                    stack.append(conclusion[clause])

    def holds_array(self) -> np.ndarray:
        """Which facts hold, as a bool array (a view)."""
        return np.frombuffer(self.holds, dtype=bool)

    def derived_spans(self) -> list[Span]:
        """``(start, end, label)`` of every span that holds, in chart order."""
        return [self.analysis.span(span) for span in np.flatnonzero(self.holds_array()[: self.analysis.n_spans]).tolist()]

    def parse(self) -> str | None:
        """
        A complete parse tree inside the history, bracketed; ``None`` before the episode is won.

        When the history holds several trees, one rule picks: the first root span that holds (goal labels in
        ``%start`` order), and for each span its first item that holds (in rule order), for each item its pattern's
        first way of matching that holds (the leftmost split).
        """
        if not self.is_won:
            return None
        analysis, needs, n_items = self.analysis, self.needs, self.analysis.n_items

        def choose(fact: int) -> int:
            if fact < analysis.n_spans:
                start, stop = analysis.span_items[fact : fact + 2].tolist()
                return next(item for item in range(start, stop) if needs[item] == 0)
            start, stop = analysis.edge_links[fact - analysis.n_spans : fact - analysis.n_spans + 2].tolist()
            return next(link for link in range(start, stop) if needs[n_items + link] == 0)

        root = next(int(r) for r in analysis.roots if self.holds[r])
        return analysis.tree_string(choose(root), choose)


class _ChartViews:
    """The arrays a :class:`Derivation` reads at every step, as memoryviews (indexing them gives Python ints)."""

    __slots__ = ("cell_items", "cell_ptr", "cells", "clause_fact", "fact_clauses", "fact_ptr", "roots")

    def __init__(self, analysis: SentenceAnalysis) -> None:
        self.cells = analysis.chart_cells.data
        self.cell_ptr = analysis.cell_ptr.data
        self.cell_items = analysis.cell_items.data
        self.clause_fact = analysis.clause_fact.data
        self.fact_ptr = analysis.fact_ptr.data
        self.fact_clauses = analysis.fact_clauses.data
        self.roots = frozenset(analysis.roots.tolist())


class Oracle:
    """
    Chart parser for a :class:`RuleSet`, with the analysis of each sentence cached.

    :func:`shared_oracle` gives the one oracle of a process for a grammar and column mode, so that every env shares
    its analyses; :meth:`save_analyses` / :meth:`load_analyses` keep them across runs and subprocesses.

    :param ruleset: the language
    :param columns: ``"rules"`` (column ``n`` is rule ``n``) or ``"labels"`` (column ``n`` is label ``n``)
    :param cache_size: how many sentence analyses are kept in memory
    """

    def __init__(self, ruleset: RuleSet, columns: ColumnMode = "rules", cache_size: int = 16384) -> None:
        if columns not in COLUMN_MODES:
            raise ValueError(f"unknown columns={columns!r}; use one of {COLUMN_MODES}")
        self.ruleset = ruleset
        self.columns = columns
        self.n_columns = ruleset.n_rules if columns == "rules" else ruleset.n_labels
        self._label_index = {label: i for i, label in enumerate(ruleset.labels)}
        self._terminals = set(ruleset.terminals)
        rules = ruleset.rules
        self._rule_label = [self._label_index[rule.label] for rule in rules]
        self._rule_column = self._rule_label if columns == "labels" else list(range(len(rules)))
        # The pattern trie: node 0 is the empty prefix; a node's children by label index and by token.
        self._label_child: list[dict[int, int]] = [{}]
        self._token_child: list[dict[str, int]] = [{}]
        self._node_rules: list[list[int]] = [[]]
        for index, rule in enumerate(rules):
            node = 0
            for symbol in rule.pattern:
                children: dict = self._label_child[node] if symbol.is_label else self._token_child[node]
                key = self._label_index[symbol.name] if symbol.is_label else symbol.name
                if key not in children:
                    children[key] = len(self._node_rules)
                    self._label_child.append({})
                    self._token_child.append({})
                    self._node_rules.append([])
                node = children[key]
            self._node_rules[node].append(index)
        self._goal_labels = [self._label_index[s] for s in ruleset.start]
        self._rules_of: dict[str, list[int]] = {label: [] for label in ruleset.labels}
        for i, rule in enumerate(rules):
            self._rules_of[rule.label].append(i)
        self._min_yield = ruleset.min_yield
        # _rest_yield[rule][i]: shortest yield of rule.pattern[i:]
        yields = {rule: [ruleset.min_yield[s.name] if s.is_label else 1 for s in rule.pattern] for rule in rules}
        self._rest_yield = {rule: [sum(lengths[i:]) for i in range(len(lengths) + 1)] for rule, lengths in yields.items()}
        self.fingerprint = hashlib.sha256(f"{columns}\n{ruleset}".encode()).hexdigest()[:16]
        self._stored: dict[tuple[str, ...], tuple[int, int, bool, dict[str, np.ndarray]]] = {}
        self.analyze = lru_cache(maxsize=cache_size)(self._analyze)

    # The cache is a per-instance lru_cache wrapper, which pickle cannot store: it travels as its size and restarts empty.
    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["analyze"] = self.analyze.cache_info().maxsize
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.analyze = lru_cache(maxsize=state["analyze"])(self._analyze)  # type: ignore[call-overload]

    def column_of(self, rule: int) -> int:
        """
        The history column that applying rule ``rule`` sets.

        :param rule: index of the rule in the RuleSet
        """
        return self._rule_column[rule]

    def unknown_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Positions (0-based) of the tokens that are not terminals of the RuleSet."""
        return [i for i, token in enumerate(tokens) if token not in self._terminals]

    def check_tokens(self, tokens: Sequence[str]) -> None:
        """Raise :class:`GrammarError` naming the tokens that are not terminals of the RuleSet (1-based words)."""
        unknown = self.unknown_tokens(tokens)
        if unknown:
            listed = ", ".join(f"{tokens[i]!r} (word {i + 1})" for i in unknown)
            terminals = self.ruleset.terminals
            shown = " ".join(terminals[:40]) + (f" ... ({len(terminals)} in all)" if len(terminals) > 40 else "")
            raise GrammarError(
                f"sentence {' '.join(tokens)!r}: unknown tokens {listed}; the terminals of {self.ruleset.name} are: {shown}"
            )

    # --- analyses on disk -------------------------------------------------------------------
    def save_analyses(self, path: str | Path, sentences: Iterable[Sequence[str]]) -> int:
        """
        Analyse ``sentences`` and write the analyses to ``path``, for :meth:`load_analyses` in later runs.

        :param path: the file to write (numpy arrays in a pickle, tagged with the grammar's fingerprint)
        :param sentences: the sentences, as token sequences
        :return: the number of analyses written
        """
        records = {}
        for tokens in sentences:
            analysis = self.analyze(tuple(tokens))
            records[analysis.tokens] = (analysis.n_parses, analysis.min_actions, analysis.min_actions_exact, analysis.arrays())
        with open(path, "wb") as file:
            pickle.dump({"fingerprint": self.fingerprint, "analyses": records}, file, protocol=pickle.HIGHEST_PROTOCOL)
        return len(records)

    def load_analyses(self, path: str | Path) -> int:
        """
        Take the analyses of a file written by :meth:`save_analyses` for the same grammar and column mode.

        :param path: the file (only load files you wrote: it is a pickle)
        :return: the number of analyses loaded
        """
        with open(path, "rb") as file:
            data = pickle.load(file)
        if data.get("fingerprint") != self.fingerprint:
            raise GrammarError(
                f"{path}: these analyses were computed for another grammar or column mode; "
                "delete the file or write it again with Oracle.save_analyses"
            )
        self._stored.update(data["analyses"])
        return len(data["analyses"])

    # --- the chart --------------------------------------------------------------------------
    def _analyze(self, tokens: tuple[str, ...]) -> SentenceAnalysis:
        stored = self._stored.get(tokens)
        if stored is not None:
            n_parses, min_actions, exact, arrays = stored
            return self._finish(tokens, n_parses, min_actions, exact, arrays)
        if not tokens:
            raise GrammarError("empty sentence: give at least one token")
        self.check_tokens(tokens)
        with _collector_paused():
            return self._analyze_chart(tokens)

    def _analyze_chart(self, tokens: tuple[str, ...]) -> SentenceAnalysis:
        chart = _Chart(self, tokens)
        n = len(tokens)
        roots = [chart.spans[key] for key in ((0, n, g) for g in self._goal_labels) if key in chart.spans]
        if not roots:
            raise GrammarError(
                f"sentence {' '.join(tokens)!r} has no complete parse with goal labels {', '.join(self.ruleset.start)} "
                f"in {self.ruleset.name}; remove it or fix the grammar"
            )
        analysis = self._finish(tokens, 0, 0, True, chart.arrays(roots))
        cells, exact = analysis.cheapest_tree()
        object.__setattr__(analysis, "n_parses", _count_trees(analysis))
        object.__setattr__(analysis, "min_actions", len(cells))
        object.__setattr__(analysis, "min_actions_exact", exact)
        return analysis

    def _finish(
        self, tokens: tuple[str, ...], n_parses: int, min_actions: int, exact: bool, arrays: dict[str, np.ndarray]
    ) -> SentenceAnalysis:
        for array in arrays.values():
            array.flags.writeable = False
        return SentenceAnalysis(tokens, self.n_columns, n_parses, min_actions, exact, **arrays, oracle=self)

    # --- the seed's top-down search ---------------------------------------------------------
    def top_down_attempts(self, tokens: Sequence[str]) -> Iterator[int]:
        """
        The seed's deterministic parser: recursive descent with backtracking, rules in file order.

        It yields the cell of every rule it tries, in order, until it has parsed the sentence (it
        then stops). A label is only tried where the tokens left can hold its shortest yield and
        what must follow it, which ends left recursion: the search always terminates, though a
        backtracking parser can take exponentially many attempts.

        :param tokens: the sentence
        """
        n = len(tokens)
        rules = self.ruleset.rules
        found = [False]

        def descend(label: str, position: int, limit: int, then: _Continuation) -> Iterator[int]:
            if position + self._min_yield[label] > limit:
                return
            for rule_id in self._rules_of[label]:
                yield position * self.n_columns + self.column_of(rule_id)
                yield from match(rules[rule_id], 0, position, limit, then)
                if found[0]:
                    return

        def match(rule: Rule, index: int, position: int, limit: int, then: _Continuation) -> Iterator[int]:
            if index == len(rule.pattern):
                yield from then(position)
                return
            symbol = rule.pattern[index]
            if not symbol.is_label:
                if position < limit and tokens[position] == symbol.name:
                    yield from match(rule, index + 1, position + 1, limit, then)
                return
            own_limit = limit - self._rest_yield[rule][index + 1]
            yield from descend(symbol.name, position, own_limit, lambda stop: match(rule, index + 1, stop, limit, then))

        def finish(stop: int) -> Iterator[int]:
            found[0] = stop == n
            return iter(())

        for goal in self.ruleset.start:
            yield from descend(goal, 0, n, finish)
            if found[0]:
                return


_Continuation = Callable[[int], Iterator[int]]

# One oracle per (grammar, column mode) in a process: every env of the process shares its analyses.
_SHARED: dict[tuple[str, str], Oracle] = {}


def shared_oracle(ruleset: RuleSet, columns: ColumnMode = "rules") -> Oracle:
    """
    The process's oracle for ``ruleset`` and ``columns`` (made the first time): the envs that use it share its analyses.

    :param ruleset: the language
    :param columns: ``"rules"`` or ``"labels"``
    """
    if columns not in COLUMN_MODES:
        raise ValueError(f"unknown columns={columns!r}; use one of {COLUMN_MODES}")
    key = (hashlib.sha256(str(ruleset).encode()).hexdigest(), columns)
    if key not in _SHARED:
        _SHARED[key] = Oracle(ruleset, columns)
    return _SHARED[key]


class _Chart:
    """
    The bottom-up chart of one sentence, built end position by end position.

    At each end ``e``: the edges ending at ``e - 1`` that continue with token ``e - 1`` are extended; then each new
    span ending at ``e`` (an agenda) starts edges (its label as a pattern's first symbol) and extends the edges ending
    at its start that continue with its label. A new edge whose trie node ends patterns makes their items, and their
    new spans go on the agenda. Unary chains close through the agenda (the RuleSet has no unary cycles).
    """

    def __init__(self, oracle: Oracle, tokens: tuple[str, ...]) -> None:
        self.oracle = oracle
        self.spans: dict[tuple[int, int, int], int] = {}
        self.span_keys: list[tuple[int, int, int]] = []
        self.edges: dict[tuple[int, int, int], int] = {}  # (start, node, end) -> edge
        self.edge_start: list[int] = []
        self.edge_node: list[int] = []
        self.items: list[tuple[int, int, int, int]] = []  # (span, rule, cell, edge)
        self.links: list[tuple[int, int, int]] = []  # (edge, prefix edge or NONE, span or NONE)
        # waiting[position][label]: (edge, next node) of the edges ending at position that continue with label
        self.waiting: list[dict[int, list[tuple[int, int]]]] = [{} for _ in range(len(tokens) + 1)]
        self.ending_at: list[list[int]] = [[] for _ in range(len(tokens) + 1)]  # edges that continue with a token
        root_tokens, root_labels = oracle._token_child[0], oracle._label_child[0]
        for end, token in enumerate(tokens, start=1):
            agenda: list[int] = []
            if token in root_tokens:
                self._link(end - 1, root_tokens[token], end, NONE, NONE, agenda)
            for edge in self.ending_at[end - 1]:
                node = oracle._token_child[self.edge_node[edge]].get(token)
                if node is not None:
                    self._link(self.edge_start[edge], node, end, edge, NONE, agenda)
            while agenda:
                span = agenda.pop()
                start, _, label = self.span_keys[span]
                if label in root_labels:
                    self._link(start, root_labels[label], end, NONE, span, agenda)
                for edge, node in self.waiting[start].get(label, ()):
                    self._link(self.edge_start[edge], node, end, edge, span, agenda)

    def _link(self, start: int, node: int, end: int, prefix: int, span: int, agenda: list[int]) -> None:
        """Add the link (prefix, span) to edge (start, node, end), making the edge, its items and new spans if new."""
        key = (start, node, end)
        edge = self.edges.get(key)
        if edge is None:
            oracle = self.oracle
            edge = self.edges[key] = len(self.edge_start)
            self.edge_start.append(start)
            self.edge_node.append(node)
            if oracle._token_child[node]:
                self.ending_at[end].append(edge)
            waiting = self.waiting[end]
            for label, child in oracle._label_child[node].items():
                waiting.setdefault(label, []).append((edge, child))
            for rule in oracle._node_rules[node]:
                span_key = (start, end, oracle._rule_label[rule])
                span_id = self.spans.get(span_key)
                if span_id is None:
                    span_id = self.spans[span_key] = len(self.span_keys)
                    self.span_keys.append(span_key)
                    agenda.append(span_id)
                self.items.append((span_id, rule, start * oracle.n_columns + oracle._rule_column[rule], edge))
        self.links.append((edge, prefix, span))

    def arrays(self, roots: list[int]) -> dict[str, np.ndarray]:
        """
        The chart as the arrays of :class:`SentenceAnalysis`: only the edges that some item needs (prefixes that led
        nowhere are dropped), items grouped by span and links by edge, and what holds in the empty history.
        """
        n_spans = len(self.span_keys)
        links = np.array(self.links, dtype=np.int64).reshape(-1, 3)
        # The edges an item needs, and their prefixes: a fixed point as deep as the longest pattern.
        needed = np.zeros(len(self.edge_start), dtype=bool)
        needed[[edge for *_, edge in self.items]] = True
        with_prefix = links[links[:, 1] != NONE]
        while True:
            prefixes = with_prefix[needed[with_prefix[:, 0]], 1]
            if needed[prefixes].all():
                break
            needed[prefixes] = True
        fact_of_edge = np.full(len(self.edge_start), NONE, dtype=np.int64)
        fact_of_edge[needed] = n_spans + np.arange(np.count_nonzero(needed))
        links = links[needed[links[:, 0]]]
        links = links[np.argsort(fact_of_edge[links[:, 0]], kind="stable")]
        link_edge = fact_of_edge[links[:, 0]]
        items = np.array(self.items, dtype=np.int64).reshape(-1, 4)
        items = items[np.lexsort((items[:, 1], items[:, 0]))]
        spans = np.array(self.span_keys, dtype=np.int64).reshape(-1, 3)
        n_edges = int(np.count_nonzero(needed))
        item_cell = items[:, 2]
        cell_items = np.argsort(item_cell, kind="stable")
        chart_cells, first = np.unique(item_cell[cell_items], return_index=True)
        link_prefix = np.where(links[:, 1] == NONE, NONE, fact_of_edge[links[:, 1]])
        arrays = {
            "span_start": spans[:, 0],
            "span_end": spans[:, 1],
            "span_label": spans[:, 2],
            "span_items": np.searchsorted(items[:, 0], np.arange(n_spans + 1)),
            "item_rule": items[:, 1],
            "item_cell": item_cell,
            "item_edge": fact_of_edge[items[:, 3]],
            "edge_links": np.searchsorted(link_edge, n_spans + np.arange(n_edges + 1)),
            "link_prefix": link_prefix,
            "link_span": links[:, 2],
            "roots": np.array(roots, dtype=np.int64),
            "chart_cells": chart_cells,
            "cell_items": cell_items,
            "cell_ptr": np.append(first, len(cell_items)),
        }
        # The clauses that require each fact: items their edge, links their prefix and span.
        n_items = len(items)
        clause_ids = np.concatenate([np.arange(n_items), n_items + np.arange(len(links)), n_items + np.arange(len(links))])
        required = np.concatenate([arrays["item_edge"], link_prefix, links[:, 2]])
        keep = required != NONE
        order = np.argsort(required[keep], kind="stable")
        arrays["fact_clauses"] = clause_ids[keep][order]
        arrays["fact_ptr"] = np.searchsorted(required[keep][order], np.arange(n_spans + n_edges + 1))
        arrays["clause_fact"] = np.concatenate([items[:, 0], link_edge])
        needs = np.concatenate([np.full(n_items, 2), (link_prefix != NONE).astype(np.int64) + (links[:, 2] != NONE)])
        arrays["start_needs"] = needs.astype(np.int8)
        arrays["start_holds"] = np.zeros(n_spans + n_edges, dtype=bool)
        arrays["useful_cells"] = np.zeros(0, dtype=np.int64)  # filled below, once the analysis can walk the chart
        arrays = {name: _compact(array) for name, array in arrays.items()}
        analysis = SentenceAnalysis((), 0, 0, 0, True, **arrays, oracle=self.oracle)
        # Links over terminals only need nothing: their edges hold before any cell is set.
        derivation = Derivation(analysis)
        derivation._conclude(link_edge[needs[n_items:] == 0].tolist())
        arrays["start_needs"] = np.frombuffer(bytes(derivation.needs), dtype=np.int8)
        arrays["start_holds"] = derivation.holds_array().copy()
        arrays["useful_cells"] = _compact(np.unique(item_cell[_items_below(analysis, roots)]))
        return arrays


def _compact(array: np.ndarray) -> np.ndarray:
    """``array`` as int32 when every value fits (chart indices and cells do), else as it is."""
    if array.dtype.kind != "i" or array.dtype.itemsize <= 4:
        return array
    if array.size == 0 or (array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max):
        return array.astype(np.int32)
    return array


@contextmanager
def _collector_paused() -> Iterator[None]:
    """
    Pause Python's cyclic garbage collector: a chart makes many small objects, none in cycles, and the collector would
    otherwise run over and over (a quarter of the analysis time on the 5,850-rule benchmark grammar).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _deep_recursion(analysis: SentenceAnalysis) -> Iterator[None]:
    """Room on the stack for recursions as deep as the chart (a chain of unary rules and long patterns)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * (analysis.n_spans + len(analysis.item_edge) + len(analysis.link_span)) + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


class _Lists:
    """The chart of an analysis as Python lists, for the searches that walk all of it (faster than numpy scalars)."""

    def __init__(self, analysis: SentenceAnalysis) -> None:
        self.n_spans = analysis.n_spans
        self.span_items = analysis.span_items.tolist()
        self.item_edge = analysis.item_edge.tolist()
        self.item_cell = analysis.item_cell.tolist()
        self.item_rule = analysis.item_rule.tolist()
        self.edge_links = analysis.edge_links.tolist()
        self.link_prefix = analysis.link_prefix.tolist()
        self.link_span = analysis.link_span.tolist()

    def items(self, span: int) -> range:
        return range(self.span_items[span], self.span_items[span + 1])

    def links(self, edge: int) -> range:
        return range(self.edge_links[edge - self.n_spans], self.edge_links[edge - self.n_spans + 1])

    def needs(self, link: int) -> tuple[int, ...]:
        return tuple(f for f in (self.link_prefix[link], self.link_span[link]) if f != NONE)


def _items_below(analysis: SentenceAnalysis, spans: Iterable[int]) -> np.ndarray:
    """The items of the trees of ``spans``: a breadth-first walk down the chart, one level per round."""
    n_spans = analysis.n_spans
    seen = np.zeros(n_spans + len(analysis.edge_links) - 1, dtype=bool)
    frontier = np.unique(np.fromiter(spans, dtype=np.int64))
    items = []
    while frontier.size:
        seen[frontier] = True
        span_facts, edge_facts = frontier[frontier < n_spans], frontier[frontier >= n_spans] - n_spans
        new_items = _ranges(analysis.span_items, span_facts)
        links = _ranges(analysis.edge_links, edge_facts)
        items.append(new_items)
        below = np.concatenate([analysis.item_edge[new_items], analysis.link_prefix[links], analysis.link_span[links]])
        below = np.unique(below[below != NONE])
        frontier = below[~seen[below]]
    return np.concatenate(items) if items else np.zeros(0, dtype=np.int64)


def _ranges(ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The concatenation of ``range(ptr[r], ptr[r + 1])`` for each ``r`` of ``rows``."""
    starts, lengths = ptr[rows], ptr[rows + 1] - ptr[rows]
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(int(lengths.sum()))


def _count_trees(analysis: SentenceAnalysis) -> int:
    """Number of complete parse trees (exact Python integers: a tree is an item per span and a link per edge)."""
    chart = _Lists(analysis)
    counts: dict[int, int] = {}

    def count(fact: int) -> int:
        if fact not in counts:
            if fact < chart.n_spans:
                counts[fact] = sum(count(chart.item_edge[item]) for item in chart.items(fact))
            else:
                counts[fact] = sum(math.prod(count(need) for need in chart.needs(link)) for link in chart.links(fact))
        return counts[fact]

    with _deep_recursion(analysis):
        return sum(count(root) for root in analysis.roots.tolist())


class _SearchTooLarge(Exception):
    """The exact cheapest-tree search passed its state budget."""


def _cheapest_tree(analysis: SentenceAnalysis, history: frozenset[int]) -> tuple[frozenset[int], bool]:
    """
    A complete parse tree with the fewest cells missing from ``history``: its cells, and whether it is exact.

    Two nodes of a tree share a cell only when they start at the same position, and the nodes of a tree that start at
    one position form one chain down a left spine. So the cost of a tree is, chain by chain, the number of distinct
    cells of the chain not in the history, plus the cost of the subtrees of the later children (chains of their own).
    Down a chain the search carries the cells already paid for, keeping only those that two or more items have (the
    only ones that can repeat): for real grammars the states stay few. Past ``MAX_SEARCH_STATES`` states it gives up
    sharing (each node pays) and returns the tree it finds, whose size is then only an upper bound.
    """
    with _deep_recursion(analysis):
        try:
            return _CheapestTree(analysis, history, MAX_SEARCH_STATES).best(), True
        except _SearchTooLarge:
            return _CheapestTree(analysis, history, None).best(), False


class _CheapestTree:
    """
    ``cost(fact, paid)``: the fewest new cells of a tree of ``fact``, where ``paid`` holds the repeatable cells of the
    chain above (at the fact's start); a later child starts its chain with nothing paid.

    :param analysis: the sentence
    :param history: the cells already set (free)
    :param budget: most memo entries, or ``None`` to ignore sharing along chains
    """

    def __init__(self, analysis: SentenceAnalysis, history: frozenset[int], budget: int | None) -> None:
        self.chart = _Lists(analysis)
        self.roots = analysis.roots.tolist()
        self.history = history
        self.budget = budget
        self.memo: dict[tuple[int, frozenset[int]], tuple[int, int]] = {}
        cells, counts = np.unique(analysis.item_cell, return_counts=True)
        self.repeatable = frozenset(cells[counts > 1].tolist()) - history if budget is not None else frozenset()

    def best(self) -> frozenset[int]:
        nothing: frozenset[int] = frozenset()
        root = min(self.roots, key=lambda r: self.cost(r, nothing))
        return frozenset(self._cells(root, nothing))

    def _paid_below(self, cell: int, paid: frozenset[int]) -> frozenset[int]:
        return paid | {cell} if cell in self.repeatable and cell not in paid else paid

    def cost(self, fact: int, paid: frozenset[int]) -> int:
        key = (fact, paid)
        found = self.memo.get(key)
        if found is not None:
            return found[0]
        chart = self.chart
        best, pick = math.inf, NONE
        if fact < chart.n_spans:
            for item in chart.items(fact):
                cell = chart.item_cell[item]
                value = (cell not in self.history and cell not in paid) + self.cost(
                    chart.item_edge[item], self._paid_below(cell, paid)
                )
                if value < best:
                    best, pick = value, item
        else:
            for link in chart.links(fact):
                prefix, span = chart.link_prefix[link], chart.link_span[link]
                if prefix == NONE:  # the first child: the chain goes on
                    value = 0 if span == NONE else self.cost(span, paid)
                else:  # a later child starts a chain of its own
                    value = self.cost(prefix, paid) + (0 if span == NONE else self.cost(span, frozenset()))
                if value < best:
                    best, pick = value, link
        self.memo[key] = (int(best), pick)
        if self.budget is not None and len(self.memo) > self.budget:
            raise _SearchTooLarge
        return int(best)

    def _cells(self, fact: int, paid: frozenset[int]) -> Iterator[int]:
        """The cells of the cheapest tree of ``fact`` that :meth:`cost` chose."""
        chart = self.chart
        pick = self.memo[(fact, paid)][1]
        if fact < chart.n_spans:
            cell = chart.item_cell[pick]
            yield cell
            yield from self._cells(chart.item_edge[pick], self._paid_below(cell, paid))
            return
        prefix, span = chart.link_prefix[pick], chart.link_span[pick]
        if prefix != NONE:
            yield from self._cells(prefix, paid)
        if span != NONE:
            yield from self._cells(span, paid if prefix == NONE else frozenset())


def _viterbi(analysis: SentenceAnalysis) -> str:
    """The most probable tree (max-product over the chart, in log space), bracketed."""
    rules = analysis.oracle.ruleset.rules
    if any(getattr(rule, "probability", None) is None for rule in rules):
        name = analysis.oracle.ruleset.name
        raise ValueError(f"{name} has no rule probabilities: the Viterbi parse needs a weighted grammar ([p] after each rule)")
    log_p = [math.log(rule.probability) if rule.probability else -math.inf for rule in rules]  # type: ignore[attr-defined]
    chart = _Lists(analysis)
    best: dict[int, tuple[float, int]] = {}

    def score(fact: int) -> float:
        if fact not in best:
            if fact < chart.n_spans:
                options = [(log_p[chart.item_rule[i]] + score(chart.item_edge[i]), i) for i in chart.items(fact)]
            else:
                options = [(sum(score(need) for need in chart.needs(link)), link) for link in chart.links(fact)]
            best[fact] = max(options, key=lambda option: option[0])  # the first of equal scores
        return best[fact][0]

    with _deep_recursion(analysis):
        root = max(analysis.roots.tolist(), key=score)
    return analysis.tree_string(best[root][1], lambda fact: best[fact][1])
