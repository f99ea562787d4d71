"""Training callback that logs what matters for parsing: attempts per sentence, attempts / ``min_actions``, chart cells."""

from collections import deque

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["ParseMetricsCallback"]


class ParseMetricsCallback(BaseCallback):
    """
    Log, over the last ``window`` finished episodes, ``rollout/attempts`` (actions per episode),
    ``rollout/attempts_per_min_actions`` (the same divided by the sentence's ``min_actions``, 1.0 is the expert),
    ``rollout/solved_attempts_per_min_actions`` (solved sentences only) and ``rollout/chart_share`` (the share of
    an episode's actions that set a constituent of the chart, ``info["matched"]``: 1.0 for the expert, low for an
    agent that spends its attempts on cells that can never be part of a parse). SB3 already logs
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
        self._matched: np.ndarray | None = None  # per env, the current episode's actions that set a chart cell

    def _on_step(self) -> bool:
        finished = False
        infos = self.locals["infos"]
        if self._matched is None:
            self._matched = np.zeros(len(infos))
        for env_index, (done, info) in enumerate(zip(self.locals["dones"], infos, strict=True)):
            self._matched[env_index] += bool(info.get("matched", False))
            if not done or "n_actions" not in info:
                continue
            finished = True
            ratio = info["n_actions"] / max(info["min_actions"], 1)
            self.attempts.append(info["n_actions"])
            self.ratios.append(ratio)
            self.chart_shares.append(self._matched[env_index] / max(info["n_actions"], 1))
            self._matched[env_index] = 0
            if info.get("is_success", False):
                self.solved_ratios.append(ratio)
        if finished:
            self.logger.record("rollout/attempts", float(np.mean(self.attempts)))
            self.logger.record("rollout/attempts_per_min_actions", float(np.mean(self.ratios)))
            self.logger.record("rollout/chart_share", float(np.mean(self.chart_shares)))
            if self.solved_ratios:
                self.logger.record("rollout/solved_attempts_per_min_actions", float(np.mean(self.solved_ratios)))
        return True
