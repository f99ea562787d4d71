import hashlib
from collections import Counter

import pytest

from sb3_parsing import GrammarError, Oracle, RuleSet
from sb3_parsing.corpus import (
    Located,
    TreeSentence,
    check_sentences,
    load_sentences,
    load_trees,
    sample_sentences,
    sample_trees,
    split_sentences,
)
from sb3_parsing.trees import read_tree, tree_nodes, tree_tokens


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


# Captured from the sampler before weighted grammars and trees were added: published results depend on these.
@pytest.mark.parametrize(
    ("grammar", "args", "seed", "digest", "first"),
    [
        (
            "english",
            (200, 3, 12),
            7,
            "036b876e34f8f8bb",
            ["Mary in Mary saw the old telescope with a big telescope", "the telescope saw a big telescope"],
        ),
        ("arithmetic", (100, 1, 9), 3, "ba7cba19efaa55a7", ["y * y * 3 * 1 * 1", "2 - 1 - x - x + 1"]),
        ("dyck", (50, 2, 10), 0, "ee63a92f7935cdee", ["[ ] ( ( ) ) ( )", "[ [ [ ] [ ] ] [ ] ]"]),
    ],
)
def test_unweighted_sampling_gives_the_sentences_it_always_gave(grammar, args, seed, digest, first) -> None:
    rs = RuleSet.builtin(grammar)
    sentences = sample_sentences(rs, *args, seed=seed)
    assert [" ".join(s) for s in sentences[:2]] == first
    assert hashlib.sha256(repr(sentences).encode()).hexdigest()[:16] == digest
    trees = sample_trees(rs, *args, seed=seed)
    assert [t.tokens for t in trees] == sentences


@pytest.mark.parametrize("grammar", ["english", "english_pcfg", "arithmetic", "dyck"])
def test_sampled_trees_are_derivations_of_their_sentences(grammar: str) -> None:
    pytest.importorskip("nltk")
    rs = RuleSet.builtin(grammar)
    for sentence in sample_trees(rs, 50, 2, 10, seed=3):
        assert isinstance(sentence, TreeSentence)
        assert tree_tokens(sentence.tree) == sentence.tokens
        nodes = tree_nodes(sentence.tree, rs)  # every node is a rule of the grammar
        assert len(nodes) == len(read_tree(sentence.tree).productions())
        assert nodes[-1][:2] == (0, len(sentence.tokens))


def test_weighted_grammar_draws_rules_by_probability() -> None:
    def first_sentences(text: str) -> Counter:
        rs = RuleSet.from_text(text)
        return Counter(sample_sentences(rs, 1, 1, 1, seed=seed)[0][0] for seed in range(1000))

    weighted = first_sentences("a => S [0.9]\nb => S [0.1]\n")
    assert 860 <= weighted["a"] <= 940  # 900 +- 4 standard deviations
    uniform = first_sentences("a => S\nb => S\n")
    assert 440 <= uniform["a"] <= 560


def test_weighted_sampling_follows_the_rule_probabilities_of_the_pcfg() -> None:
    rs = RuleSet.builtin("english_pcfg")
    trees = sample_trees(rs, 400, 1, 30, seed=0)
    used = Counter(index for t in trees for _, _, index in tree_nodes(t.tree, rs))
    verb_phrase = {rs.format_rule(r): used[i] for i, r in enumerate(rs.rules) if r.label == "VP"}
    # V NP => VP [0.7], VP PP => VP [0.3]: the share of PP attachments to the verb phrase follows the weights
    share = verb_phrase["VP PP => VP [0.3]"] / sum(verb_phrase.values())
    assert 0.22 < share < 0.38


def test_tree_files_give_sentences_and_trees(tmp_path) -> None:
    path = tmp_path / "bank.txt"
    path.write_text(
        "# a tiny treebank\n(S (NP (Name John)) (VP (V saw) (NP (Name Mary))))\n\n"
        "(E (T (F -LRB- (E (T (F (N x)))) -RRB-)))\nJohn saw Mary\n"
    )
    sentences = load_sentences(path)
    assert sentences == [("John", "saw", "Mary"), ("(", "x", ")")]  # a tree line gives its leaves; duplicates go
    assert isinstance(sentences, Located)
    assert sentences.origins == (f"{path} line 2", f"{path} line 4")
    path.write_text(path.read_text().replace("John saw Mary\n", ""))
    trees = load_trees(path)
    assert trees == [
        TreeSentence(("John", "saw", "Mary"), "(S (NP (Name John)) (VP (V saw) (NP (Name Mary))))"),
        TreeSentence(("(", "x", ")"), "(E (T (F -LRB- (E (T (F (N x)))) -RRB-)))"),
    ]
    assert trees.origins == (f"{path} line 2", f"{path} line 4")
    # a sentence that starts with a bracket token is a sentence, not a tree
    assert load_sentences(["( x )"]) == [("(", "x", ")")]
    # lists may hold nltk Trees
    nltk = pytest.importorskip("nltk")
    tree = nltk.Tree("F", ["(", nltk.Tree("N", ["x"]), ")"])
    assert load_sentences([tree, "x"]) == [("(", "x", ")"), ("x",)]
    assert load_trees([tree]) == [TreeSentence(("(", "x", ")"), "(F -LRB- (N x) -RRB-)")]
    assert load_trees([tree]).origins == ("sentences[0]",)


