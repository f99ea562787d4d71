"""Trees: leaves, rule applications checked against a grammar, and PARSEVAL scores checked against PYEVALB."""

import itertools

import pytest

from sb3_parsing import GrammarError, RuleSet
from sb3_parsing.corpus import sample_trees
from sb3_parsing.trees import (
    BracketScore,
    bracket_score,
    labeled_brackets,
    leaf_token,
    read_tree,
    token_leaf,
    tree_nodes,
    tree_string,
    tree_tokens,
)

nltk = pytest.importorskip("nltk")

PP_ATTACHMENT = "John saw the man with a telescope".split()
VERB_ATTACHMENT = "(S (NP (Name John)) (VP (VP (V saw) (NP (Det the) (N man))) (PP (P with) (NP (Det a) (N telescope)))))"
NOUN_ATTACHMENT = "(S (NP (Name John)) (VP (V saw) (NP (NP (Det the) (N man)) (PP (P with) (NP (Det a) (N telescope))))))"


def _nltk_parses(ruleset: RuleSet, tokens: tuple[str, ...]) -> list[str]:
    return [tree_string(tree) for tree in nltk.ChartParser(ruleset.to_nltk()).parse(tokens)]


def test_leaves_escape_brackets_as_the_penn_treebank_does() -> None:
    assert token_leaf("(") == "-LRB-" and token_leaf(")") == "-RRB-" and token_leaf("dog") == "dog"
    assert leaf_token("-LRB-") == "(" and leaf_token("-RRB-") == ")" and leaf_token("dog") == "dog"
    assert tree_tokens("(F -LRB- (E (N x)) -RRB-)") == ("(", "x", ")")
    parse = nltk.Tree("F", ["(", nltk.Tree("E", [nltk.Tree("N", ["x"])]), ")"])
    assert tree_string(parse) == "(F -LRB- (E (N x)) -RRB-)"
    assert tree_tokens(tree_string(parse)) == ("(", "x", ")")


def test_tree_nodes_are_the_rule_applications_with_their_spans() -> None:
    rs = RuleSet.builtin("english")
    nodes = tree_nodes(VERB_ATTACHMENT, rs)
    rule = {rs.format_rule(r): i for i, r in enumerate(rs.rules)}
    assert len(nodes) == len(read_tree(VERB_ATTACHMENT).productions()) == 14
    assert (0, 7, rule["NP VP => S"]) == nodes[-1]  # the root comes last: children before parents
    assert (1, 4, rule["V NP => VP"]) in nodes and (1, 7, rule["VP PP => VP"]) in nodes
    assert (2, 3, rule["the => Det"]) in nodes  # preterminals are rule applications too
    assert (4, 7, rule["P NP => PP"]) in nodes
    assert sorted(tree_nodes(NOUN_ATTACHMENT, rs)) != sorted(nodes)


@pytest.mark.parametrize("grammar", ["english", "arithmetic", "dyck"])
def test_tree_nodes_of_every_nltk_parse_are_distinct_derivations(grammar: str) -> None:
    rs = RuleSet.builtin(grammar)
    for sentence in sample_trees(rs, 20, 3, 9, seed=1):
        parses = _nltk_parses(rs, sentence.tokens)
        node_sets = set()
        for parse in parses:
            nodes = tree_nodes(parse, rs)
            assert len(nodes) == len(read_tree(parse).productions())
            assert all(0 <= start < end <= len(sentence.tokens) for start, end, _ in nodes)
            node_sets.add(frozenset(nodes))
        assert len(node_sets) == len(parses)
        assert sentence.tree in parses  # the sampled tree is a parse of its sentence, written the same way


def test_tree_nodes_name_the_production_the_grammar_lacks() -> None:
    rs = RuleSet.builtin("english")
    with pytest.raises(GrammarError, match=r"english has no rule `Det Det N => NP` \(NLTK: NP -> Det Det N\)"):
        tree_nodes("(S (NP (Det the) (Det the) (N dog)) (VP (V saw) (NP (Name John))))", rs)
    with pytest.raises(GrammarError, match=r"no rule `'S' => Name` \(NLTK: Name -> 'S'\)"):
        tree_nodes("(S (NP (Name S)) (VP (V saw) (NP (Name John))))", rs)  # a word spelled like a label is quoted
    with pytest.raises(GrammarError, match="root 'NP' is not a goal label of english"):
        tree_nodes("(NP (Name John))", rs)
    with pytest.raises(GrammarError, match="not a bracketed tree nltk reads"):
        tree_nodes("(S (NP (Name John))", rs)


