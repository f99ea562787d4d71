"""
A benchmark grammar at the scale of a treebank grammar, generated deterministically from a seed.

Grammars read off a treebank (the ATIS grammar used to compare parsers has about 5,500 rules and 550 labels)
are large, flat and very ambiguous: each phrase type splits into many labels (``NP-SBJ``, ``NP-PRD``, ...), rules
are long flat copies of what the annotators wrote (``DT JJ NN NN PP => NP-2``), unary rules chain labels
(``NP-3 => NP-7``, ``NN => NP-1``), and frequent words have several parts of speech. This generator builds one
like it, of pseudo-words (``dakos``, ``tiremed``), so that the package's core can be benchmarked and trained at that
scale without shipping a treebank: every phrase label gets a few short rules and many long flat ones drawn from
its phrase type's templates, unary rules only point up a fixed order of the labels (so there is no unary cycle),
and every label is reachable and productive.

Usage::

    python scripts/large_grammar.py --output large        # writes large.rules and large.txt (20-token sentences)
    python scripts/large_grammar.py --output large --seed 1 --n-sentences 200 --length 16

From Python (the benchmark does this)::

    from large_grammar import large_grammar_sentences, make_large_grammar

    ruleset = RuleSet.from_text(make_large_grammar(seed=0), "large")
    sentences = large_grammar_sentences(ruleset, 50, length=20)
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

from sb3_parsing.corpus import sample_sentences
from sb3_parsing.grammar import RuleSet
from sb3_parsing.oracle import Oracle

# Parts of speech (Penn Treebank tags) and how many words each has.
_VOCABULARY = {
    "DT": 12, "PDT": 3, "CD": 30, "NN": 190, "NNS": 150, "NNP": 90, "PRP": 9, "PRP$": 7, "EX": 1,
    "JJ": 120, "JJR": 15, "JJS": 12, "RB": 45, "RBR": 6, "IN": 35, "TO": 1, "RP": 10, "MD": 9, "CC": 4,
    "VB": 70, "VBD": 60, "VBZ": 50, "VBP": 40, "VBG": 45, "VBN": 45, "WDT": 3, "WP": 4, "WRB": 5, "POS": 1, "UH": 4,
}  # fmt: skip
# Word endings that make a part of speech recognisable in a sentence.
_SUFFIXES = {"NNS": "s", "VBZ": "s", "VBD": "ed", "VBN": "en", "VBG": "ing", "RB": "ly", "JJR": "er", "JJS": "est"}
# The ambiguities of English parts of speech: a word of the first tag may also be one of the others.
_CONFUSIONS = {
    "NN": ("VB", "JJ", "VBP"), "NNS": ("VBZ",), "VB": ("NN", "VBP"), "VBD": ("VBN", "JJ"), "VBN": ("VBD", "JJ"),
    "VBG": ("NN", "JJ"), "JJ": ("NN", "RB", "VB"), "RB": ("RP", "IN", "JJ"), "IN": ("RP", "RB", "WDT"),
    "RP": ("IN",), "DT": ("IN", "WDT", "PDT"), "NNP": ("NN",), "VBZ": ("NNS",), "VBP": ("VB", "NN"),
}  # fmt: skip
# How many labels each phrase type splits into (function tags and indices in a treebank), in the order in which
# unary rules may go up: a label's unary rules rewrite labels listed before it.
_PHRASE_LABELS = {
    "QP": 6, "WHADVP": 5, "WHNP": 8, "ADVP": 16, "ADJP": 18, "NX": 8, "NP": 70, "PP": 40, "PRT": 3,
    "UCP": 4, "VP": 60, "S": 40, "SBAR": 20, "SQ": 8, "SINV": 4, "FRAG": 6,
}  # fmt: skip
# Templates of each phrase type: symbols are phrase types or tags; a trailing "?" marks an optional symbol.
_TEMPLATES = {
    "QP": ["CD", "RB CD", "CD TO CD", "JJR IN CD", "DT CD", "IN CD"],
    "WHADVP": ["WRB", "WRB RB", "WRB JJ"],
    "WHNP": ["WP", "WDT", "WDT NN", "WDT NNS", "WP NN", "WHNP PP"],
    "ADVP": ["RB", "RB RB", "RBR", "RB PP", "NP RB", "RB SBAR", "IN"],
    "ADJP": ["JJ", "RB JJ", "JJ PP", "JJR", "JJS", "JJ CC JJ", "ADVP JJ", "JJR PP", "JJ S", "QP JJ"],
    "NX": ["NN", "NN NN", "JJ NN", "NX CC NX", "NNS"],
    "NP": [
        "DT NN", "DT JJ? NN", "NN", "NNS", "NNP", "NNP NNP", "PRP", "DT NNS", "DT JJ? JJ? NN NN?", "NP PP",
        "NP SBAR", "NP CC NP", "CD NNS", "QP NNS", "DT ADJP NN", "PRP$ NN NN?", "NP POS NN", "DT NX", "NP VP",
        "DT JJ? NNS PP", "NP PP PP", "NNP NN NN?", "DT NN POS NN", "EX", "PDT DT NNS", "DT JJS NN", "NP , NP", "DT UCP NN",
    ],
    "PP": ["IN NP", "TO NP", "IN S", "IN SBAR", "IN ADVP", "RB IN NP", "IN NP CC NP", "IN PP", "IN NP PP"],
    "PRT": ["RP"],
    "VP": [
        "VB NP", "VB NP PP", "VB PP", "VB", "VB NP NP", "VB S", "VB SBAR", "MD VP", "TO VP", "VB ADJP",
        "VB NP PP PP", "VP PP", "VP CC VP", "VBZ NP", "VBD NP PP?", "VBP NP", "VBD", "VBZ ADJP", "VBD VP",
        "VBZ VP", "VBP VP", "VBG NP", "VBN PP", "VBN NP", "VB PRT NP", "VBD PRT NP PP?", "VB NP ADVP",
        "VBZ NP SBAR", "VBD S", "VB ADVP? NP", "VBP NP PP",
    ],
    "SBAR": ["IN S", "WHNP S", "WHADVP S", "S", "IN IN S", "WHNP VP"],
    "S": [
        "NP VP", "NP VP", "NP ADVP VP", "PP NP VP", "SBAR NP VP", "VP", "NP VP ADVP", "S CC S", "ADVP NP VP",
        "NP MD VP", "UH NP VP", "NP VP PP", "PP , NP VP",
    ],
    "SQ": ["MD NP VP", "VBZ NP VP", "VBP NP VP", "VBZ NP ADJP", "VBD NP VP", "VBZ NP NP", "VBZ EX NP"],
    "SINV": ["VBZ NP NP", "ADVP VBZ NP", "PP VBZ NP"],
    "FRAG": ["NP", "PP", "NP PP", "WHNP", "ADJP", "SBAR", "NP SBAR"],
    "UCP": ["NP CC ADJP", "ADJP CC NP", "PP CC ADVP", "NP CC PP"],
}  # fmt: skip
# A short pattern of tags only for each phrase type: every phrase label gets it as its first rule, so that each
# label derives some text whatever its other rules need.
_TAGS_ONLY = {
    "QP": "CD", "WHADVP": "WRB", "WHNP": "WP", "ADVP": "RB", "ADJP": "JJ", "NX": "NN", "NP": "NN", "PP": "IN NN",
    "PRT": "RP", "UCP": "NN CC JJ", "VP": "VB", "S": "NN VBZ", "SBAR": "IN NN VBD", "SQ": "MD NN VB",
    "SINV": "VBZ NN", "FRAG": "NN",
}  # fmt: skip
# The goal labels are the last label of each of these phrase types: sentences, questions and fragments.
_ROOT_TYPES = ("S", "SQ", "SINV", "FRAG")
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "st", "pl", "gr", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")


def make_large_grammar(
    seed: int = 0,
    rules_per_label: int = 13,
    unary_share: float = 0.01,
    ambiguous_word_share: float = 0.5,
) -> str:
    """
    Generate the RuleSet text of a treebank-sized, treebank-shaped grammar (unweighted).

    With the defaults (seed 0) it has 5,850 rules (530 unary, 1,656 lexical) over 346 labels and 1,077 words. Over
    100 sampled sentences of 20 tokens the number of parses has median 5,000 and quartiles 200 and 90,000 (from 10
    to 3 x 10^8): 43 of them have 10^3 to 10^5 parses, and :func:`large_grammar_sentences` can keep only those.
    Ambiguity grows fast with ``unary_share``, which adds chains of labels on top of the unary rules that every
    phrase label gets from a tag: at 0.08 the median is 10^15.

    :param seed: seed of the generator; the same seed gives the same text
    :param rules_per_label: average number of (non-lexical) rules of a phrase label
    :param unary_share: share of a phrase label's rules that are unary (``NP-3 => NP-7``, ``NN => NP-1``)
    :param ambiguous_word_share: share of words that also have one or two other parts of speech
    :return: the RuleSet text, ``%start`` line first
    """
    rng = random.Random(seed)
    labels = {phrase: [f"{phrase}-{i}" for i in range(count)] for phrase, count in _PHRASE_LABELS.items()}
    order = {label: i for i, label in enumerate(label for group in labels.values() for label in group)}
    rules: dict[tuple[str, str], None] = {}  # (pattern, label), in order of generation

    def pick(symbol: str) -> str:
        return rng.choice(labels[symbol]) if symbol in labels else symbol

    def expand(template: str) -> str:
        symbols = [s.rstrip("?") for s in template.split() if not s.endswith("?") or rng.random() < 0.5]
        return " ".join(pick(s) for s in symbols)

    def is_upward(pattern: str, label: str) -> bool:
        """A rule of one phrase label may only rewrite a label earlier in the order: no unary cycle."""
        return " " in pattern or pattern not in order or order[pattern] < order[label]

    for phrase, group in labels.items():
        templates = _TEMPLATES[phrase]
        for label in group:
            rules[(_TAGS_ONLY[phrase], label)] = None
            n_rules = max(1, round(rng.gauss(rules_per_label, rules_per_label / 3)))
            for _ in range(n_rules):
                if rng.random() < unary_share:
                    rules[(_unary_source(label, phrase, labels, order, rng), label)] = None
                    continue
                pattern = expand(rng.choice(templates))
                if not is_upward(pattern, label):
                    continue
                # Flatten: a treebank writes a phrase's modifiers beside its head rather than nesting them.
                while len(pattern.split()) < 7 and rng.random() < 0.3:
                    pattern = f"{pattern} {pick(rng.choice(('PP', 'ADVP', 'SBAR', 'NP')))}"
                rules[(pattern, label)] = None
    roots = [labels[phrase][-1] for phrase in _ROOT_TYPES]
    _make_reachable(rules, labels, roots, rng)
    lexicon = _lexicon(rng, ambiguous_word_share)
    lines = [f"%start {' '.join(roots)}", *(f"{pattern} => {label}" for pattern, label in rules)]
    lines += [f"{word} => {tag}" for word, tag in lexicon]
    return "\n".join(lines) + "\n"


def _unary_source(label: str, phrase: str, labels: dict[str, list[str]], order: dict[str, int], rng: random.Random) -> str:
    """
    A label or tag that ``label`` may rewrite in a unary rule: a phrase label earlier in the fixed order (so unary
    rules cannot form a cycle), or one of the tags the phrase type's templates begin with.
    """
    below = [other for group in labels.values() for other in group if order[other] < order[label]]
    if below and rng.random() < 0.7:
        same_type = [other for other in below if other.startswith(phrase + "-")]
        return rng.choice(same_type if same_type and rng.random() < 0.6 else below)
    tags = [t.split()[0].rstrip("?") for t in _TEMPLATES[phrase] if t.split()[0].rstrip("?") in _VOCABULARY]
    return rng.choice(tags or [_TAGS_ONLY[phrase].split()[0]])


def _make_reachable(
    rules: dict[tuple[str, str], None], labels: dict[str, list[str]], roots: list[str], rng: random.Random
) -> None:
    """
    Give every label that no goal label derives a place in a rule of a reachable label: a copy of a reachable rule
    (not a unary one) with one symbol of the same phrase type replaced by it, as a treebank would show the label in
    that context; a label of a goal type with no such rule becomes a unary rule of its goal label (which comes after
    it in the order of the labels, as every unary rule goes).
    """
    goal_of = {root.rsplit("-", 1)[0]: root for root in roots}
    while True:
        reachable = set(roots)
        frontier = list(roots)
        rules_of: dict[str, list[str]] = {}
        for pattern, label in rules:
            rules_of.setdefault(label, []).append(pattern)
        while frontier:
            for pattern in rules_of.get(frontier.pop(), []):
                for symbol in pattern.split():
                    if symbol not in reachable and symbol in rules_of:
                        reachable.add(symbol)
                        frontier.append(symbol)
        missing = [label for group in labels.values() for label in group if label not in reachable]
        if not missing:
            return
        for label in missing:
            phrase = label.rsplit("-", 1)[0]
            hosts = [
                (pattern, parent)
                for pattern, parent in rules
                if parent in reachable
                and " " in pattern
                and any(s.rsplit("-", 1)[0] == phrase for s in pattern.split() if s in rules_of)
            ]
            if not hosts:
                rules[(label, goal_of[phrase])] = None
                continue
            pattern, parent = rng.choice(hosts)
            symbols = pattern.split()
            slot = rng.choice([i for i, s in enumerate(symbols) if s in rules_of and s.rsplit("-", 1)[0] == phrase])
            symbols[slot] = label
            rules[(" ".join(symbols), parent)] = None


def _lexicon(rng: random.Random, ambiguous_word_share: float) -> list[tuple[str, str]]:
    """Pseudo-words for every tag (with the tag's usual ending); some also get one or two other tags."""
    entries: list[tuple[str, str]] = []
    taken: set[str] = set()
    for tag, count in _VOCABULARY.items():
        for _ in range(count):
            word = _new_word(rng, taken, _SUFFIXES.get(tag, ""))
            entries.append((word, tag))
            if tag in _CONFUSIONS and rng.random() < ambiguous_word_share:
                others = _CONFUSIONS[tag]
                entries.extend((word, other) for other in rng.sample(others, min(len(others), rng.choice((1, 1, 2)))))
    return entries


def _new_word(rng: random.Random, taken: set[str], suffix: str) -> str:
    while True:
        syllables = rng.choice((1, 2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + suffix
        if word not in taken:
            taken.add(word)
            return word


def large_grammar_sentences(
    ruleset: RuleSet, n: int, length: int = 20, seed: int = 0, parses: tuple[int, int] | None = None
) -> list[tuple[str, ...]]:
    """
    Sample distinct sentences of exactly ``length`` tokens from a grammar (as the package's sampler draws them).

    :param ruleset: the grammar, e.g. ``RuleSet.from_text(make_large_grammar())``
    :param n: how many sentences
    :param length: tokens per sentence
    :param seed: seed of the sampler
    :param parses: keep only sentences whose number of parses is in this closed range, e.g. ``(10**3, 10**5)``
        (each candidate is analysed by an oracle of its own, so no shared cache is warmed)
    :return: ``n`` distinct sentences, in the order sampled
    """
    # Candidates: all of them when no filter is asked, else enough that the filter keeps n of them.
    candidates = sample_sentences(ruleset, n if parses is None else 20 * n, min_len=length, max_len=length, seed=seed)
    if parses is not None:
        oracle = Oracle(ruleset)
        low, high = parses
        in_range = (s for s in candidates if low <= oracle.analyze(s).n_parses <= high)
        candidates = list(itertools.islice(in_range, n))
    if len(candidates) < n:
        wanted = "" if parses is None else f" with {parses[0]} to {parses[1]} parses"
        raise ValueError(
            f"found only {len(candidates)} distinct sentences of {length} tokens{wanted} in {ruleset.name}; ask fewer"
        )
    return candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--output", required=True, help="path without suffix: writes OUTPUT.rules and OUTPUT.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the grammar and of the sentences")
    parser.add_argument("--n-sentences", type=int, default=100, help="sentences to sample")
    parser.add_argument("--length", type=int, default=20, help="tokens per sentence")
    args = parser.parse_args()
    text = make_large_grammar(seed=args.seed)
    ruleset = RuleSet.from_text(text, Path(args.output).name)
    sentences = large_grammar_sentences(ruleset, args.n_sentences, length=args.length, seed=args.seed)
    Path(f"{args.output}.rules").write_text(text, encoding="utf-8")
    Path(f"{args.output}.txt").write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    print(f"{args.output}.rules: {ruleset.n_rules} rules, {ruleset.n_labels} labels, {len(ruleset.terminals)} terminals")
    print(f"{args.output}.txt: {len(sentences)} sentences of {args.length} tokens")


if __name__ == "__main__":
    main()