def test_tree_files_name_the_line_that_is_not_a_tree(tmp_path) -> None:
    path = tmp_path / "bank.txt"
    path.write_text("(S (NP (Name John)) (VP (V saw) (NP (Name Mary))))\nJohn saw Mary\n")
    with pytest.raises(GrammarError, match=r"bank\.txt line 2: 'John saw Mary' is not a bracketed tree"):
        load_trees(path)
    path.write_text("\n(S (NP (Name John)) (VP (V saw) (NP (Name Mary)))\n")
    with pytest.raises(GrammarError, match=r"bank\.txt line 2: not a bracketed tree nltk reads"):
        load_trees(path)


def test_check_sentences_lists_every_bad_sentence_with_file_line_and_word(tmp_path) -> None:
    oracle = Oracle(RuleSet.builtin("english"))
    path = tmp_path / "mine.txt"
    path.write_text(
        "John saw Mary\n# fine so far\nJohn unicorn Mary flew\nthe dog the\n"
        "the man saw the dog with the big telescope in the park\n"
    )
    with pytest.raises(GrammarError) as error:
        check_sentences(oracle, load_sentences(path), max_len=10)
    lines = str(error.value).splitlines()
    assert lines[0] == "3 sentences cannot be used:"
    unknown = "'John unicorn Mary flew': unknown tokens 'unicorn' (word 2), 'flew' (word 4)"
    assert lines[1].strip().startswith(f"{path} line 3: {unknown}")
    assert lines[2].strip().startswith(f"{path} line 4: ") and "'the dog the' has no complete parse" in lines[2]
    assert lines[3].strip() == (
        f"{path} line 5: 'the man saw the dog with the big telescope in the park' has 12 tokens, more than max_len=10; "
        "raise max_len or shorten the sentence"
    )
    # a plain list names the sentences by index; one bad sentence is the whole message
    with pytest.raises(GrammarError, match=r"^sentences\[1\]: 'the unicorn': unknown token 'unicorn' \(word 2\)"):
        check_sentences(oracle, [("John", "saw", "Mary"), ("the", "unicorn")], max_len=10)
    check_sentences(oracle, [("John", "saw", "Mary")], max_len=10)


def test_check_sentences_stops_listing_after_ten() -> None:
    oracle = Oracle(RuleSet.builtin("english"))
    bad = [("John", f"unicorn{i}") for i in range(13)]
    with pytest.raises(GrammarError) as error:
        check_sentences(oracle, bad, max_len=10)
    lines = str(error.value).splitlines()
    assert lines[0] == "13 sentences cannot be used:" and len(lines) == 12
    assert lines[10].strip().startswith("sentences[9]: ") and lines[11].strip() == "and 3 more"


def test_check_sentences_checks_trees_against_the_grammar(tmp_path) -> None:
    oracle = Oracle(RuleSet.builtin("english"))
    path = tmp_path / "bank.txt"
    path.write_text(
        "(S (NP (Name John)) (VP (V saw) (NP (Name Mary))))\n(S (NP (Name John)) (VP (V saw) (NP Mary)))\n(NP (Name John))\n"
    )
    with pytest.raises(GrammarError) as error:
        check_sentences(oracle, load_trees(path), max_len=10)
    message = str(error.value)
    assert f"{path} line 2: english has no rule `Mary => NP` (NLTK: NP -> 'Mary') for (NP Mary)" in message
    assert f"{path} line 3: the tree's root 'NP' is not a goal label of english (S)" in message
    assert "line 1" not in message


def test_split_keeps_a_tree_with_its_sentence() -> None:
    rs = RuleSet.builtin("english")
    trees = sample_trees(rs, 100, 3, 10, seed=0)
    sentences = [t.tokens for t in trees]
    for split in ("train", "test"):
        assert [t.tokens for t in split_sentences(trees, split, 0.3)] == split_sentences(sentences, split, 0.3)


def test_a_grammar_read_off_a_tree_file_accepts_every_tree_of_it(tmp_path) -> None:
    pytest.importorskip("nltk")
    sampled = sample_trees(RuleSet.builtin("arithmetic"), 60, 3, 9, seed=2)
    path = tmp_path / "bank.txt"
    path.write_text("\n".join(t.tree for t in sampled) + "\n")
    trees = load_trees(path)
    assert trees == sampled
    ruleset = RuleSet.from_treebank([t.tree for t in trees], name="bank")
    assert ruleset.is_weighted and ruleset.start == ("E",)
    check_sentences(Oracle(ruleset), trees, max_len=9)


def test_unknown_token_messages_list_a_big_lexicon_in_part() -> None:
    words = [f"w{i}" for i in range(40)]
    oracle = Oracle(RuleSet.from_text("%start S\n" + "\n".join(f"{w} => S" for w in words), name="big"))
    with pytest.raises(GrammarError, match=r"'nope' \(word 1\); the terminals of big are: w0 w1 .* w29 \.\.\. \(40 in all\)$"):
        check_sentences(oracle, [("nope",)], max_len=3)
