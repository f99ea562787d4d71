"""
Analyse a corpus once and keep the analyses in a file, for every later run and subprocess.

The oracle parses each sentence the first time an env draws it (a chart, the exact parse count, ``min_actions``);
every env of a process shares those analyses. A run with many sentences on a large grammar, or one with
``SubprocVecEnv`` (one process per env), can start from a file instead::

    python scripts/precompute_analyses.py --grammar my.rules --sentences corpus.txt --output corpus.analyses
    python -m rl_zoo3.train ... --env-kwargs grammar:"'my.rules'" sentences:"'corpus.txt'" analyses:"'corpus.analyses'"

The file is tagged with the grammar and column mode it was made for; an env with another grammar refuses it.
"""

from __future__ import annotations

import argparse
import time

from sb3_parsing.corpus import check_sentences, load_sentences
from sb3_parsing.env import load_grammar
from sb3_parsing.oracle import COLUMN_MODES, Oracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grammar", required=True, help="a built-in grammar name or a RuleSet file")
    parser.add_argument("--sentences", required=True, help="a file with one sentence (or bracketed tree) per line")
    parser.add_argument("--output", required=True, help="the file to write")
    parser.add_argument("--columns", choices=COLUMN_MODES, default="rules")
    args = parser.parse_args()
    oracle = Oracle(load_grammar(args.grammar), args.columns)
    sentences = load_sentences(args.sentences)
    start = time.perf_counter()
    check_sentences(oracle, sentences, max(len(s) for s in sentences))  # parses each one (and names the bad ones)
    written = oracle.save_analyses(args.output, sentences)
    print(
        f"{written} analyses of {args.sentences} ({oracle.ruleset.name}, columns={args.columns}) in "
        f"{time.perf_counter() - start:.1f} s -> {args.output}"
    )


if __name__ == "__main__":
    main()
