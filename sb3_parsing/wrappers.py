"""The parsing game as a goal-conditioned env: constituent goals for SB3's ``HerReplayBuffer``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, SupportsFloat

import numpy as np
from gymnasium import spaces

from sb3_parsing.env import LinguisticParseEnv
from sb3_parsing.game import Constituent, mark_constituents

__all__ = ["LinguisticParseGoalEnv", "constituents_of", "encode_constituents", "make_goal_env"]


def encode_constituents(constituents: Iterable[Constituent], obs_len: int, n_labels: int) -> np.ndarray:
    """
    The goal array of a set of constituents: ``goal[start, label * obs_len + (end - start - 1)] = 1``.

    Row ``m`` lists the constituents that start at token ``m``, one bit per (label, length): viewed as
    ``goal.reshape(obs_len, n_labels, obs_len)``, the bit ``[start, label, length - 1]``.

    :param constituents: ``(start, end, label)`` triples, ``0 <= start < end <= obs_len``
    :param obs_len: rows of the observation
    :param n_labels: labels of the grammar
    :return: a uint8 array of shape ``(obs_len, n_labels * obs_len)``
    """
    goal = np.zeros((obs_len, n_labels * obs_len), dtype=np.uint8)
    mark_constituents(goal, constituents)
    return goal


def _goal_reward(achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """0 where every desired bit is achieved, else -1, over the last two axes (float32)."""
    return np.all(achieved >= desired, axis=(-2, -1)).astype(np.float32) - np.float32(1.0)


def constituents_of(goal: np.ndarray) -> list[Constituent]:
    """
    The constituents a goal array holds, the inverse of :func:`encode_constituents`.

    :param goal: an array of shape ``(obs_len, n_labels * obs_len)``
    :return: ``(start, end, label)`` triples, sorted
    """
    obs_len = goal.shape[0]
    starts, labels, lengths = np.nonzero(goal.reshape(obs_len, -1, obs_len))
    return sorted((int(s), int(s + n + 1), int(k)) for s, k, n in zip(starts, labels, lengths, strict=True))


class LinguisticParseGoalEnv(LinguisticParseEnv):
    """
    ## Description
    The parsing game of :class:`~sb3_parsing.env.LinguisticParseEnv` as a goal-conditioned env (Gymnasium-Robotics'
    multi-goal API), so that SB3's ``HerReplayBuffer`` relabels failed episodes with the constituents they did derive.
    A **goal is a set of constituents** ``(start, end, label)``: the real desired goal is the root alone, a goal
    label over the whole sentence ``(0, n, S)``; it names what to derive, never how.

    ## Observation Space
    The game's ``text`` and ``history``, plus ``achieved_goal`` and ``desired_goal``, both
    ``Box(0, 1, (obs_len, n_labels * obs_len), uint8)`` in the layout of :func:`encode_constituents`: row ``m`` holds
    one bit per (label, length) of the constituents that start at token ``m``, so the token extractors read both goals
    as part of each token's row ``[T_m | H_m | goals_m]``. Rows past the sentence's end are zero.

    - ``achieved_goal``: every constituent whose whole derivation is in the history (the game's ``derived``
      constituents, kept up to date by its boards); it only grows during an episode.
    - ``desired_goal``: the root constituent. On a sentence that several goal labels span (``%start S Q``), it is
      the first of them in ``ruleset.start``'s order (the episode still ends, as in the game, on any complete parse).

    Memory: a replay buffer stores both goals of the observation and of the next one, ``4 * obs_len**2 * n_labels``
    bytes per transition (5.8 kB for the English grammar at ``obs_len=12``, 1.2 GB for 200k transitions).

    ## Rewards
    ``compute_reward(achieved_goal, desired_goal, info)``: ``0.0`` where every desired constituent is achieved, else
    ``-1.0`` (SB3's convention), vectorized over leading batch dimensions. The reward that :meth:`step` returns *is*
    ``compute_reward`` of the new observation's goals; the game's own rewards (``success_reward``, ``step_penalty``,
    ``constituent_bonus``) are not used.

    ## Episode End, Info, masks
    The game's: terminated on success, truncated after ``max_steps`` actions; the game's ``info``;
    ``action_masks()`` and ``expert_action()`` as in the game.

    ## Registered Configurations
    ``LinguisticParseGoal-v0``: the keyword arguments of ``LinguisticParse-v0``.

    :param kwargs: keyword arguments of :class:`~sb3_parsing.env.LinguisticParseEnv`
    """

    tracks_derived = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_labels = self.ruleset.n_labels
        goal_shape = (self.obs_len, self.n_labels * self.obs_len)
        goal_space = spaces.Box(0, 1, goal_shape, dtype=np.uint8)
        game_spaces = self.observation_space.spaces  # type: ignore[attr-defined]
        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {**game_spaces, "achieved_goal": goal_space, "desired_goal": goal_space}
        )
        label_index = {label: i for i, label in enumerate(self.ruleset.labels)}
        self._goal_labels = [label_index[label] for label in self.ruleset.start]
        self._desired_goal = np.zeros(goal_shape, dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """
        Start an episode on a new sentence; nothing is achieved yet, the desired goal is its root.

        :param seed: seeds ``self.np_random`` (the same seed gives the same sentences)
        :param options: ``{"sentence": "..."}`` parses that sentence instead of drawing one
        """
        obs, info = super().reset(seed=seed, options=options)
        self._desired_goal = encode_constituents([self.root_constituent()], self.obs_len, self.n_labels)
        return self._goal_observation(obs), info

    def step(self, action: np.int64 | int) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Set cell ``action`` of the history matrix; the reward is ``compute_reward`` of the new goals.

        :param action: ``m * n_columns + n``
        """
        obs, _, terminated, truncated, info = super().step(action)
        goal_obs = self._goal_observation(obs)
        # the same function as compute_reward's, not a call to it: so SB3's check_env notices a compute_reward that disagrees
        reward = float(_goal_reward(goal_obs["achieved_goal"], goal_obs["desired_goal"]))
        return goal_obs, reward, terminated, truncated, info

    def compute_reward(
        self,
        achieved_goal: np.ndarray,
        desired_goal: np.ndarray,
        info: dict[str, Any] | Sequence[dict[str, Any]] | np.ndarray | None,
    ) -> np.ndarray | float:
        """
        Reward for reaching ``desired_goal`` when ``achieved_goal`` is achieved: ``0.0`` where every desired
        constituent is achieved, else ``-1.0``. Vectorized over any leading batch dimensions (goals broadcast).

        :param achieved_goal: achieved goals, shape ``(*batch, obs_len, n_labels * obs_len)``
        :param desired_goal: desired goals, shape ``(*batch, obs_len, n_labels * obs_len)``
        :param info: an info dict, or a list / array of them for a batch (unused: the goals say everything, so
            ``HerReplayBuffer``'s empty infos with ``copy_info_dict=False`` are fine)
        :return: a float for a single goal, a float32 array of shape ``batch`` for a batch
        """
        achieved, desired = np.asarray(achieved_goal), np.asarray(desired_goal)
        if achieved.ndim < 2 or desired.ndim < 2:
            raise ValueError(
                f"goals have shape (*batch, obs_len, n_labels * obs_len), got {achieved.shape} and {desired.shape}"
            )
        reward = _goal_reward(achieved, desired)
        return float(reward) if reward.ndim == 0 else reward

    def root_constituent(self) -> Constituent:
        """The real goal of the current sentence: ``(0, n, label)``, the first goal label that spans it."""
        analysis = self.analysis
        n = len(analysis.tokens)
        every_cell = set(range(analysis.n_cells))  # with every cell set, every constituent of the chart is derived
        spanning = {label for start, end, label in analysis.derived_constituents(every_cell) if (start, end) == (0, n)}
        return 0, n, next(label for label in self._goal_labels if label in spanning)

    def _goal_observation(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        achieved_goal = self._boards.derived[self._board].copy()  # type: ignore[index]
        return {**obs, "achieved_goal": achieved_goal, "desired_goal": self._desired_goal.copy()}


def make_goal_env(**kwargs: Any) -> LinguisticParseGoalEnv:
    """
    Entry point of ``LinguisticParseGoal-v0``.

    :param kwargs: keyword arguments of :class:`~sb3_parsing.env.LinguisticParseEnv`
    """
    return LinguisticParseGoalEnv(**kwargs)
