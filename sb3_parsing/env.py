"""The parsing game of seed 002 as a Gymnasium environment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_parsing.corpus import SPLITS, check_sentences, load_sentences, sample_sentences, split_sentences
from sb3_parsing.grammar import GrammarError, RuleSet, available_grammars
from sb3_parsing.oracle import COLUMN_MODES, Oracle, SentenceAnalysis

__all__ = ["MASK_MODES", "LinguisticParseEnv"]

MASK_MODES = ("history", "oracle")
_CELL_PIXELS = 8


def _load_grammar(grammar: str | Path | RuleSet) -> RuleSet:
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


class LinguisticParseEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """
    ## Description
    The agent parses a sentence of a language defined by a RuleSet (seed 002). The state is two
    matrices: the Text matrix **T** (one-hot tokens) and the History matrix **H** (the cells the
    agent has set). An action ``(m, n)`` applies the parser at position ``m`` to match column ``n``
    and sets ``H[m, n] = 1``. The episode is won the moment **H** holds every cell of the nodes of
    one complete parse tree (a *gold cell set*).

    ## Action Space
    ``Discrete(obs_len * n_columns)``, action ``a = m * n_columns + n``. Column ``n`` is rule ``n``
    (``columns="rules"``) or label ``n`` (``columns="labels"``). Every action is accepted: a padding
    row or an already-set cell is a wasted attempt. ``action_masks()`` masks those (and, with
    ``mask_mode="oracle"``, cells that are no constituent of the chart) for MaskablePPO.

    ## Observation Space
    ``Dict(text=Box(0, 1, (obs_len, |alphabet|), uint8), history=Box(0, 1, (obs_len, n_columns), uint8))``.
    Rows past the sentence's end are zero.

    ## Rewards
    ``success_reward`` (1) on success, else 0; optional shaping: ``-step_penalty`` every step and
    ``constituent_bonus`` for a newly set cell that belongs to a gold cell set.

    ## Starting State
    A sentence drawn from the split with ``self.np_random``, ``H`` all zero.

    ## Episode End
    Terminated on success; truncated after ``max_steps`` actions.

    ## Info
    ``sentence``, ``n_parses``, ``parses_capped``, ``min_actions``, ``n_actions``, ``matched`` (the last
    action set a cell of a chart constituent), ``is_success``.

    ## Registered Configurations
    ``LinguisticParse-v0``: the English grammar (PP-attachment ambiguity), sentences of 3 to 12 tokens,
    16 rows (room to evaluate on longer sentences), ``columns="rules"``.

    :param grammar: a built-in grammar name, a path to a RuleSet file, or a RuleSet
    :param sentences: ``None`` to sample from the grammar, or a list of sentences, or a file with one per line
    :param split: ``"train"``, ``"test"`` (held-out sentences, never in train) or ``"all"``
    :param min_len: fewest tokens of a sampled sentence
    :param max_len: most tokens of a sentence
    :param obs_len: rows of the matrices (default ``max_len``); larger lets a model meet longer sentences
    :param max_steps: actions before truncation (default ``4 * max_len``)
    :param columns: ``"rules"`` or ``"labels"``
    :param mask_mode: ``"history"`` or ``"oracle"``
    :param success_reward: reward on success
    :param step_penalty: subtracted from the reward at every step
    :param constituent_bonus: added when a new cell belongs to a gold cell set
    :param max_parses: most parse trees enumerated per sentence for gold cell sets
    :param n_sentences: how many distinct sentences to sample (before the split)
    :param test_fraction: share of sentences held out in ``split="test"``
    :param max_depth: derivation depth bound of the sampler
    :param corpus_seed: seed of the sentence sampler (the pool, hence the split, depends on it only)
    :param render_mode: ``"ansi"``, ``"rgb_array"``, ``"human"`` (prints the ansi text) or ``None``
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}  # noqa: RUF012

    def __init__(
        self,
        grammar: str | Path | RuleSet = "english",
        sentences: str | Path | Sequence[str] | None = None,
        split: str = "train",
        min_len: int = 3,
        max_len: int = 12,
        obs_len: int | None = None,
        max_steps: int | None = None,
        columns: str = "rules",
        mask_mode: str = "history",
        success_reward: float = 1.0,
        step_penalty: float = 0.0,
        constituent_bonus: float = 0.0,
        max_parses: int = 1000,
        n_sentences: int = 2000,
        test_fraction: float = 0.2,
        max_depth: int | None = None,
        corpus_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        if columns not in COLUMN_MODES:
            raise ValueError(f"unknown columns={columns!r}; use one of {COLUMN_MODES}")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"unknown mask_mode={mask_mode!r}; use one of {MASK_MODES}")
        if split not in SPLITS:
            raise ValueError(f"unknown split={split!r}; use one of {SPLITS}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode={render_mode!r}; use one of {self.metadata['render_modes']} or None")
        obs_len = max_len if obs_len is None else obs_len
        if not 1 <= max_len <= obs_len:
            raise ValueError(f"need 1 <= max_len <= obs_len, got max_len={max_len}, obs_len={obs_len}")
        max_steps = 4 * max_len if max_steps is None else max_steps
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")

        self.ruleset = _load_grammar(grammar)
        self.oracle = Oracle(self.ruleset, columns=columns, max_parses=max_parses)  # type: ignore[arg-type]
        if sentences is None:
            pool = sample_sentences(self.ruleset, n_sentences, min_len, max_len, max_depth, seed=corpus_seed)
        else:
            pool = load_sentences(sentences)
            check_sentences(self.oracle, pool, max_len)
        self.sentences = split_sentences(pool, split, test_fraction)

        self.split = split
        self.obs_len = obs_len
        self.max_len = max_len
        self.max_steps = max_steps
        self.columns = columns
        self.mask_mode = mask_mode
        self.success_reward = float(success_reward)
        self.step_penalty = float(step_penalty)
        self.constituent_bonus = float(constituent_bonus)
        self.render_mode = render_mode
        self.n_columns = self.oracle.n_columns
        self._terminal_column = {s.name: i for i, s in enumerate(self.ruleset.alphabet) if not s.is_label}

        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {
                "text": spaces.Box(0, 1, (obs_len, len(self.ruleset.alphabet)), dtype=np.uint8),
                "history": spaces.Box(0, 1, (obs_len, self.n_columns), dtype=np.uint8),
            }
        )
        self.n_history_cells = obs_len * self.n_columns
        self.action_space = spaces.Discrete(self.n_history_cells)

        self._text = np.zeros((obs_len, len(self.ruleset.alphabet)), dtype=np.uint8)
        self._history = np.zeros((obs_len, self.n_columns), dtype=np.uint8)
        self._flat_history = self._history.reshape(-1)  # a view: setting a cell is one store
        self._cells: set[int] = set()
        self._analysis: SentenceAnalysis | None = None
        self._missing = np.zeros(0, dtype=np.int32)  # per gold cell set, how many of its cells are unset
        self._n_actions = 0
        self._is_success = False
        self._matched = False
        # Kept up to date by reset and step so that a step costs O(1) whatever the sentence length and grammar size.
        self._mask = np.zeros(self.n_history_cells, dtype=bool)  # action_masks(): worth-taking cells
        self._sentence_info: tuple[str, int, bool, int] = ("", 0, False, 0)  # sentence, n_parses, parses_capped, min_actions
        self._text_rows: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}  # tokens -> where T holds ones

    # Pickle copies a view into an array of its own: make ``_flat_history`` a view of ``_history`` again.
    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._flat_history = self._history.reshape(-1)

    # --- the game ---------------------------------------------------------------------------
    @property
    def analysis(self) -> SentenceAnalysis:
        """The oracle's analysis of the current sentence."""
        if self._analysis is None:
            raise RuntimeError("call reset() before using the environment")
        return self._analysis

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """
        Start an episode on a new sentence.

        :param seed: seeds ``self.np_random`` (the same seed gives the same sentences)
        :param options: ``{"sentence": "..."}`` parses that sentence instead of drawing one
        """
        super().reset(seed=seed)
        if options and "sentence" in options:
            sentence = options["sentence"]
            tokens = tuple(sentence.split()) if isinstance(sentence, str) else tuple(sentence)
            check_sentences(self.oracle, [tokens], self.obs_len)
        else:
            tokens = self.sentences[int(self.np_random.integers(len(self.sentences)))]
        self._analysis = analysis = self.oracle.analyze(tokens)
        ones = self._text_rows.get(tokens)
        if ones is None:
            ones = (np.arange(len(tokens)), np.array([self._terminal_column[t] for t in tokens], dtype=np.intp))
            if len(self._text_rows) < 65536:  # bounded: options may bring any number of new sentences
                self._text_rows[tokens] = ones
        self._text.fill(0)
        self._text[ones] = 1
        self._history.fill(0)
        self._cells.clear()
        self._missing = analysis.gold_sizes.copy()
        self._mask.fill(False)
        self._mask[: analysis.n_cells] = analysis.constituent_mask if self.mask_mode == "oracle" else True
        self._sentence_info = (" ".join(tokens), analysis.n_parses, analysis.parses_capped, analysis.min_actions)
        self._n_actions = 0
        self._is_success = False
        self._matched = False
        return self._observation(), self._info()

    def step(self, action: np.int64 | int) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Set cell ``action`` of the history matrix.

        :param action: ``m * n_columns + n``
        """
        analysis = self.analysis
        cell = int(action)
        if not 0 <= cell < self._mask.size:
            raise ValueError(f"action {action} is outside the action space Discrete({self.n_history_cells})")
        if self._is_success:
            raise RuntimeError("the episode is over (success): call reset()")
        self._n_actions += 1
        reward = -self.step_penalty
        # One cell is read and set, and only the counters of the gold sets holding it move: no re-parsing.
        if cell < analysis.n_cells:
            self._matched = bool(analysis.constituent_mask[cell])
            if cell not in self._cells:
                self._cells.add(cell)
                self._flat_history[cell] = 1
                self._mask[cell] = False
                if analysis.gold_cell_mask[cell]:
                    reward += self.constituent_bonus
                    self._missing -= analysis.gold_membership[:, cell]
                    self._is_success = bool(self._missing.min() == 0)
        else:
            self._matched = False
        if self._is_success:
            reward += self.success_reward
        truncated = not self._is_success and self._n_actions >= self.max_steps
        return self._observation(), reward, self._is_success, truncated, self._info()

    def action_masks(self) -> np.ndarray:
        """Boolean mask of the actions worth taking: real rows, unset cells (and chart cells with ``mask_mode="oracle"``)."""
        if self._analysis is None:
            raise RuntimeError("call reset() before using the environment")
        return self._mask.copy()

    def expert_action(self) -> int:
        """The next action of a shortest winning completion of the current history."""
        return self.analysis.expert_action(self._cells)

    def _observation(self) -> dict[str, np.ndarray]:
        return {"text": self._text.copy(), "history": self._history.copy()}

    def _info(self) -> dict[str, Any]:
        sentence, n_parses, parses_capped, min_actions = self._sentence_info
        return {
            "sentence": sentence,
            "n_parses": n_parses,
            "parses_capped": parses_capped,
            "min_actions": min_actions,
            "n_actions": self._n_actions,
            "matched": self._matched,
            "is_success": self._is_success,
        }

    # --- rendering --------------------------------------------------------------------------
    def render(self) -> str | np.ndarray | None:
        """Draw the sentence and the two matrices (``"ansi"``/``"human"``: text, ``"rgb_array"``: an image)."""
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        if self.render_mode in ("ansi", "human"):
            text = self._render_ansi()
            if self.render_mode == "human":
                print(text)
                return None
            return text
        return None

    def _column_names(self) -> list[str]:
        return [str(rule) for rule in self.ruleset.rules] if self.columns == "rules" else list(self.ruleset.labels)

    def _render_ansi(self) -> str:
        analysis = self.analysis
        names = self._column_names()
        width = max(len(t) for t in analysis.tokens)
        lines = [
            f"sentence: {' '.join(analysis.tokens)}",
            f"actions: {self._n_actions}/{self.max_steps}  min_actions: {analysis.min_actions}  "
            f"parses: {analysis.n_parses}  success: {self._is_success}",
            "H (columns: " + "; ".join(f"{i}={name}" for i, name in enumerate(names)) + ")",
        ]
        for m, token in enumerate(analysis.tokens):
            row = "".join("#" if v else "." for v in self._history[m])
            lines.append(f"{m:>3} {token:<{width}} |{row}|")
        if self._is_success:
            found = next(g for g in analysis.gold_cell_sets if g <= self._cells)
            applied = [f"{names[c % self.n_columns]} @ {c // self.n_columns}" for c in sorted(found)]
            lines.append("parse: " + ", ".join(applied))
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        """T in grey, a gap, then H: set gold cells green, other set cells red, unset chart cells faint blue."""
        analysis = self.analysis
        rows, text_cols = self._text.shape
        image = np.full((rows, text_cols + 1 + self.n_columns, 3), 255, dtype=np.uint8)
        image[:, :text_cols][self._text == 1] = (60, 60, 60)
        history = image[:, text_cols + 1 :]
        chart = np.zeros(self.n_history_cells, dtype=bool)
        chart[: analysis.n_cells] = analysis.constituent_mask
        gold = np.zeros(self.n_history_cells, dtype=bool)
        gold[: analysis.n_cells] = analysis.gold_cell_mask
        history[chart.reshape(rows, -1)] = (210, 225, 255)
        set_cells = self._history == 1
        history[set_cells & gold.reshape(rows, -1)] = (40, 170, 60)
        history[set_cells & np.logical_not(gold.reshape(rows, -1))] = (200, 50, 50)
        image[len(analysis.tokens) :, :] = np.minimum(image[len(analysis.tokens) :, :], 235)
        return np.repeat(np.repeat(image, _CELL_PIXELS, axis=0), _CELL_PIXELS, axis=1)
