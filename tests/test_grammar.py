import pickle
import time
import warnings

import pytest

from sb3_parsing import GrammarError, RuleSet, available_grammars
from sb3_parsing.grammar import Symbol


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("S => T\nA B C\n", 2, "missing '=>'"),
        ("a => A\n => A\n", 2, "empty pattern"),
        ("a => A\nb =>\n", 2, "no label"),
        ("a => A\nb => A B\n", 2, "2 labels"),
        ("a => A\nb => A => B\n", 2, "several '=>'"),
        ("%start Z\na => A\n", 1, "unknown %start label 'Z'"),
        ("a => A\nb => B\n", 1, "cannot infer the goal label"),
        ("%start S\na => S\nS => T\nT => S\n", 4, "unary cycle"),
        ("%start A\nA => A\na => A\n", 2, "unary cycle"),
        ("%start S\nA b => S\nA c => A\n", 2, "derives no terminal string"),
        ("a => A\na => A\n", 2, "duplicate rule"),
        ("'a => A\n", 1, "unterminated quote"),
        ("a => 'A'\n", 1, "is quoted"),
        ("%begin S\na => S\n", 1, "unknown directive"),
        ("%start\na => S\n", 1, "names no label"),
        ("%start S\n%start S\na => S\n", 2, "given twice"),
    ],
)
def test_malformed_rulesets_name_their_line(text: str, line: int, fragment: str) -> None:
    start = time.perf_counter()
    with pytest.raises(GrammarError, match=f"line {line}") as error:
        RuleSet.from_text(text)
    assert fragment in str(error.value)
    assert time.perf_counter() - start < 1.0
    assert isinstance(error.value, ValueError)


def test_no_rules_at_all() -> None:
    with pytest.raises(GrammarError, match="no rules"):
        RuleSet.from_text("# only a comment\n\n")


def test_labels_terminals_alphabet_and_inferred_start() -> None:
    rs = RuleSet.from_text("# comment\nDet N => NP  # trailing comment\nthe => Det\ndog => N\n")
    assert rs.labels == ("NP", "Det", "N")
    assert rs.terminals == ("the", "dog")
    assert rs.start == ("NP",)
    # alphabet: every symbol, in order of first appearance
    assert [s.name for s in rs.alphabet] == ["Det", "N", "NP", "the", "dog"]
    assert rs.rules[0].pattern == (Symbol("Det", True), Symbol("N", True))
    assert rs.rules[0].line == 2


def test_quoting_makes_terminals_of_punctuation_and_label_words() -> None:
    rs = RuleSet.from_text("%start E\nE '+' T => E\nT => E\n'E' => T\n\"#\" => T\n")
    plus, hash_sign, quoted_e = Symbol("+", False), Symbol("#", False), Symbol("E", False)
    assert plus in rs.rules[0].pattern
    assert rs.rules[2].pattern == (quoted_e,)
    assert rs.rules[3].pattern == (hash_sign,)
    assert set(rs.terminals) == {"+", "E", "#"}
    assert Symbol("E", True) in rs.alphabet and quoted_e in rs.alphabet


def test_left_recursion_is_legal_and_several_start_labels() -> None:
    rs = RuleSet.from_text("%start E T\nE '+' T => E\nT => E\nx => T\n")
    assert rs.start == ("E", "T")


def test_unreachable_labels_are_one_warning_attributed_to_the_caller() -> None:
    with pytest.warns(UserWarning, match="unreachable") as caught:
        RuleSet.from_text("%start S\na => S\nb => B\nc => C\n")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "labels 'B', 'C' are unreachable from S (lines 3, 4)" in message
    assert "spelled two ways" not in message
    assert caught[0].filename == __file__


