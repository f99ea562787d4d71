"""Training callback that logs what matters for parsing: attempts per sentence and attempts / ``min_actions``."""

from collections import deque

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["ParseMetricsCallback"]


class ParseMetricsCallback(BaseCallback):
    """
    Log, over the last ``window`` finished episodes, ``rollout/attempts`` (actions per episode),
    ``rollout/attempts_per_min_actions`` (the same divided by the sentence's ``min_actions``, 1.0 is the expert)
    and ``rollout/solved_attempts_per_min_actions`` (solved sentences only). SB3 already logs
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

    def _on_step(self) -> bool:
        finished = False
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if not done or "n_actions" not in info:
                continue
            finished = True
            ratio = info["n_actions"] / max(info["min_actions"], 1)
            self.attempts.append(info["n_actions"])
            self.ratios.append(ratio)
            if info.get("is_success", False):
                self.solved_ratios.append(ratio)
        if finished:
            self.logger.record("rollout/attempts", float(np.mean(self.attempts)))
            self.logger.record("rollout/attempts_per_min_actions", float(np.mean(self.ratios)))
            if self.solved_ratios:
                self.logger.record("rollout/solved_attempts_per_min_actions", float(np.mean(self.solved_ratios)))
        return True
