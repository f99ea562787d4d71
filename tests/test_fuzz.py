"""
Property-based tests: arbitrary RuleSet text, random valid grammars against NLTK, random play.

Over 3,000 generated rule texts must load or raise :class:`GrammarError` (nothing else, never a
hang); the oracle's parse counts must equal NLTK's on random grammars; random actions must keep
the history matrix binary, equal to the actions taken, and end the episode exactly when it holds a parse.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from sb3_parsing import GrammarError, LinguisticParseEnv, Oracle, RuleSet
from sb3_parsing.corpus import sample_sentences

nltk = pytest.importorskip("nltk")
from reference import gold_cell_sets, nltk_trees  # noqa: E402 - needs nltk

# Each example must finish well inside the deadline: a slow one is a hang in the making.
FUZZ = settings(deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])

# Fragments that reach every branch of the loader: arrows, directives, comments, quotes, labels.
FRAGMENTS = [
    "=>", "=", ">", "->", "|", "%start", "%", "%end", "#", "'", '"', "''", '""', "'+'", '"the"', "'a b'",
    "S", "NP", "VP", "A", "B", "x", "y", "the", "dog", "+", "(", ")", "\\", "\u00e9", "\u03a3", "\x00",
    " ", " ", " ", "\t", "\n", "\n", "\n", "\r\n", "\x0b", "\x1c", "\u2028",
]  # fmt: skip
NLTK_FRAGMENTS = ["->", "|", "S", "NP", "'a'", '"b"', "c", " ", "\n", "'", "#", "%start"]
BUILTIN_TEXTS = [RuleSet.builtin(name).text for name in ("arithmetic", "dyck", "english")]


def _load(text: str) -> RuleSet | None:
    """Load ``text``; a ``GrammarError`` is the only acceptable failure (any other exception fails the test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreachable labels warn; that is not an error
        try:
            ruleset = RuleSet.from_text(text, "fuzz")
        except GrammarError as error:
            assert str(error), "a GrammarError must say what is wrong"
            event(f"GrammarError: {str(error).split(':')[1].split()[0] if ':' in str(error) else str(error)[:20]}")
            return None
    event("loaded")
    return ruleset


@settings(FUZZ, max_examples=800)
@given(st.text(max_size=300))
def test_arbitrary_text_loads_or_raises_grammar_error(text: str) -> None:
    _load(text)


@settings(FUZZ, max_examples=700)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join))
def test_fragment_soup_loads_or_raises_grammar_error(text: str) -> None:
    _load(text)


SYMBOLS = ["S", "A", "B", "x", "y", "'x'", "'A'", '"a b"', "''", "%s", "'", "#c", "=>", "\u00e9"]
LABELS = ["S", "A", "B", "x", "'S'", "", "A B", "%start"]
ARROWS = ["=>", "=>", "=>", "=>", " => ", "->", "", "=> =>", "=>>"]


@st.composite
def rule_line(draw: st.DrawFn) -> str:
    """A line that looks like a rule, a directive or a comment, often slightly wrong."""
    kind = draw(st.sampled_from(["rule", "rule", "rule", "rule", "start", "comment", "blank"]))
    if kind == "start":
        return "%start " + " ".join(draw(st.lists(st.sampled_from(LABELS), max_size=3)))
    if kind == "comment":
        return "# " + draw(st.sampled_from(SYMBOLS))
    if kind == "blank":
        return draw(st.sampled_from(["", "  ", "\t"]))
    pattern = " ".join(draw(st.lists(st.sampled_from(SYMBOLS), max_size=3)))
    return f"{pattern} {draw(st.sampled_from(ARROWS))} {draw(st.sampled_from(LABELS))}"


@settings(FUZZ, max_examples=1000)
@given(st.lists(rule_line(), min_size=1, max_size=8).map("\n".join))
def test_rule_like_text_loads_or_raises_grammar_error(text: str) -> None:
    ruleset = _load(text)
    if ruleset is not None:
        # What loads is self-consistent: every label has a rule, goals are labels, and it parses.
        assert set(ruleset.start) <= set(ruleset.labels)
        assert {rule.label for rule in ruleset.rules} == set(ruleset.labels)
        Oracle(ruleset)


