"""Training callback that logs what matters for parsing: attempts per sentence, attempts / ``min_actions``, chart cells."""

from collections import deque

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["LengthCurriculumCallback", "ParseMetricsCallback"]


class ParseMetricsCallback(BaseCallback):
    """
    Log, over the last ``window`` finished episodes, ``rollout/attempts`` (actions per episode),
    ``rollout/attempts_per_min_actions`` (the same divided by the sentence's ``min_actions``, 1.0 is the expert),
    ``rollout/solved_attempts_per_min_actions`` (solved sentences only), ``rollout/chart_share`` (the share of
    an episode's actions that set a constituent of the chart, ``info["matched"]``: 1.0 for the expert, low for an
    agent that spends its attempts on cells that can never be part of a parse) and ``rollout/dead_end_share`` (the
    share that set a chart constituent of no winning tree, ``info["dead_end"]``: what ambiguity costs). SB3 already logs
    ``rollout/success_rate`` from ``info["is_success"]``. The values go to every logger output (the progress
    table and TensorBoard) at the algorithm's next dump.

    Use it from an rl_zoo3 YAML with ``callback: sb3_parsing.callbacks.ParseMetricsCallback``.

    :param window: number of recent episodes averaged (100, as SB3's ``stats_window_size``)
    :param verbose: verbosity level
    """

    def __init__(self, window: int = 100, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.window = window
        self.attempts: deque[float] = deque(maxlen=window)
        self.ratios: deque[float] = deque(maxlen=window)
        self.solved_ratios: deque[float] = deque(maxlen=window)
        self.chart_shares: deque[float] = deque(maxlen=window)
        self.dead_end_shares: deque[float] = deque(maxlen=window)
        # Per env, the current episode's actions that set a chart cell, and those of them that were dead ends
        self._matched: np.ndarray | None = None
        self._dead_ends: np.ndarray | None = None

    def _on_step(self) -> bool:
        finished = False
        infos = self.locals["infos"]
        if self._matched is None or self._dead_ends is None:
            self._matched, self._dead_ends = np.zeros(len(infos)), np.zeros(len(infos))
        for env_index, (done, info) in enumerate(zip(self.locals["dones"], infos, strict=True)):
            self._matched[env_index] += bool(info.get("matched", False))
            self._dead_ends[env_index] += bool(info.get("dead_end", False))
            if not done or "n_actions" not in info:
                continue
            finished = True
            ratio = info["n_actions"] / max(info["min_actions"], 1)
            self.attempts.append(info["n_actions"])
            self.ratios.append(ratio)
            self.chart_shares.append(self._matched[env_index] / max(info["n_actions"], 1))
            self.dead_end_shares.append(self._dead_ends[env_index] / max(info["n_actions"], 1))
            self._matched[env_index] = self._dead_ends[env_index] = 0
            if info.get("is_success", False):
                self.solved_ratios.append(ratio)
        if finished:
            self.logger.record("rollout/attempts", float(np.mean(self.attempts)))
            self.logger.record("rollout/attempts_per_min_actions", float(np.mean(self.ratios)))
            self.logger.record("rollout/chart_share", float(np.mean(self.chart_shares)))
            self.logger.record("rollout/dead_end_share", float(np.mean(self.dead_end_shares)))
            if self.solved_ratios:
                self.logger.record("rollout/solved_attempts_per_min_actions", float(np.mean(self.solved_ratios)))
        return True


class LengthCurriculumCallback(BaseCallback):
    """
    Short sentences first: the longest sentence the training envs draw grows one token at a time from ``start_len``
    to their ``max_len`` over the first ``fraction`` of training, through ``env.limit_lengths`` (and is logged as
    ``curriculum/max_len``). On short sentences a sparse goal is reached by exploration, so the agent meets the real
    goal (the root) early, then on ever longer spans.

    From an rl_zoo3 YAML: ``callback: [{sb3_parsing.callbacks.LengthCurriculumCallback: {start_len: 4}}]``.

    :param start_len: the longest sentence drawn at the start
    :param fraction: the share of ``total_timesteps`` after which every length is drawn
    :param verbose: verbosity level
    """

    def __init__(self, start_len: int = 4, fraction: float = 0.5, verbose: int = 0) -> None:
        super().__init__(verbose)
        if start_len < 1 or not 0.0 < fraction <= 1.0:
            raise ValueError(f"need start_len >= 1 and 0 < fraction <= 1, got start_len={start_len}, fraction={fraction}")
        self.start_len = start_len
        self.fraction = fraction
        self._max_len = 0
        self._limit: int | None = None
        self._end_steps = 0

    def _on_training_start(self) -> None:
        self._max_len = max(self.training_env.get_attr("max_len"))
        self._end_steps = max(1, int(self.fraction * self.locals["total_timesteps"]))
        self._update()

    def _on_step(self) -> bool:
        self._update()
        return True

    def _update(self) -> None:
        growth = max(0, self._max_len - self.start_len)
        limit = min(self._max_len, self.start_len + int(growth * self.num_timesteps / self._end_steps))
        if limit != self._limit:
            self._limit = limit
            self.training_env.env_method("limit_lengths", None if limit >= self._max_len else limit)
            self.logger.record("curriculum/max_len", limit)
