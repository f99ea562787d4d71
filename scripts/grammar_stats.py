"""
Statistics of a grammar for the README: its size, its lexical ambiguity, and over sampled sentences the number of
parses, ``min_actions`` and the size of the action space.

Usage::

    python scripts/grammar_stats.py english_v1 --min-len 3 --max-len 20 --obs-len 24 --n-sentences 200
    python scripts/grammar_stats.py my_grammar.rules --columns labels --output stats.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from sb3_parsing.corpus import sample_sentences
from sb3_parsing.grammar import RuleSet, available_grammars
from sb3_parsing.oracle import COLUMN_MODES, ColumnMode, Oracle


def parts_of_speech(ruleset: RuleSet) -> dict[str, set[str]]:
    """
    The labels each word can be rewritten to directly: the labels of the rules whose pattern is that word alone.

    :param ruleset: the grammar
    :return: word -> its preterminal labels (words that only occur inside longer patterns are left out)
    """
    tags: dict[str, set[str]] = {}
    for rule in ruleset.rules:
        if len(rule.pattern) == 1 and not rule.pattern[0].is_label:
            tags.setdefault(rule.pattern[0].name, set()).add(rule.label)
    return tags


def grammar_stats(
    ruleset: RuleSet,
    n_sentences: int,
    min_len: int,
    max_len: int,
    obs_len: int | None = None,
    columns: ColumnMode = "rules",
    seed: int = 0,
) -> dict[str, Any]:
    """
    Measure a grammar and the sentences the package samples from it.

    :param ruleset: the grammar
    :param n_sentences: sentences to sample and analyse
    :param min_len: fewest tokens of a sampled sentence
    :param max_len: most tokens of a sampled sentence
    :param obs_len: rows of the observation (default ``max_len``), for the number of actions per step
    :param columns: the env's column mode, for the number of actions per step
    :param seed: seed of the sampler
    :return: the statistics, as JSON-ready numbers
    """
    tags = parts_of_speech(ruleset)
    lexical = sum(len(labels) for labels in tags.values())
    sentences = sample_sentences(ruleset, n_sentences, min_len, max_len, seed=seed)
    oracle = Oracle(ruleset, columns=columns)
    start = time.perf_counter()
    analyses = [oracle.analyze(sentence) for sentence in sentences]
    seconds = time.perf_counter() - start
    parses = [a.n_parses for a in analyses]
    min_actions = [a.min_actions for a in analyses]
    lengths = [len(s) for s in sentences]
    obs_len = max_len if obs_len is None else obs_len
    return {
        "grammar": ruleset.name,
        "weighted": ruleset.is_weighted,
        "rules": ruleset.n_rules,
        "phrase_rules": ruleset.n_rules - lexical,
        "lexical_rules": lexical,
        "labels": ruleset.n_labels,
        "words": len(ruleset.terminals),
        "ambiguous_words": sum(len(labels) > 1 for labels in tags.values()),
        "most_parts_of_speech": max((len(labels) for labels in tags.values()), default=0),
        "sentences": len(sentences),
        "tokens": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
        "parses": {"min": min(parses), "median": statistics.median(parses), "max": max(parses)},
        "ambiguous_sentences": sum(p > 1 for p in parses) / len(parses),
        "min_actions": {"min": min(min_actions), "median": statistics.median(min_actions), "max": max(min_actions)},
        "columns": columns,
        "obs_len": obs_len,
        "actions_per_step": obs_len * oracle.n_columns,
        "analysis_seconds_per_sentence": seconds / len(sentences),
    }


def _load(grammar: str) -> RuleSet:
    return RuleSet.builtin(grammar) if grammar in available_grammars() else RuleSet.from_file(grammar)


def _markdown(stats: dict[str, Any]) -> str:
    def spread(key: str) -> str:
        return f"{stats[key]['median']:g} (max {stats[key]['max']:,})"

    rows = [
        ("rules (phrase + lexical)", f"{stats['rules']:,} ({stats['phrase_rules']:,} + {stats['lexical_rules']:,})"),
        ("labels", f"{stats['labels']:,}"),
        ("words", f"{stats['words']:,}"),
        ("ambiguous words (> 1 part of speech)", f"{stats['ambiguous_words']:,} (up to {stats['most_parts_of_speech']})"),
        (f"sampled sentences ({stats['tokens']['min']}-{stats['tokens']['max']} tokens)", f"{stats['sentences']}"),
        ("parses per sentence, median (max)", spread("parses")),
        ("sentences with > 1 parse", f"{stats['ambiguous_sentences']:.0%}"),
        ("min_actions, median (max)", spread("min_actions")),
        (f"actions per step (obs_len {stats['obs_len']} x {stats['columns']})", f"{stats['actions_per_step']:,}"),
    ]
    return "\n".join(["| grammar | " + stats["grammar"] + " |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grammar", help=f"a built-in grammar ({', '.join(available_grammars())}) or a RuleSet file")
    parser.add_argument("--n-sentences", type=int, default=200, help="sentences to sample and analyse")
    parser.add_argument("--min-len", type=int, default=3, help="fewest tokens of a sentence")
    parser.add_argument("--max-len", type=int, default=20, help="most tokens of a sentence")
    parser.add_argument("--obs-len", type=int, default=None, help="rows of the observation (default: max-len)")
    parser.add_argument("--columns", choices=COLUMN_MODES, default="rules", help="the env's column mode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--output", type=Path, default=None, help="also write the statistics to this JSON file")
    args = parser.parse_args()
    stats = grammar_stats(
        _load(args.grammar), args.n_sentences, args.min_len, args.max_len, args.obs_len, args.columns, args.seed
    )
    print(_markdown(stats))
    print(f"\n(analysis: {stats['analysis_seconds_per_sentence'] * 1000:.0f} ms per sentence, cold)")
    if args.output is not None:
        args.output.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