@st.composite
def mutated_builtin(draw: st.DrawFn) -> str:
    """A built-in grammar with a few lines deleted, duplicated, swapped or overwritten."""
    lines = draw(st.sampled_from(BUILTIN_TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["delete", "duplicate", "fragment", "truncate", "swap"]))
        if edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "fragment":
            lines[i] += draw(st.sampled_from(FRAGMENTS))
        elif edit == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        if not lines:
            break
    return "\n".join(lines)


@settings(FUZZ, max_examples=600)
@given(mutated_builtin())
def test_mutated_builtin_grammars_load_or_raise_grammar_error(text: str) -> None:
    _load(text)


# Lines wrong whatever surrounds them, each with what the error must say.
MALFORMED_LINES = [
    ("Det N", "missing '=>'"),
    ("S -> NP VP", "RuleSet.from_nltk"),
    ("=> NP", "empty pattern"),
    ("Det N =>  # no label", "no label"),
    ("Det N => NP VP", "2 labels"),
    ("a => b => C", "several '=>'"),
    ("'the => Det", "unterminated quote"),
    ("the => 'Det'", "is quoted"),
    ("%begin S", "unknown directive"),
]


@settings(FUZZ, max_examples=300)
@given(st.sampled_from(BUILTIN_TEXTS), st.sampled_from(MALFORMED_LINES), st.integers(0, 40), st.sampled_from(["\n", "\r\n"]))
def test_a_malformed_line_is_named_wherever_it_is(text: str, malformed: tuple[str, str], where: int, newline: str) -> None:
    lines = text.splitlines()
    where = min(where, len(lines))
    lines.insert(where, malformed[0])
    with pytest.raises(GrammarError, match=f"^line {where + 1}: ") as error:
        RuleSet.from_text(newline.join(lines))
    assert malformed[1] in str(error.value)


