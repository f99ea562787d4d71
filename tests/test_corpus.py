import pytest

from sb3_parsing import GrammarError, RuleSet
from sb3_parsing.corpus import load_sentences, sample_sentences, split_sentences


def test_sampling_is_seeded_distinct_and_within_lengths() -> None:
    rs = RuleSet.builtin("english")
    first = sample_sentences(rs, 200, 3, 12, seed=7)
    assert first == sample_sentences(rs, 200, 3, 12, seed=7)
    assert first != sample_sentences(rs, 200, 3, 12, seed=8)
    assert len(first) == len(set(first)) == 200
    assert all(3 <= len(s) <= 12 for s in first)
    assert all(t in rs.terminals for s in first for t in s)


def test_depth_bound_limits_sentences() -> None:
    rs = RuleSet.builtin("arithmetic")
    # E => T => F => N => '1': the shallowest sentence is 4 rules deep
    assert sample_sentences(rs, 5, 1, 1, max_depth=4, seed=0)
    with pytest.raises(GrammarError, match="sampled no sentence"):
        sample_sentences(rs, 5, 1, 1, max_depth=3, seed=0)


def test_small_language_returns_what_exists() -> None:
    rs = RuleSet.from_text("a => S\nb => S\n")
    assert sorted(sample_sentences(rs, 10, 1, 3, seed=0)) == [("a",), ("b",)]


def test_split_is_deterministic_and_disjoint() -> None:
    rs = RuleSet.builtin("dyck")
    pool = sample_sentences(rs, 300, 2, 10, seed=0)
    train = split_sentences(pool, "train", 0.25)
    test = split_sentences(pool, "test", 0.25)
    assert not set(train) & set(test)
    assert len(train) + len(test) == len(pool)
    assert 0.1 < len(test) / len(pool) < 0.4
    # the split of a sentence depends on its text, not on the pool it comes in
    assert split_sentences(list(reversed(pool)), "test", 0.25) == list(reversed(test))


def test_split_that_keeps_nothing_is_an_error() -> None:
    with pytest.raises(GrammarError, match="keeps none"):
        split_sentences([("a",)], "test", 0.0)
    with pytest.raises(ValueError, match="unknown split"):
        split_sentences([("a",)], "validation", 0.2)


def test_load_sentences_from_list_and_file(tmp_path) -> None:
    assert load_sentences(["a b", "c", "a b"]) == [("a", "b"), ("c",)]
    path = tmp_path / "sentences.txt"
    path.write_text("# comment\nJohn saw Mary\n\nMary saw John\n")
    assert load_sentences(path) == [("John", "saw", "Mary"), ("Mary", "saw", "John")]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(GrammarError, match="holds no sentence"):
        load_sentences(empty)
    with pytest.raises(GrammarError, match="not found"):
        load_sentences(tmp_path / "missing.txt")
    with pytest.raises(GrammarError, match="non-empty"):
        load_sentences([])