def test_unreachable_label_spelled_like_a_word_names_the_typo() -> None:
    # `Np` for `NP`: NP in the first rule is then read as a word, and Np is unreachable
    with pytest.warns(UserWarning, match="unreachable") as caught:
        RuleSet.from_nltk("S -> NP VP\nVP -> 'runs'\nNp -> Det N\nDet -> 'the'\nN -> 'dog'\n")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "'Np', 'Det', 'N' are unreachable" in message
    assert "a label spelled two ways: 'Np' and the word 'NP'" in message
    assert caught[0].filename == __file__
    with pytest.warns(UserWarning, match="'Vp' and the label 'VP'") as caught:
        RuleSet.from_text("%start S\nNP VP => S\nJohn => NP\nruns => VP\nsleeps => Vp\n")
    assert caught[0].filename == __file__


def test_reachable_grammar_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RuleSet.builtin("english")


# --- probabilities (PCFGs) ---------------------------------------------------------------------
WEIGHTED = "%start S\nNP VP => S [1.0]\nDet N => NP [0.7]\nName => NP [.3]\nruns => VP [1]\nthe => Det [1]\n" + (
    "dog => N [0.25]\n'NP' => N [0.75]\nJohn => Name [1.0]\n"
)


def _weighted_rules(ruleset: RuleSet) -> list:
    return [(r.pattern, r.label, r.probability) for r in ruleset.rules]


def test_rule_probabilities_are_read_and_round_trip() -> None:
    rs = RuleSet.from_text(WEIGHTED)
    assert rs.is_weighted
    assert [r.probability for r in rs.rules] == [1.0, 0.7, 0.3, 1.0, 1.0, 0.25, 0.75, 1.0]
    assert str(rs.rules[1]) == "Det N => NP [0.7]"
    assert _weighted_rules(RuleSet.from_text(str(rs))) == _weighted_rules(rs)
    assert not RuleSet.builtin("english").is_weighted
    assert RuleSet.builtin("english").rules[0].probability is None
    # a sum within NLTK's tolerance (three rules of a third written with three decimals) is accepted
    assert RuleSet.from_text("a => S [0.333]\nb => S [0.333]\nc => S [0.333]\n").is_weighted


def test_weighted_ruleset_converts_to_and_from_an_nltk_pcfg() -> None:
    nltk = pytest.importorskip("nltk")
    rs = RuleSet.from_text(WEIGHTED)
    pcfg = rs.to_nltk()
    assert isinstance(pcfg, nltk.PCFG)
    probabilities = {(str(p.lhs()), tuple(str(s) for s in p.rhs())): p.prob() for p in pcfg.productions()}
    assert probabilities[("NP", ("Det", "N"))] == 0.7 and probabilities[("N", ("NP",))] == 0.75
    assert _weighted_rules(RuleSet.from_nltk(pcfg)) == _weighted_rules(rs)
    # NLTK's PCFG notation as text
    text = "S -> NP VP [1.0]\nNP -> 'the' 'dog' [0.4] | 'John' [0.6]\nVP -> 'runs' [1.0]\n"
    assert [r.probability for r in RuleSet.from_nltk(text).rules] == [1.0, 0.4, 0.6, 1.0]
    # an unweighted grammar stays a CFG; several goal labels share the fresh start symbol's probability
    assert type(RuleSet.builtin("english").to_nltk()) is nltk.CFG
    two_goals = RuleSet.from_text("%start A B\na => A [1]\nb => B [1]\n").to_nltk()
    assert {p.prob() for p in two_goals.productions(lhs=two_goals.start())} == {0.5}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a => S [0.5]\nb => S\n", 2, "rule 'b => S' has no probability but the rule on line 1 has one"),
        ("a => S\nb => S [0.5]\n", 1, "rule 'a => S' has no probability but the rule on line 2 has one"),
        ("a => S [0.5]\nb => S [0.4]\n", 1, "rules of 'S' (lines 1, 2) sum to 0.9, not 1"),
        ("a => S [0.33]\nb => S [0.33]\nc => S [0.33]\n", 1, "sum to 0.99, not 1"),
        ("a => S [0]\n", 1, "[0] is not a number in (0, 1]"),
        ("a => S [1.5]\n", 1, "[1.5] is not a number in (0, 1]"),
        ("a => S [-0.5]\nb => S [1.5]\n", 1, "[-0.5] is not a number"),
        ("a => S [high]\n", 1, "[high] is not a number"),
        ("a => S [nan]\n", 1, "[nan] is not a number"),
        ("a => S[0.5]\nb => S [0.5]\n", 1, "probability glued to the label"),
    ],
)
def test_bad_probabilities_name_their_line_and_the_fix(text: str, line: int, fragment: str) -> None:
    with pytest.raises(GrammarError, match=f"^line {line}: ") as error:
        RuleSet.from_text(text)
    assert fragment in str(error.value)


