"""
What a MaskablePPO update costs with many cells: the flat token policy (``MaskableTokenPolicy``, a softmax over every
cell) against the factored one (``FactoredMaskableTokenPolicy``, a row then a column, with the grammar's left corners),
on the ``ppo_mask.yml`` settings of each env id (8 envs, ``n_steps`` 128, ``batch_size`` 256, bit masks), torch on one
thread unless ``--num-threads`` says otherwise; ``--hyperparams n_epochs=3 batch_size=512`` times other PPO settings.

For each env id and policy: env steps per second over ``--steps`` steps after a warm-up rollout, split into rollout
(env steps, masks, forward passes) and update (the PPO epochs). Then, on one minibatch of v1's shape, the
Transformer's first layer computed both ways, forward and backward: dense on the concatenated token rows
(``embed(_tokens(obs))``) and sparse per key (``_sparse_embed_rows``), which the extractor uses from
``SPARSE_ROWS_MIN_WIDTH`` features per row. Last, on a minibatch of each env id (with its ``ppo_mask.yml`` env kwargs),
finding the observations' set entries and the masks' rows with an allowed cell: torch's ``nonzero`` and ``any``
against ``sb3_parsing.sparse``, which the extractors and the policies use.

    python scripts/benchmark_policy.py --output docs/results/benchmark_policy.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import get_class_by_name
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.extractors import TokenTransformerExtractor
from sb3_parsing.policies import FactoredMaskableTokenPolicy, MaskableTokenPolicy
from sb3_parsing.sparse import any_set, set_entries
from sb3_parsing.zoo import config_path, env_grammar

POLICIES = {"flat": MaskableTokenPolicy, "factored": FactoredMaskableTokenPolicy}
_PPO_ARGUMENTS = ("n_steps", "batch_size", "n_epochs", "learning_rate", "ent_coef", "gamma")


class _RolloutClock(BaseCallback):
    """Seconds spent collecting rollouts (the rest of ``learn`` is the update)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self._started = 0.0

    def _on_rollout_start(self) -> None:
        self._started = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.seconds += time.perf_counter() - self._started

    def _on_step(self) -> bool:
        return True


