"""
Evaluate parsers on a fixed list of sentences: a trained agent beside the baselines of the spec.

Every player parses every sentence once (``reset(options={"sentence": ...})``), so all rows of a table
see the same sentences. The baselines are the masked random policy, the seed's deterministic top-down
search (``Oracle.top_down_attempts``, already-set cells skipped), the expert (``min_actions``) and, for
weighted grammars, the Viterbi parse (the most probable tree under the grammar's probabilities). Given the
sentences' own trees, the first complete parse each player builds is scored against them: exact match and
labeled bracket F1 (PARSEVAL, the EVALB way: :mod:`sb3_parsing.trees`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import yaml
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_parsing.corpus import TreeSentence, sample_sentences, sample_trees
from sb3_parsing.grammar import Rule, RuleSet
from sb3_parsing.trees import BracketScore, bracket_score, labeled_brackets, read_tree, tree_nodes

__all__ = [
    "ALGORITHMS",
    "BASELINES",
    "RULE_KINDS",
    "ExpertPlayer",
    "ModelPlayer",
    "Player",
    "RandomPlayer",
    "TopDownPlayer",
    "ViterbiPlayer",
    "baseline_players",
    "evaluate_player",
    "load_agent",
    "longer_sentences",
    "observed_env_kwargs",
    "rule_kind",
    "training_seconds",
]

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN, "ppo_mask": MaskablePPO}

#: What :func:`rule_kind` tells apart, in this order
RULE_KINDS = ("lexical", "unary", "binary", "longer")


def rule_kind(rule: Rule) -> str:
    """
    :param rule: a rule of a RuleSet
    :return: ``"lexical"`` (its pattern has words only), else by the pattern's length: ``"unary"`` (a single label),
        ``"binary"`` (two symbols) or ``"longer"``
    """
    if not any(symbol.is_label for symbol in rule.pattern):
        return "lexical"
    return RULE_KINDS[min(len(rule.pattern), len(RULE_KINDS) - 1)]


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
        return _next_unset(env, obs, self._attempts)


def _next_unset(env: gym.Env, obs: dict[str, np.ndarray], cells: Iterator[int]) -> int:
    """The next cell of ``cells`` not set yet; once they are all used, the first legal action (until truncation)."""
    history = obs["history"].reshape(-1)
    for cell in cells:
        if not history[cell]:
            return cell
    return int(np.flatnonzero(env.get_wrapper_attr("action_masks")())[0])


class ViterbiPlayer:
    """
    Builds the Viterbi parse, the most probable tree under a weighted grammar (``analysis.viterbi_tree()``),
    children before parents: its first complete parse is the Bayes-optimal guess of the tree a PCFG generated.
    """

    def __init__(self) -> None:
        self._cells: Iterator[int] = iter(())

    def start(self, env: gym.Env) -> None:
        base = env.unwrapped
        oracle = base.oracle  # type: ignore[attr-defined]
        nodes = tree_nodes(base.analysis.viterbi_tree(), oracle.ruleset)  # type: ignore[attr-defined]
        self._cells = iter(dict.fromkeys(start * oracle.n_columns + oracle.column_of(rule) for start, _, rule in nodes))

    def act(self, env: gym.Env, obs: dict[str, np.ndarray]) -> int:
        return _next_unset(env, obs, self._cells)


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


BASELINES: dict[str, type[RandomPlayer] | type[TopDownPlayer] | type[ExpertPlayer] | type[ViterbiPlayer]] = {
    "random (masked)": RandomPlayer,
    "top-down search": TopDownPlayer,
    "expert": ExpertPlayer,
    "Viterbi parse": ViterbiPlayer,
}


def baseline_players(ruleset: RuleSet, seed: int = 0) -> dict[str, Player]:
    """
    The baselines of :data:`BASELINES` that apply to a grammar (the Viterbi parse needs rule probabilities).

    :param ruleset: the grammar of the task
    :param seed: seed of the random baseline
    """
    players: dict[str, Player] = {}
    for name, baseline in BASELINES.items():
        if baseline is RandomPlayer:
            players[name] = RandomPlayer(seed)
        elif baseline is not ViterbiPlayer or ruleset.is_weighted:
            players[name] = baseline()  # type: ignore[call-arg]
    return players


def evaluate_player(
    env: gym.Env, player: Player, sentences: Sequence[Sequence[str]] | Sequence[TreeSentence]
) -> dict[str, Any]:
    """
    Parse every sentence once and summarize.

    :param env: a LinguisticParse environment (possibly wrapped, e.g. by the goal wrapper)
    :param player: picks the actions
    :param sentences: the sentences, as token sequences, or as :class:`~sb3_parsing.corpus.TreeSentence` to score
        the first complete parse the player builds against each sentence's own tree. That parse is read from the
        history the moment it first holds a complete parse: the sentence's tree when the history holds all its
        cells (several trees can have the same cells; ``target="tree"`` counts this a success too), else the tree
        ``analysis.parse(history)`` picks, as the env's ``info["parse"]``
    :return: ``n_sentences``, ``success_rate``, ``attempts`` (mean actions per sentence, failures count
        their ``max_steps``), ``solved_attempts`` (per solved sentence, ``None`` when none is solved),
        ``attempts_per_min_actions`` (mean over sentences of actions / ``min_actions``, failures included),
        ``solved_attempts_per_min_actions`` (solved sentences only, ``None`` when none is solved) and
        ``chart_share`` (the share of all actions that set a *new* constituent of the chart, ``info["matched"]`` on
        a cell not set before: 1.0 for the expert; a low share means the player spends its attempts on cells that
        can never be part of a parse, or on cells already set) and ``dead_end_share`` (the share of all actions that
        set a new chart constituent of no winning tree, ``info["dead_end"]``: 0.0 for the expert;
        ``chart_share - dead_end_share`` of the actions built toward a win). With trees, also ``parsed`` (the share of
        sentences with a complete parse built), ``exact_match`` (the share whose first complete parse is their
        tree), ``bracket_precision``, ``bracket_recall``, ``bracket_f1`` (corpus labeled brackets, EVALB's micro
        average; a sentence with no parse built counts its gold brackets as missed) and ``sentence_f1`` (the mean
        over sentences of their bracket F1, 0 with no parse); ``by_length``: for each sentence length (a string key,
        in order), that length's ``n_sentences``, ``success_rate``, ``attempts``, ``attempts_per_min_actions`` and
        ``dead_end_share``, and with trees its tree metrics; with rules as columns, ``by_rule_kind``: for each
        :func:`rule_kind` of the cells attempted, their ``attempt_share`` (of all actions) and ``dead_end_share`` (of
        those actions)
    """
    if len(sentences) == 0:
        raise ValueError("evaluate_player needs at least one sentence")
    with_trees = all(isinstance(s, TreeSentence) for s in sentences)
    successes, attempts, ratios, first_parses, lengths, dead_ends = [], [], [], [], [], []
    n_matched = 0
    base = env.unwrapped
    kinds = [rule_kind(rule) for rule in base.ruleset.rules] if base.columns == "rules" else None  # type: ignore[attr-defined]
    kind_attempts: Counter[str] = Counter()
    kind_dead_ends: Counter[str] = Counter()
    for sentence in sentences:
        tokens = sentence.tokens if isinstance(sentence, TreeSentence) else sentence
        options: dict[str, Any] = {"sentence": list(tokens)}
        if isinstance(sentence, TreeSentence) and getattr(env.unwrapped, "target", "any") == "tree":
            options["tree"] = sentence.tree  # the tree that wins
        obs, info = env.reset(options=options)
        analysis = env.unwrapped.analysis  # type: ignore[attr-defined]
        gold_cells = _tree_cells(env, sentence.tree) if isinstance(sentence, TreeSentence) else None
        player.start(env)
        lengths.append(len(tokens))
        dead_ends.append(0)
        history: set[int] = set()
        first_parse = None
        terminated = truncated = False
        while not (terminated or truncated):
            action = player.act(env, obs)
            obs, _, terminated, truncated, info = env.step(action)
            n_matched += bool(info["matched"])
            dead_ends[-1] += bool(info["dead_end"])
            history.add(action)
            if kinds is not None:
                kind = kinds[action % base.n_columns]  # type: ignore[attr-defined]
                kind_attempts[kind] += 1
                kind_dead_ends[kind] += bool(info["dead_end"])
            if gold_cells is not None and first_parse is None:
                first_parse = analysis.parse(history)
                # A history can hold several trees with the same cells (PP attachments chained at one position):
                # when the sentence's tree is among them it is the one built, as target="tree" counts it.
                if first_parse is not None and gold_cells <= history:
                    first_parse = sentence.tree  # type: ignore[union-attr]
        successes.append(bool(info["is_success"]))
        attempts.append(info["n_actions"])
        ratios.append(info["n_actions"] / info["min_actions"])
        first_parses.append(first_parse)
    solved = np.array(successes)
    attempts_arr, ratios_arr = np.array(attempts, dtype=float), np.array(ratios)
    gold_trees = [s.tree for s in sentences] if with_trees else None  # type: ignore[union-attr]
    result = {
        "n_sentences": len(sentences),
        "success_rate": float(solved.mean()),
        "attempts": float(attempts_arr.mean()),
        "solved_attempts": float(attempts_arr[solved].mean()) if solved.any() else None,
        "attempts_per_min_actions": float(ratios_arr.mean()),
        "solved_attempts_per_min_actions": float(ratios_arr[solved].mean()) if solved.any() else None,
        "chart_share": float(n_matched / attempts_arr.sum()),
        "dead_end_share": float(sum(dead_ends) / attempts_arr.sum()),
        "by_length": _by_length(
            np.array(lengths), solved, attempts_arr, ratios_arr, np.array(dead_ends), gold_trees, first_parses
        ),
    }
    if kinds is not None:
        result["by_rule_kind"] = {
            kind: {
                "attempt_share": float(kind_attempts[kind] / attempts_arr.sum()),
                "dead_end_share": kind_dead_ends[kind] / kind_attempts[kind],
            }
            for kind in RULE_KINDS
            if kind_attempts[kind]
        }
    if gold_trees is not None:
        result.update(_tree_metrics(gold_trees, first_parses))
    return result


def _by_length(
    lengths: np.ndarray,
    solved: np.ndarray,
    attempts: np.ndarray,
    ratios: np.ndarray,
    dead_ends: np.ndarray,
    gold_trees: list[str] | None,
    parses: list[str | None],
) -> dict[str, dict[str, float]]:
    """
    The summary of :func:`evaluate_player` for each sentence length, from one value per sentence.

    :param gold_trees: the sentences' trees (``None``: none given), to add each length's :func:`_tree_metrics` of the
        first complete ``parses``
    """
    summary = {}
    for length in np.unique(lengths):
        of = lengths == length
        row = {
            "n_sentences": int(of.sum()),
            "success_rate": float(solved[of].mean()),
            "attempts": float(attempts[of].mean()),
            "attempts_per_min_actions": float(ratios[of].mean()),
            "dead_end_share": float(dead_ends[of].sum() / attempts[of].sum()),
        }
        if gold_trees is not None:
            indices = np.flatnonzero(of)
            row.update(_tree_metrics([gold_trees[i] for i in indices], [parses[i] for i in indices]))
        summary[str(length)] = row
    return summary


def _tree_cells(env: gym.Env, tree: str) -> set[int]:
    """The history cells of a tree's rule applications (``cell = start * n_columns + column``)."""
    oracle = env.unwrapped.oracle  # type: ignore[attr-defined]
    return {start * oracle.n_columns + oracle.column_of(rule) for start, _, rule in tree_nodes(tree, oracle.ruleset)}


