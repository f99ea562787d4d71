"""An independent reference for the oracle: NLTK's chart parser enumerates the trees, and each tree's cells are read off it."""

from __future__ import annotations

from functools import cache

import nltk

from sb3_parsing import Oracle, RuleSet
from sb3_parsing.grammar import Symbol


@cache
def _parser(ruleset: RuleSet) -> nltk.ChartParser:
    return nltk.ChartParser(ruleset.to_nltk())


def nltk_trees(ruleset: RuleSet, tokens: tuple[str, ...]) -> list[nltk.Tree]:
    """Every complete parse tree of ``tokens``, as NLTK's chart parser finds them (under the goal label itself)."""
    return [tree[0] if tree.label() == "%START" else tree for tree in _parser(ruleset).parse(list(tokens))]


def tree_cells(tree: nltk.Tree, oracle: Oracle) -> frozenset[int]:
    """The history cells of the nodes of an NLTK tree: ``start * n_columns + column`` of each rule application."""
    # A symbol is (name, is_label): a quoted terminal may be spelled like a label ('L0' a L0 => L0).
    rule_of = {(rule.label, tuple(rule.pattern)): i for i, rule in enumerate(oracle.ruleset.rules)}
    cells: set[int] = set()

    def walk(node: nltk.Tree, start: int) -> int:
        pattern = tuple(
            Symbol(child.label(), True) if isinstance(child, nltk.Tree) else Symbol(child, False) for child in node
        )
        cells.add(start * oracle.n_columns + oracle.column_of(rule_of[(node.label(), pattern)]))
        position = start
        for child in node:
            position = walk(child, position) if isinstance(child, nltk.Tree) else position + 1
        return position

    walk(tree, 0)
    return frozenset(cells)


def gold_cell_sets(oracle: Oracle, tokens: tuple[str, ...]) -> set[frozenset[int]]:
    """The distinct cell sets of the complete parse trees of ``tokens``."""
    return {tree_cells(tree, oracle) for tree in nltk_trees(oracle.ruleset, tokens)}
