"""RuleSet: the language of the parsing game, loaded from the ``PATTERN => LABEL`` format."""

from __future__ import annotations

import heapq
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["GrammarError", "Rule", "RuleSet", "Symbol", "available_grammars"]

_GRAMMAR_PACKAGE = "sb3_parsing.grammars"
_GRAMMAR_SUFFIX = ".rules"
# A quoted string (either quote kind), or a run of non-space characters.
_SYMBOL_RE = re.compile(r"""'([^']*)'|"([^"]*)"|(\S+)""")
_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
# A rule probability after the label, NLTK's PCFG notation: ``Det N => NP [0.7]`` (a space before the bracket).
_PROBABILITY_RE = re.compile(r"(?:^|\s)\[([^\[\]]*)\]\s*$")
# A probability glued to the label (``NP[0.7]``), to be reported rather than read as a label.
_GLUED_PROBABILITY_RE = re.compile(r"\S\[\s*[-+.\deE]+\s*\]$")
# The tolerance of a label's probability sum, NLTK's (``nltk.PCFG.EPSILON``, strict), so that every weighted
# RuleSet converts to an ``nltk.PCFG``: three rules of [0.333] are accepted, three of [0.33] are not.
PROBABILITY_TOLERANCE = 0.01
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class GrammarError(ValueError):
    """A RuleSet or a sentence that cannot be used: the message says where and how to fix it."""


class Symbol(NamedTuple):
    """One symbol of the alphabet: a label (non-terminal) or a terminal (a token of text)."""

    name: str
    is_label: bool

    def __str__(self) -> str:
        if not self.is_label and (not self.name or _needs_quotes(self.name)):
            return _quote(self.name)
        return self.name


@dataclass(frozen=True)
class Rule:
    """
    A rewriting rule ``PATTERN => LABEL``.

    :param pattern: the symbols that the rule rewrites, left to right
    :param label: the label they are rewritten to
    :param line: the line of the RuleSet text that defines the rule (1-based)
    :param probability: the rule's probability among the rules of its label (``[0.7]``), ``None`` in an
        unweighted RuleSet
    """

    pattern: tuple[Symbol, ...]
    label: str
    line: int
    probability: float | None = None

    @property
    def is_unary_chain(self) -> bool:
        """Whether the rule rewrites a single label into another (``A => B``)."""
        return len(self.pattern) == 1 and self.pattern[0].is_label

    def __str__(self) -> str:
        return f"{' '.join(str(s) for s in self.pattern)} => {self.label}{_probability_suffix(self.probability)}"


def _probability_suffix(probability: float | None) -> str:
    # repr() is the shortest text that reads back as the same float, so str(ruleset) round-trips weights exactly.
    return "" if probability is None else f" [{probability!r}]"


def _needs_quotes(name: str) -> bool:
    # A quote only opens a quoted symbol at its start, so "don't" can stay bare (and "x'\"" must).
    return any(c.isspace() or c == "#" for c in name) or name[:1] in ("'", '"', "%") or "=>" in name


class _RawRule(NamedTuple):
    pattern: tuple[tuple[str, bool], ...]  # (text, was_quoted)
    label: str
    line: int
    probability: float | None


def _split_probability(right: str, line_no: int) -> tuple[str, float | None]:
    """Cut an optional ``[p]`` off the text after ``=>``; check that ``p`` is a probability."""
    match = _PROBABILITY_RE.search(right)
    if match is None:
        if _GLUED_PROBABILITY_RE.search(right.strip()):
            raise GrammarError(
                f"line {line_no}: probability glued to the label in {right.strip()!r}; "
                "put a space before it, e.g. 'Det N => NP [0.7]'"
            )
        return right, None
    text = match.group(1).strip()
    try:
        probability = float(text)
    except ValueError:
        probability = math.nan
    if not 0.0 < probability <= 1.0:  # also rejects nan and inf
        raise GrammarError(
            f"line {line_no}: rule probability [{text}] is not a number in (0, 1]; write e.g. 'Det N => NP [0.7]'"
        )
    return right[: match.start()], probability


def _split_symbols(text: str, line_no: int) -> list[tuple[str, bool]]:
    """Split a pattern into (symbol, was_quoted) pairs, rejecting unterminated quotes."""
    symbols: list[tuple[str, bool]] = []
    for match in _SYMBOL_RE.finditer(text):
        single, double, bare = match.groups()
        if bare is not None:
            if bare[0] in "'\"":
                raise GrammarError(f"line {line_no}: unterminated quote in {bare!r}; close it with a matching {bare[0]}")
            symbols.append((bare, False))
        else:
            symbols.append((single if single is not None else double, True))
    return symbols


