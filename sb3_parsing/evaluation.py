"""
Evaluate parsers on a fixed list of sentences: a trained agent beside the baselines of the spec.

Every player parses every sentence once (``reset(options={"sentence": ...})``), so all rows of a table
see the same sentences. The baselines are the masked random policy, the seed's deterministic top-down
search (``Oracle.top_down_attempts``, already-set cells skipped) and the expert (``min_actions``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import yaml
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_parsing.corpus import sample_sentences

__all__ = [
    "ALGORITHMS",
    "BASELINES",
    "ExpertPlayer",
    "ModelPlayer",
    "Player",
    "RandomPlayer",
    "TopDownPlayer",
    "evaluate_player",
    "load_agent",
    "longer_sentences",
]

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN, "ppo_mask": MaskablePPO}


class Player(Protocol):
    """Something that picks the actions of one episode at a time."""

    def start(self, env: gym.Env) -> None:
        """Called after each reset."""

    def act(self, env: gym.Env, obs: dict[str, np.ndarray]) -> int:
        """The next action for observation ``obs``."""
        ...


class RandomPlayer:
    """
    Uniform over the actions that ``action_masks()`` allows.

    :param seed: seed of the player's random generator
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def start(self, env: gym.Env) -> None:
        pass

    def act(self, env: gym.Env, obs: dict[str, np.ndarray]) -> int:
        return int(self.rng.choice(np.flatnonzero(env.get_wrapper_attr("action_masks")())))


class TopDownPlayer:
    """The seed's top-down search: the cells ``Oracle.top_down_attempts`` tries, in order, skipping cells already set."""

    def __init__(self) -> None:
        self._attempts: Iterator[int] = iter(())

    def start(self, env: gym.Env) -> None:
        base = env.unwrapped
        self._attempts = base.oracle.top_down_attempts(base.analysis.tokens)  # type: ignore[attr-defined]

    def act(self, env: gym.Env, obs: dict[str, np.ndarray]) -> int:
        history = obs["history"].reshape(-1)
        for cell in self._attempts:
            if not history[cell]:
                return cell
        # The search is exhausted only if it failed; keep playing legal moves until truncation
        return int(np.flatnonzero(env.get_wrapper_attr("action_masks")())[0])


class ExpertPlayer:
    """A shortest winning sequence (``env.expert_action()``): ``min_actions`` attempts."""

    def start(self, env: gym.Env) -> None:
        pass

    def act(self, env: gym.Env, obs: dict[str, np.ndarray]) -> int:
        return int(env.get_wrapper_attr("expert_action")())