def _tree_metrics(gold_trees: list[str], parses: list[str | None]) -> dict[str, float]:
    """Exact match and PARSEVAL scores of the first complete parses (``None``: no parse built) against the gold trees."""
    total = BracketScore(0, 0, 0)
    exact, sentence_f1 = [], []
    for gold, parse in zip(gold_trees, parses, strict=True):
        gold_tree = read_tree(gold)
        if parse is None:
            score = BracketScore(0, sum(labeled_brackets(gold_tree)[1].values()), 0)
        else:
            score = bracket_score(gold_tree, parse)
        total += score
        exact.append(parse is not None and read_tree(parse) == gold_tree)
        sentence_f1.append(score.f1 if parse is not None else 0.0)
    return {
        "parsed": float(np.mean([parse is not None for parse in parses])),
        "exact_match": float(np.mean(exact)),
        "bracket_precision": total.precision,
        "bracket_recall": total.recall,
        "bracket_f1": total.f1,
        "sentence_f1": float(np.mean(sentence_f1)),
    }


def longer_sentences(
    env: gym.Env, n_sentences: int = 200, seed: int = 1, with_trees: bool = False
) -> list[tuple[str, ...]] | list[TreeSentence]:
    """
    Sentences longer than any the environment trains on, that still fit its observation (``max_len`` <
    length <= ``obs_len``), sampled from its grammar.

    :param env: a LinguisticParse environment (possibly wrapped)
    :param n_sentences: how many to sample (fewer when the language has fewer)
    :param seed: seed of the sampler
    :param with_trees: return the sentences with their sampled trees (:func:`~sb3_parsing.corpus.sample_trees`)
    """
    base = env.unwrapped
    max_len, obs_len = base.max_len, base.obs_len  # type: ignore[attr-defined]
    if obs_len <= max_len:
        raise ValueError(f"the environment has no room for longer sentences (max_len={max_len}, obs_len={obs_len})")
    sample = sample_trees if with_trees else sample_sentences
    return sample(base.ruleset, n_sentences, max_len + 1, obs_len, seed=seed)  # type: ignore[attr-defined]


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
    :param env_id: the env the agent plays; default: the one it was trained on (``args.yml``), else
        ``LinguisticParse-v0``. A log folder's model is the one saved for the env it was trained on either way.
    :param best: in a log folder, load ``best_model.zip`` (the best evaluation) rather than the final model
    :param env_kwargs: keyword arguments of the env the agent plays (its grammar, lengths ...), as in training;
        ``observe_derived`` is added when the agent reads the ``derived`` key (:func:`observed_env_kwargs`)
    :return: the model and its env id
    """
    path = Path(path)
    args = _zoo_args(path)
    algo = algo or args.get("algo") or next((part for part in reversed(path.parts) if part in ALGORITHMS), None)
    if algo not in ALGORITHMS:
        raise ValueError(f"cannot tell the algorithm of {path}: pass algo, one of {sorted(ALGORITHMS)} (got {algo!r})")
    env_id = env_id or args.get("env") or "LinguisticParse-v0"
    if path.is_dir():
        path = path / ("best_model.zip" if best else f"{args.get('env', env_id)}.zip")
    if not path.is_file():
        raise FileNotFoundError(f"no saved model at {path}")
    # HerReplayBuffer needs an env to be rebuilt; for the others the env only checks the spaces
    data, _, _ = load_from_zip_file(path, load_data=True, device="cpu")
    env_kwargs = {**(observed_env_kwargs(data["observation_space"]) if data else {}), **(env_kwargs or {})}
    env = DummyVecEnv([lambda: gym.make(env_id, **env_kwargs)])
    return ALGORITHMS[algo].load(path, env=env, device="cpu"), env_id


def training_seconds(log_folder: str | Path) -> float | None:
    """
    The wall-clock seconds an rl_zoo3 run trained, read off its Monitor files: from the start of the first env to
    the end of the last episode.

    :param log_folder: the run's log folder (``logs/<algo>/<env_id>_<n>``)
    :return: the seconds, or ``None`` where the folder holds no finished episode
    """
    try:
        episodes = load_results(str(log_folder))
    except LoadMonitorResultsError:
        return None
    return float(episodes["t"].max()) if len(episodes) else None


def observed_env_kwargs(observation_space: spaces.Space) -> dict[str, Any]:
    """
    The env keyword arguments that an agent's observation space needs: ``observe_derived=True`` where it reads the
    ``derived`` key.

    :param observation_space: the agent's (``model.observation_space``)
    """
    reads_derived = isinstance(observation_space, spaces.Dict) and "derived" in observation_space.spaces
    return {"observe_derived": True} if reads_derived else {}
