"""The shipped weighted grammars (english_v1, english_pcfg) and the large benchmark grammar generator."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest

from sb3_parsing import GrammarError, Oracle, RuleSet
from sb3_parsing.corpus import sample_sentences
from script_loader import load_script


grammar_stats = load_script("grammar_stats")
large_grammar = load_script("large_grammar")


def _load_quietly(load: Callable[..., RuleSet], *args: str) -> RuleSet:
    """Load a grammar with every warning (e.g. an unreachable label) turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load(*args)


@pytest.fixture(scope="module")
def english_v1() -> RuleSet:
    return _load_quietly(RuleSet.builtin, "english_v1")


@pytest.fixture(scope="module")
def large() -> RuleSet:
    return _load_quietly(RuleSet.from_text, large_grammar.make_large_grammar(seed=0), "large")


@pytest.mark.parametrize("name", ["english_v1", "english_pcfg"])
def test_weighted_grammar_probabilities_sum_to_one_per_label(name: str) -> None:
    ruleset = _load_quietly(RuleSet.builtin, name)
    assert ruleset.is_weighted
    totals: dict[str, float] = {}
    for rule in ruleset.rules:
        assert rule.probability is not None and 0.0 < rule.probability <= 1.0
        totals[rule.label] = totals.get(rule.label, 0.0) + rule.probability
    assert totals.keys() == set(ruleset.labels)
    assert all(math.isclose(total, 1.0, abs_tol=1e-5) for total in totals.values()), totals


def test_english_pcfg_is_english_with_weights() -> None:
    plain, weighted = RuleSet.builtin("english"), RuleSet.builtin("english_pcfg")
    assert [(r.pattern, r.label) for r in weighted.rules] == [(r.pattern, r.label) for r in plain.rules]
    assert weighted.labels == plain.labels and weighted.start == plain.start and weighted.alphabet == plain.alphabet


def test_english_v1_size_and_part_of_speech_ambiguity(english_v1: RuleSet) -> None:
    tags = grammar_stats.parts_of_speech(english_v1)
    assert len(english_v1.terminals) >= 1000 and len(tags) >= 1000
    assert english_v1.n_rules - sum(len(labels) for labels in tags.values()) >= 200  # phrase rules
    assert sum(len(labels) > 1 for labels in tags.values()) >= 300
    assert english_v1.start == ("S",)
    # The classic ambiguous words, each with its usual parts of speech (noun/verb, determiner/pronoun, ...).
    assert {"Ns", "Vt_d", "Vt_b"} <= tags["saw"]
    assert {"DetS", "Pro3", "Comp", "Rel"} <= tags["that"]
    assert {"P", "TO"} <= tags["to"]
    assert {"Det", "ProO"} <= tags["her"]
    assert {"Md", "Ns"} <= tags["can"]
    assert {"Ns", "Vi_b", "Vi_n"} <= tags["run"]


@pytest.mark.parametrize(
    ("sentence", "least_parses"),
    [
        ("John saw the man with a telescope .", 2),  # the PP on the verb phrase or on the noun phrase
        ("did the dog see the cat in the park ?", 2),
        ("what did Mary give the children ?", 1),
        ("the cat that the dog chased was sleeping .", 1),
        ("she said that the old man wanted to read a book .", 1),
        ("the dogs and the cats ran and jumped in the garden .", 2),
        ("please look up the word .", 2),  # "up" a particle, or a preposition heading "up the word"
    ],
)
def test_english_v1_parses_english(english_v1: RuleSet, sentence: str, least_parses: int) -> None:
    assert Oracle(english_v1).analyze(tuple(sentence.split())).n_parses >= least_parses


def test_english_v1_rejects_agreement_errors(english_v1: RuleSet) -> None:
    oracle = Oracle(english_v1)
    for wrong in ("the dog see the cat .", "the dogs sees the cat .", "a dogs ran ."):
        with pytest.raises(GrammarError, match="no complete parse"):
            oracle.analyze(tuple(wrong.split()))


def test_english_v1_sampled_sentences_parse(english_v1: RuleSet) -> None:
    sentences = sample_sentences(english_v1, 40, 3, 20, seed=0)
    assert len(sentences) == 40 and all(3 <= len(s) <= 20 for s in sentences)
    oracle = Oracle(english_v1)
    analyses = [oracle.analyze(s) for s in sentences]
    assert all(a.n_parses >= 1 and a.min_actions >= len(a.tokens) for a in analyses)
    assert any(a.n_parses > 1 for a in analyses)


def test_grammar_stats_of_english_pcfg() -> None:
    stats = grammar_stats.grammar_stats(RuleSet.builtin("english_pcfg"), 20, 3, 12, obs_len=16)
    assert (stats["rules"], stats["phrase_rules"], stats["words"], stats["ambiguous_words"]) == (22, 8, 14, 0)
    assert stats["actions_per_step"] == 16 * 22 and stats["sentences"] == 20
    assert 3 <= stats["tokens"]["min"] <= stats["tokens"]["max"] <= 12
    assert 1 <= stats["parses"]["median"] <= stats["parses"]["max"]
    assert stats["min_actions"]["min"] >= stats["tokens"]["min"]


def test_large_grammar_is_deterministic_and_treebank_sized(large: RuleSet) -> None:
    text = large_grammar.make_large_grammar(seed=0)
    assert text == large.text
    assert large_grammar.make_large_grammar(seed=1) != text
    assert large.n_rules >= 5000 and large.n_labels >= 300
    assert sum(rule.is_unary_chain for rule in large.rules) >= 300
    assert max(len(rule.pattern) for rule in large.rules) >= 6
    tags = grammar_stats.parts_of_speech(large)
    assert len(tags) >= 900 and sum(len(labels) > 1 for labels in tags.values()) >= 300


def test_large_grammar_sentences_are_ambiguous(large: RuleSet) -> None:
    sentences = large_grammar.large_grammar_sentences(large, 3, length=20, seed=0)
    assert sentences == large_grammar.large_grammar_sentences(large, 3, length=20, seed=0)
    assert len(set(sentences)) == 3 and all(len(s) == 20 for s in sentences)
    (chosen,) = large_grammar.large_grammar_sentences(large, 1, length=20, seed=0, parses=(10**3, 10**5))
    assert 10**3 <= Oracle(large).analyze(chosen).n_parses <= 10**5
