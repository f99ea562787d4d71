"""Policies that score every cell ``(position, column)`` from its own token row, with weights shared by all rows."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.dqn.policies import MultiInputPolicy as DQNMultiInputPolicy
from stable_baselines3.dqn.policies import QNetwork
from torch import nn

from sb3_parsing.extractors import TokenTransformerExtractor

__all__ = ["MaskableTokenPolicy", "TokenActionHead", "TokenDQNPolicy", "TokenPolicy"]


class TokenActionHead(nn.Module):
    """
    Action logits of a parsing env: the logits of row ``m`` (its ``n_columns`` cells) come from the latent of
    token ``m`` alone, through one linear layer shared by all rows, so what is learnt at one position holds at all.

    :param n_rows: rows of the observation (``obs_len``)
    :param token_dim: latent width of one token
    :param n_columns: columns of the history matrix (actions per row)
    """

    def __init__(self, n_rows: int, token_dim: int, n_columns: int) -> None:
        super().__init__()
        self.n_rows = n_rows
        self.linear = nn.Linear(token_dim, n_columns)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        return self.linear(latent.view(latent.shape[0], self.n_rows, -1)).flatten(start_dim=1)


def _token_head(n_rows: int, latent_dim: int, n_actions: int) -> TokenActionHead:
    """A :class:`TokenActionHead` for a latent of ``latent_dim`` features, or an error saying how to get one."""
    if latent_dim % n_rows or n_actions % n_rows:
        raise ValueError(
            f"a token policy needs one latent per row: the latent ({latent_dim}) and the actions ({n_actions}) must be "
            f"multiples of the {n_rows} rows; use an extractor with pooling='tokens' and no policy MLP (net_arch pi=[])"
        )
    return TokenActionHead(n_rows, latent_dim // n_rows, n_actions // n_rows)


def _with_token_features(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Default to a Transformer extractor that keeps one feature vector per row."""
    kwargs.setdefault("features_extractor_class", TokenTransformerExtractor)
    kwargs["features_extractor_kwargs"] = {"pooling": "tokens", **(kwargs.get("features_extractor_kwargs") or {})}
    return kwargs


class _TokenHeadMixin:
    """Builds the actor-critic as usual, then swaps its action net for a :class:`TokenActionHead`."""

    action_net: nn.Module

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Discrete, lr_schedule: Any, **kwargs: Any) -> None:
        # Per-token features reach the action head untouched (no policy MLP); the value MLP reads them all.
        if kwargs.get("net_arch") is None:
            kwargs["net_arch"] = dict(pi=[], vf=[64])
        super().__init__(observation_space, action_space, lr_schedule, **_with_token_features(kwargs))  # type: ignore[call-arg]

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        n_rows = self.observation_space["text"].shape[0]  # type: ignore[attr-defined]
        latent_dim = self.mlp_extractor.latent_dim_pi  # type: ignore[attr-defined]
        self.action_net = _token_head(n_rows, latent_dim, int(self.action_space.n))  # type: ignore[attr-defined]
        if self.ortho_init:  # type: ignore[attr-defined]
            self.action_net.apply(partial(self.init_weights, gain=0.01))  # type: ignore[attr-defined]
        # The optimizer built by super() holds the replaced action net's parameters: build it again.
        self.optimizer = self.optimizer_class(  # type: ignore[attr-defined]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs  # type: ignore[attr-defined]
        )


class TokenPolicy(_TokenHeadMixin, MultiInputActorCriticPolicy):
    """PPO / A2C policy for the parsing envs: per-token features (Transformer by default), per-row action logits."""


class MaskableTokenPolicy(_TokenHeadMixin, MaskableMultiInputActorCriticPolicy):
    """MaskablePPO policy for the parsing envs: per-token features (Transformer by default), per-row action logits."""


class TokenDQNPolicy(DQNMultiInputPolicy):
    """DQN policy for the parsing envs: per-token features (Transformer by default), per-row Q-values."""

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Discrete, lr_schedule: Any, **kwargs: Any) -> None:
        kwargs.setdefault("net_arch", [])  # the Q-values come from the token head, not from an MLP
        super().__init__(observation_space, action_space, lr_schedule, **_with_token_features(kwargs))

    def make_q_net(self) -> QNetwork:
        q_net = super().make_q_net()
        n_rows = self.observation_space["text"].shape[0]  # type: ignore[index]
        head = _token_head(n_rows, q_net.features_dim, int(self.action_space.n))  # type: ignore[attr-defined]
        q_net.q_net = nn.Sequential(head).to(self.device)
        return q_net
