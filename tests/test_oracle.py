import numpy as np
import pytest

from sb3_parsing import GrammarError, Oracle, RuleSet, shared_oracle
from sb3_parsing.corpus import sample_sentences

nltk = pytest.importorskip("nltk")
from reference import gold_cell_sets, nltk_trees, tree_cells  # noqa: E402 - needs nltk

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
def test_counts_wins_and_min_actions_equal_nltk_trees(name: str, columns: str) -> None:
    rs = _ruleset(name)
    oracle = Oracle(rs, columns=columns)
    for sentence in sample_sentences(rs, 25, 1, 9, seed=3):
        analysis = oracle.analyze(sentence)
        golds = gold_cell_sets(oracle, sentence)
        assert analysis.n_parses == len(nltk_trees(rs, sentence)), sentence
        assert analysis.min_actions == min(len(g) for g in golds) and analysis.min_actions_exact
        assert set(analysis.useful_cells.tolist()) == set().union(*golds)
        for gold in golds:
            assert analysis.is_won(gold), (sentence, gold)  # every parse wins, not only the first enumerated
            for cell in gold:  # one cell short wins only if the rest holds another parse
                rest = gold - {cell}
                assert analysis.is_won(rest) == any(other <= rest for other in golds)
        history: set[int] = set()
        while not analysis.is_won(history):
            cell = analysis.expert_action(history)
            assert cell not in history
            history.add(cell)
        assert len(history) == analysis.min_actions


@pytest.mark.parametrize("columns", ["rules", "labels"])
def test_expert_is_optimal_from_any_history(columns: str) -> None:
    rs = RuleSet.from_text(LOGIC, "logic")
    oracle = Oracle(rs, columns=columns)
    rng = np.random.default_rng(0)
    for sentence in sample_sentences(rs, 30, 3, 9, seed=1):
        analysis = oracle.analyze(sentence)
        golds = sorted(gold_cell_sets(oracle, sentence), key=sorted)
        cells = sorted(set().union(*golds))
        for _ in range(5):
            history = {c for c in cells if rng.random() < 0.4} | {int(rng.integers(analysis.n_cells))}
            if analysis.is_won(history):
                continue
            best = min(len(g - history) for g in golds)
            action = analysis.expert_action(history)
            assert action not in history
            assert min(len(g - history - {action}) for g in golds) == best - 1, (sentence, history)
            assert len(analysis.cheapest_tree(history)[0] - history) == best


def test_pp_attachment_cells_by_hand() -> None:
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
    assert gold_cell_sets(oracle, tokens) == {cells(*shared)}
    assert analysis.min_actions == 12 and analysis.cheapest_tree()[0] == cells(*shared)
    assert analysis.is_won(cells(*shared))

    by_rule = Oracle(rs, columns="rules").analyze(tokens)
    assert len(gold_cell_sets(by_rule.oracle, tokens)) == 2  # "VP PP => VP" at 1 versus "NP PP => NP" at 2
    assert by_rule.min_actions == 13


def test_nested_left_recursion_shares_one_cell() -> None:
    rs = RuleSet.builtin("arithmetic")
    analysis = Oracle(rs).analyze(tuple("1 - 2 - 3".split()))
    assert analysis.n_parses == 1
    rule_of = {str(rule): i for i, rule in enumerate(rs.rules)}
    minus = rule_of["E - T => E"]
    # (1 - 2) - 3: both subtractions start at position 0 and share one cell, counted once
    cells, exact = analysis.cheapest_tree()
    assert 0 * rs.n_rules + minus in cells and exact
    assert analysis.min_actions == len(cells) == len(gold_cell_sets(analysis.oracle, analysis.tokens).pop())


