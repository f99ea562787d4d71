"""Hindsight relabeling with one constituent: a ``HerReplayBuffer`` whose relabeled goals look like the real one."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3 import HerReplayBuffer

__all__ = ["CONSTITUENT_SELECTIONS", "ConstituentHerReplayBuffer"]

CONSTITUENT_SELECTIONS = ("uniform", "largest")


class ConstituentHerReplayBuffer(HerReplayBuffer):
    """
    ``HerReplayBuffer`` for :class:`~sb3_parsing.wrappers.LinguisticParseGoalEnv` that relabels a transition with
    **one** constituent achieved at a step chosen by ``goal_selection_strategy`` (``"future"``: this step or a later
    one of the same episode), instead of SB3's copy of that step's whole achieved set. The real goal is a single
    constituent (the root), so relabeled goals have its form: "had the goal been this NP over tokens 3-5, the
    episode reached it". Where nothing was achieved yet at that step, the transition keeps its real goal.

    Only goal sampling changes; everything else is SB3's buffer (see its docstring), and so are its limits:

    - relabeled transitions keep the stored ``dones``: harmless here, since a constituent once derived stays derived
      (the reward stays 0 for the rest of the episode, so bootstrapping past it adds 0);
    - ``compute_reward`` gets empty infos unless ``copy_info_dict=True``: the goal env's reward reads the goals only;
    - sampling before the first episode has ended raises: ``learning_starts`` must exceed ``max_steps``.

    Use it as SB3's own, ``DQN(..., replay_buffer_class=ConstituentHerReplayBuffer, replay_buffer_kwargs=dict(
    n_sampled_goal=4, constituent="largest"))``; from an rl_zoo3 YAML,
    ``replay_buffer_class: "get_class_by_name('sb3_parsing.her.ConstituentHerReplayBuffer')"``.

    :param args: positional arguments of ``HerReplayBuffer``
    :param constituent: which achieved constituent becomes the goal: ``"largest"`` (the longest span, ties drawn
        uniformly; fewer attempts than ``"uniform"`` in ``scripts/her_vs_no_her.py``) or ``"uniform"`` (any)
    :param kwargs: keyword arguments of ``HerReplayBuffer`` (``n_sampled_goal``, ``goal_selection_strategy``, ...)
    """

    def __init__(self, *args: Any, constituent: str = "largest", **kwargs: Any) -> None:
        if constituent not in CONSTITUENT_SELECTIONS:
            raise ValueError(f"unknown constituent={constituent!r}; use one of {CONSTITUENT_SELECTIONS}")
        super().__init__(*args, **kwargs)
        goal_shape = self.obs_shape["desired_goal"]
        if len(goal_shape) != 2 or goal_shape[1] % goal_shape[0]:
            raise ValueError(
                f"ConstituentHerReplayBuffer needs the goals of LinguisticParseGoalEnv, shape (obs_len, n_labels * obs_len), "
                f"got {goal_shape}"
            )
        self.constituent = constituent
        # the span length of each bit of a flattened goal, laid out as [start, label, length - 1]
        self._lengths = (np.arange(goal_shape[0] * goal_shape[1]) % goal_shape[0] + 1).astype(np.float32)

    def _sample_goals(self, batch_indices: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        """
        One constituent of the achieved goal that SB3's strategy picks, or the real goal where that is empty.

        :param batch_indices: Indices of the transitions
        :param env_indices: Indices of the environments
        :return: Sampled goals, shape ``(batch, obs_len, n_labels * obs_len)``
        """
        achieved = super()._sample_goals(batch_indices, env_indices)
        flat = achieved.reshape(len(achieved), -1)
        # SB3 draws its goals with the global NumPy generator (seeded by the model's seed): so do we.
        scores = np.random.random(flat.shape).astype(np.float32)
        if self.constituent == "largest":
            scores += self._lengths
        scores[flat == 0] = -1.0
        chosen = scores.argmax(axis=1)
        goals = np.zeros_like(flat)
        goals[np.arange(len(flat)), chosen] = 1
        nothing_achieved = ~np.any(flat, axis=1).reshape(-1, 1, 1)
        real_goals = self.observations["desired_goal"][batch_indices, env_indices]
        return np.where(nothing_achieved, real_goals, goals.reshape(achieved.shape))
