"""Sentences for the game: sampled from a RuleSet, or read from a list or a file; split into train and test."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sb3_parsing.grammar import GrammarError, Rule, RuleSet
from sb3_parsing.oracle import Oracle

__all__ = ["SPLITS", "load_sentences", "sample_sentences", "split_sentences"]

SPLITS = ("train", "test", "all")
Sentence = tuple[str, ...]
_GIVE_UP_AFTER = 2000


def sample_sentences(
    ruleset: RuleSet,
    n_sentences: int,
    min_len: int,
    max_len: int,
    max_depth: int | None = None,
    seed: int = 0,
) -> list[Sentence]:
    """
    Sample distinct sentences by random derivations from the goal labels (rules chosen uniformly).

    :param ruleset: the language
    :param n_sentences: how many distinct sentences to look for
    :param min_len: fewest tokens of a sentence
    :param max_len: most tokens of a sentence
    :param max_depth: most rules on a path from the goal label to a token (default: ``2 * max_len + 4``)
    :param seed: seed of the sampler; the same seed gives the same sentences
    :return: the sentences found, in the order found (fewer than asked when the language is small:
        sampling stops after 2000 draws in a row bring nothing new)
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be at least 1, got {n_sentences}")
    max_depth = 2 * max_len + 4 if max_depth is None else max_depth
    rules_of: dict[str, list[Rule]] = {label: [r for r in ruleset.rules if r.label == label] for label in ruleset.labels}
    rng = np.random.default_rng(seed)
    found: dict[Sentence, None] = {}
    fruitless = 0  # attempts since the last new sentence: a small language runs out of them
    for _ in range(50 * n_sentences):
        goal = ruleset.start[int(rng.integers(len(ruleset.start)))]
        sentence = _derive(goal, ruleset, rules_of, max_depth, max_len, rng)
        fruitless += 1
        if sentence is not None and len(sentence) >= min_len and sentence not in found:
            found[sentence] = None
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
    return list(found)


def _derive(
    goal: str, ruleset: RuleSet, rules_of: dict[str, list[Rule]], max_depth: int, max_len: int, rng: np.random.Generator
) -> Sentence | None:
    """
    One random derivation, expanded leftmost first, choosing only rules that can still end within
    ``max_depth`` rules from the root and ``max_len`` tokens; ``None`` when no rule fits.
    """
    tokens: list[str] = []
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
        rule = choices[int(rng.integers(len(choices)))]
        stack.extend((s.name, s.is_label, depth - 1) for s in reversed(rule.pattern))
        pending_min += sum(ruleset.min_yield[s.name] if s.is_label else 1 for s in rule.pattern)
    return tuple(tokens)


def load_sentences(source: str | Path | Sequence[str]) -> list[Sentence]:
    """
    Read sentences, one per line of a file or one per string, tokens separated by whitespace.

    :param source: a path to a text file, or a list of sentences
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise GrammarError(
                f"sentence file {str(path)!r} not found; give a file with one sentence per line, "
                "or a list of sentences (a single string is read as a path)"
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise GrammarError(f"sentence file {str(path)!r} is not UTF-8 text ({error}); save it as UTF-8") from error
        sentences = [tuple(line.split()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not sentences:
            raise GrammarError(f"sentence file {str(path)!r} holds no sentence; write one sentence per line")
        return list(dict.fromkeys(sentences))
    sentences = [tuple(s.split()) if isinstance(s, str) else tuple(s) for s in source]
    for i, sentence in enumerate(sentences):
        wrong = [token for token in sentence if not isinstance(token, str)]
        if wrong:
            raise GrammarError(f"sentence {i} ({sentence!r}) holds tokens that are not strings: {wrong!r}; give strings")
    if not sentences or any(not s for s in sentences):
        raise GrammarError("sentences must be a non-empty list of non-empty sentences (strings of space-separated tokens)")
    return list(dict.fromkeys(sentences))


def _in_test_split(sentence: Sentence, test_fraction: float) -> bool:
    """A sentence's split depends on its text only (a stable hash), so train and test never overlap."""
    digest = hashlib.blake2b(" ".join(sentence).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < test_fraction * 2**64


def split_sentences(sentences: Sequence[Sentence], split: str, test_fraction: float) -> list[Sentence]:
    """
    Keep the sentences of one split.

    :param sentences: all sentences
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


def check_sentences(oracle: Oracle, sentences: Sequence[Sentence], max_len: int) -> None:
    """
    Fail early, naming the sentence, on sentences the game cannot use.

    :param oracle: parses each sentence (the analyses are cached for the episodes)
    :param sentences: the sentences to check
    :param max_len: most tokens a sentence may have
    """
    for sentence in sentences:
        if len(sentence) > max_len:
            raise GrammarError(
                f"sentence {' '.join(sentence)!r} has {len(sentence)} tokens, more than max_len={max_len}; "
                "raise max_len or shorten the sentence"
            )
        oracle.analyze(sentence)