def zoo_settings(env_id: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """
    :param env_id: an entry of the shipped ``ppo_mask.yml``
    :return: its ``n_envs``, env kwargs and the MaskablePPO arguments this benchmark uses (with the policy kwargs and
        the rollout buffer)
    """
    entry = yaml.safe_load(config_path("ppo_mask").read_text())[env_id]
    # Schedules such as "lin_1e-3" become callables as rl_zoo3 makes them
    kwargs: dict[str, Any] = {key: entry[key] for key in _PPO_ARGUMENTS if key in entry}
    kwargs = ExperimentManager._preprocess_schedules(kwargs)
    kwargs["policy_kwargs"] = eval(entry["policy_kwargs"])
    if "rollout_buffer_class" in entry:
        kwargs["rollout_buffer_class"] = get_class_by_name(entry["rollout_buffer_class"])
    return entry.get("n_envs", 1), entry.get("env_kwargs", {}), kwargs


def time_training(env_id: str, policy: str, steps: int, hyperparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    :param env_id: env id with a ``ppo_mask.yml`` entry
    :param policy: a key of :data:`POLICIES`
    :param steps: env steps to time, after one warm-up rollout
    :param hyperparams: MaskablePPO arguments that replace the entry's
    :return: the row of the table
    """
    n_envs, env_kwargs, kwargs = zoo_settings(env_id)
    kwargs.update(hyperparams or {})
    # The left corners read the env's grammar (as sb3_parsing.zoo gives it); the flat policy has none
    grammar = env_grammar(env_id, env_kwargs) if policy == "factored" else {}
    kwargs["policy_kwargs"] = {**{k: v for k, v in kwargs["policy_kwargs"].items() if k != "grammar"}, **grammar}
    env = make_vec_env(env_id, n_envs=n_envs, env_kwargs=env_kwargs, seed=0)
    model = MaskablePPO(POLICIES[policy], env, seed=0, **kwargs)
    warm_up = kwargs["n_steps"] * n_envs
    model.learn(warm_up)
    clock = _RolloutClock()
    started = time.perf_counter()
    model.learn(steps, callback=clock, reset_num_timesteps=False)
    seconds = time.perf_counter() - started
    done = model.num_timesteps - warm_up
    env.close()
    return {
        "env_id": env_id,
        "policy": policy,
        "hyperparams": hyperparams or {},
        "n_actions": int(env.action_space.n),
        "steps": done,
        "steps_per_second": done / seconds,
        "rollout_share": clock.seconds / seconds,
        "update_seconds_per_1000_steps": 1000 * (seconds - clock.seconds) / done,
    }


def sample_observations(
    env_id: str, batch_size: int = 256, env_kwargs: dict[str, Any] | None = None
) -> tuple[gym.Space, dict[str, th.Tensor], th.Tensor]:
    """
    A minibatch of observations as stored (uint8, as the token policies read them) and their action masks, from
    random allowed cells.

    :param env_id: env id to play
    :param batch_size: observations
    :param env_kwargs: the env's keyword arguments
    :return: the observation space, the observations and the masks (bool)
    """
    env = make_vec_env(env_id, n_envs=1, seed=0, env_kwargs=env_kwargs)
    observations: dict[str, list[th.Tensor]] = {key: [] for key in env.observation_space.spaces}  # type: ignore[attr-defined]
    masks = []
    obs = env.reset()
    for _ in range(batch_size):
        for key, value in obs.items():  # type: ignore[union-attr]
            observations[key].append(th.as_tensor(value[0]))
        masks.append(th.as_tensor(env.env_method("action_masks")[0]))
        obs, _, _, _ = env.step(th.multinomial(masks[-1].float(), 1).numpy())
    env.close()
    return env.observation_space, {key: th.stack(rows) for key, rows in observations.items()}, th.stack(masks)


def _seconds(function: Callable[[], Any], repeats: int) -> float:
    """Seconds per call of ``function``, after one untimed call."""
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def time_first_layer(env_id: str, batch_size: int = 256, repeats: int = 5) -> dict[str, Any]:
    """
    The Transformer's first layer on a minibatch of observations from the env (a few random cells set), dense and sparse.

    :param env_id: env id whose observation space to use
    :param batch_size: observations per minibatch
    :param repeats: timed forward and backward passes of each
    :return: seconds per forward and backward pass, both ways
    """
    observation_space, batch, _ = sample_observations(env_id, batch_size)
    extractor = TokenTransformerExtractor(observation_space, embed_dim=64, n_layers=1, pooling="tokens")

    def dense() -> th.Tensor:
        return extractor.embed(extractor._tokens(batch)[0])

    def sparse() -> th.Tensor:
        return extractor._sparse_embed_rows(batch, extractor.embed)[0]

    assert th.allclose(dense(), sparse(), atol=1e-5), "the two ways must agree"
    row: dict[str, Any] = {"env_id": env_id, "batch_size": batch_size}
    row["dense_seconds"] = _seconds(lambda: dense().sum().backward(), repeats)
    row["sparse_seconds"] = _seconds(lambda: sparse().sum().backward(), repeats)
    return row


def time_set_entries(env_id: str, batch_size: int = 256, repeats: int = 5) -> dict[str, Any]:
    """
    Finding the set entries of a minibatch's observations (every key) and its masks' rows with an allowed cell:
    torch's ``nonzero`` and ``any`` against :func:`~sb3_parsing.sparse.set_entries` and
    :func:`~sb3_parsing.sparse.any_set`.

    :param env_id: env id whose observations to use
    :param batch_size: observations per minibatch
    :param repeats: timed calls of each
    :return: seconds per minibatch, each way
    """
    _, batch, masks = sample_observations(env_id, batch_size, zoo_settings(env_id)[1])
    rows = masks.view(batch_size, batch["text"].shape[1], -1)
    for matrix in batch.values():
        assert all(th.equal(a, b) for a, b in zip(set_entries(matrix), matrix.nonzero(as_tuple=True), strict=True))
    return {
        "env_id": env_id,
        "batch_size": batch_size,
        "nonzero_seconds": _seconds(lambda: [matrix.nonzero(as_tuple=True) for matrix in batch.values()], repeats),
        "set_entries_seconds": _seconds(lambda: [set_entries(matrix) for matrix in batch.values()], repeats),
        "any_seconds": _seconds(lambda: rows.any(dim=-1), repeats),
        "any_set_seconds": _seconds(lambda: any_set(rows), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-ids", nargs="+", default=["LinguisticParse-v0", "LinguisticParse-v1"])
    parser.add_argument("--policies", nargs="+", choices=sorted(POLICIES), default=sorted(POLICIES))
    parser.add_argument("--steps", type=int, default=4096, help="env steps timed per env id and policy")
    parser.add_argument("--output", type=Path, help="write the results to this JSON file")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (rl_zoo3's --num-threads)")
    parser.add_argument(
        "--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="MaskablePPO arguments instead of the entry's"
    )
    args = parser.parse_args()
    th.set_num_threads(args.num_threads)
    hyperparams = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.hyperparams)}

    training = [time_training(env_id, policy, args.steps, hyperparams) for env_id in args.env_ids for policy in args.policies]
    print(f"{'env id':<22} {'policy':<9} {'actions':>8} {'steps/s':>8} {'rollout':>8} {'update s / 1k steps':>20}")
    for row in training:
        print(
            f"{row['env_id']:<22} {row['policy']:<9} {row['n_actions']:>8,} {row['steps_per_second']:>8.1f} "
            f"{row['rollout_share']:>8.0%} {row['update_seconds_per_1000_steps']:>20.2f}"
        )
    first_layer = [time_first_layer(env_id) for env_id in args.env_ids]
    print(f"\n{'env id':<22} {'first layer, fwd+bwd, dense':>28} {'sparse':>8}")
    for row in first_layer:
        print(f"{row['env_id']:<22} {row['dense_seconds'] * 1000:>25.1f} ms {row['sparse_seconds'] * 1000:>5.1f} ms")
    entries = [time_set_entries(env_id) for env_id in args.env_ids]
    print(f"\n{'env id':<22} {'set entries: nonzero':>21} {'set_entries':>12} {'masks: any':>11} {'any_set':>9}")
    for row in entries:
        print(
            f"{row['env_id']:<22} {row['nonzero_seconds'] * 1000:>18.1f} ms {row['set_entries_seconds'] * 1000:>9.1f} ms "
            f"{row['any_seconds'] * 1000:>8.1f} ms {row['any_set_seconds'] * 1000:>6.1f} ms"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        results = {"num_threads": args.num_threads, "training": training, "first_layer": first_layer, "set_entries": entries}
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
