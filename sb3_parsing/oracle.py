"""The environment's deterministic parser: chart, parse counts, gold cell sets, expert and top-down search."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from sb3_parsing.grammar import GrammarError, Rule, RuleSet, unary_chain_order

__all__ = ["COLUMN_MODES", "Oracle", "SentenceAnalysis"]

COLUMN_MODES = ("rules", "labels")
ColumnMode = Literal["rules", "labels"]

# A label constituent: (start, end, label index).
Span = tuple[int, int, int]


@dataclass(frozen=True)
class _Constituent:
    """A rule applied over ``[start, end)``, with every way its pattern matches the text."""

    start: int
    end: int
    rule: int
    label: int
    cell: int
    # Each alternative lists the label constituents (indices into the chart) that its pattern's labels matched.
    alternatives: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, eq=False)
class SentenceAnalysis:
    """
    Everything the game needs to know about one sentence, computed once by :class:`Oracle`.

    Cells are numbered as actions are: ``cell = position * n_columns + column``.

    :param tokens: the sentence
    :param n_columns: columns of the history matrix
    :param n_parses: number of complete parse trees (exact, however large)
    :param max_parses: how many parse trees were enumerated for gold cell sets at most
    :param gold_cell_sets: the distinct cell sets of the enumerated complete parses, smallest first
    :param constituent_cells: the cells of every constituent in the chart
    :param n_cells: cells of the sentence's rows, ``len(tokens) * n_columns``
    :param gold_membership: ``gold_membership[g, cell] = 1`` when the cell is in gold cell set ``g`` (int32)
    :param gold_sizes: the size of each gold cell set (int32)
    :param gold_cell_mask: which cells belong to some gold cell set
    :param constituent_mask: which cells belong to some chart constituent
    """

    tokens: tuple[str, ...]
    n_columns: int
    n_parses: int
    max_parses: int
    gold_cell_sets: tuple[frozenset[int], ...]
    constituent_cells: frozenset[int]
    n_cells: int
    gold_membership: np.ndarray = field(repr=False)
    gold_sizes: np.ndarray = field(repr=False)
    gold_cell_mask: np.ndarray = field(repr=False)
    constituent_mask: np.ndarray = field(repr=False)
    _chart: tuple[_Constituent, ...] = field(repr=False)
    _roots: tuple[int, ...] = field(repr=False)

    @property
    def parses_capped(self) -> bool:
        """Whether the sentence has more parses than were enumerated for gold cell sets."""
        return self.n_parses > self.max_parses

    @property
    def min_actions(self) -> int:
        """The fewest actions that win: the size of the smallest gold cell set."""
        return len(self.gold_cell_sets[0])

    def expert_action(self, history: set[int] | frozenset[int]) -> int:
        """
        Next action of a shortest winning completion of ``history``.

        :param history: the cells already set
        :return: a cell of the gold set with the fewest cells missing (the lowest such cell)
        """
        missing = min((gold - history for gold in self.gold_cell_sets), key=len)
        if not missing:
            raise ValueError("the history already covers a gold cell set: the episode is won, reset the env")
        return min(missing)

    def derived_constituents(self, history: set[int] | frozenset[int]) -> list[Span]:
        """
        Label constituents whose whole derivation is in ``history``.

        A constituent is derived when its own cell is set and, for one way of matching its pattern,
        every label it matched is derived; terminals need nothing.

        :param history: the cells already set
        :return: ``(start, end, label)`` of each derived constituent
        """
        derived = np.zeros(len(self._chart), dtype=bool)
        spans: dict[Span, None] = {}
        for index, item in enumerate(self._chart):
            if item.cell in history and any(all(derived[c] for c in alt) for alt in item.alternatives):
                derived[index] = True
                spans[(item.start, item.end, item.label)] = None
        return list(spans)

    def root_labels(self) -> list[int]:
        """Label indices of the goal constituents spanning the whole sentence."""
        return sorted({self._chart[r].label for r in self._roots})


class Oracle:
    """
    Chart parser for a :class:`RuleSet`, with the analysis of each sentence cached.

    :param ruleset: the language
    :param columns: ``"rules"`` (column ``n`` is rule ``n``) or ``"labels"`` (column ``n`` is label ``n``)
    :param max_parses: most parse trees enumerated per sentence for gold cell sets
    :param cache_size: how many sentence analyses are kept
    """

    def __init__(
        self, ruleset: RuleSet, columns: ColumnMode = "rules", max_parses: int = 1000, cache_size: int = 4096
    ) -> None:
        if columns not in COLUMN_MODES:
            raise ValueError(f"unknown columns={columns!r}; use one of {COLUMN_MODES}")
        if max_parses < 1:
            raise ValueError(f"max_parses must be at least 1, got {max_parses}")
        self.ruleset = ruleset
        self.columns = columns
        self.max_parses = max_parses
        self.n_columns = ruleset.n_rules if columns == "rules" else ruleset.n_labels
        self._label_index = {label: i for i, label in enumerate(ruleset.labels)}
        self._terminals = set(ruleset.terminals)
        unary = unary_chain_order(ruleset.rules)
        assert unary is not None, "RuleSet guarantees no unary cycles"
        rule_index = {id(rule): i for i, rule in enumerate(ruleset.rules)}
        self._unary_rules = [rule_index[id(rule)] for rule in unary]
        self._span_rules = [i for i, rule in enumerate(ruleset.rules) if not rule.is_unary_chain]
        # A span only tries the rules whose first symbol can start there: its first token, or a label found there.
        self._span_rules_by_token: dict[str, list[int]] = {}
        self._span_rules_by_label: dict[int, list[int]] = {}
        for i in self._span_rules:
            first = ruleset.rules[i].pattern[0]
            if first.is_label:
                self._span_rules_by_label.setdefault(self._label_index[first.name], []).append(i)
            else:
                self._span_rules_by_token.setdefault(first.name, []).append(i)
        self._goal_labels = {self._label_index[s] for s in ruleset.start}
        self._rules_of: dict[str, list[int]] = {label: [] for label in ruleset.labels}
        for i, rule in enumerate(ruleset.rules):
            self._rules_of[rule.label].append(i)
        self._min_yield = ruleset.min_yield
        # _rest_yield[rule][i]: shortest yield of rule.pattern[i:]
        yields = {rule: [ruleset.min_yield[s.name] if s.is_label else 1 for s in rule.pattern] for rule in ruleset.rules}
        self._rest_yield = {rule: [sum(lengths[i:]) for i in range(len(lengths) + 1)] for rule, lengths in yields.items()}
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
        return rule if self.columns == "rules" else self._label_index[self.ruleset.rules[rule].label]

    def check_tokens(self, tokens: Sequence[str]) -> None:
        """Raise :class:`GrammarError` naming tokens that are not terminals of the RuleSet."""
        unknown = [f"{token!r} at position {i}" for i, token in enumerate(tokens) if token not in self._terminals]
        if unknown:
            raise GrammarError(
                f"sentence {' '.join(tokens)!r}: unknown tokens {', '.join(unknown)}; "
                f"the terminals of {self.ruleset.name} are: {' '.join(self.ruleset.terminals)}"
            )

    def _analyze(self, tokens: tuple[str, ...]) -> SentenceAnalysis:
        if not tokens:
            raise GrammarError("empty sentence: give at least one token")
        self.check_tokens(tokens)
        chart, label_spans = self._build_chart(tokens)
        n = len(tokens)
        roots = tuple(i for label in self._goal_labels for i in label_spans.get((0, n, label), []))
        if not roots:
            raise GrammarError(
                f"sentence {' '.join(tokens)!r} has no complete parse with goal labels {', '.join(self.ruleset.start)} "
                f"in {self.ruleset.name}; remove it or fix the grammar"
            )
        counts = self._tree_counts(chart)
        n_parses = sum(counts[r] for r in roots)  # as NLTK's chart parser counts trees
        gold = sorted(self._gold_cell_sets(chart, roots, counts), key=lambda cells: (len(cells), sorted(cells)))
        n_cells = n * self.n_columns
        membership = np.zeros((len(gold), n_cells), dtype=np.int32)
        for row, cells in zip(membership, gold, strict=True):
            row[list(cells)] = 1
        constituent_cells = frozenset(item.cell for item in chart)
        constituent_mask = np.zeros(n_cells, dtype=bool)
        constituent_mask[list(constituent_cells)] = True
        for array in (membership, constituent_mask):
            array.flags.writeable = False
        return SentenceAnalysis(
            tokens=tokens,
            n_columns=self.n_columns,
            n_parses=n_parses,
            max_parses=self.max_parses,
            gold_cell_sets=tuple(gold),
            constituent_cells=constituent_cells,
            n_cells=n_cells,
            gold_membership=membership,
            gold_sizes=membership.sum(axis=1, dtype=np.int32),
            gold_cell_mask=np.asarray(membership.any(axis=0)),
            constituent_mask=constituent_mask,
            _chart=tuple(chart),
            _roots=roots,
        )

    def _build_chart(self, tokens: tuple[str, ...]) -> tuple[list[_Constituent], dict[tuple[int, int, int], list[int]]]:
        """Bottom-up chart over spans of increasing length; unary chains closed in topological order."""
        n = len(tokens)
        rules = self.ruleset.rules
        chart: list[_Constituent] = []
        label_spans: dict[tuple[int, int, int], list[int]] = {}  # (start, end, label) -> chart indices
        ends_from: list[dict[int, list[int]]] = [{} for _ in range(n)]  # start -> label -> sorted ends

        def add(start: int, end: int, rule_id: int, alternatives: list[tuple[int, ...]]) -> None:
            label = self._label_index[rules[rule_id].label]
            key = (start, end, label)
            if key not in label_spans:
                label_spans[key] = []
                ends_from[start].setdefault(label, []).append(end)
            label_spans[key].append(len(chart))
            cell = start * self.n_columns + self.column_of(rule_id)
            chart.append(_Constituent(start, end, rule_id, label, cell, tuple(alternatives)))

        def matches(rule: Rule, position: int, start: int, end: int) -> Iterator[tuple[int, ...]]:
            """Ways to match ``rule.pattern[position:]`` over ``[start, end)``, as chart indices of the labels."""
            symbol = rule.pattern[position]
            last = position == len(rule.pattern) - 1
            if not symbol.is_label:
                if start < end and tokens[start] == symbol.name and (start + 1 == end) == last:
                    yield from ([()] if last else matches(rule, position + 1, start + 1, end))
                return
            label = self._label_index[symbol.name]
            for stop in ends_from[start].get(label, []) if start < n else []:
                if (stop == end) != last or stop > end:
                    continue
                children = label_spans[(start, stop, label)]
                rests = [()] if last else list(matches(rule, position + 1, stop, end))
                yield from ((child, *rest) for child in children for rest in rests)

        for length in range(1, n + 1):
            for start in range(n - length + 1):
                end = start + length
                for rule_id in self._rules_starting_with(tokens[start], ends_from[start]):
                    rule = rules[rule_id]
                    if len(rule.pattern) > length:
                        continue
                    alternatives = list(matches(rule, 0, start, end))
                    if alternatives:
                        add(start, end, rule_id, alternatives)
                for rule_id in self._unary_rules:
                    below = label_spans.get((start, end, self._label_index[rules[rule_id].pattern[0].name]))
                    if below:
                        add(start, end, rule_id, [(child,) for child in below])
        return chart, label_spans

    def _rules_starting_with(self, token: str, labels: Iterable[int]) -> list[int]:
        """The span rules whose first symbol is ``token`` or one of ``labels``, in rule order."""
        candidates = list(self._span_rules_by_token.get(token, ()))
        for label in labels:
            candidates += self._span_rules_by_label.get(label, ())
        return sorted(candidates)

    @staticmethod
    def _tree_counts(chart: list[_Constituent]) -> list[int]:
        """Number of trees of each chart item (exact, however large; children precede parents)."""
        counts = [0] * len(chart)
        for index, item in enumerate(chart):
            total = 0
            for alternative in item.alternatives:
                product = 1
                for child in alternative:
                    product *= counts[child]
                total += product
            counts[index] = total
        return counts

    def _gold_cell_sets(self, chart: list[_Constituent], roots: tuple[int, ...], counts: list[int]) -> set[frozenset[int]]:
        """
        Distinct cell sets of the first ``max_parses`` parse trees.

        Trees are taken in the order of a nested loop: roots, then each item's alternatives in order, then the
        children's trees with the last child varying fastest. How many trees of each item that prefix uses is
        known from the tree counts (top-down); those trees are then built once each (bottom-up), as bit sets of
        cells (one bit per cell: a union is one integer ``|``), so the work grows with the trees kept, not with
        the depth of the recursion times the number of trees.
        """
        need = [0] * len(chart)
        remaining = self.max_parses
        for root in roots:
            take = min(counts[root], remaining)
            need[root] = max(need[root], take)
            remaining -= take
            if remaining == 0:
                break
        for index in range(len(chart) - 1, -1, -1):  # parents come after their children
            wanted = need[index]
            for alternative in chart[index].alternatives:
                if wanted == 0:
                    break
                later = 1  # trees of the children after this one: each of its trees is used with all of theirs
                take = min(wanted, math.prod(counts[c] for c in alternative))
                for child in reversed(alternative):
                    need[child] = max(need[child], min(counts[child], -(-take // later)))
                    later *= counts[child]
                wanted -= take
        # Bit b stands for the b-th distinct cell of the chart: small integers, however many columns there are.
        cells = sorted({item.cell for item in chart})
        bit_of = {cell: bit for bit, cell in enumerate(cells)}
        built: dict[int, list[int]] = {}
        for index, item in enumerate(chart):
            wanted = need[index]
            if wanted == 0:
                continue
            own = 1 << bit_of[item.cell]
            trees: list[int] = []
            for alternative in item.alternatives:
                for parts in itertools.product(*(built[c] for c in alternative)):
                    bits = own
                    for part in parts:
                        bits |= part
                    trees.append(bits)
                    if len(trees) == wanted:
                        break
                if len(trees) == wanted:
                    break
            built[index] = trees
        distinct = {bits for root in roots for bits in built.get(root, ())}
        return {frozenset(cells[bit] for bit in _bit_indices(bits)) for bits in distinct}

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


def _bit_indices(bits: int) -> list[int]:
    """Positions of the set bits of ``bits``, lowest first."""
    indices = []
    while bits:
        lowest = bits & -bits
        indices.append(lowest.bit_length() - 1)
        bits ^= lowest
    return indices