def test_every_one_of_many_parses_wins() -> None:
    rs = RuleSet.from_text(LOGIC, "logic")
    tokens = tuple(" and ".join(["p"] * 8).split())  # Catalan(7) = 429 bracketings
    oracle = Oracle(rs)
    analysis = oracle.analyze(tokens)
    assert analysis.n_parses == 429
    trees = nltk_trees(rs, tokens)
    for tree in trees[::-1]:  # the last enumerated first
        cells = tree_cells(tree, oracle)
        assert analysis.is_won(cells)
        assert nltk.Tree.fromstring(analysis.parse(cells)) in trees
        assert tree_cells(nltk.Tree.fromstring(analysis.parse(cells)), oracle) <= cells


def test_the_tree_found_is_the_one_in_the_history() -> None:
    rs = RuleSet.builtin("english")
    oracle = Oracle(rs)
    tokens = tuple("the man with the big telescope with John in John saw John".split())
    analysis = oracle.analyze(tokens)
    assert analysis.n_parses == 5
    for tree in nltk_trees(rs, tokens):
        cells = tree_cells(tree, oracle)
        found = nltk.Tree.fromstring(analysis.parse(cells))
        assert tree_cells(found, oracle) <= cells
        if sum(tree_cells(other, oracle) <= cells for other in nltk_trees(rs, tokens)) == 1:
            assert found == tree
    assert analysis.parse(set()) is None


def test_unknown_tokens_and_unparseable_sentences_are_named() -> None:
    oracle = Oracle(RuleSet.builtin("english"))
    with pytest.raises(GrammarError, match=r"'unicorn' \(word 2\).*'flew' \(word 3\)"):
        oracle.analyze(("the", "unicorn", "flew"))
    with pytest.raises(GrammarError, match="'the dog the' has no complete parse"):
        oracle.analyze(("the", "dog", "the"))


def test_analyses_are_shared_and_saved(tmp_path) -> None:
    rs = RuleSet.builtin("english")
    assert shared_oracle(rs, "rules") is shared_oracle(RuleSet.builtin("english"), "rules")
    assert shared_oracle(rs, "rules") is not shared_oracle(rs, "labels")
    sentences = sample_sentences(rs, 20, 3, 10, seed=0)
    path = tmp_path / "english.analyses"
    assert Oracle(rs).save_analyses(path, sentences) == 20
    fresh = Oracle(rs)
    assert fresh.load_analyses(path) == 20
    for tokens in sentences:
        loaded, computed = fresh.analyze(tokens), Oracle(rs).analyze(tokens)
        assert (loaded.n_parses, loaded.min_actions) == (computed.n_parses, computed.min_actions)
        assert all(np.array_equal(a, computed.arrays()[name]) for name, a in loaded.arrays().items())
    with pytest.raises(GrammarError, match="another grammar or column mode"):
        Oracle(rs, columns="labels").load_analyses(path)


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
        assert analysis.is_won(history), sentence
        assert len(history) >= analysis.min_actions


def test_top_down_search_order_is_rules_in_file_order() -> None:
    rs = RuleSet.from_text("%start S\nA b => S\nA c => S\na => A\n")
    oracle = Oracle(rs)
    attempts = list(oracle.top_down_attempts(("a", "c")))
    # S@0 by rule 0, A@0 (rule 2), fails on 'b'; S@0 by rule 1, A@0 again, succeeds.
    assert attempts == [0, 2, 1, 2]


def test_precompute_script_writes_analyses_an_env_loads(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from sb3_parsing import LinguisticParseEnv

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("John saw Mary\nthe dog saw the man with a telescope\n")
    output = tmp_path / "corpus.analyses"
    script = Path(__file__).resolve().parents[1] / "scripts" / "precompute_analyses.py"
    args = [sys.executable, str(script), "--grammar", "english", "--sentences", str(corpus), "--output", str(output)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "2 analyses" in result.stdout, result.stderr
    env = LinguisticParseEnv(sentences=corpus, analyses=output)
    assert env.oracle.load_analyses(output) == 2
    _, info = env.reset(seed=0)
    assert info["n_parses"] in (1, 2)
