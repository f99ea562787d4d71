"""Every user-facing input is checked where it enters, with a message that says what is wrong and how to fix it."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import pytest

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing import GrammarError, LinguisticParseEnv, RuleSet, available_grammars
from sb3_parsing.corpus import load_sentences, sample_sentences, split_sentences

SMALL = "%start S\nNP VP => S\nJohn => NP\nMary => NP\nV NP => VP\nsaw => V\nknew => V\n"


# --- grammars --------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [LinguisticParseEnv, lambda grammar: gym.make("LinguisticParse-v0", grammar=grammar)])
def test_unknown_grammar_name_lists_the_available_ones(make) -> None:
    with pytest.raises(GrammarError, match="'french'") as error:
        make(grammar="french")
    assert all(name in str(error.value) for name in available_grammars())
    with pytest.raises(GrammarError, match="available: arithmetic, dyck, english"):
        RuleSet.builtin("french")


def test_grammar_of_the_wrong_type_or_missing_file(tmp_path) -> None:
    with pytest.raises(GrammarError, match="neither a built-in grammar"):
        LinguisticParseEnv(grammar=3)  # type: ignore[arg-type]
    with pytest.raises(GrammarError, match="not found"):
        RuleSet.from_file(tmp_path / "missing.rules")


def test_non_utf8_files_are_grammar_errors(tmp_path) -> None:
    grammar, sentences = tmp_path / "latin1.rules", tmp_path / "latin1.txt"
    grammar.write_bytes("caf\xe9 => S\n".encode("latin-1"))
    sentences.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(GrammarError, match="not UTF-8"):
        RuleSet.from_file(grammar)
    with pytest.raises(GrammarError, match="not UTF-8"):
        load_sentences(sentences)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a => S\r\nb => S\r\nc d\r\n", 3, "missing '=>'"),  # Windows line ends
        ("a => S\n\x0cb => S\nc =>\n", 3, "no label"),  # a form feed does not start a line
        ("%start S\na => S  # it's a comment\nb => 'S'\n", 3, "is quoted"),
        ("%start S\n'=>' => S\nx => => S\n", 3, "several '=>'"),
        ("%start S\ndon't => S   # a quote inside a word\nS => S\n", 3, "unary cycle"),
    ],
)
def test_malformed_lines_are_named_as_editors_count_them(text: str, line: int, fragment: str) -> None:
    with pytest.raises(GrammarError, match=f"^line {line}: ") as error:
        RuleSet.from_text(text)
    assert fragment in str(error.value)


def test_quoted_arrows_and_hashes_are_terminals() -> None:
    ruleset = RuleSet.from_text("%start\tE\nE '=>' E => E\nE '#' x => E  # a comment\nx => E\ndon't => E # contraction\n")
    assert ruleset.start == ("E",)
    assert {"=>", "#", "x", "don't"} <= set(ruleset.terminals)
    assert RuleSet.from_text(str(ruleset)).rules == ruleset.rules


# --- settings with a fixed set of values -------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(columns="cells"), r"unknown columns='cells'; use one of \('rules', 'labels'\)"),
        (dict(mask_mode="all"), r"unknown mask_mode='all'; use one of \('history', 'oracle'\)"),
        (dict(split="validation"), r"unknown split='validation'; use one of \('train', 'test', 'all'\)"),
        (dict(render_mode="video"), r"unknown render_mode='video'; use one of \['ansi', 'rgb_array', 'human'\]"),
        (dict(max_len=12, obs_len=8), r"obs_len=8 rows cannot hold sentences of max_len=12 tokens; raise obs_len to 12"),
        (dict(max_len=0), "max_len must be at least 1"),
        (dict(max_steps=0), "max_steps must be at least 1"),
        (dict(target="best"), r"unknown target='best'; use one of \('any', 'tree'\)"),
        (dict(n_sentences=0), "n_sentences must be at least 1"),
        (dict(min_len=5, max_len=4), "need 1 <= min_len <= max_len"),
        (dict(test_fraction=1.5), r"test_fraction must be in \[0, 1\]"),
    ],
)
def test_bad_settings_name_the_allowed_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LinguisticParseEnv(**kwargs)


# --- sentences -------------------------------------------------------------------------------
def test_sentence_longer_than_max_len_is_named() -> None:
    with pytest.raises(GrammarError, match=r"'John saw Mary' has 3 tokens, more than max_len=2; raise max_len"):
        LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=["John saw Mary"], max_len=2, split="all")
    env = LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=["John saw Mary"], max_len=3, split="all")
    with pytest.raises(GrammarError, match="has 5 tokens"):
        env.reset(options={"sentence": "John knew Mary saw John"})


def test_missing_empty_and_comment_only_sentence_files(tmp_path) -> None:
    with pytest.raises(GrammarError, match=r"missing\.txt' not found; give a file with one sentence per line"):
        LinguisticParseEnv(sentences=tmp_path / "missing.txt", split="all")
    for content in ("", "\n  \n", "# only a comment\n"):
        path = tmp_path / "empty.txt"
        path.write_text(content)
        with pytest.raises(GrammarError, match="holds no sentence; write one sentence per line"):
            LinguisticParseEnv(sentences=path, split="all")
    with pytest.raises(GrammarError, match="a single string is read as a path"):
        LinguisticParseEnv(sentences="John saw Mary", split="all")


def test_empty_and_non_string_sentences() -> None:
    for sentences in ([], ["John saw Mary", ""], ["   "]):
        with pytest.raises(GrammarError, match="non-empty list of non-empty sentences"):
            load_sentences(sentences)
    with pytest.raises(GrammarError, match=r"sentences\[1\] .* not strings: \[3\]"):
        load_sentences(["John saw Mary", ["John", 3]])
    env = LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=["John saw Mary"], max_len=3, split="all")
    with pytest.raises(GrammarError, match="empty sentence"):
        env.reset(options={"sentence": ""})


def test_unknown_tokens_are_named_with_their_positions(tmp_path) -> None:
    match = r"unknown tokens 'Bob' \(word 1\), 'met' \(word 2\); the terminals of .* are: John Mary saw knew"
    with pytest.raises(GrammarError, match=match):
        LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=["John saw Mary", "Bob met Mary"], max_len=3)
    path = tmp_path / "sentences.txt"
    path.write_text("John saw Mary\nBob met Mary\n")
    with pytest.raises(GrammarError, match=match):
        LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=path, max_len=3, split="all")
    env = LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=["John saw Mary"], max_len=3, split="all")
    with pytest.raises(GrammarError, match=r"'Bob' \(word 3\)"):
        env.reset(options={"sentence": "John saw Bob"})


def test_sentence_without_a_parse_is_named() -> None:
    with pytest.raises(GrammarError, match="'John Mary saw' has no complete parse with goal labels S"):
        LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=["John Mary saw"], max_len=3, split="all")


def test_split_that_leaves_no_test_sentences() -> None:
    with pytest.raises(GrammarError, match=r"split='test' keeps none of the 1 sentences.*use split='all'"):
        LinguisticParseEnv(grammar=RuleSet.from_text(SMALL), sentences=["John saw Mary"], max_len=3, split="test")
    with pytest.raises(GrammarError, match=r"split='test' keeps none of the \d+ sentences \(test_fraction=0.0\)"):
        LinguisticParseEnv(grammar="dyck", max_len=6, test_fraction=0.0, split="test")
    with pytest.raises(GrammarError, match=r"split='train' keeps none"):
        LinguisticParseEnv(grammar="dyck", max_len=6, test_fraction=1.0, split="train")
    with pytest.raises(GrammarError, match="keeps none"):
        split_sentences([("a",)], "test", 0.0)


def test_language_too_small_for_the_lengths_asked() -> None:
    with pytest.raises(GrammarError, match=r"sampled no sentence of 4 to 5 tokens.*widen the length range"):
        sample_sentences(RuleSet.from_text(SMALL), 10, 4, 5)


def test_validation_survives_python_dash_o() -> None:
    """Checks are raised errors, not asserts, so ``python -O`` keeps them."""
    code = """
from sb3_parsing import GrammarError, LinguisticParseEnv, RuleSet
for make in (lambda: RuleSet.from_text("a b"), lambda: LinguisticParseEnv(grammar="french"),
             lambda: LinguisticParseEnv(sentences=["the unicorn"], split="all")):
    try:
        make()
    except GrammarError:
        continue
    raise SystemExit("no GrammarError")
"""
    result = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unreachable_label_is_a_warning_not_an_error() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RuleSet.from_text("%start S\na => S\nb => T\n")
    assert any("'T' is unreachable" in str(w.message) for w in caught)