def test_grammar_file_errors_name_the_file(tmp_path) -> None:
    path = tmp_path / "weights.rules"
    path.write_text("a => S [0.5]\nb => S\n")
    with pytest.raises(GrammarError, match=r"weights\.rules: line 2: rule 'b => S' has no probability"):
        RuleSet.from_file(path)


def test_from_treebank_reads_a_pcfg_off_trees() -> None:
    nltk = pytest.importorskip("nltk")
    trees = [
        "(S (NP (Det the) (N dog)) (VP (V barks)))",
        nltk.Tree.fromstring("(S (NP (Det the) (N NP)) (VP (V sees) (NP (Det a) (N dog))))"),
        "(Q (V barks))",
    ]
    rs = RuleSet.from_treebank(trees, name="tiny bank")
    assert rs.is_weighted and rs.name == "tiny bank"
    assert rs.start == ("S", "Q")
    probability = {(tuple(s.name for s in r.pattern), r.label): r.probability for r in rs.rules}
    assert probability[(("V",), "VP")] == pytest.approx(0.5)
    assert probability[(("barks",), "V")] == pytest.approx(2 / 3)
    assert probability[(("the",), "Det")] == pytest.approx(2 / 3)
    assert probability[(("dog",), "N")] == pytest.approx(2 / 3)
    # a leaf spelled like a label stays a word
    assert "NP" in rs.terminals and "dog" in rs.terminals
    assert len(rs.rules) == len({p for t in trees for p in nltk.Tree.fromstring(str(t)).productions()})
    # Penn Treebank leaves are read as the tokens they stand for
    assert set(RuleSet.from_treebank(["(F -LRB- (N x) -RRB-)"]).terminals) == {"(", "x", ")"}
    with pytest.raises(GrammarError, match="tree 2: not a bracketed tree nltk reads"):
        RuleSet.from_treebank(["(S (A a))", "(S (A a)"])
    with pytest.raises(GrammarError, match="no trees given"):
        RuleSet.from_treebank([])


@pytest.mark.parametrize("name", ["english", "arithmetic", "dyck"])
def test_builtin_grammars_load(name: str) -> None:
    assert name in available_grammars()
    rs = RuleSet.builtin(name)
    assert rs.n_rules > 0 and rs.name == name


def test_unknown_builtin_lists_available() -> None:
    with pytest.raises(GrammarError, match="available: arithmetic, dyck, english"):
        RuleSet.builtin("klingon")


def test_from_file_and_missing_file(tmp_path) -> None:
    path = tmp_path / "tiny.rules"
    path.write_text("a b => S\n")
    assert RuleSet.from_file(path).rules[0].label == "S"
    with pytest.raises(GrammarError, match="not found"):
        RuleSet.from_file(tmp_path / "missing.rules")


def test_from_nltk_notation_round_trips() -> None:
    pytest.importorskip("nltk")
    rs = RuleSet.from_nltk("S -> NP VP | VP\nNP -> 'the' N\nN -> 'dog'\nVP -> 'barks' | 'S'\n")
    assert rs.start == ("S",)
    assert rs.n_rules == 6
    assert set(rs.terminals) == {"the", "dog", "barks", "S"}
    back = rs.to_nltk()
    assert len(back.productions()) == 6


def test_from_nltk_reports_nltk_errors_as_grammar_errors() -> None:
    pytest.importorskip("nltk")
    with pytest.raises(GrammarError, match="NLTK could not read"):
        RuleSet.from_nltk("S -> -> NP")


def test_ruleset_pickles() -> None:
    rs = RuleSet.builtin("arithmetic")
    clone = pickle.loads(pickle.dumps(rs))
    assert clone.rules == rs.rules and clone.start == rs.start