class ModelPlayer:
    """
    A trained SB3 / sb3-contrib model; ``MaskablePPO`` gets the env's action masks.

    :param model: the trained model
    :param deterministic: greedy actions (default) or sampled ones
    """

    def __init__(self, model: BaseAlgorithm, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic
        self.masked = isinstance(model, MaskablePPO)

    def start(self, env: gym.Env) -> None:
        pass

    def act(self, env: gym.Env, obs: dict[str, np.ndarray]) -> int:
        if self.masked:
            masks = env.get_wrapper_attr("action_masks")()
            action, _ = self.model.predict(obs, deterministic=self.deterministic, action_masks=masks)  # type: ignore[call-arg]
        else:
            action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return int(action)


BASELINES: dict[str, type[RandomPlayer] | type[TopDownPlayer] | type[ExpertPlayer]] = {
    "random (masked)": RandomPlayer,
    "top-down search": TopDownPlayer,
    "expert": ExpertPlayer,
}


def evaluate_player(env: gym.Env, player: Player, sentences: Sequence[Sequence[str]]) -> dict[str, Any]:
    """
    Parse every sentence once and summarize.

    :param env: a LinguisticParse environment (possibly wrapped, e.g. by the goal wrapper)
    :param player: picks the actions
    :param sentences: the sentences, as token sequences
    :return: ``n_sentences``, ``success_rate``, ``attempts`` (mean actions per sentence, failures count
        their ``max_steps``), ``solved_attempts`` (per solved sentence, ``None`` when none is solved),
        ``attempts_per_min_actions`` (mean over sentences of actions / ``min_actions``, failures included),
        ``solved_attempts_per_min_actions`` (solved sentences only, ``None`` when none is solved) and
        ``chart_share`` (the share of all actions that set a constituent of the chart, ``info["matched"]``: 1.0 for
        the expert; a low share means the player spends its attempts on cells that can never be part of a parse)
    """
    if len(sentences) == 0:
        raise ValueError("evaluate_player needs at least one sentence")
    successes, attempts, ratios = [], [], []
    n_matched = 0
    for sentence in sentences:
        obs, info = env.reset(options={"sentence": list(sentence)})
        player.start(env)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(player.act(env, obs))
            n_matched += bool(info["matched"])
        successes.append(bool(info["is_success"]))
        attempts.append(info["n_actions"])
        ratios.append(info["n_actions"] / info["min_actions"])
    solved = np.array(successes)
    attempts_arr, ratios_arr = np.array(attempts, dtype=float), np.array(ratios)
    return {
        "n_sentences": len(sentences),
        "success_rate": float(solved.mean()),
        "attempts": float(attempts_arr.mean()),
        "solved_attempts": float(attempts_arr[solved].mean()) if solved.any() else None,
        "attempts_per_min_actions": float(ratios_arr.mean()),
        "solved_attempts_per_min_actions": float(ratios_arr[solved].mean()) if solved.any() else None,
        "chart_share": float(n_matched / attempts_arr.sum()),
    }


def longer_sentences(env: gym.Env, n_sentences: int = 200, seed: int = 1) -> list[tuple[str, ...]]:
    """
    Sentences longer than any the environment trains on, that still fit its observation (``max_len`` <
    length <= ``obs_len``), sampled from its grammar.

    :param env: a LinguisticParse environment (possibly wrapped)
    :param n_sentences: how many to sample (fewer when the language has fewer)
    :param seed: seed of the sampler
    """
    base = env.unwrapped
    max_len, obs_len = base.max_len, base.obs_len  # type: ignore[attr-defined]
    if obs_len <= max_len:
        raise ValueError(f"the environment has no room for longer sentences (max_len={max_len}, obs_len={obs_len})")
    return sample_sentences(base.ruleset, n_sentences, max_len + 1, obs_len, seed=seed)  # type: ignore[attr-defined]


class _ZooArgsLoader(yaml.SafeLoader):
    """Reads rl_zoo3's ``args.yml`` (an OrderedDict dump) without executing any tag."""


_ZooArgsLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict",
    lambda loader, node: dict(loader.construct_sequence(node.value[0], deep=True)),  # type: ignore[attr-defined]
)


def _zoo_args(path: Path) -> dict[str, Any]:
    """The ``args.yml`` rl_zoo3 saved beside the model ``path`` (a log folder or a .zip in one), or ``{}``."""
    folder = path if path.is_dir() else path.parent
    for args_file in sorted(folder.glob("*/args.yml")):
        with open(args_file) as file:
            return yaml.load(file, Loader=_ZooArgsLoader)
    return {}


def load_agent(
    path: str | Path,
    algo: str | None = None,
    env_id: str | None = None,
    best: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> tuple[BaseAlgorithm, str]:
    """
    Load a trained agent from an rl_zoo3 log folder (``logs/<algo>/<env_id>_<n>``) or a ``.zip``.

    :param path: the log folder or the saved model
    :param algo: ``ppo``, ``dqn`` or ``ppo_mask``; default: from rl_zoo3's ``args.yml``, else from the path
    :param env_id: the env the agent was trained on; default: from ``args.yml``, else ``LinguisticParse-v0``
    :param best: in a log folder, load ``best_model.zip`` (the best evaluation) rather than the final model
    :param env_kwargs: keyword arguments of the env the agent plays (its grammar, lengths ...), as in training
    :return: the model and its env id
    """
    path = Path(path)
    args = _zoo_args(path)
    algo = algo or args.get("algo") or next((part for part in reversed(path.parts) if part in ALGORITHMS), None)
    if algo not in ALGORITHMS:
        raise ValueError(f"cannot tell the algorithm of {path}: pass algo, one of {sorted(ALGORITHMS)} (got {algo!r})")
    env_id = env_id or args.get("env") or "LinguisticParse-v0"
    if path.is_dir():
        path = path / ("best_model.zip" if best else f"{env_id}.zip")
    if not path.is_file():
        raise FileNotFoundError(f"no saved model at {path}")
    # HerReplayBuffer needs an env to be rebuilt; for the others the env only checks the spaces
    env = DummyVecEnv([lambda: gym.make(env_id, **(env_kwargs or {}))])
    return ALGORITHMS[algo].load(path, env=env, device="cpu"), env_id
