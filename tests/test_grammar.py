import pickle
import time

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


def test_unreachable_label_warns() -> None:
    with pytest.warns(UserWarning, match="unreachable"):
        RuleSet.from_text("%start S\na => S\nb => B\n")


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
