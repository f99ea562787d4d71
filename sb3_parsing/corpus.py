"""
Sentences for the game: sampled from a RuleSet (with the trees sampled), or read from a list or a file of sentences
or of bracketed trees; split into train and test, and checked against the grammar.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np

from sb3_parsing.grammar import GrammarError, Rule, RuleSet
from sb3_parsing.oracle import Oracle
from sb3_parsing.trees import read_tree, token_leaf, tree_label, tree_nodes, tree_string, tree_tokens

__all__ = [
    "SPLITS",
    "Located",
    "TreeSentence",
    "check_sentences",
    "load_sentences",
    "load_trees",
    "sample_sentences",
    "sample_trees",
    "split_sentences",
]

SPLITS = ("train", "test", "all")
Sentence = tuple[str, ...]
_GIVE_UP_AFTER = 2000
# A bracketed tree line opens with a bracket and a label ("(S (NP ..."); a sentence whose first token is a
# bracket ("( 1 + 2 )") has a space after it.
_TREE_LINE_RE = re.compile(r"^\s*\([^\s()]")
# Sentence errors listed in one message before "and N more".
MAX_REPORTED_ERRORS = 10
# Terminals listed in an unknown-token message (a broad grammar has thousands).
_LISTED_TERMINALS = 30
_T = TypeVar("_T")


class TreeSentence(NamedTuple):
    """
    A sentence with its parse tree.

    :param tokens: the sentence
    :param tree: the bracketed tree (nltk's format; leaves are the tokens, written as :func:`trees.token_leaf` writes them)
    """

    tokens: tuple[str, ...]
    tree: str


class Located(list[_T]):
    """
    A list of sentences (or trees) that remembers where each came from, for error messages.

    :param items: the sentences
    :param origins: for each sentence where it was read, e.g. ``"corpus.txt line 3"`` or ``"sentences[2]"``
    """

    def __init__(self, items: Iterable[_T], origins: Iterable[str]) -> None:
        super().__init__(items)
        self.origins: tuple[str, ...] = tuple(origins)
        if len(self.origins) != len(self):
            raise ValueError(f"{len(self)} sentences but {len(self.origins)} origins")


# --- sampling --------------------------------------------------------------------------------
class _Derivation(NamedTuple):
    tokens: Sentence
    rules: tuple[Rule, ...]  # the rules applied, in preorder (leftmost first)


def sample_sentences(
    ruleset: RuleSet,
    n_sentences: int,
    min_len: int,
    max_len: int,
    max_depth: int | None = None,
    seed: int = 0,
) -> list[Sentence]:
    """
    Sample distinct sentences by random derivations from the goal labels: rules are drawn uniformly, or by their
    probability when the RuleSet is weighted (among the rules that can still end within the bounds).

    :param ruleset: the language
    :param n_sentences: how many distinct sentences to look for
    :param min_len: fewest tokens of a sentence
    :param max_len: most tokens of a sentence
    :param max_depth: most rules on a path from the goal label to a token (default: ``2 * max_len + 4``)
    :param seed: seed of the sampler; the same seed gives the same sentences
    :return: the sentences found, in the order found (fewer than asked when the language is small:
        sampling stops after 2000 draws in a row bring nothing new); the tokens of :func:`sample_trees`
    """
    return [derivation.tokens for derivation in _sample(ruleset, n_sentences, min_len, max_len, max_depth, seed)]


def sample_trees(
    ruleset: RuleSet,
    n_sentences: int,
    min_len: int,
    max_len: int,
    max_depth: int | None = None,
    seed: int = 0,
) -> list[TreeSentence]:
    """
    Sample distinct sentences with the trees sampled for them: the draws of :func:`sample_sentences` with the same
    arguments (its sentences, in the same order), each with the first tree drawn for it.

    :param ruleset: the language
    :param n_sentences: how many distinct sentences to look for
    :param min_len: fewest tokens of a sentence
    :param max_len: most tokens of a sentence
    :param max_depth: most rules on a path from the goal label to a token (default: ``2 * max_len + 4``)
    :param seed: seed of the sampler
    :return: the sentences and their trees, one node per rule application, labelled with the grammar's labels
    """
    derivations = _sample(ruleset, n_sentences, min_len, max_len, max_depth, seed)
    return [TreeSentence(d.tokens, _tree_string(d)) for d in derivations]


def _sample(
    ruleset: RuleSet, n_sentences: int, min_len: int, max_len: int, max_depth: int | None, seed: int
) -> list[_Derivation]:
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be at least 1, got {n_sentences}")
    max_depth = 2 * max_len + 4 if max_depth is None else max_depth
    rules_of: dict[str, list[Rule]] = {label: [r for r in ruleset.rules if r.label == label] for label in ruleset.labels}
    rng = np.random.default_rng(seed)
    found: dict[Sentence, _Derivation] = {}
    fruitless = 0  # attempts since the last new sentence: a small language runs out of them
    for _ in range(50 * n_sentences):
        goal = ruleset.start[int(rng.integers(len(ruleset.start)))]
        derivation = _derive(goal, ruleset, rules_of, max_depth, max_len, rng)
        fruitless += 1
        if derivation is not None and len(derivation.tokens) >= min_len and derivation.tokens not in found:
            found[derivation.tokens] = derivation
            fruitless = 0
            if len(found) == n_sentences:
                break
        if fruitless == _GIVE_UP_AFTER:
            break
    if not found:
        raise GrammarError(
            f"{ruleset.name}: sampled no sentence of {min_len} to {max_len} tokens within depth {max_depth}; "
            "widen the length range or raise max_depth"
        )
    return list(found.values())


def _draw(choices: list[Rule], rng: np.random.Generator) -> Rule:
    """A rule among ``choices``: uniformly (one integer draw), or by probability in a weighted RuleSet."""
    if choices[0].probability is None:
        return choices[int(rng.integers(len(choices)))]
    cumulative = np.cumsum(np.array([rule.probability for rule in choices], dtype=float))
    # min(): a draw at the very top of the last interval (rounding) still picks the last rule
    return choices[min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(choices) - 1)]


def _derive(
    goal: str, ruleset: RuleSet, rules_of: dict[str, list[Rule]], max_depth: int, max_len: int, rng: np.random.Generator
) -> _Derivation | None:
    """
    One random derivation, expanded leftmost first, choosing only rules that can still end within
    ``max_depth`` rules from the root and ``max_len`` tokens; ``None`` when no rule fits.
    """
    tokens: list[str] = []
    applied: list[Rule] = []
    # Pending symbols as (name, is_label, rules allowed below), popped leftmost first.
    stack: list[tuple[str, bool, int]] = [(goal, True, max_depth)]
    pending_min = ruleset.min_yield[goal]  # shortest yield of everything on the stack
    while stack:
        name, is_label, depth = stack.pop()
        if not is_label:
            tokens.append(name)
            pending_min -= 1
            continue
        pending_min -= ruleset.min_yield[name]
        room = max_len - len(tokens) - pending_min
        choices = [
            rule
            for rule in rules_of[name]
            if all(not s.is_label or ruleset.min_height[s.name] <= depth for s in rule.pattern)
            and sum(ruleset.min_yield[s.name] if s.is_label else 1 for s in rule.pattern) <= room
        ]
        if not choices:
            return None
        rule = _draw(choices, rng)
        applied.append(rule)
        stack.extend((s.name, s.is_label, depth - 1) for s in reversed(rule.pattern))
        pending_min += sum(ruleset.min_yield[s.name] if s.is_label else 1 for s in rule.pattern)
    return _Derivation(tuple(tokens), tuple(applied))


def _tree_string(derivation: _Derivation) -> str:
    """The bracketed tree of a derivation (its rules in preorder)."""
    rules = iter(derivation.rules)
    tokens = iter(derivation.tokens)

    def node() -> str:
        rule = next(rules)
        children = [node() if symbol.is_label else token_leaf(next(tokens)) for symbol in rule.pattern]
        return f"({tree_label(rule.label)} {' '.join(children)})"

    return node()


# --- reading ---------------------------------------------------------------------------------
def _read_lines(path: Path) -> list[tuple[str, int]]:
    """The non-blank, non-comment lines of a sentence file with their 1-based numbers."""
    if not path.is_file():
        raise GrammarError(
            f"sentence file {str(path)!r} not found; give a file with one sentence per line, "
            "or a list of sentences (a single string is read as a path)"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise GrammarError(f"sentence file {str(path)!r} is not UTF-8 text ({error}); save it as UTF-8") from error
    kept = [(line, number) for number, line in enumerate(lines, start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not kept:
        raise GrammarError(f"sentence file {str(path)!r} holds no sentence; write one sentence per line")
    return kept


def _entries(source: str | Path | Sequence[Any]) -> list[tuple[Any, str]]:
    """The entries of a file (its lines) or of a list, each with where it came from."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        return [(line, f"{path} line {number}") for line, number in _read_lines(path)]
    entries = [(item, f"sentences[{index}]") for index, item in enumerate(source)]
    if not entries:
        raise GrammarError("sentences must be a non-empty list of non-empty sentences (strings of space-separated tokens)")
    return entries


def _is_tree(entry: Any) -> bool:
    if isinstance(entry, str):
        return _TREE_LINE_RE.match(entry) is not None
    nltk = sys.modules.get("nltk")  # an nltk.Tree exists only once nltk is imported
    return nltk is not None and isinstance(entry, nltk.Tree)


def _tree_entry(entry: Any, origin: str) -> TreeSentence:
    try:
        tree = read_tree(entry.strip() if isinstance(entry, str) else entry)
    except GrammarError as error:
        raise GrammarError(f"{origin}: {error}") from None
    return TreeSentence(tree_tokens(tree), tree_string(tree))


def _dedupe(items: list[_T], origins: list[str], key: Any) -> Located[_T]:
    """Keep the first of equal items (by ``key``), with its origin."""
    first: dict[Any, int] = {}
    for index, item in enumerate(items):
        first.setdefault(key(item), index)
    return Located((items[i] for i in first.values()), (origins[i] for i in first.values()))


def load_sentences(source: str | Path | Sequence[Any]) -> Located[Sentence]:
    """
    Read sentences, one per line of a file or one per item of a list: tokens separated by whitespace, or a
    bracketed tree (``(S (NP John) (VP sleeps))``), read as its leaves. Blank lines and ``#`` comments are skipped;
    a sentence given twice is kept once.

    :param source: a path to a text file, or a list of sentences (strings, token sequences or ``nltk.Tree``)
    :return: the sentences, with where each was read (:attr:`Located.origins`) for :func:`check_sentences`
    """
    sentences: list[Sentence] = []
    origins: list[str] = []
    for entry, origin in _entries(source):
        if _is_tree(entry):
            sentence = _tree_entry(entry, origin).tokens
        else:
            sentence = tuple(entry.split()) if isinstance(entry, str) else tuple(entry)
            wrong = [token for token in sentence if not isinstance(token, str)]
            if wrong:
                raise GrammarError(f"{origin} ({sentence!r}) holds tokens that are not strings: {wrong!r}; give strings")
        if not sentence:
            raise GrammarError(
                f"{origin} is empty: sentences must be a non-empty list of non-empty sentences "
                "(strings of space-separated tokens)"
            )
        sentences.append(sentence)
        origins.append(origin)
    return _dedupe(sentences, origins, key=lambda sentence: sentence)


def load_trees(source: str | Path | Sequence[Any]) -> Located[TreeSentence]:
    """
    Read parse trees, one bracketed tree per line of a file (the format nltk reads, Penn Treebank leaves such as
    ``-LRB-``) or per item of a list. Blank lines and ``#`` comments are skipped; a tree given twice is kept once.
    Check them against a grammar with :func:`check_sentences`.

    :param source: a path to a text file, or a list of bracketed strings or ``nltk.Tree``
    :return: the sentences with their trees, with where each was read (:attr:`Located.origins`)
    """
    trees: list[TreeSentence] = []
    origins: list[str] = []
    for entry, origin in _entries(source):
        if not _is_tree(entry):
            raise GrammarError(
                f"{origin}: {str(entry).strip()[:60]!r} is not a bracketed tree; write one tree per line, "
                "e.g. '(S (NP John) (VP sleeps))'"
            )
        trees.append(_tree_entry(entry, origin))
        origins.append(origin)
    return _dedupe(trees, origins, key=lambda tree: tree)


def _in_test_split(sentence: Sentence | TreeSentence, test_fraction: float) -> bool:
    """
    A sentence's split depends on its text only (a stable hash), so train and test never overlap (a tree goes
    where its sentence goes).
    """
    tokens = sentence.tokens if isinstance(sentence, TreeSentence) else sentence
    digest = hashlib.blake2b(" ".join(tokens).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < test_fraction * 2**64


_S = TypeVar("_S", Sentence, TreeSentence)


def split_sentences(sentences: Sequence[_S], split: str, test_fraction: float) -> list[_S]:
    """
    Keep the sentences of one split.

    :param sentences: all sentences (token tuples or :class:`TreeSentence`)
    :param split: ``"train"``, ``"test"`` or ``"all"``
    :param test_fraction: share of sentences held out for testing, in [0, 1]
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split={split!r}; use one of {SPLITS}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if split == "all":
        return list(sentences)
    kept = [s for s in sentences if _in_test_split(s, test_fraction) == (split == "test")]
    if not kept:
        raise GrammarError(
            f"split={split!r} keeps none of the {len(sentences)} sentences (test_fraction={test_fraction}); "
            "give more sentences, change test_fraction, or use split='all'"
        )
    return kept


def check_sentences(
    oracle: Oracle,
    sentences: Sequence[Sentence] | Sequence[TreeSentence],
    max_len: int,
    origins: Sequence[str] | None = None,
    parse: bool = True,
) -> None:
    """
    Fail early on sentences the game cannot use, listing every bad one (up to :data:`MAX_REPORTED_ERRORS`): too
    long, with unknown tokens (1-based word positions), with no parse, or, for trees, not a derivation of the grammar.

    :param oracle: parses each sentence (the analyses are cached for the episodes)
    :param sentences: the sentences to check, as token tuples or :class:`TreeSentence`
    :param max_len: most tokens a sentence may have
    :param origins: where each sentence comes from (default: the ``origins`` of a :class:`Located` list, else
        ``sentences[i]``)
    :param parse: also parse each sentence (``False``: the cheap checks only; a sentence without a parse then fails
        when it is first analysed)
    :raises GrammarError: naming each bad sentence, where it comes from, and how to fix it
    """
    if origins is None:
        origins = sentences.origins if isinstance(sentences, Located) else [f"sentences[{i}]" for i in range(len(sentences))]
    ruleset = oracle.ruleset
    terminals = " ".join(ruleset.terminals[:_LISTED_TERMINALS])
    if len(ruleset.terminals) > _LISTED_TERMINALS:
        terminals += f" ... ({len(ruleset.terminals)} in all)"
    problems: list[str] = []
    for sentence, origin in zip(sentences, origins, strict=True):
        if isinstance(sentence, TreeSentence):
            tokens, tree = sentence.tokens, sentence.tree
        else:
            tokens, tree = cast(Sentence, sentence), None  # a token tuple (mypy cannot tell it from a TreeSentence)
        text = " ".join(tokens)
        problem = None
        unknown = [f"{tokens[i]!r} (word {i + 1})" for i in oracle.unknown_tokens(tokens)]
        if len(tokens) > max_len:
            problem = f"{text!r} has {len(tokens)} tokens, more than max_len={max_len}; raise max_len or shorten the sentence"
        elif unknown:
            problem = (
                f"{text!r}: unknown {'tokens' if len(unknown) > 1 else 'token'} {', '.join(unknown)}; "
                f"the terminals of {ruleset.name} are: {terminals}"
            )
        else:
            try:
                if tree is not None:
                    tree_nodes(tree, ruleset)
                if parse:
                    oracle.analyze(tokens)
            except GrammarError as error:
                problem = str(error)
        if problem is not None:
            problems.append(f"{origin}: {problem}")
    if len(problems) == 1:
        raise GrammarError(problems[0])
    if problems:
        shown = problems[:MAX_REPORTED_ERRORS]
        more = f"\n  and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise GrammarError(f"{len(problems)} sentences cannot be used:\n  " + "\n  ".join(shown) + more)