def _scan_line(line: str) -> tuple[str, list[int]]:
    """
    Cut a ``#`` comment and find every ``=>``, both outside quoted symbols (so ``'#'`` and ``'=>'`` are terminals).

    Quotes are read as :data:`_SYMBOL_RE` reads them: only at the start of a symbol, and only when closed.
    """
    arrows: list[int] = []
    for match in _SYMBOL_RE.finditer(line):
        bare = match.group(3)
        if bare is None:
            continue
        comment = bare.find("#")
        code = bare if comment < 0 else bare[:comment]
        arrows.extend(match.start() + i for i in range(len(code) - 1) if code.startswith("=>", i))
        if comment >= 0:
            return line[: match.start() + comment], arrows
    return line, arrows


def _parse_lines(text: str) -> tuple[list[_RawRule], list[str] | None, int]:
    """Read the rules and the ``%start`` directive; return them with the directive's line."""
    rules: list[_RawRule] = []
    start: list[str] | None = None
    start_line = 0
    # Lines end at \n, \r\n or \r only (not at the form feeds and separators splitlines() knows), as editors count them.
    for line_no, raw_line in enumerate(_LINE_BREAK_RE.split(text), start=1):
        code, arrows = _scan_line(raw_line)
        line = code.strip()
        if not line:
            continue
        if line.startswith("%"):
            directive, *names = line.split()
            if directive != "%start":
                raise GrammarError(f"line {line_no}: unknown directive {directive!r}; the only directive is %start LABEL ...")
            if start is not None:
                raise GrammarError(
                    f"line {line_no}: %start given twice (first on line {start_line}); list every goal label once"
                )
            if not names:
                raise GrammarError(f"line {line_no}: %start names no label; write e.g. '%start S'")
            start, start_line = names, line_no
            continue
        if not arrows:
            hint = " (NLTK's 'LABEL -> PATTERN' notation loads with RuleSet.from_nltk)" if "->" in line else ""
            raise GrammarError(
                f"line {line_no}: missing '=>' in {raw_line.strip()!r}; write rules as 'PATTERN => LABEL'{hint}"
            )
        left, right = code[: arrows[0]], code[arrows[0] + 2 :]
        right, probability = _split_probability(right, line_no)
        if len(arrows) > 1:
            raise GrammarError(f"line {line_no}: several '=>' in {raw_line.strip()!r}; write one rule per line")
        pattern = _split_symbols(left, line_no)
        if not pattern:
            raise GrammarError(f"line {line_no}: empty pattern before '=>'; a rule rewrites at least one symbol")
        label = _split_symbols(right, line_no)
        if len(label) != 1:
            what = "no label" if not label else f"{len(label)} labels ({' '.join(s for s, _ in label)})"
            raise GrammarError(f"line {line_no}: {what} after '=>'; a rule has exactly one label")
        name, quoted = label[0]
        if quoted:
            raise GrammarError(f"line {line_no}: label {name!r} is quoted; quotes mark terminals, write the label bare")
        rules.append(_RawRule(tuple(pattern), name, line_no, probability))
    return rules, start, start_line


