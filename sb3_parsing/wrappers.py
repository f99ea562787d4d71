"""The hindsight goal wrapper: the parsing game as a goal-conditioned env for SB3's ``HerReplayBuffer``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_parsing.env import LinguisticParseEnv

__all__ = ["ParseGoalWrapper", "make_goal_env"]


class ParseGoalWrapper(gym.Wrapper[dict[str, Any], np.int64, dict[str, np.ndarray], np.int64]):
    """
    Turn :class:`~sb3_parsing.env.LinguisticParseEnv` into a goal-conditioned env (Gymnasium-Robotics' multi-goal API),
    so that SB3's ``HerReplayBuffer`` can relabel failed episodes with the sub-phrases they did parse.

    ## Observation Space
    The wrapped env's ``text`` and ``history``, plus ``achieved_goal`` and ``desired_goal``, both
    ``Box(0, 1, (obs_len, n_labels + 1), uint8)``:

    - ``achieved_goal[m, k] = 1`` when the history holds a complete derivation of a constituent with label ``k``
      (index in ``ruleset.labels``) starting at position ``m``;
    - ``achieved_goal[0, -1] = 1`` when the wrapped env reports success (``info["is_success"]``: the history
      covers a gold cell set, i.e. a complete parse of the whole sentence);
    - ``desired_goal`` is that root cell only, ``[0, -1] = 1``: the goal never reveals the parse.

    Rows past the sentence's end are zero in both goals, as in ``text`` and ``history``.

    ## Rewards
    ``compute_reward(achieved_goal, desired_goal, info)``: ``0.0`` where every desired cell is achieved
    (``achieved_goal >= desired_goal`` everywhere), else ``-1.0`` (the SB3 / robotics convention). The reward
    that :meth:`step` returns *is* ``compute_reward`` of the new observation's goals, so the wrapped env's own
    reward (``success_reward``, ``step_penalty``, ``constituent_bonus``) is not used.

    ## Episode End
    The wrapped env's: terminated on success, truncated after ``max_steps`` actions. ``info`` is the wrapped
    env's (it holds ``is_success``).

    ``action_masks()`` (for MaskablePPO) and ``expert_action()`` pass through to the wrapped env.

    ## Sub-goal curriculum (training only)
    With ``subgoal_prob > 0``, each episode's ``desired_goal`` is, with that probability, one cell ``[m, k]``
    instead of the root: a phrase with label ``k`` starting at ``m`` that the chart holds, drawn uniformly among the
    sentence's distinct ones spanning two tokens or more (single words are learnt anyway: every relabeled goal holds
    them). Like the root, a single cell names what to derive, not how; a short phrase takes a few actions, a clause
    many, so the goals make a curriculum that ends at the root. The episode is truncated (not terminated: the game
    goes on) once the sub-goal is achieved. Evaluate with the default ``subgoal_prob=0``, the real game.

    :param env: a :class:`~sb3_parsing.env.LinguisticParseEnv`, possibly already wrapped
    :param subgoal_prob: probability that an episode's goal is a sub-phrase instead of the whole parse
    """

    def __init__(self, env: gym.Env, subgoal_prob: float = 0.0) -> None:
        if not 0.0 <= subgoal_prob <= 1.0:
            raise ValueError(f"subgoal_prob is a probability in [0, 1], got {subgoal_prob}")
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, LinguisticParseEnv):
            raise TypeError(f"ParseGoalWrapper wraps a LinguisticParseEnv (possibly wrapped), got {type(base).__name__}")
        if not isinstance(env.observation_space, spaces.Dict):
            raise TypeError(f"ParseGoalWrapper needs the env's Dict observation space, got {env.observation_space}")
        self._base = base
        self.n_labels = base.ruleset.n_labels
        goal_shape = (base.obs_len, self.n_labels + 1)
        goal_space = spaces.Box(0, 1, goal_shape, dtype=np.uint8)
        self.observation_space = spaces.Dict(
            {**env.observation_space.spaces, "achieved_goal": goal_space, "desired_goal": goal_space}
        )
        self.subgoal_prob = subgoal_prob
        self._root_goal = np.zeros(goal_shape, dtype=np.uint8)
        self._root_goal[0, -1] = 1
        self._desired_goal = self._root_goal
        self._achieved_goal = np.zeros(goal_shape, dtype=np.uint8)
        self._n_set_cells = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """
        Reset the wrapped env; nothing is achieved yet.

        :param seed: passed to the wrapped env
        :param options: passed to the wrapped env (e.g. ``{"sentence": "..."}``)
        """
        obs, info = self.env.reset(seed=seed, options=options)
        # No draw at subgoal_prob=0: the sentences then come exactly as in the wrapped env alone.
        use_subgoal = self.subgoal_prob > 0 and self._base.np_random.random() < self.subgoal_prob
        self._desired_goal = self._subgoal() if use_subgoal else self._root_goal
        self._achieved_goal.fill(0)
        self._n_set_cells = 0
        self._update_achieved_goal(obs["history"], bool(info["is_success"]))
        return self._observation(obs), info

    def step(self, action: np.int64) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Step the wrapped env; the reward is ``compute_reward`` of the new goals.

        :param action: ``m * n_columns + n``, as in the wrapped env
        """
        obs, _, terminated, truncated, info = self.env.step(action)
        self._update_achieved_goal(obs["history"], bool(info["is_success"]))
        goal_obs = self._observation(obs)
        reward = float(self.compute_reward(goal_obs["achieved_goal"], goal_obs["desired_goal"], info))
        if reward == 0.0 and self._desired_goal is not self._root_goal:
            truncated = True  # the sub-goal is reached: a new episode, as after a time limit
        return goal_obs, reward, terminated, truncated, info

    def compute_reward(
        self,
        achieved_goal: np.ndarray,
        desired_goal: np.ndarray,
        info: dict[str, Any] | Sequence[dict[str, Any]] | np.ndarray | None,
    ) -> np.ndarray | float:
        """
        Reward for reaching ``desired_goal`` when ``achieved_goal`` is achieved: ``0.0`` where every desired cell
        is achieved, else ``-1.0``. Vectorized over any leading batch dimensions (goals broadcast against each other).

        :param achieved_goal: achieved goals, shape ``(*batch, obs_len, n_labels + 1)``
        :param desired_goal: desired goals, shape ``(*batch, obs_len, n_labels + 1)``
        :param info: an info dict, or a list / array of them for a batch (unused: the goals say everything)
        :return: a float for a single goal, a float32 array of shape ``batch`` for a batch
        """
        achieved, desired = np.asarray(achieved_goal), np.asarray(desired_goal)
        if achieved.ndim < 2 or desired.ndim < 2:
            raise ValueError(f"goals have shape (*batch, obs_len, n_labels + 1), got {achieved.shape} and {desired.shape}")
        reached = np.all(achieved >= desired, axis=(-2, -1))
        reward = reached.astype(np.float32) - np.float32(1.0)
        return float(reward) if reward.ndim == 0 else reward

    def action_masks(self) -> np.ndarray:
        """The wrapped env's action mask (for MaskablePPO)."""
        return self.env.get_wrapper_attr("action_masks")()

    def expert_action(self) -> int:
        """The wrapped env's expert action: the next action of a shortest winning completion."""
        return self.env.get_wrapper_attr("expert_action")()

    def _subgoal(self) -> np.ndarray:
        """
        A desired goal of one cell: a phrase of two tokens or more in the chart, drawn among the distinct
        ``(start, label)``; the root cell when the sentence has none (a one-token sentence).
        """
        analysis = self._base.analysis
        spans = analysis.derived_constituents(analysis.constituent_cells)  # every cell set: every constituent derived
        cells = sorted({(start, label) for start, end, label in spans if end - start >= 2})
        if not cells:
            return self._root_goal
        start, label = cells[int(self._base.np_random.integers(len(cells)))]
        goal = np.zeros_like(self._root_goal)
        goal[start, label] = 1
        return goal

    def _update_achieved_goal(self, history: np.ndarray, is_success: bool) -> None:
        cells = np.flatnonzero(history)
        # Cells are only ever added during an episode: the same count is the same history, so nothing new is derived.
        if len(cells) != self._n_set_cells:
            self._n_set_cells = len(cells)
            for start, _, label in self._base.analysis.derived_constituents(set(cells.tolist())):
                self._achieved_goal[start, label] = 1
        self._achieved_goal[0, -1] = is_success

    def _observation(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**obs, "achieved_goal": self._achieved_goal.copy(), "desired_goal": self._desired_goal.copy()}


def make_goal_env(subgoal_prob: float = 0.0, **kwargs: Any) -> ParseGoalWrapper:
    """
    Entry point of ``LinguisticParseGoal-v0``: a :class:`~sb3_parsing.env.LinguisticParseEnv` in a :class:`ParseGoalWrapper`.

    :param subgoal_prob: the wrapper's sub-goal curriculum (training only; 0, the default, is the real game)
    :param kwargs: keyword arguments of :class:`~sb3_parsing.env.LinguisticParseEnv`
    """
    return ParseGoalWrapper(LinguisticParseEnv(**kwargs), subgoal_prob=subgoal_prob)
