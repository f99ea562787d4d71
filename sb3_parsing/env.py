"""The parsing game of seed 002 as a Gymnasium environment."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_parsing.corpus import (
    SPLITS,
    TreeSentence,
    check_sentences,
    load_sentences,
    load_trees,
    sample_sentences,
    sample_trees,
    split_sentences,
)
from sb3_parsing.game import TARGETS, ParseBoards, Target
from sb3_parsing.grammar import GrammarError, RuleSet, available_grammars
from sb3_parsing.oracle import COLUMN_MODES, Oracle, SentenceAnalysis, shared_oracle
from sb3_parsing.rendering import render_ansi, render_rgb
from sb3_parsing.trees import tree_nodes, tree_string

__all__ = ["MASK_MODES", "LinguisticParseEnv", "load_grammar"]

MASK_MODES = ("history", "oracle")
# A corpus of up to this many sentences is parsed when the env is made (a sentence without a parse fails at once);
# a larger one is parsed as its sentences are first drawn, once per process (or read from an ``analyses`` file).
PARSED_UP_FRONT = 1000


def load_grammar(grammar: str | Path | RuleSet) -> RuleSet:
    """
    The RuleSet that an env's ``grammar`` argument names.

    :param grammar: a built-in grammar name, a path to a RuleSet file, or a RuleSet
    """
    if isinstance(grammar, RuleSet):
        return grammar
    if isinstance(grammar, str) and grammar in available_grammars():
        return RuleSet.builtin(grammar)
    if isinstance(grammar, (str, Path)) and Path(grammar).is_file():
        return RuleSet.from_file(grammar)
    raise GrammarError(
        f"grammar {str(grammar)!r} is neither a built-in grammar ({', '.join(available_grammars())}) nor a file; "
        "pass one of those names, a path to a RuleSet file, or a RuleSet"
    )


def _board_setting(name: str, convert: type) -> property:
    """An env setting stored in its board's entry of :class:`ParseBoards` (so each env of a VecEnv has its own)."""

    def get(env: LinguisticParseEnv) -> Any:
        return getattr(env._boards, name)[env._board]

    def set_(env: LinguisticParseEnv, value: Any) -> None:
        getattr(env._boards, name)[env._board] = convert(value)

    return property(get, set_, doc=f"``{name}`` of this env's board.")


class LinguisticParseEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """
    ## Description
    The agent parses a sentence of a language defined by a RuleSet (seed 002). The state is two
    matrices: the Text matrix **T** (one-hot tokens) and the History matrix **H** (the cells the
    agent has set). An action ``(m, n)`` applies the parser at position ``m`` to match column ``n``
    and sets ``H[m, n] = 1``. With ``target="any"`` the episode is won the moment **H** holds every
    cell of the nodes of some complete parse tree, however many parses the sentence has (decided on
    the chart: :class:`~sb3_parsing.oracle.Derivation`); with ``target="tree"`` only the sentence's
    own tree wins.

    ## Action Space
    ``Discrete(obs_len * n_columns)``, action ``a = m * n_columns + n``. Column ``n`` is rule ``n``
    (``columns="rules"``) or label ``n`` (``columns="labels"``). Every action is accepted: a padding
    row or an already-set cell is a wasted attempt. ``action_masks()`` masks those (and, with
    ``mask_mode="oracle"``, cells that are no constituent of the chart) for MaskablePPO.

    ## Observation Space
    ``Dict(text=Box(0, 1, (obs_len, |alphabet|), uint8), history=Box(0, 1, (obs_len, n_columns), uint8))``.
    Rows past the sentence's end are zero. With ``observe_derived=True`` a third key, ``derived``:
    ``Box(0, 1, (obs_len, n_labels * obs_len), uint8)``, the constituents whose whole derivation is in the history,
    one bit per (label, length) in the row of their first token (the layout of a goal env's ``achieved_goal``). It is
    a function of ``text`` and ``history`` (what a chart parser run on them finds), given to spare the policy that
    parser: the history records attempts, and which of them took depends on the others.

    ## Rewards
    ``success_reward`` (1) on success, else 0; optional shaping: ``-step_penalty`` every step and
    ``constituent_bonus`` for a newly set cell that belongs to some winning tree.

    ## Starting State
    A sentence drawn from the split with ``self.np_random``, ``H`` all zero.

    ## Episode End
    Terminated on success; truncated after ``max_steps`` actions.

    ## Info
    ``sentence``, ``n_parses`` (exact), ``min_actions``, ``min_actions_exact`` (False only when the search for
    the smallest tree gave up on a huge chart: ``min_actions`` is then an upper bound), ``n_actions``,
    ``matched`` (the last action set a new cell of a chart constituent), ``dead_end`` (that constituent is in no
    winning tree: outside :meth:`useful_cells`), ``is_success``; on success ``parse``,
    the tree built as a bracketed string (``nltk.Tree.fromstring`` reads it).

    ## Registered Configurations
    ``LinguisticParse-v0``: the English grammar (PP-attachment ambiguity), sentences of 3 to 12 tokens,
    ``columns="rules"``.

    :param grammar: a built-in grammar name, a path to a RuleSet file, or a RuleSet
    :param sentences: ``None`` to sample from the grammar, or a list of sentences, or a file with one per line
    :param split: ``"train"``, ``"test"`` (held-out sentences, never in train) or ``"all"``; default ``"train"``
        for sampled sentences and ``"all"`` for given ones
    :param min_len: fewest tokens of a sampled sentence
    :param max_len: most tokens of a sentence
    :param obs_len: rows of the matrices (default ``max_len``); larger lets a model meet longer sentences
    :param max_steps: actions before truncation (default ``4 * max_len``)
    :param columns: ``"rules"`` or ``"labels"``
    :param mask_mode: ``"history"`` or ``"oracle"``
    :param observe_derived: add the ``derived`` key to the observation
    :param target: ``"any"`` (any complete parse wins) or ``"tree"`` (only the sentence's own tree)
    :param success_reward: reward on success
    :param step_penalty: subtracted from the reward at every step
    :param constituent_bonus: added when a new cell belongs to a winning tree
    :param n_sentences: how many distinct sentences to sample (before the split)
    :param test_fraction: share of sentences held out in ``split="test"``
    :param max_depth: derivation depth bound of the sampler
    :param corpus_seed: seed of the sentence sampler (the pool, hence the split, depends on it only)
    :param analyses: a file written by :meth:`Oracle.save_analyses` for this grammar and columns, loaded once
    :param render_mode: ``"ansi"``, ``"rgb_array"``, ``"human"`` (prints the ansi text at every step) or ``None``
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}  # noqa: RUF012
    #: whether the boards keep the derived constituents even when the observation does not show them
    tracks_derived = False

    max_steps = _board_setting("max_steps", int)
    success_reward = _board_setting("success_reward", float)
    step_penalty = _board_setting("step_penalty", float)
    constituent_bonus = _board_setting("constituent_bonus", float)

    def __init__(
        self,
        grammar: str | Path | RuleSet = "english",
        sentences: str | Path | Sequence[str] | None = None,
        split: str | None = None,
        min_len: int = 3,
        max_len: int = 12,
        obs_len: int | None = None,
        max_steps: int | None = None,
        columns: str = "rules",
        mask_mode: str = "history",
        observe_derived: bool = False,
        target: str = "any",
        success_reward: float = 1.0,
        step_penalty: float = 0.0,
        constituent_bonus: float = 0.0,
        n_sentences: int = 2000,
        test_fraction: float = 0.2,
        max_depth: int | None = None,
        corpus_seed: int = 0,
        analyses: str | Path | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        split = ("train" if sentences is None else "all") if split is None else split
        if columns not in COLUMN_MODES:
            raise ValueError(f"unknown columns={columns!r}; use one of {COLUMN_MODES}")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"unknown mask_mode={mask_mode!r}; use one of {MASK_MODES}")
        if target not in TARGETS:
            raise ValueError(f"unknown target={target!r}; use one of {TARGETS}")
        if split not in SPLITS:
            raise ValueError(f"unknown split={split!r}; use one of {SPLITS}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode={render_mode!r}; use one of {self.metadata['render_modes']} or None")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        obs_len = max_len if obs_len is None else obs_len
        if obs_len < max_len:
            raise ValueError(
                f"obs_len={obs_len} rows cannot hold sentences of max_len={max_len} tokens; "
                f"raise obs_len to {max_len} or more, or leave it out (it then follows max_len)"
            )
        max_steps = 4 * max_len if max_steps is None else max_steps
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")

        self.ruleset = load_grammar(grammar)
        self.oracle: Oracle = shared_oracle(self.ruleset, columns)  # type: ignore[arg-type]
        if analyses is not None:
            self.oracle.load_analyses(analyses)
        pool: list[tuple[str, ...]] | list[TreeSentence]
        origins: dict[tuple[str, ...], str] = {}
        if sentences is None:
            sample = sample_trees if target == "tree" else sample_sentences
            pool = sample(self.ruleset, n_sentences, min_len, max_len, max_depth, seed=corpus_seed)  # type: ignore[assignment]
        else:
            pool = load_trees(sentences) if target == "tree" else load_sentences(sentences)
            check_sentences(self.oracle, pool, max_len, parse=len(pool) <= PARSED_UP_FRONT)
            origins = dict(zip((s.tokens if isinstance(s, TreeSentence) else s for s in pool), pool.origins, strict=True))
        kept: list[Any] = split_sentences(pool, split, test_fraction)  # type: ignore[type-var]
        #: the sentences of the split, as token tuples
        self.sentences: list[tuple[str, ...]] = [s.tokens if isinstance(s, TreeSentence) else s for s in kept]
        #: with ``target="tree"``, the tree of each sentence (bracketed), else ``None``
        self.trees: list[str] | None = [tree_string(s.tree) for s in kept] if target == "tree" else None
        self._targets: dict[str, Target] = {}
        self._origins = origins  # where each given sentence was read, for the errors of sentences parsed late
        self._drawable: np.ndarray | None = None  # the sentences reset draws from, all when None (limit_lengths)

        self.split = split
        self.obs_len = obs_len
        self.max_len = max_len
        self.columns = columns
        self.mask_mode = mask_mode
        self.observe_derived = observe_derived
        self.target = target
        self.render_mode = render_mode
        self.n_columns = self.oracle.n_columns
        self._text_column = {s.name: i for i, s in enumerate(self.ruleset.alphabet) if not s.is_label}
        game_spaces: dict[str, spaces.Space] = {
            "text": spaces.Box(0, 1, (obs_len, len(self.ruleset.alphabet)), dtype=np.uint8),
            "history": spaces.Box(0, 1, (obs_len, self.n_columns), dtype=np.uint8),
        }
        if observe_derived:
            game_spaces["derived"] = spaces.Box(0, 1, (obs_len, self.ruleset.n_labels * obs_len), dtype=np.uint8)
        self.observation_space = spaces.Dict(game_spaces)  # type: ignore[assignment]
        self.n_history_cells = obs_len * self.n_columns
        self.action_space = spaces.Discrete(self.n_history_cells)
        self._boards = self.new_boards(1)
        self._board = 0
        self._apply_settings(max_steps, success_reward, step_penalty, constituent_bonus)
        self._sentence_info: dict[str, Any] = {}
        self._started = False

    def new_boards(self, n_boards: int) -> ParseBoards:
        """
        Boards for this env's game: its matrices' shapes, and the ``derived`` array when the env, or a subclass that
        reads it (the goal env's ``achieved_goal``), needs it.

        :param n_boards: number of boards
        """
        n_labels = self.ruleset.n_labels if self.observe_derived or self.tracks_derived else 0
        return ParseBoards(n_boards, self.obs_len, self.n_columns, len(self.ruleset.alphabet), n_labels)

    def _apply_settings(self, max_steps: int, success_reward: float, step_penalty: float, constituent_bonus: float) -> None:
        self.max_steps = max_steps
        self.success_reward = float(success_reward)
        self.step_penalty = float(step_penalty)
        self.constituent_bonus = float(constituent_bonus)
        self._boards.oracle_mask[self._board] = self.mask_mode == "oracle"

    def on_board(self, boards: ParseBoards, board: int) -> LinguisticParseEnv:
        """
        A copy of this env (same grammar, sentences and settings, its own ``np_random``) that plays row ``board`` of
        ``boards``: how :class:`~sb3_parsing.vec_env.LinguisticParseVecEnv` gets N envs that step together.

        :param boards: the shared boards
        :param board: the row this env plays
        """
        env = copy.copy(self)
        env._boards, env._board = boards, board
        env._apply_settings(self.max_steps, self.success_reward, self.step_penalty, self.constituent_bonus)
        env._np_random = None
        env._sentence_info = {}
        env._started = False
        return env

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.oracle = shared_oracle(self.ruleset, self.columns)  # type: ignore[arg-type]

    # --- the game ---------------------------------------------------------------------------
    @property
    def analysis(self) -> SentenceAnalysis:
        """The oracle's analysis of the current sentence."""
        self._check_started()
        return self._boards.analyses[self._board]  # type: ignore[return-value]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """
        Start an episode on a new sentence.

        :param seed: seeds ``self.np_random`` (the same seed gives the same sentences)
        :param options: ``{"sentence": "..."}`` parses that sentence instead of drawing one; with ``target="tree"``,
            ``{"tree": "(S ...)"}`` plays that tree's sentence with that tree as the target
        """
        super().reset(seed=seed)
        tree = None
        if options and ("sentence" in options or "tree" in options):
            tokens, tree = self._given_sentence(options)
        else:
            drawable = self._drawable
            index = int(self.np_random.integers(len(self.sentences)) if drawable is None else self.np_random.choice(drawable))
            tokens, tree = self.sentences[index], None if self.trees is None else self.trees[index]
        analysis = self._analyze(tokens)
        target = Target() if tree is None else self._target(tree)
        self._boards.reset_board(self._board, analysis, [self._text_column[t] for t in tokens], target)
        self._sentence_info = {
            "sentence": " ".join(tokens),
            "n_parses": analysis.n_parses,
            "min_actions": self._boards.min_actions(self._board),
            "min_actions_exact": analysis.min_actions_exact,
        }
        self._started = True
        self._render_frame()
        return self._observation(), self.info()

    def limit_lengths(self, max_tokens: int | None) -> None:
        """
        From the next reset on, draw only the split's sentences of at most ``max_tokens`` tokens (a length
        curriculum: :class:`~sb3_parsing.callbacks.LengthCurriculumCallback`); ``None`` draws from all of them again.

        :param max_tokens: the longest sentence drawn, or ``None``
        """
        if max_tokens is None:
            self._drawable = None
            return
        drawable = np.flatnonzero(np.array([len(tokens) for tokens in self.sentences]) <= max_tokens)
        if not len(drawable):
            shortest = min(len(tokens) for tokens in self.sentences)
            raise ValueError(
                f"no sentence of the {self.split!r} split has {max_tokens} tokens or fewer (the shortest has {shortest})"
            )
        self._drawable = drawable

    def _analyze(self, tokens: tuple[str, ...]) -> SentenceAnalysis:
        """The oracle's analysis of a sentence of the pool; a sentence without a parse is named with its origin."""
        try:
            return self.oracle.analyze(tokens)
        except GrammarError as error:
            origin = self._origins.get(tokens)
            raise (GrammarError(f"{origin}: {error}") if origin else error) from None

    def _given_sentence(self, options: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
        """The sentence (and tree, with ``target="tree"``) that reset ``options`` name, checked."""
        if self.target == "tree":
            if "tree" not in options:
                raise ValueError("with target='tree', reset(options={'tree': '(S ...)'}) names the sentence and its tree")
            given = load_trees([options["tree"]])
            check_sentences(self.oracle, given, self.obs_len, origins=["options['tree']"])
            return given[0].tokens, tree_string(given[0].tree)
        sentence = options["sentence"]
        tokens = tuple(sentence.split()) if isinstance(sentence, str) else tuple(sentence)
        check_sentences(self.oracle, [tokens], self.obs_len, origins=["options['sentence']"])
        return tokens, None

    def _target(self, tree: str) -> Target:
        """The target of a tree: its cells (cached per tree)."""
        target = self._targets.get(tree)
        if target is None:
            nodes = tree_nodes(tree, self.ruleset)
            cells = frozenset(start * self.n_columns + self.oracle.column_of(rule) for start, _, rule in nodes)
            target = self._targets[tree] = Target(tree, cells)
        return target

    def step(self, action: np.int64 | int) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Set cell ``action`` of the history matrix.

        :param action: ``m * n_columns + n``
        """
        self._check_started()
        reward, terminated, truncated = self._boards.step_board(self._board, int(action))
        self._render_frame()
        return self._observation(), reward, terminated, truncated, self.info()

    def info(self) -> dict[str, Any]:
        """The info dict of the current state (what ``reset`` and ``step`` return)."""
        boards, board = self._boards, self._board
        info = {
            **self._sentence_info,
            "n_actions": boards.n_actions[board],
            "matched": boards.matched[board],
            "dead_end": boards.dead_end[board],
            "is_success": boards.is_success[board],
        }
        if info["is_success"]:
            info["parse"] = boards.parse(board)
        return info

    def action_masks(self) -> np.ndarray:
        """Boolean mask of the actions worth taking: real rows, unset cells (and chart cells with ``mask_mode="oracle"``)."""
        self._check_started()
        return self._boards.mask[self._board].copy()

    def expert_action(self) -> int:
        """The next action of a shortest winning completion of the current history."""
        self._check_started()
        return self._boards.expert_action(self._board)

    def history_cells(self) -> set[int]:
        """The cells set so far in this episode."""
        self._check_started()
        return set(self._boards.cells(self._board))

    def useful_cells(self) -> np.ndarray:
        """
        The cells that belong to a winning tree, sorted: of any complete parse with ``target="any"``, of the target
        tree with ``target="tree"``. A chart cell outside them is a dead end: no win uses it.
        """
        self._check_started()
        return self._boards.useful_cells(self._board).copy()

    def parse_tree(self) -> Any:
        """The tree that won the episode as an ``nltk.Tree`` (``None`` before success; needs nltk)."""
        self._check_started()
        parse = self._boards.parse(self._board)
        if parse is None:
            return None
        from nltk import Tree

        return Tree.fromstring(parse)

    def decode_action(self, action: int) -> tuple[int, str]:
        """
        ``(position, column name)`` of an action: the rule (``columns="rules"``) or label it applies at that position.

        :param action: ``m * n_columns + n``
        """
        if not 0 <= int(action) < self.n_history_cells:
            raise ValueError(f"action {action} is outside the action space Discrete({self.n_history_cells})")
        position, column = divmod(int(action), self.n_columns)
        return position, self.column_names()[column]

    def column_names(self) -> list[str]:
        """What each column of the history matrix stands for: rule texts or labels."""
        return [str(rule) for rule in self.ruleset.rules] if self.columns == "rules" else list(self.ruleset.labels)

    def _observation(self) -> dict[str, np.ndarray]:
        return self._boards.observation(self._board, self.observe_derived)

    def _check_started(self) -> None:
        if not self._started:
            raise RuntimeError("call reset() before using the environment")

    # --- rendering --------------------------------------------------------------------------
    def _render_frame(self) -> None:
        if self.render_mode == "human":
            print(self._render_ansi())

    def render(self) -> str | np.ndarray | None:
        """The frame: text (``"ansi"``) or an image (``"rgb_array"``); ``"human"`` prints at each reset and step instead."""
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                f"Make the env with render_mode, one of {self.metadata['render_modes']}"
            )
            return None
        self._check_started()
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        if self.render_mode == "human":
            return None  # human mode prints every frame from reset and step, as Gymnasium asks
        return self._render_ansi()

    def _render_ansi(self) -> str:
        boards, board = self._boards, self._board
        n_actions = int(boards.n_actions[board])
        return render_ansi(
            self.analysis.tokens,
            boards.history[board],
            self.column_names(),
            n_actions=n_actions,
            max_steps=self.max_steps,
            min_actions=self._sentence_info["min_actions"],
            n_parses=self.analysis.n_parses,
            is_success=bool(boards.is_success[board]),
            tree=boards.parse(board),
            legend=n_actions == 0,  # the legend on an episode's first frame only
        )

    def _render_rgb(self) -> np.ndarray:
        boards, board = self._boards, self._board
        chart = np.zeros(self.n_history_cells, dtype=bool)
        chart[self.analysis.chart_cells] = True
        useful = np.zeros(self.n_history_cells, dtype=bool)
        useful[boards.useful_cells(board)] = True
        return render_rgb(
            self.analysis.tokens,
            boards.history[board],
            self.column_names(),
            chart_cells=chart.reshape(self.obs_len, -1),
            useful_cells=useful.reshape(self.obs_len, -1),
            n_actions=int(boards.n_actions[board]),
            is_success=bool(boards.is_success[board]),
            tree=boards.parse(board),
        )
