import pytest

from sb3_parsing import GrammarError, Oracle, RuleSet
from sb3_parsing.corpus import sample_sentences

nltk = pytest.importorskip("nltk")

# Grammars the built-ins don't cover: unary chains, quoted punctuation, ambiguous connectives, two goals.
LOGIC = """
%start F
F 'and' F => F
F 'or' F => F
'not' F => F
'(' F ')' => F
A => F
p => A
q => A
"""
CHAINS = """
%start S
X => S
Y => X
Z => Y
S ',' S => S
z => Z
w => Y
"""
TWO_GOALS = """
%start S Q
NP VP => S
VP NP => Q
Det N => NP
N => NP
V => VP
V NP => VP
the => Det
fish => N
fish => V
eat => V
"""
CUSTOM = {"logic": LOGIC, "chains": CHAINS, "two_goals": TWO_GOALS}


def _ruleset(name: str) -> RuleSet:
    return RuleSet.from_text(CUSTOM[name], name) if name in CUSTOM else RuleSet.builtin(name)


@pytest.mark.parametrize("name", ["english", "arithmetic", "dyck", "logic", "chains", "two_goals"])
@pytest.mark.parametrize("columns", ["rules", "labels"])
def test_parse_counts_equal_nltk_and_expert_wins_in_min_actions(name: str, columns: str) -> None:
    rs = _ruleset(name)
    oracle = Oracle(rs, columns=columns, max_parses=10_000)
    parser = nltk.ChartParser(rs.to_nltk())
    for sentence in sample_sentences(rs, 25, 1, 9, seed=3):
        analysis = oracle.analyze(sentence)
        assert analysis.n_parses == len(list(parser.parse(sentence))), sentence
        assert not analysis.parses_capped
        history: set[int] = set()
        while not any(gold <= history for gold in analysis.gold_cell_sets):
            cell = analysis.expert_action(history)
            assert cell not in history
            history.add(cell)
        assert len(history) == analysis.min_actions == min(len(g) for g in analysis.gold_cell_sets)


def test_pp_attachment_gold_cell_sets_by_hand() -> None:
    rs = RuleSet.builtin("english")
    oracle = Oracle(rs, columns="labels")
    tokens = tuple("John saw Mary with a telescope".split())
    analysis = oracle.analyze(tokens)
    assert analysis.n_parses == 2
    labels = {label: i for i, label in enumerate(rs.labels)}

    def cells(*pairs: tuple[int, str]) -> frozenset[int]:
        return frozenset(m * rs.n_labels + labels[label] for m, label in pairs)

    shared = [
        (0, "S"),
        (0, "NP"),
        (0, "Name"),
        (1, "VP"),
        (1, "V"),
        (2, "NP"),
        (2, "Name"),
        (3, "PP"),
        (3, "P"),
        (4, "NP"),
        (4, "Det"),
        (5, "N"),
    ]
    # Attaching the PP to the VP or to "Mary" adds no new (start, label) cell in label columns:
    # VP over 1-5 and VP over 1-2 share (1, VP); NP over 2-5 and NP over 2-2 share (2, NP).
    assert set(analysis.gold_cell_sets) == {cells(*shared)}
    assert analysis.min_actions == 12

    by_rule = Oracle(rs, columns="rules").analyze(tokens)
    assert len(by_rule.gold_cell_sets) == 2  # "VP PP => VP" at 1 versus "NP PP => NP" at 2
    assert by_rule.min_actions == 13


def test_left_recursion_parses_and_counts() -> None:
    rs = RuleSet.builtin("arithmetic")
    analysis = Oracle(rs).analyze(tuple("1 - 2 - 3".split()))
    assert analysis.n_parses == 1
    rule_of = {str(rule): i for i, rule in enumerate(rs.rules)}
    minus = rule_of["E - T => E"]
    # (1 - 2) - 3: both subtractions start at position 0 and share one cell
    assert 0 * rs.n_rules + minus in analysis.gold_cell_sets[0]


def test_parse_cap_is_reported_and_counts_stay_exact() -> None:
    rs = RuleSet.from_text(LOGIC, "logic")
    tokens = tuple(" and ".join(["p"] * 8).split())  # Catalan(7) = 429 bracketings
    capped = Oracle(rs, max_parses=10).analyze(tokens)
    assert capped.n_parses == 429
    assert capped.parses_capped
    assert len(capped.gold_cell_sets) <= 10
    full = Oracle(rs, max_parses=1000).analyze(tokens)
    assert not full.parses_capped


def test_unknown_tokens_and_unparseable_sentences_are_named() -> None:
    oracle = Oracle(RuleSet.builtin("english"))
    with pytest.raises(GrammarError, match=r"'unicorn' at position 1.*'flew' at position 2"):
        oracle.analyze(("the", "unicorn", "flew"))
    with pytest.raises(GrammarError, match="'the dog the' has no complete parse"):
        oracle.analyze(("the", "dog", "the"))


def test_derived_constituents_need_the_whole_derivation() -> None:
    rs = RuleSet.builtin("english")
    oracle = Oracle(rs)
    analysis = oracle.analyze(("the", "dog", "saw", "Mary"))
    rule_of = {str(rule): i for i, rule in enumerate(rs.rules)}
    det, noun, np_rule = rule_of["the => Det"], rule_of["dog => N"], rule_of["Det N => NP"]
    history = {0 * rs.n_rules + np_rule}
    assert analysis.derived_constituents(history) == []  # NP set, but not its children
    history |= {0 * rs.n_rules + det, 1 * rs.n_rules + noun}
    derived = analysis.derived_constituents(history)
    assert (0, 2, rs.labels.index("NP")) in derived


@pytest.mark.parametrize("name", ["english", "arithmetic", "dyck", "logic"])
def test_top_down_search_finds_a_parse(name: str) -> None:
    rs = _ruleset(name)
    oracle = Oracle(rs)
    for sentence in sample_sentences(rs, 10, 1, 7, seed=5):
        analysis = oracle.analyze(sentence)
        history: set[int] = set()
        for attempt in oracle.top_down_attempts(sentence):
            history.add(attempt)
        # when the search stops it has tried every cell of some complete parse
        assert any(gold <= history for gold in analysis.gold_cell_sets), sentence
        assert len(history) >= analysis.min_actions


def test_top_down_search_order_is_rules_in_file_order() -> None:
    rs = RuleSet.from_text("%start S\nA b => S\nA c => S\na => A\n")
    oracle = Oracle(rs)
    attempts = list(oracle.top_down_attempts(("a", "c")))
    # S@0 by rule 0, A@0 (rule 2), fails on 'b'; S@0 by rule 1, A@0 again, succeeds.
    assert attempts == [0, 2, 1, 2]
