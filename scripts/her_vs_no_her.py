"""
Does hindsight relabeling earn its place? DQN with constituent relabeling, with SB3's plain ``HerReplayBuffer``, and
without relabeling, on the same sparse goal env.

Every run trains DQN with the hyperparameters and callbacks of the shipped ``zoo_configs/dqn.yml`` entry
``LinguisticParseGoal-v0`` (policy, learning rate, gamma, network...; ``--config`` reads another file) on
``LinguisticParseGoal-v0`` (the default task unless ``--env-kwargs``; the reward is ``compute_reward`` alone: -1 per
attempt until the root is derived, no shaping), for the same number of env steps and seeds; only the replay buffer
differs:

- ``constituent``: :class:`~sb3_parsing.her.ConstituentHerReplayBuffer`, one achieved constituent of a future step;
- ``her``: SB3's ``HerReplayBuffer`` ("future"), the whole achieved set of a future step;
- ``none``: SB3's ``DictReplayBuffer``, no relabeling.

Each agent is evaluated during training on held-out sentences (``split="test"``, never trained on), greedy, with the
real goal only (the root): success rate and attempts / ``min_actions``, and at the end the success on the
sentences of each length. With ``--lock``, each run holds an exclusive
``flock`` on that file while it trains (one training at a time on a shared machine).

    python scripts/her_vs_no_her.py --steps 100000 --seeds 0 1 2 --output docs/results/her_vs_no_her.json \\
        --lock /tmp/sb3_train.lock
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from rl_zoo3.utils import get_callback_list, get_class_by_name, linear_schedule
from stable_baselines3 import DQN, HerReplayBuffer
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.evaluation import ModelPlayer, evaluate_player
from sb3_parsing.her import CONSTITUENT_SELECTIONS, ConstituentHerReplayBuffer

GOAL_ID = "LinguisticParseGoal-v0"
CONFIG = Path(__file__).parents[1] / "sb3_parsing" / "zoo_configs" / "dqn.yml"
BUFFERS = ("constituent", "her", "none")
# Keys of the zoo entry that are not DQN arguments, and the replay buffer, which each run sets itself.
_NOT_DQN_ARGUMENTS = ("n_timesteps", "policy", "n_envs", "env_kwargs", "monitor_kwargs", "callback")
_BUFFER_KEYS = ("replay_buffer_class", "replay_buffer_kwargs")


def zoo_hyperparameters(path: Path = CONFIG) -> tuple[Any, int, dict[str, Any], dict[str, Any]]:
    """
    The DQN settings of the ``LinguisticParseGoal-v0`` entry of an rl_zoo3 config, read as rl_zoo3 reads them.

    :param path: the YAML file
    :return: the policy class, ``n_envs``, the env kwargs and the DQN keyword arguments (without the replay buffer);
        the entry's callbacks come from :func:`zoo_callbacks`
    """
    entry = yaml.safe_load(path.read_text())[GOAL_ID]
    kwargs = {key: value for key, value in entry.items() if key not in _NOT_DQN_ARGUMENTS + _BUFFER_KEYS}
    if isinstance(kwargs.get("learning_rate"), str):
        kwargs["learning_rate"] = linear_schedule(kwargs["learning_rate"].removeprefix("lin_"))
    if isinstance(kwargs.get("policy_kwargs"), str):
        kwargs["policy_kwargs"] = eval(kwargs["policy_kwargs"], {"get_class_by_name": get_class_by_name})
    return get_class_by_name(entry["policy"]), entry.get("n_envs", 1), entry.get("env_kwargs", {}), kwargs


def zoo_callbacks(path: Path = CONFIG) -> list[BaseCallback]:
    """
    The callbacks of the ``LinguisticParseGoal-v0`` entry of an rl_zoo3 config (a length curriculum, metrics), new.

    :param path: the YAML file
    """
    return get_callback_list(yaml.safe_load(path.read_text())[GOAL_ID])


def buffer_arguments(buffer: str, n_sampled_goal: int, constituent: str) -> dict[str, Any]:
    """
    DQN's replay buffer arguments for one of :data:`BUFFERS`.

    :param buffer: ``constituent``, ``her`` or ``none``
    :param n_sampled_goal: relabeled goals per real transition (relabeling buffers)
    :param constituent: which achieved constituent ``constituent`` relabels with
    """
    if buffer == "none":
        return dict(replay_buffer_class=DictReplayBuffer)
    her_kwargs: dict[str, Any] = dict(goal_selection_strategy="future", n_sampled_goal=n_sampled_goal)
    if buffer == "her":
        return dict(replay_buffer_class=HerReplayBuffer, replay_buffer_kwargs=her_kwargs)
    return dict(replay_buffer_class=ConstituentHerReplayBuffer, replay_buffer_kwargs=dict(her_kwargs, constituent=constituent))


def buffer_name(buffer: str, n_sampled_goal: int, constituent: str) -> str:
    """A row name for the tables."""
    if buffer == "none":
        return "DictReplayBuffer (no relabeling)"
    if buffer == "her":
        return f"HerReplayBuffer (future, n_sampled_goal={n_sampled_goal})"
    return f"ConstituentHerReplayBuffer ({constituent}, n_sampled_goal={n_sampled_goal})"


class _EvalCallback(BaseCallback):
    """Evaluate on held-out sentences every ``every`` env steps."""

    def __init__(self, env: gym.Env, sentences: list[tuple[str, ...]], every: int) -> None:
        super().__init__()
        self.env, self.sentences, self.every = env, sentences, every
        self.curve: list[dict[str, Any]] = []
        self._next = every

    def evaluate(self) -> None:
        self.curve.append({"steps": self.num_timesteps, **evaluate_player(self.env, ModelPlayer(self.model), self.sentences)})
        print(f"  {self.num_timesteps} steps: held-out success {self.curve[-1]['success_rate']:.3f}", flush=True)

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            self.evaluate()
        return True


@contextlib.contextmanager
def _locked(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def run(buffer: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """
    Train one agent and return its evaluation curve.

    :param buffer: one of :data:`BUFFERS`
    :param seed: seed of the envs, the agent and torch
    :param args: the command line
    """
    policy, n_envs, zoo_env_kwargs, hyperparameters = zoo_hyperparameters(args.config)
    env_kwargs = {**zoo_env_kwargs, **args.env_kwargs}
    env = make_vec_env(GOAL_ID, n_envs=n_envs, seed=seed, env_kwargs=dict(env_kwargs, split="train"))
    test_env = gym.make(GOAL_ID, **dict(env_kwargs, split="test"))
    sentences = sorted(test_env.unwrapped.sentences)[: args.eval_sentences]  # type: ignore[attr-defined]
    hyperparameters.update(args.hyperparams)
    model = DQN(
        policy,
        env,
        seed=seed,
        device="cpu",
        **hyperparameters,
        **buffer_arguments(buffer, args.n_sampled_goal, args.constituent),
    )
    callback = _EvalCallback(test_env, sentences, max(1, args.steps // args.eval_points))
    with _locked(args.lock):
        start = time.perf_counter()
        model.learn(args.steps, callback=CallbackList([*zoo_callbacks(args.config), callback]))
        seconds = time.perf_counter() - start
    if not callback.curve or callback.curve[-1]["steps"] != model.num_timesteps:
        callback.evaluate()
    return {
        "buffer": buffer_name(buffer, args.n_sampled_goal, args.constituent),
        "seed": seed,
        "seconds": seconds,
        **callback.curve[-1],
        "success_by_length": success_by_length(test_env, model, sentences),
        "curve": callback.curve,
    }


def success_by_length(env: gym.Env, model: DQN, sentences: list[tuple[str, ...]]) -> dict[str, float]:
    """Held-out success of ``model`` on the sentences of each length (a Q-function that only reaches short roots)."""
    lengths = sorted({len(sentence) for sentence in sentences})
    return {
        str(length): evaluate_player(env, ModelPlayer(model), [s for s in sentences if len(s) == length])["success_rate"]
        for length in lengths
    }


def _mean_std(results: list[dict[str, Any]], name: str, key: str) -> str:
    values = np.array([r[key] for r in results if r["buffer"] == name and r[key] is not None], dtype=float)
    return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) else "n/a"


def markdown_table(results: list[dict[str, Any]], steps: int) -> str:
    """A Markdown table: one row per run, then the mean and std of each buffer over its seeds."""
    lines = [
        f"| replay buffer | seed | held-out success @ {steps} steps | attempts / min_actions (solved) | train seconds |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r["solved_attempts_per_min_actions"]
        ratio_text = "n/a" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {r['buffer']} | {r['seed']} | {r['success_rate']:.3f} | {ratio_text} | {r['seconds']:.0f} |")
    for name in dict.fromkeys(r["buffer"] for r in results):
        success = _mean_std(results, name, "success_rate")
        ratio = _mean_std(results, name, "solved_attempts_per_min_actions")
        lines.append(f"| **{name}** | mean ± std | **{success}** | {ratio} | |")
    return "\n".join(lines)


def curve_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of the curves: each buffer's held-out success at each evaluation point, mean ± std over seeds."""
    steps = sorted({point["steps"] for r in results for point in r["curve"]})
    lines = ["| replay buffer | " + " | ".join(f"{n:,} steps" for n in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for name in dict.fromkeys(r["buffer"] for r in results):
        cells = []
        for n in steps:
            values = [p["success_rate"] for r in results if r["buffer"] == name for p in r["curve"] if p["steps"] == n]
            cells.append(f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}%" if values else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_tables(paths: list[str]) -> None:
    """Print the tables of the runs of several JSON files of this script together (runs split over processes)."""
    results = [r for path in paths for r in json.loads(Path(path).read_text())["results"]]
    print(markdown_table(results, max(r["steps"] for r in results)))
    print()
    print(curve_table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run (every buffer)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--buffers", nargs="+", choices=BUFFERS, default=list(BUFFERS), help="one run per buffer and seed")
    parser.add_argument("--n-sampled-goal", type=int, default=4, help="relabeled goals per real transition")
    parser.add_argument(
        "--constituent", choices=CONSTITUENT_SELECTIONS, default="largest", help="ConstituentHerReplayBuffer's choice"
    )
    parser.add_argument("--eval-points", type=int, default=5, help="evaluations during training")
    parser.add_argument("--eval-sentences", type=int, default=100, help="held-out sentences per evaluation (at most)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the rl_zoo3 YAML whose Goal entry every run trains with")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON env kwargs over the zoo entry's")
    parser.add_argument("--hyperparams", type=json.loads, default={}, help="JSON DQN arguments over the zoo entry's")
    parser.add_argument("--lock", type=str, help="hold an exclusive flock on this file while each run trains")
    parser.add_argument("--output", type=str, help="write every run and its evaluation curve to this JSON file")
    parser.add_argument("--tables-from", nargs="+", metavar="JSON", help="only print the tables of these files' runs")
    args = parser.parse_args()
    if args.tables_from:
        print_tables(args.tables_from)
        return
    th.set_num_threads(1)
    print(f"{GOAL_ID} env kwargs {args.env_kwargs}, {args.steps} steps, seeds {args.seeds}, buffers {args.buffers}")

    results = []
    for seed in args.seeds:
        for buffer in args.buffers:
            result = run(buffer, seed, args)
            results.append(result)
            curve = ", ".join(f"{point['steps']}: {point['success_rate']:.2f}" for point in result["curve"])
            print(f"seed {seed} {result['buffer']}: {result['seconds']:.0f} s, held-out success by steps {curve}", flush=True)
            table = markdown_table(results, args.steps)
            if args.output:  # after every run, so that an interrupted benchmark keeps what it measured
                run_record = {"env_id": GOAL_ID, "args": vars(args), "results": results, "table": table}
                Path(args.output).write_text(json.dumps(run_record, indent=2, default=str))
    print(table)
    print()
    print(curve_table(results))


if __name__ == "__main__":
    main()
