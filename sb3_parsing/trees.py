"""
Parse trees: bracketed strings (the treebank format nltk reads), their rule applications, and PARSEVAL scores.

A tree is written as nltk and the Penn Treebank write it, ``(S (NP (Det the) (N dog)) (VP (V barks)))``: one node
per rule application, the node's label the rule's label, its children the rule's pattern (a sub-tree for a label, a
leaf for a token). Tokens that would break the brackets are written as the Penn Treebank writes them (``(`` as
``-LRB-``, ``)`` as ``-RRB-``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sb3_parsing.grammar import GrammarError, Rule, RuleSet, Symbol

__all__ = [
    "COLLINS_DELETE_LABELS",
    "COLLINS_EQUIVALENT_LABELS",
    "BracketScore",
    "Node",
    "bracket_score",
    "labeled_brackets",
    "leaf_token",
    "read_tree",
    "token_leaf",
    "tree_label",
    "tree_nodes",
    "tree_string",
    "tree_tokens",
]

_LEAF_ESCAPES = {"(": "-LRB-", ")": "-RRB-"}
_LEAF_UNESCAPES = {escaped: token for token, escaped in _LEAF_ESCAPES.items()}

# EVALB's COLLINS.prm: these labels are not scored (DELETE_LABEL); a word under a deleted part-of-speech label
# (punctuation, empty elements) is removed before spans are counted.
COLLINS_DELETE_LABELS = frozenset({"TOP", "-NONE-", ",", ":", "``", "''", "."})
# COLLINS.prm's EQ_LABEL ADVP PRT: the two labels count as the same.
COLLINS_EQUIVALENT_LABELS: Mapping[str, str] = {"PRT": "ADVP"}

Node = tuple[int, int, int]
"""One rule application of a tree: ``(start, end, rule_index)``, the tokens ``start <= i < end`` it covers."""


def _nltk() -> Any:
    try:
        import nltk
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("trees need nltk: pip install nltk") from error
    return nltk


def token_leaf(token: str) -> str:
    """
    A token as a tree leaf: the Penn Treebank's ``-LRB-`` and ``-RRB-`` for the brackets.

    :param token: a token of a sentence
    """
    return "".join(_LEAF_ESCAPES.get(c, c) for c in token) if any(c in _LEAF_ESCAPES for c in token) else token


def leaf_token(leaf: str) -> str:
    """
    The token a tree leaf stands for (the inverse of :func:`token_leaf` for whole-token brackets).

    :param leaf: a leaf of a tree
    """
    return _LEAF_UNESCAPES.get(leaf, leaf)


def tree_label(label: str) -> str:
    """
    A RuleSet label as a tree node label (brackets written as in :func:`token_leaf`).

    :param label: a label of a RuleSet
    """
    return token_leaf(label)


def read_tree(tree: str | Any) -> Any:
    """
    An ``nltk.Tree`` from a bracketed string (or the tree itself).

    :param tree: a bracketed string or an ``nltk.Tree``
    :raises GrammarError: when the string is not one bracketed tree
    """
    nltk = _nltk()
    if isinstance(tree, nltk.Tree):
        return tree
    if not isinstance(tree, str):
        raise GrammarError(f"a tree must be a bracketed string or an nltk.Tree, got {type(tree).__name__}")
    try:
        parsed = nltk.Tree.fromstring(tree)
    except ValueError as error:
        reason = " ".join(str(error).split())
        raise GrammarError(f"not a bracketed tree nltk reads ({reason}); write e.g. '(S (NP John) (VP sleeps))'") from error
    return parsed


def tree_string(tree: str | Any) -> str:
    """
    A tree as one bracketed line, tokens written as leaves by :func:`token_leaf` (``nltk.Tree.pformat`` would write
    a ``(`` token as is, and the string would not read back).

    :param tree: an ``nltk.Tree`` (e.g. a parse of NLTK's chart parser) or a bracketed string
    """
    nltk = _nltk()

    def write(node: Any) -> str:
        if not isinstance(node, nltk.Tree):
            return token_leaf(node)
        return f"({tree_label(node.label())} {' '.join(write(child) for child in node)})"

    return write(read_tree(tree))


def tree_tokens(tree: str | Any) -> tuple[str, ...]:
    """
    The sentence of a tree: its leaves, left to right, as tokens (``-LRB-`` read as ``(``).

    :param tree: a bracketed string or an ``nltk.Tree``
    """
    return tuple(leaf_token(leaf) for leaf in read_tree(tree).leaves())


def _show(tree: Any) -> str:
    text = tree_string(tree)
    return text if len(text) <= 80 else text[:77] + "..."


def tree_nodes(tree: str | Any, ruleset: RuleSet) -> list[Node]:
    """
    The rule applications of a tree of ``ruleset``, children before their parent (the order a bottom-up parser
    derives them), preterminals (``(Det the)``: the rule ``the => Det``) included.

    :param tree: a bracketed string or an ``nltk.Tree``
    :param ruleset: the grammar the tree must be a derivation of
    :return: one ``(start, end, rule_index)`` per node of the tree
    :raises GrammarError: naming the production the grammar lacks, or a root that is not a goal label
    """
    nltk = _nltk()
    tree = read_tree(tree)
    label_of = {tree_label(label): label for label in ruleset.labels}
    rule_of = {(rule.pattern, rule.label): index for index, rule in enumerate(ruleset.rules)}
    if label_of.get(tree.label()) not in ruleset.start:
        raise GrammarError(
            f"the tree's root {tree.label()!r} is not a goal label of {ruleset.name} ({', '.join(ruleset.start)}); "
            "give trees of whole sentences"
        )
    nodes: list[Node] = []

    def visit(node: Any, start: int) -> int:
        position = start
        pattern: list[Symbol] = []
        for child in node:
            if isinstance(child, nltk.Tree):
                position = visit(child, position)
                pattern.append(Symbol(label_of.get(child.label(), child.label()), child.label() in label_of))
            else:
                pattern.append(Symbol(leaf_token(child), False))
                position += 1
        label = label_of.get(node.label(), node.label())
        index = rule_of.get((tuple(pattern), label))
        if index is None:
            rule_text = ruleset.format_rule(Rule(tuple(pattern), label, line=0))
            nltk_text = " ".join(s.name if s.is_label else repr(s.name) for s in pattern)
            raise GrammarError(
                f"{ruleset.name} has no rule `{rule_text}` (NLTK: {label} -> {nltk_text}) for {_show(node)}; "
                "add the rule to the grammar or fix the tree"
            )
        nodes.append((start, position, index))
        return position

    visit(tree, 0)
    return nodes


# --- PARSEVAL ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BracketScore:
    """
    Labeled bracket counts of one sentence or, added up (``+``, :func:`sum`), of a corpus: the corpus scores are
    then EVALB's micro averages.

    :param matched: brackets of the test tree also in the gold tree (each gold bracket matched once)
    :param gold: brackets of the gold tree
    :param test: brackets of the test tree
    """

    matched: int
    gold: int
    test: int

    def __add__(self, other: BracketScore) -> BracketScore:
        return BracketScore(self.matched + other.matched, self.gold + other.gold, self.test + other.test)

    def __radd__(self, other: int) -> BracketScore:
        # sum() starts from 0
        if other != 0:
            return NotImplemented
        return self

    @property
    def precision(self) -> float:
        """Matched / test brackets (1.0 when neither tree has a bracket)."""
        return self.matched / self.test if self.test else float(self.gold == 0)

    @property
    def recall(self) -> float:
        """Matched / gold brackets (1.0 when neither tree has a bracket)."""
        return self.matched / self.gold if self.gold else float(self.test == 0)

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall."""
        precision, recall = self.precision, self.recall
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def labeled_brackets(
    tree: str | Any,
    delete_labels: Iterable[str] = COLLINS_DELETE_LABELS,
    equivalent_labels: Mapping[str, str] = COLLINS_EQUIVALENT_LABELS,
) -> tuple[tuple[str, ...], Counter[tuple[str, int, int]]]:
    """
    The scored words and labeled brackets of a tree, as EVALB counts them with COLLINS.prm.

    Preterminals (a label over a single leaf) are not brackets; a word whose preterminal label is deleted is
    removed (spans are counted without it); brackets with a deleted label, or that cover no word, are not counted.

    :param tree: a bracketed string or an ``nltk.Tree``
    :param delete_labels: labels not scored
    :param equivalent_labels: labels scored as another (``PRT`` as ``ADVP``)
    :return: the words kept and the multiset of ``(label, start, end)`` brackets
    """
    nltk = _nltk()
    delete = frozenset(delete_labels)
    words: list[str] = []
    brackets: Counter[tuple[str, int, int]] = Counter()

    def visit(node: Any) -> None:
        start = len(words)
        if len(node) == 1 and not isinstance(node[0], nltk.Tree):  # a preterminal
            if node.label() not in delete:
                words.append(node[0])
            return
        for child in node:
            if isinstance(child, nltk.Tree):
                visit(child)
            else:
                words.append(child)
        if node.label() not in delete and len(words) > start:
            brackets[(equivalent_labels.get(node.label(), node.label()), start, len(words))] += 1

    visit(read_tree(tree))
    return tuple(words), brackets


def bracket_score(
    gold: str | Any,
    test: str | Any,
    delete_labels: Iterable[str] = COLLINS_DELETE_LABELS,
    equivalent_labels: Mapping[str, str] = COLLINS_EQUIVALENT_LABELS,
) -> BracketScore:
    """
    PARSEVAL labeled brackets of a test tree against the gold tree of the same sentence, the EVALB way.

    :param gold: the gold tree (bracketed string or ``nltk.Tree``)
    :param test: the tree to score
    :param delete_labels: labels not scored (default: COLLINS.prm's)
    :param equivalent_labels: labels scored as another (default: COLLINS.prm's)
    :raises ValueError: when the trees are not of the same words
    """
    gold_words, gold_brackets = labeled_brackets(gold, delete_labels, equivalent_labels)
    test_words, test_brackets = labeled_brackets(test, delete_labels, equivalent_labels)
    if gold_words != test_words:
        raise ValueError(f"the trees are of different sentences: {' '.join(gold_words)!r} and {' '.join(test_words)!r}")
    matched = sum((gold_brackets & test_brackets).values())
    return BracketScore(matched, sum(gold_brackets.values()), sum(test_brackets.values()))