@settings(FUZZ, max_examples=300)
@given(st.lists(st.sampled_from(NLTK_FRAGMENTS), max_size=30).map("".join))
def test_nltk_notation_loads_or_raises_grammar_error(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            RuleSet.from_nltk(text, "fuzz")
        except GrammarError:
            pass


# --- random valid grammars ------------------------------------------------------------------
TERMINALS = ["a", "b", "c", "'+'", "'L0'"]  # a quoted label name is a terminal


@st.composite
def valid_grammar(draw: st.DrawFn) -> str:
    """
    A random RuleSet that must load: every label productive, unary rules only from lower to higher
    labels (no unary cycles), no duplicate rules. Recursion (left, right, centre) is allowed.
    """
    n_labels = draw(st.integers(1, 4))
    labels = [f"L{i}" for i in range(n_labels)]
    rules: dict[str, None] = {}
    for i, label in enumerate(labels):
        # A first rule over terminals and lower labels only: the label is productive.
        lower = TERMINALS + labels[:i]
        pattern = draw(st.lists(st.sampled_from(lower), min_size=1, max_size=2))
        if len(pattern) == 1 and pattern[0] in labels:
            pattern.append(draw(st.sampled_from(TERMINALS)))
        rules[f"{' '.join(pattern)} => {label}"] = None
    for _ in range(draw(st.integers(0, 5))):
        label_index = draw(st.integers(0, n_labels - 1))
        pattern = draw(st.lists(st.sampled_from(TERMINALS + labels), min_size=1, max_size=3))
        if len(pattern) == 1 and pattern[0] in labels and labels.index(pattern[0]) >= label_index:
            continue  # a unary rule upwards or onto itself could close a cycle
        rules[f"{' '.join(pattern)} => {labels[label_index]}"] = None
    starts = draw(st.lists(st.sampled_from(labels), min_size=1, max_size=2, unique=True))
    return "\n".join([f"%start {' '.join(starts)}", *rules])


@settings(FUZZ, max_examples=150)
@given(valid_grammar(), st.sampled_from(["rules", "labels"]), st.integers(0, 2**16))
def test_random_grammars_parse_counts_equal_nltk(text: str, columns: str, seed: int) -> None:
    ruleset = _load(text)
    assert ruleset is not None, f"the generator makes valid grammars only:\n{text}"
    reloaded = _load(str(ruleset))
    assert reloaded is not None and reloaded.rules == ruleset.rules  # str() writes a RuleSet that loads back the same
    try:
        sentences = sample_sentences(ruleset, 4, 1, 6, seed=seed)
    except GrammarError:
        assume(False)  # no sentence of at most 6 tokens: nothing to compare
    oracle = Oracle(ruleset, columns=columns)
    for sentence in sentences:
        analysis = oracle.analyze(sentence)
        if analysis.n_parses > 200:
            continue  # NLTK enumerates every tree: keep it bounded
        assert analysis.n_parses == len(nltk_trees(ruleset, sentence)), (text, sentence)
        golds = gold_cell_sets(oracle, sentence)
        assert all(analysis.is_won(cells) for cells in golds)
        assert all(cells <= set(analysis.chart_cells.tolist()) for cells in golds)
        assert analysis.min_actions == min(len(cells) for cells in golds)


# --- random play ----------------------------------------------------------------------------
@cache
def _golds(oracle: Oracle, tokens: tuple[str, ...]) -> set[frozenset[int]]:
    return gold_cell_sets(oracle, tokens)


@cache
def _env(grammar: str, columns: str, mask_mode: str) -> LinguisticParseEnv:
    # max_len 7 keeps random play likely to win now and then, so termination is exercised both ways.
    return LinguisticParseEnv(grammar, min_len=1, max_len=7, obs_len=8, max_steps=40, columns=columns, mask_mode=mask_mode,
                              n_sentences=200, split="all")  # fmt: skip


@settings(FUZZ, max_examples=200)
@given(
    st.sampled_from(["english", "arithmetic", "dyck"]),
    st.sampled_from(["rules", "labels"]),
    st.sampled_from(["history", "oracle"]),
    st.integers(0, 2**16),
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=120),
)
def test_random_actions_keep_history_consistent(
    grammar: str, columns: str, mask_mode: str, seed: int, draws: list[float]
) -> None:
    env = _env(grammar, columns, mask_mode)
    obs, info = env.reset(seed=seed)
    taken: set[int] = set()
    for i, u in enumerate(draws):
        analysis = env.analysis
        mask = env.action_masks()
        # Alternate between any action (padding rows, repeats) and an allowed one, so both kinds are played.
        allowed = np.flatnonzero(mask)
        action = int(u * env.action_space.n) if i % 2 or not len(allowed) else int(allowed[int(u * len(allowed))])
        obs, reward, terminated, truncated, info = env.step(action)
        if action < analysis.n_cells:
            taken.add(action)
        history = obs["history"].reshape(-1)
        assert set(np.unique(history)) <= {0, 1}
        assert set(np.flatnonzero(history)) == taken
        assert obs["text"][len(analysis.tokens) :].sum() == 0 and obs["history"][len(analysis.tokens) :].sum() == 0
        won = any(cells <= taken for cells in _golds(env.oracle, analysis.tokens))
        assert terminated == won == info["is_success"]
        assert reward == (env.success_reward if won else 0.0)
        assert truncated == (not won and info["n_actions"] >= env.max_steps)
        if not (terminated or truncated):
            expected = np.zeros(env.action_space.n, dtype=bool)
            if mask_mode == "history":
                expected[: analysis.n_cells] = True
            else:
                expected[analysis.chart_cells] = True
            expected[list(taken)] = False
            assert np.array_equal(env.action_masks(), expected)
        else:
            obs, info = env.reset()
            taken.clear()
            assert obs["history"].sum() == 0