class RuleSet:
    """
    A language defined by rewriting rules, one ``PATTERN => LABEL`` per line.

    A symbol that appears as a label anywhere is a label; every other symbol, and every quoted
    string, is a terminal. ``%start S [T ...]`` names the goal labels; without it the goal is
    the one label that occurs in no pattern. A rule may end with its probability, ``Det N => NP [0.7]``
    (NLTK's PCFG notation): then every rule has one and each label's rules sum to 1, within
    :data:`PROBABILITY_TOLERANCE`. Build one with :meth:`from_text`, :meth:`from_file`, :meth:`builtin`,
    :meth:`from_nltk` or :meth:`from_treebank`.

    :param text: the RuleSet text
    :param name: a name for messages and rendering
    """

    def __init__(self, text: str, name: str = "<text>") -> None:
        raw_rules, start, start_line = _parse_lines(text)
        if not raw_rules:
            raise GrammarError("no rules found; write at least one 'PATTERN => LABEL' line")
        self.name = name
        self.text = text
        label_names = list(dict.fromkeys(rule.label for rule in raw_rules))
        label_set = set(label_names)
        self.rules: tuple[Rule, ...] = tuple(
            Rule(
                tuple(Symbol(s, not quoted and s in label_set) for s, quoted in rule.pattern),
                rule.label,
                rule.line,
                rule.probability,
            )
            for rule in raw_rules
        )
        self.labels: tuple[str, ...] = tuple(label_names)
        alphabet: dict[Symbol, None] = {}
        for rule in self.rules:
            alphabet.update(dict.fromkeys(rule.pattern))
            alphabet[Symbol(rule.label, True)] = None
        self.alphabet: tuple[Symbol, ...] = tuple(alphabet)
        self.terminals: tuple[str, ...] = tuple(s.name for s in self.alphabet if not s.is_label)
        self.start: tuple[str, ...] = self._goal_labels(start, start_line)
        self._check_duplicates()
        self._check_probabilities()
        self._check_unary_cycles()
        # Shortest sentence length and shortest derivation height of each label.
        self.min_yield: dict[str, int] = self._shortest(sum)
        self.min_height: dict[str, int] = self._shortest(lambda values: 1 + max(values))
        self._check_productive()
        self._warn_unreachable()

    # --- constructors -------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, name: str = "<text>") -> RuleSet:
        """
        Load a RuleSet from its text.

        :param text: rules in the ``PATTERN => LABEL`` format
        :param name: a name used in messages
        """
        return cls(text, name)

    @classmethod
    def from_file(cls, path: str | Path) -> RuleSet:
        """
        Load a RuleSet from a file.

        :param path: a text file in the ``PATTERN => LABEL`` format
        """
        path = Path(path)
        if not path.is_file():
            raise GrammarError(f"grammar file {str(path)!r} not found; give a RuleSet file or one of {available_grammars()}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise GrammarError(f"grammar file {str(path)!r} is not UTF-8 text ({error}); save it as UTF-8") from error
        try:
            return cls(text, path.name)
        except GrammarError as error:
            raise GrammarError(f"{path}: {error}") from None

    @classmethod
    def builtin(cls, name: str) -> RuleSet:
        """
        Load a grammar shipped with the package.

        :param name: one of :func:`available_grammars`
        """
        if name not in available_grammars():
            raise GrammarError(f"unknown built-in grammar {name!r}; available: {', '.join(available_grammars())}")
        text = resources.files(_GRAMMAR_PACKAGE).joinpath(name + _GRAMMAR_SUFFIX).read_text(encoding="utf-8")
        return cls(text, name)

    @classmethod
    def from_nltk(cls, grammar: Any, name: str = "<nltk>") -> RuleSet:
        """
        Convert a grammar in NLTK's CFG or PCFG notation (``S -> NP VP [0.6] | VP [0.4]``), parsed by NLTK itself.

        :param grammar: the notation as a string (a PCFG when its rules carry probabilities), an ``nltk.CFG``
            or an ``nltk.PCFG``
        :param name: a name used in messages
        """
        nltk = _import_nltk()
        if isinstance(grammar, str):
            reader = nltk.PCFG if _NLTK_PROBABILITY_RE.search(grammar) else nltk.CFG
            try:
                grammar = reader.fromstring(grammar)
            except ValueError as error:
                raise GrammarError(f"{name}: NLTK could not read the grammar: {error}") from error
        return cls(_nltk_rules_text(grammar.start().symbol(), grammar.productions(), name), name)

    @classmethod
    def from_treebank(cls, trees: Iterable[Any], name: str = "<treebank>") -> RuleSet:
        """
        Read a weighted grammar (a PCFG) off parse trees with NLTK's ``induce_pcfg``: one rule per production
        found, with its relative frequency among the productions of its label as probability.

        The terminals are the tokens of the trees' leaves (``-LRB-`` is ``(``, as :mod:`sb3_parsing.trees` reads
        leaves) and the goal labels their root labels.

        :param trees: ``nltk.Tree`` objects or bracketed strings (``(S (NP (Det the) (N dog)) (VP barks))``), e.g. the
            ``tree`` of each :class:`~sb3_parsing.corpus.TreeSentence` of ``load_trees``
        :param name: a name used in messages
        """
        from sb3_parsing.trees import leaf_token, read_tree  # trees builds on this module

        nltk = _import_nltk()
        parsed: list[Any] = []
        for index, tree in enumerate(trees, start=1):
            try:
                tree = read_tree(tree).copy(deep=True)
            except GrammarError as error:
                raise GrammarError(f"{name}: tree {index}: {error}") from None
            for position in tree.treepositions("leaves"):
                tree[position] = leaf_token(tree[position])
            parsed.append(tree)
        if not parsed:
            raise GrammarError(f"{name}: no trees given; a grammar is read off at least one tree")
        roots = list(dict.fromkeys(tree.label() for tree in parsed))
        productions = [production for tree in parsed for production in tree.productions()]
        pcfg = nltk.induce_pcfg(nltk.Nonterminal(roots[0]), productions)
        return cls(_nltk_rules_text(" ".join(roots), pcfg.productions(), name), name)

    def to_nltk(self) -> Any:
        """
        Return the same grammar as an ``nltk.CFG``, or an ``nltk.PCFG`` when it is weighted.

        Several goal labels get a fresh start symbol ``%START`` (with equal probabilities in a PCFG, as the sampler
        picks a goal label).
        """
        nltk = _import_nltk()

        def convert(symbol: Symbol) -> Any:
            return nltk.Nonterminal(symbol.name) if symbol.is_label else symbol.name

        rules = [(nltk.Nonterminal(r.label), [convert(s) for s in r.pattern], r.probability) for r in self.rules]
        start = nltk.Nonterminal(self.start[0])
        if len(self.start) > 1:
            start = nltk.Nonterminal("%START")
            rules += [(start, [nltk.Nonterminal(s)], 1.0 / len(self.start)) for s in self.start]
        if self.is_weighted:
            return nltk.PCFG(start, [nltk.ProbabilisticProduction(lhs, rhs, prob=p) for lhs, rhs, p in rules])
        return nltk.CFG(start, [nltk.Production(lhs, rhs) for lhs, rhs, _ in rules])

    # --- derived facts --------------------------------------------------------------------
    @property
    def n_rules(self) -> int:
        """Number of rules (the number of columns in ``columns="rules"``)."""
        return len(self.rules)

    @property
    def n_labels(self) -> int:
        """Number of labels (the number of columns in ``columns="labels"``)."""
        return len(self.labels)

    @property
    def is_weighted(self) -> bool:
        """Whether the rules carry probabilities (the RuleSet is a PCFG)."""
        return self.rules[0].probability is not None

    def __repr__(self) -> str:
        return f"RuleSet(name={self.name!r}, rules={self.n_rules}, labels={self.n_labels}, terminals={len(self.terminals)})"

    def __str__(self) -> str:
        return "\n".join([f"%start {' '.join(self.start)}", *(self.format_rule(rule) for rule in self.rules)])

    def format_rule(self, rule: Rule) -> str:
        """
        A rule as a line of this RuleSet's text (it reads back as the same rule).

        :param rule: a rule, of this RuleSet or not
        """

        # A terminal spelled like a label ('NP') must stay quoted, or it would load back as the label.
        def show(symbol: Symbol) -> str:
            return _quote(symbol.name) if not symbol.is_label and symbol.name in self.labels else str(symbol)

        return f"{' '.join(show(s) for s in rule.pattern)} => {rule.label}{_probability_suffix(rule.probability)}"

    # Pickle the text only: the RuleSet is rebuilt (and re-validated) from it.
    def __reduce__(self) -> tuple[Any, ...]:
        return (RuleSet, (self.text, self.name))

    # --- validation -----------------------------------------------------------------------
    def _first_line_of(self, label: str) -> int:
        return next(rule.line for rule in self.rules if rule.label == label)

    def _goal_labels(self, start: list[str] | None, start_line: int) -> tuple[str, ...]:
        if start is not None:
            for label in start:
                if label not in self.labels:
                    raise GrammarError(
                        f"line {start_line}: unknown %start label {label!r}; labels are: {', '.join(self.labels)}"
                    )
            return tuple(dict.fromkeys(start))
        used = {symbol.name for rule in self.rules for symbol in rule.pattern if symbol.is_label}
        roots = [label for label in self.labels if label not in used]
        if len(roots) != 1:
            found = f"{len(roots)} ({', '.join(roots)})" if roots else "none"
            raise GrammarError(
                f"line {self.rules[0].line}: cannot infer the goal label: labels used in no pattern: {found}; "
                "add a line '%start LABEL'"
            )
        return tuple(roots)

    def _check_duplicates(self) -> None:
        seen: dict[tuple[tuple[Symbol, ...], str], int] = {}
        for rule in self.rules:
            key = (rule.pattern, rule.label)
            if key in seen:
                raise GrammarError(f"line {rule.line}: duplicate rule '{rule}' (also on line {seen[key]}); remove one")
            seen[key] = rule.line

    def _check_probabilities(self) -> None:
        """Either every rule has a probability or none has; those of one label sum to 1."""
        first = self.rules[0]
        for rule in self.rules:
            if (rule.probability is None) != (first.probability is None):
                weighted, unweighted = (first, rule) if rule.probability is None else (rule, first)
                raise GrammarError(
                    f"line {unweighted.line}: rule '{unweighted}' has no probability but the rule on line "
                    f"{weighted.line} has one; give every rule a probability ('Det N => NP [0.7]') or none"
                )
        if first.probability is None:
            return
        totals: dict[str, float] = {}
        for rule in self.rules:
            totals[rule.label] = totals.get(rule.label, 0.0) + rule.probability  # type: ignore[operator]
        for label, total in totals.items():
            if not abs(total - 1.0) < PROBABILITY_TOLERANCE:
                lines = ", ".join(str(r.line) for r in self.rules if r.label == label)
                raise GrammarError(
                    f"line {self._first_line_of(label)}: the probabilities of the rules of {label!r} "
                    f"(lines {lines}) sum to {total:.6g}, not 1; change them so that they sum to 1"
                )

    def _check_unary_cycles(self) -> None:
        """Reject ``A => B ... B => A``: such a grammar has infinitely many parses of a sentence."""
        order = unary_chain_order(self.rules)
        if order is not None:
            return
        # Walk unary rules among the labels left in a cycle until a label repeats.
        chain = [r for r in self.rules if r.is_unary_chain]
        in_cycle = _labels_in_unary_cycles(chain)
        rule = next(r for r in chain if r.label in in_cycle and r.pattern[0].name in in_cycle)
        path = [rule]
        seen = {rule.pattern[0].name: 0}
        while rule.label not in seen:
            seen[rule.label] = len(path)
            rule = next(r for r in chain if r.pattern[0].name == rule.label and r.label in in_cycle)
            path.append(rule)
        cycle = path[seen[rule.label] :]
        described = ", ".join(f"'{r}' (line {r.line})" for r in cycle)
        raise GrammarError(
            f"line {cycle[-1].line}: unary cycle {described}: infinitely many parses; remove one of these rules"
        )

    def _shortest(self, combine: Callable[[list[int]], int]) -> dict[str, int]:
        """
        Least value over derivation trees of each label (Knuth's generalization of Dijkstra's algorithm:
        ``combine`` never gives less than its inputs, so a label's value is final when it is the least pending).

        :param combine: a rule's value from its pattern's values (terminals count 1)
        :return: the value of every productive label (an unproductive label derives no terminal string)
        """
        waiting = [sum(s.is_label for s in rule.pattern) for rule in self.rules]  # labels of the pattern not final yet
        users: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            for symbol in rule.pattern:
                if symbol.is_label:
                    users.setdefault(symbol.name, []).append(index)
        best: dict[str, int] = {}
        # Rules whose patterns are all terminals start the search.
        pending = [(combine([1] * len(r.pattern)), r.label) for r, count in zip(self.rules, waiting, strict=True) if not count]
        heapq.heapify(pending)
        while pending:
            value, label = heapq.heappop(pending)
            if label in best:
                continue
            best[label] = value
            for index in users.get(label, []):
                waiting[index] -= 1
                if waiting[index] == 0:
                    rule = self.rules[index]
                    heapq.heappush(pending, (combine([best[s.name] if s.is_label else 1 for s in rule.pattern]), rule.label))
        return best

    def _check_productive(self) -> None:
        """Reject labels that derive no terminal string (their rules can never complete)."""
        for label in self.labels:
            if label not in self.min_yield:
                raise GrammarError(
                    f"line {self._first_line_of(label)}: label {label!r} derives no terminal string "
                    "(every rule for it needs itself or another such label); add a rule that ends in terminals"
                )

    def _warn_unreachable(self) -> None:
        reachable = set(self.start)
        frontier = list(self.start)
        while frontier:
            label = frontier.pop()
            for rule in self.rules:
                if rule.label == label:
                    for symbol in rule.pattern:
                        if symbol.is_label and symbol.name not in reachable:
                            reachable.add(symbol.name)
                            frontier.append(symbol.name)
        unreachable = [label for label in self.labels if label not in reachable]
        if not unreachable:
            return
        listed = ", ".join(repr(label) for label in unreachable)
        lines = ", ".join(str(self._first_line_of(label)) for label in unreachable)
        one = len(unreachable) == 1
        message = (
            f"{self.name}: {'label' if one else 'labels'} {listed} {'is' if one else 'are'} unreachable from "
            f"{', '.join(self.start)} ({'line' if one else 'lines'} {lines}); {'its' if one else 'their'} rules never "
            "take part in a parse"
        )
        # The usual cause is a label spelled two ways (`Det N => Np` beside `NP VP => S`): the spelling used
        # in patterns is then read as a word. A word in the label's own rules only (`b => B`) is its lexicon.
        by_folded: dict[str, list[Symbol]] = {}
        for symbol in self.alphabet:
            by_folded.setdefault(symbol.name.casefold(), []).append(symbol)
        twins = [
            (label, other)
            for label in unreachable
            for other in by_folded[label.casefold()]
            if (other.is_label and other.name != label)
            or (not other.is_label and any(other in r.pattern for r in self.rules if r.label != label))
        ]
        if twins:
            spelled = "; ".join(
                f"{label!r} and the {'label' if other.is_label else 'word'} {other.name!r}" for label, other in twins
            )
            message += f". Likely a label spelled two ways: {spelled}; use one spelling"
        warnings.warn(message, stacklevel=_stacklevel_outside_package())


def _labels_in_unary_cycles(chain: list[Rule]) -> set[str]:
    """Labels left after repeatedly removing those with no incoming unary rule (Kahn's algorithm)."""
    remaining = {r.label for r in chain} | {r.pattern[0].name for r in chain}
    changed = True
    while changed:
        targets = {r.label for r in chain if r.pattern[0].name in remaining and r.label in remaining}
        sources = {r.pattern[0].name for r in chain if r.pattern[0].name in remaining and r.label in remaining}
        keep = targets & sources
        changed = keep != remaining
        remaining = keep
    return remaining


def unary_chain_order(rules: tuple[Rule, ...] | list[Rule]) -> list[Rule] | None:
    """
    Order the unary chain rules (``A => B``) so that a rule comes after every rule producing its input.

    :param rules: the rules of a RuleSet
    :return: the ordered unary rules, or ``None`` when they form a cycle
    """
    chain = [r for r in rules if r.is_unary_chain]
    indegree: dict[str, int] = {}
    outgoing: dict[str, list[Rule]] = {}
    for rule in chain:
        indegree.setdefault(rule.pattern[0].name, 0)
        indegree[rule.label] = indegree.get(rule.label, 0) + 1
        outgoing.setdefault(rule.pattern[0].name, []).append(rule)
    ready = [label for label, degree in indegree.items() if degree == 0]
    order: list[Rule] = []
    while ready:
        for rule in outgoing.get(ready.pop(), []):
            order.append(rule)
            indegree[rule.label] -= 1
            if indegree[rule.label] == 0:
                ready.append(rule.label)
    return order if len(order) == len(chain) else None


def _stacklevel_outside_package() -> int:
    """
    The ``stacklevel`` that attributes a warning, raised by the caller of this function, to the first frame
    outside this package: the user's code, whichever constructor or env built the RuleSet.
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def _import_nltk() -> Any:
    try:
        import nltk
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("NLTK grammars and trees need nltk: pip install nltk") from error
    return nltk


# A probability in NLTK's notation ([0.7], [1], [.5], [1e-3]); '[' quoted as a terminal does not match.
_NLTK_PROBABILITY_RE = re.compile(r"\[\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*\]")


def _nltk_rules_text(start: str, productions: Iterable[Any], name: str) -> str:
    """The RuleSet text of NLTK productions (probabilities kept when they are ``ProbabilisticProduction``)."""
    nltk = _import_nltk()
    lines = [f"%start {start}"]
    for production in productions:
        if not production.rhs():
            raise GrammarError(f"{name}: empty production {production}; RuleSets have no empty patterns")
        pattern = " ".join(s.symbol() if isinstance(s, nltk.Nonterminal) else _quote(s) for s in production.rhs())
        probability = production.prob() if isinstance(production, nltk.ProbabilisticProduction) else None
        lines.append(f"{pattern} => {production.lhs().symbol()}{_probability_suffix(probability)}")
    return "\n".join(lines)


def _quote(name: str) -> str:
    return f'"{name}"' if "'" in name else f"'{name}'"


def available_grammars() -> list[str]:
    """Names of the grammars shipped with the package, for ``RuleSet.builtin`` and ``grammar=``."""
    files = resources.files(_GRAMMAR_PACKAGE).iterdir()
    return sorted(f.name[: -len(_GRAMMAR_SUFFIX)] for f in files if f.name.endswith(_GRAMMAR_SUFFIX))