def test_bracket_scores_by_hand() -> None:
    words, brackets = labeled_brackets(VERB_ATTACHMENT)
    assert words == tuple(PP_ATTACHMENT)
    # 14 nodes, 7 preterminals: 7 brackets, and the two VPs over different spans are different brackets
    assert sum(brackets.values()) == 7
    assert {("VP", 1, 4), ("VP", 1, 7), ("PP", 4, 7), ("S", 0, 7)} <= set(brackets)
    assert not any(end - start == 1 and label in ("Det", "N", "V", "P", "Name") for label, start, end in brackets)
    score = bracket_score(VERB_ATTACHMENT, NOUN_ATTACHMENT)
    # shared: S, NP John, VP 1-7, NP the man, PP, NP a telescope; VP 1-4 vs NP 2-7
    assert score == BracketScore(matched=6, gold=7, test=7)
    assert score.precision == score.recall == score.f1 == 6 / 7
    assert bracket_score(VERB_ATTACHMENT, VERB_ATTACHMENT).f1 == 1.0
    with pytest.raises(ValueError, match="different sentences"):
        bracket_score(VERB_ATTACHMENT, "(S (NP (Name Mary)) (VP (V saw)))")


def test_corpus_scores_add_up_as_micro_averages() -> None:
    a, b = BracketScore(3, 4, 5), BracketScore(1, 6, 1)
    total = sum([a, b], BracketScore(0, 0, 0))
    assert total == sum([a, b]) == BracketScore(4, 10, 6)
    assert total.precision == 4 / 6 and total.recall == 0.4
    assert total.f1 == pytest.approx(2 * (4 / 6) * 0.4 / (4 / 6 + 0.4))
    assert BracketScore(0, 0, 0).f1 == 1.0 and BracketScore(0, 3, 0).f1 == 0.0


def test_collins_prm_deletes_punctuation_and_top_and_equates_advp_prt() -> None:
    gold = "(TOP (S (NP (NNP John)) (VP (VBD looked) (PRT (RP up))) (. .)))"
    words, brackets = labeled_brackets(gold)
    assert words == ("John", "looked", "up")  # the period is not a scored word
    assert set(brackets) == {("S", 0, 3), ("NP", 0, 1), ("VP", 1, 3), ("ADVP", 2, 3)}
    test = "(S (NP (NNP John)) (VP (VBD looked) (ADVP (RB up))) (, .))"
    assert bracket_score(gold, test) == BracketScore(4, 4, 4)
    # without COLLINS.prm's settings every label counts
    assert bracket_score(gold, test, delete_labels=(), equivalent_labels={}).matched == 3


def test_duplicate_brackets_are_counted_as_a_multiset() -> None:
    # a unary chain X -> X gives two brackets over one span: each gold bracket is matched once
    assert bracket_score("(X (X (A a) (B b)))", "(X (A a) (B b))") == BracketScore(1, 2, 1)


def test_bracket_scores_match_pyevalb_on_sampled_tree_pairs() -> None:
    pyevalb_parser = pytest.importorskip("PYEVALB.parser")
    pyevalb_scorer = pytest.importorskip("PYEVALB.scorer")
    scorer = pyevalb_scorer.Scorer()
    pairs = []
    # (PYEVALB divides by the number of part-of-speech tags: Dyck trees, which have none, are left out)
    for grammar, seed in (("english", 0), ("arithmetic", 1)):
        rs = RuleSet.builtin(grammar)
        for sentence in sample_trees(rs, 180, 4, 11, seed=seed):
            parses = _nltk_parses(rs, sentence.tokens)
            # the gold tree against a parse that differs from it when the sentence is ambiguous
            pairs.append((sentence.tree, next((p for p in parses if p != sentence.tree), parses[0])))
    assert len(pairs) == 360
    n_different = 0
    for gold, test in pairs:
        ours = bracket_score(gold, test)
        theirs = scorer.score_trees(
            pyevalb_parser.create_from_bracket_string(gold), pyevalb_parser.create_from_bracket_string(test)
        )
        assert (ours.matched, ours.gold, ours.test) == (theirs.matched_brackets, theirs.gold_brackets, theirs.test_brackets)
        assert ours.precision == pytest.approx(theirs.prec) and ours.recall == pytest.approx(theirs.recall)
        n_different += ours.f1 < 1.0
    assert n_different > 100, "the check must cover pairs that disagree"


def test_every_pair_of_parses_scores_symmetrically() -> None:
    rs = RuleSet.builtin("english")
    parses = _nltk_parses(rs, tuple("the man saw the dog with the telescope in the park".split()))
    assert len(parses) == 5
    for a, b in itertools.combinations(parses, 2):
        ab, ba = bracket_score(a, b), bracket_score(b, a)
        assert (ab.matched, ab.gold, ab.test) == (ba.matched, ba.test, ba.gold)
        assert ab.f1 == ba.f1 < 1.0
