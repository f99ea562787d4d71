"""
Policies that score every cell ``(position, column)`` from its own token row, with weights shared by all rows,
and what MaskablePPO needs to stay exact and small at 10^5 actions: a masked distribution that gives masked cells
probability exactly 0 whatever the logits, and a rollout buffer that stores the masks as bits.

With 10^4-10^5 cells a flat softmax over every cell dominates a PPO update; :class:`FactoredMaskableTokenPolicy`
draws a row, then a column of that row, and scores only the rows it draws
(``python scripts/benchmark_policy.py`` measures both).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableDictRolloutBufferSamples
from sb3_contrib.common.maskable.distributions import (
    MaskableCategorical,
    MaskableCategoricalDistribution,
    MaskableDistribution,
    MaybeMasks,
)
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.dqn.policies import MultiInputPolicy as DQNMultiInputPolicy
from stable_baselines3.dqn.policies import QNetwork
from torch import nn
from torch.distributions import Categorical

from sb3_parsing.env import load_grammar
from sb3_parsing.extractors import TokenExtractor, TokenTransformerExtractor
from sb3_parsing.grammar import RuleSet
from sb3_parsing.left_corners import LEFT_CORNER_KEYS, N_FEATURES, FittingCells, LeftCornerFeatures, SentenceReading
from sb3_parsing.sparse import ScannedObservations, any_set, flat_set_entries, matching_pairs

__all__ = [
    "BitMaskDictRolloutBuffer",
    "ExactMaskableCategorical",
    "ExactMaskableCategoricalDistribution",
    "FactoredMaskableDistribution",
    "FactoredMaskableTokenPolicy",
    "MaskableTokenPolicy",
    "RowColumnActionHead",
    "TokenActionHead",
    "TokenDQNPolicy",
    "TokenPolicy",
    "TokenQNetwork",
    "wasted_cells",
]


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


class RowColumnActionHead(nn.Module):
    """
    The two parts of a factored action (:class:`FactoredMaskableDistribution`): a logit per row and, for a row, a
    logit per column, both from that row's token latent, through layers shared by all rows. With left corners, a
    column's logit adds its features (weighted), and a row's adds whether the row has an unset cell each feature marks
    and, with ``fits``, how the column logits score the row's fitting cells (:meth:`_fitting_mass`). With
    ``span_ends``, a fitting cell's logit also scores the last token of the constituent it would derive and the token
    after it, so that a cell is scored by both ends of its span and by what follows it, as span-based chart parsers
    score constituents (a unary rule that fits is a dead end when what follows cannot continue it).

    :param n_rows: rows of the observation (``obs_len``)
    :param token_dim: latent width of one token
    :param n_columns: columns of the history matrix (actions per row)
    :param left_corners: the grammar's :class:`~sb3_parsing.left_corners.LeftCornerFeatures`, or ``None``
    :param span_ends: score a fitting cell by the last token of its constituent and the token after it too (needs
        ``left_corners``)
    """

    def __init__(
        self,
        n_rows: int,
        token_dim: int,
        n_columns: int,
        left_corners: LeftCornerFeatures | None = None,
        span_ends: bool = False,
    ) -> None:
        super().__init__()
        if span_ends and left_corners is None:
            raise ValueError(
                "span_ends scores the constituent a fitting cell would derive, which the grammar's left corners find: "
                "give the policy the grammar (policy_kwargs grammar=...) or leave span_ends off"
            )
        self.n_rows = n_rows
        self.row = nn.Linear(token_dim, 1)
        self.column = nn.Linear(token_dim, n_columns)
        # On the last token of the constituent and the token after it, concatenated
        self.span_end = nn.Linear(2 * token_dim, n_columns) if span_ends else None
        self.left_corners = left_corners
        # The weight of each left-corner feature in the column logits, trained from log(n_columns): at first, the few
        # cells a feature marks in a row weigh as much as all the others together (from 0, Adam at 1e-3 took 50k steps
        # to reach 0.1 on LinguisticParse-v1, where log(n_columns) is 7.9)
        self.left_corner_weights = _weights(math.log(n_columns)) if left_corners is not None else None
        # The weight of "the row has an unset cell that the feature marks" in the row logits, trained from log(n_rows):
        # a row with nothing left to start is no longer drawn as often as one with a word or a constituent to build on
        self.row_corner_weights = _weights(math.log(n_rows)) if left_corners is not None else None

    def forward(self, latent: th.Tensor) -> th.Tensor:
        """
        :param latent: ``(batch, n_rows * token_dim)``
        :return: the token latents ``(batch, n_rows, token_dim)``, which the distribution scores lazily
        """
        return latent.view(latent.shape[0], self.n_rows, -1)

    def read(self, observations: dict[str, th.Tensor] | None) -> SentenceReading | None:
        """
        :param observations: the observations
        :return: what the ``fits`` feature reads of them, once for every row and column scored; ``None`` without left
            corners or without the ``derived`` key
        """
        if self.left_corners is None or observations is None or "derived" not in observations:
            return None
        return self.left_corners.read(observations)

    def row_logits(
        self, tokens: th.Tensor, observations: dict[str, th.Tensor] | None = None, reading: SentenceReading | None = None
    ) -> th.Tensor:
        """
        :param tokens: token latents ``(batch, n_rows, token_dim)``
        :param observations: the observations; needed with left corners
        :param reading: :meth:`read` of the observations, if read already
        :return: the logits of the rows ``(batch, n_rows)``
        """
        logits = self.row(tokens).squeeze(-1)
        if self.left_corners is None or self.row_corner_weights is None:
            return logits
        if observations is None:
            raise ValueError("a head with left corners scores rows from the observations: pass them")
        reading = self.read(observations) if reading is None else reading
        fitting = None if reading is None else self.left_corners.unset_fitting_cells(reading, observations["history"])
        marked = self.left_corners.marks_unset_cells(
            observations["text"], observations["history"], observations.get("derived"), reading, fitting
        )
        logits = logits + (self.row_corner_weights * marked).sum(dim=-1)
        return logits if fitting is None else logits + self._fitting_mass(tokens, fitting)

    def _fitting_mass(self, tokens: th.Tensor, fitting: FittingCells) -> th.Tensor:
        """
        How much the column logits like each row's unset fitting cells, ``log(1 + sum(exp(logit)))`` over them (0 for
        a row with none): the row's share of a softmax over its fitting cells, so that a row whose only fitting cells
        the columns score low (a constituent that no parse uses) is not drawn for its ``fits`` mark alone.

        :param tokens: token latents ``(batch, n_rows, token_dim)``
        :param fitting: the cells, their ``rows`` indexing the flattened ``(batch * n_rows)`` rows
        :return: ``(batch, n_rows)``
        """
        rows, columns = fitting.rows, fitting.columns
        flat_tokens = tokens.reshape(-1, tokens.shape[-1])
        scores = (flat_tokens[rows] * self.column.weight[columns]).sum(dim=-1) + self.column.bias[columns]
        if self.span_end is not None:
            scores = scores + self._span_end_scores(tokens, rows // self.n_rows, fitting)
        # A log-sum-exp per row over its cells and a 0 (the 1 inside the log), shifted by the row's largest score
        largest = scores.new_zeros(flat_tokens.shape[0]).scatter_reduce_(0, rows, scores.detach(), "amax")
        total = th.exp(-largest).index_add(0, rows, th.exp(scores - largest[rows]))
        return (largest + th.log(total)).view(tokens.shape[:2])

    def _span_end_scores(self, tokens: th.Tensor, samples: th.Tensor, fitting: FittingCells) -> th.Tensor:
        """
        :param tokens: token latents ``(batch, n_rows, token_dim)``
        :param samples: the batch item of each cell
        :param fitting: the cells
        :return: the score of the last token of each cell's constituent and of the token after it (the last row
            for a constituent that ends there) for the cell's column ``(n_cells,)``
        """
        assert self.span_end is not None
        next_rows = fitting.ends.clamp(max=tokens.shape[1] - 1)
        ends = th.cat([tokens[samples, fitting.ends - 1], tokens[samples, next_rows]], dim=-1)
        return (ends * self.span_end.weight[fitting.columns]).sum(dim=-1) + self.span_end.bias[fitting.columns]

    def column_logits(
        self,
        tokens: th.Tensor,
        rows: th.Tensor,
        observations: dict[str, th.Tensor] | None = None,
        reading: SentenceReading | None = None,
    ) -> th.Tensor:
        """
        :param tokens: token latents ``(batch, n_rows, token_dim)``
        :param rows: a row per batch item ``(batch,)``, or several ``(batch, k)``
        :param observations: the observations; needed with left corners
        :param reading: :meth:`read` of the observations, if read already
        :return: the logits of the columns of those rows ``(batch, n_columns)`` or ``(batch, k, n_columns)``
        """
        batch = th.arange(tokens.shape[0], device=tokens.device)
        batch = batch.unsqueeze(-1).expand_as(rows) if rows.dim() == 2 else batch
        logits = self.column(tokens[batch, rows])
        if self.left_corners is None or self.left_corner_weights is None:
            return logits
        if observations is None:
            raise ValueError("a head with left corners scores columns from the observations: pass them")
        rows_of = {key: observations[key][batch, rows] for key in LEFT_CORNER_KEYS if key in observations}
        starts = self.left_corners(rows_of["text"], rows_of["history"], rows_of.get("derived"))
        reading = self.read(observations) if reading is None else reading
        if reading is None:  # fits needs the derived constituents
            fits = th.zeros_like(logits)
        else:
            fitting = self.left_corners.fitting_cells(reading, batch.flatten(), rows.flatten())
            fits = fitting.as_matrix(rows.numel(), logits.shape[-1]).view_as(logits)
            if self.span_end is not None:
                logits = logits + self._span_end_logits(tokens, batch.flatten(), fitting).view_as(logits)
        features = th.cat([starts, fits.unsqueeze(-2)], dim=-2)
        return logits + (self.left_corner_weights.unsqueeze(-1) * features).sum(dim=-2)

    def _span_end_logits(self, tokens: th.Tensor, samples: th.Tensor, fitting: FittingCells) -> th.Tensor:
        """
        :param tokens: token latents ``(batch, n_rows, token_dim)``
        :param samples: the batch item of each scored row
        :param fitting: the fitting cells of the scored rows, their ``rows`` indexing ``samples``
        :return: ``(n_scored_rows, n_columns)``: each fitting cell's :meth:`_span_end_scores` (the best over the
            constituents it could derive), 0 elsewhere
        """
        assert self.span_end is not None
        n_columns = self.span_end.out_features
        scores = self._span_end_scores(tokens, samples[fitting.rows], fitting)
        cells = fitting.rows * n_columns + fitting.columns
        logits = scores.new_zeros(samples.numel() * n_columns)
        return logits.scatter_reduce(0, cells, scores, "amax", include_self=False).view(-1, n_columns)


def _weights(start: float) -> nn.Parameter:
    """A trained weight per left-corner feature, each starting at ``start``."""
    return nn.Parameter(th.full((N_FEATURES,), start))


def _token_head(
    n_rows: int, latent_dim: int, n_actions: int, head_class: Callable[..., nn.Module] = TokenActionHead
) -> nn.Module:
    """A token head for a latent of ``latent_dim`` features, or an error saying how to get one."""
    if latent_dim % n_rows or n_actions % n_rows:
        raise ValueError(
            f"a token policy needs one latent per row: the latent ({latent_dim}) and the actions ({n_actions}) must be "
            f"multiples of the {n_rows} rows; use an extractor with pooling='tokens' and no policy MLP (net_arch pi=[])"
        )
    return head_class(n_rows, latent_dim // n_rows, n_actions // n_rows)


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
        self.action_net = self._make_action_head(n_rows, latent_dim, int(self.action_space.n))  # type: ignore[attr-defined]
        if self.ortho_init:  # type: ignore[attr-defined]
            self.action_net.apply(partial(self.init_weights, gain=0.01))  # type: ignore[attr-defined]
        # The optimizer built by super() holds the replaced action net's parameters: build it again.
        optimizer_class, optimizer_kwargs = self.optimizer_class, self.optimizer_kwargs  # type: ignore[attr-defined]
        self.optimizer = optimizer_class(self.parameters(), lr=lr_schedule(1), **optimizer_kwargs)  # type: ignore[attr-defined]

    def _make_action_head(self, n_rows: int, latent_dim: int, n_actions: int) -> nn.Module:
        return _token_head(n_rows, latent_dim, n_actions)

    def extract_features(  # type: ignore[override]
        self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor | None = None
    ) -> th.Tensor | tuple[th.Tensor, th.Tensor]:
        """
        As SB3's, but a token extractor reads the observation as stored (the env's uint8) instead of the float32 copy
        that ``preprocess_obs`` makes: it only looks up the few set entries, and finding them in uint8 takes 2-3x
        less time (``scripts/benchmark_policy.py``). Other extractors get SB3's preprocessing.

        :param obs: Observation
        :param features_extractor: The features extractor to use (shared extractor only)
        :return: The features, or the actor's and the critic's when the extractor is not shared
        """
        if isinstance(obs, dict) and not isinstance(obs, ScannedObservations):
            obs = ScannedObservations(obs)  # the extractors and the action head scan each matrix once
        if self.share_features_extractor:  # type: ignore[attr-defined]
            extractor = features_extractor or self.features_extractor  # type: ignore[attr-defined]
            if isinstance(extractor, TokenExtractor):
                return extractor(obs)
        else:
            actor, critic = self.pi_features_extractor, self.vf_features_extractor  # type: ignore[attr-defined]
            if isinstance(actor, TokenExtractor) and isinstance(critic, TokenExtractor):
                return actor(obs), critic(obs)
        return super().extract_features(obs, features_extractor)  # type: ignore[misc]


class TokenPolicy(_TokenHeadMixin, MultiInputActorCriticPolicy):  # type: ignore[misc]  # extract_features, as SB3's
    """PPO / A2C policy for the parsing envs: per-token features (Transformer by default), per-row action logits."""


class ExactMaskableCategorical(MaskableCategorical):
    """
    sb3-contrib's ``MaskableCategorical`` with masked actions at probability exactly 0, whatever the logits.

    sb3-contrib replaces a masked logit by -1e8: an allowed logit below that (a diverging network) hands the masked
    actions all the probability, and in float16 -1e8 is -inf, which makes the gradients NaN. Here a masked logit is
    -inf, the allowed ones are shifted so that the largest is 0, and the entropy sums over allowed actions only:
    the log-probabilities of allowed actions, the entropy and their gradients are finite and exact in any precision
    and at any logit scale. A row that allows no action is left unmasked (it would be NaN).

    :param probs: as for ``torch.distributions.Categorical`` (``logits`` preferred)
    :param logits: Tensor of unnormalized log probabilities, ``(batch, n_actions)``
    :param validate_args: as for ``torch.distributions.Categorical``
    :param masks: allowed actions (True) of the shape of ``logits``, or ``None``
    """

    def apply_masking(self, masks: MaybeMasks) -> None:
        """
        :param masks: allowed actions (True) of the shape of the logits; ``None`` removes any masking
        """
        if masks is None:
            self.masks = None
            logits = self._original_logits
        else:
            allowed = th.as_tensor(masks, dtype=th.bool, device=self._original_logits.device).reshape(self.logits.shape)
            self.masks = allowed | ~allowed.any(dim=-1, keepdim=True)
            logits = self._original_logits.masked_fill(~self.masks, -math.inf)
            # Softmax ignores a shift per row; without it, allowed logits far below 0 (-1e9) lose log(n) to float32 rounding
            logits = logits - logits.detach().amax(dim=-1, keepdim=True)
        # probs cached for the previous logits would be stale (and fail the Simplex check with many actions)
        self.__dict__.pop("probs", None)
        Categorical.__init__(self, logits=logits, validate_args=self._validate_args)

    def entropy(self) -> th.Tensor:
        if self.masks is None:
            return super().entropy()
        # 0 * -inf would be NaN: a masked action adds 0, and no gradient reaches its -inf
        return -(self.probs * self.logits.masked_fill(~self.masks, 0.0)).sum(-1)


class ExactMaskableCategoricalDistribution(MaskableCategoricalDistribution):
    """
    ``MaskableCategoricalDistribution`` over :class:`ExactMaskableCategorical`: masked actions never sampled,
    no NaN with all but a few of 10^5 actions masked or with large logits.

    :param action_dim: Number of discrete actions
    """

    distribution: ExactMaskableCategorical

    def proba_distribution(self, action_logits: th.Tensor) -> ExactMaskableCategoricalDistribution:
        self.distribution = ExactMaskableCategorical(logits=action_logits.view(-1, self.action_dim))
        return self


class MaskableTokenPolicy(_TokenHeadMixin, MaskableMultiInputActorCriticPolicy):  # type: ignore[misc]  # as SB3's
    """
    MaskablePPO policy for the parsing envs: per-token features (Transformer by default), per-row action logits,
    masked with :class:`ExactMaskableCategoricalDistribution`. With many actions, give MaskablePPO
    ``rollout_buffer_class=BitMaskDictRolloutBuffer`` too.
    """

    def _build(self, lr_schedule: Any) -> None:
        self.action_dist = ExactMaskableCategoricalDistribution(int(self.action_space.n))  # type: ignore[attr-defined]
        super()._build(lr_schedule)


class FactoredMaskableDistribution(MaskableDistribution):
    """
    A distribution over the cells ``m * n_columns + n`` of a parsing env, factored as a row (token) ``m``, then a
    column ``n`` of that row: ``log p(m, n) = log p(m) + log p(n | m)``, each a softmax over the allowed rows (those
    with an allowed cell) or the row's allowed columns, masked cells at probability exactly 0. Column logits are
    computed for the rows drawn or scored only, ``n_rows`` times fewer than a flat softmax over every cell.

    - ``mode()`` is the most probable cell (it scores every row's columns: for greedy play, not for updates).
    - ``entropy()`` is ``H(row) + H(column | row)``: exact over rows; over columns, the entropy at the rows of the
      actions last drawn or scored by ``log_prob`` (in a PPO update, the minibatch's actions, drawn from the
      rollout policy: a one-sample estimate of the expected column entropy). Before any, it is exact.
    - The column log-probabilities of the rows last drawn or scored are kept: ``entropy()`` and ``log_prob`` of the
      actions just sampled (as a rollout asks for) reuse them rather than scoring those rows' columns again.

    :param n_rows: rows of the observation (``obs_len``)
    :param n_columns: columns of the history matrix (actions per row)
    """

    def __init__(self, n_rows: int, n_columns: int) -> None:
        super().__init__()
        self.n_rows = n_rows
        self.n_columns = n_columns
        self.tokens: th.Tensor | None = None
        self.head: RowColumnActionHead | None = None
        self.observations: dict[str, th.Tensor] | None = None
        self.reading: SentenceReading | None = None
        self.row_logits: th.Tensor | None = None
        self.masks: th.Tensor | None = None
        self.row_log_probs: th.Tensor | None = None
        # The rows of the actions last drawn or scored, with their column log-probabilities and masks
        self._drawn: tuple[th.Tensor, th.Tensor, th.Tensor | None] | None = None

    def proba_distribution_net(self, latent_dim: int) -> RowColumnActionHead:  # type: ignore[override]
        """
        :param latent_dim: width of the latent, ``n_rows`` token latents side by side
        :return: the head that scores rows and columns
        """
        return RowColumnActionHead(self.n_rows, latent_dim // self.n_rows, self.n_columns)

    def proba_distribution(  # type: ignore[override]
        self, tokens: th.Tensor, head: RowColumnActionHead, observations: dict[str, th.Tensor] | None = None
    ) -> FactoredMaskableDistribution:
        """
        :param tokens: token latents ``(batch, n_rows, token_dim)``
        :param head: the row and column layers
        :param observations: the observations (``text`` and ``history``), for a head with left corners
        """
        self.tokens, self.head, self.observations, self.masks, self._drawn = tokens, head, observations, None, None
        self.reading = head.read(observations)
        self.row_logits = head.row_logits(tokens, observations, self.reading)
        self.row_log_probs = th.log_softmax(self.row_logits, dim=-1)
        return self

    def apply_masking(self, masks: MaybeMasks) -> None:
        """
        :param masks: allowed cells (True), ``(batch, n_rows * n_columns)``; ``None`` removes any masking. A batch item
            that allows no cell is left unmasked.
        """
        assert self.tokens is not None and self.row_logits is not None, "call proba_distribution() first"
        row_logits = self.row_logits
        if masks is None:
            self.masks = None
        else:
            allowed = th.as_tensor(masks, dtype=th.bool, device=self.tokens.device)
            allowed = allowed.reshape(-1, self.n_rows, self.n_columns)
            allowed_rows = any_set(allowed)
            nothing_allowed = ~allowed_rows.any(dim=-1)
            if nothing_allowed.any():
                allowed = allowed | nothing_allowed[:, None, None]
                allowed_rows = allowed_rows | nothing_allowed[:, None]
            self.masks = allowed
            row_logits = row_logits.masked_fill(~allowed_rows, -math.inf)
        self.row_log_probs = th.log_softmax(row_logits, dim=-1)
        self._drawn = None

    def _column_log_probs(self, rows: th.Tensor) -> tuple[th.Tensor, th.Tensor | None]:
        """
        :param rows: a row per batch item ``(batch,)``, or every row ``(batch, n_rows)``
        :return: the log-probabilities of the columns of those rows (-inf where masked), and their masks
        """
        assert self.tokens is not None and self.head is not None, "call proba_distribution() first"
        logits = self.head.column_logits(self.tokens, rows, self.observations, self.reading)
        masks = None
        if self.masks is not None:
            batch = th.arange(self.tokens.shape[0], device=self.tokens.device)
            masks = self.masks[batch.unsqueeze(-1) if rows.dim() == 2 else batch, rows]
            # A row without allowed cells (probability 0) keeps finite column log-probs, so 0 * them stays 0
            masks = masks | ~any_set(masks).unsqueeze(-1)
            logits = logits.masked_fill(~masks, -math.inf)
        return th.log_softmax(logits, dim=-1), masks

    def _drawn_columns(self, rows: th.Tensor) -> tuple[th.Tensor, th.Tensor | None]:
        """
        :meth:`_column_log_probs` of a row per batch item, kept for :meth:`entropy` and reused while the rows are those
        of the last actions drawn or scored (a rollout scores the actions it has just sampled)
        """
        if self._drawn is None or not th.equal(self._drawn[0], rows):
            self._drawn = (rows, *self._column_log_probs(rows))
        return self._drawn[1], self._drawn[2]

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        assert self.row_log_probs is not None, "call proba_distribution() first"
        actions = actions.long().flatten()
        rows, columns = actions // self.n_columns, actions % self.n_columns
        column_log_probs, _ = self._drawn_columns(rows)
        row_log_prob = self.row_log_probs.gather(1, rows.unsqueeze(-1)).squeeze(-1)
        return row_log_prob + column_log_probs.gather(1, columns.unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> th.Tensor:
        assert self.row_log_probs is not None, "call proba_distribution() first"
        row_entropy = _entropy(self.row_log_probs)
        if self._drawn is not None:
            return row_entropy + _entropy(*self._drawn[1:])
        every_row = th.arange(self.n_rows, device=self.row_log_probs.device).expand_as(self.row_log_probs)
        column_entropy = _entropy(*self._column_log_probs(every_row))
        return row_entropy + (self.row_log_probs.exp() * column_entropy).sum(dim=-1)

    def sample(self) -> th.Tensor:
        assert self.row_log_probs is not None, "call proba_distribution() first"
        rows = Categorical(logits=self.row_log_probs).sample()
        column_log_probs, _ = self._drawn_columns(rows)
        return rows * self.n_columns + Categorical(logits=column_log_probs).sample()

    def mode(self) -> th.Tensor:
        assert self.row_log_probs is not None, "call proba_distribution() first"
        every_row = th.arange(self.n_rows, device=self.row_log_probs.device).expand_as(self.row_log_probs)
        column_log_probs, masks = self._column_log_probs(every_row)
        cells = self.row_log_probs.unsqueeze(-1) + column_log_probs
        best = cells.flatten(start_dim=1).argmax(dim=-1)
        rows = best // self.n_columns
        batch = th.arange(rows.shape[0], device=rows.device)
        self._drawn = (rows, column_log_probs[batch, rows], None if masks is None else masks[batch, rows])
        return best

    def actions_from_params(  # type: ignore[override]
        self,
        tokens: th.Tensor,
        head: RowColumnActionHead,
        observations: dict[str, th.Tensor] | None = None,
        deterministic: bool = False,
    ) -> th.Tensor:
        self.proba_distribution(tokens, head, observations)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(  # type: ignore[override]
        self, tokens: th.Tensor, head: RowColumnActionHead, observations: dict[str, th.Tensor] | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(tokens, head, observations)
        return actions, self.log_prob(actions)


def _entropy(log_probs: th.Tensor, masks: th.Tensor | None = None) -> th.Tensor:
    """Entropy of softmax log-probabilities over the last dim; masked (-inf) entries add 0, with no NaN gradient."""
    allowed = th.isfinite(log_probs) if masks is None else masks
    return -(log_probs.exp() * log_probs.masked_fill(~allowed, 0.0)).sum(dim=-1)


class FactoredMaskableTokenPolicy(MaskableTokenPolicy):
    """
    MaskablePPO policy for parsing envs with many cells (rules as columns, long sentences): per-token features
    (Transformer by default) and a :class:`FactoredMaskableDistribution`, a row then a column, each scored from the
    row's token latent. An update scores ``n_columns`` cells per sample instead of ``n_rows * n_columns``.

    :param grammar: the env's grammar (a built-in name, a RuleSet file or a RuleSet), to add its
        :class:`~sb3_parsing.left_corners.LeftCornerFeatures` to the column logits, each with a trained weight
    :param columns: the env's column mode (with ``grammar``)
    :param span_ends: also score a fitting cell by the last token of the constituent it would derive and the token
        after it (with ``grammar``; :class:`RowColumnActionHead`)
    :param kwargs: keyword arguments of sb3-contrib's ``MaskableMultiInputActorCriticPolicy``
    """

    action_dist: FactoredMaskableDistribution

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Any,
        grammar: str | Path | RuleSet | None = None,
        columns: str = "rules",
        span_ends: bool = False,
        **kwargs: Any,
    ) -> None:
        self.grammar = grammar
        self.columns = columns
        self.span_ends = span_ends
        self._observations: dict[str, th.Tensor] | None = None
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        n_rows = self.observation_space["text"].shape[0]  # type: ignore[index]
        self.action_dist = FactoredMaskableDistribution(n_rows, int(self.action_space.n) // n_rows)  # type: ignore[attr-defined]
        _TokenHeadMixin._build(self, lr_schedule)
        if self.grammar is not None:
            self.pi_features_extractor.register_forward_pre_hook(self._keep_observations)  # type: ignore[attr-defined]

    def _make_action_head(self, n_rows: int, latent_dim: int, n_actions: int) -> nn.Module:
        if self.grammar is None:
            return _token_head(n_rows, latent_dim, n_actions, partial(RowColumnActionHead, span_ends=self.span_ends))
        left_corners = LeftCornerFeatures(load_grammar(self.grammar), self.columns)
        widths = (self.observation_space["text"].shape[1], n_actions // n_rows)  # type: ignore[index]
        if (left_corners.alphabet_size, left_corners.n_columns) != widths:
            raise ValueError(
                f"the policy's grammar {self.grammar!r} (columns={self.columns!r}) has {left_corners.alphabet_size} "
                f"symbols and {left_corners.n_columns} columns, the env {widths[0]} and {widths[1]}: give the policy "
                "the env's grammar and column mode (policy_kwargs grammar=..., columns=...)"
            )
        head = partial(RowColumnActionHead, left_corners=left_corners, span_ends=self.span_ends)
        return _token_head(n_rows, latent_dim, n_actions, head)

    def _keep_observations(self, extractor: nn.Module, inputs: tuple[dict[str, th.Tensor]]) -> None:
        """Keep what the actor's extractor reads, for the distribution built next from its features (every path)."""
        self._observations = inputs[0]

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> FactoredMaskableDistribution:  # type: ignore[override]
        return self.action_dist.proba_distribution(self.action_net(latent_pi), self.action_net, self._observations)  # type: ignore[arg-type]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "grammar": self.grammar,
            "columns": self.columns,
            "span_ends": self.span_ends,
        }


class BitMaskDictRolloutBuffer(MaskableDictRolloutBuffer):
    """
    MaskablePPO's rollout buffer for Dict observations with the action masks stored as bits (``np.packbits``):
    1 bit per action instead of sb3-contrib's float32, 32 times less. With ``n_steps=128``, 8 envs and 10^5
    actions that is 12.8 MB instead of 410 MB (reallocated at every rollout); a minibatch's masks are unpacked
    to booleans when sampled. Use it with ``MaskablePPO(..., rollout_buffer_class=BitMaskDictRolloutBuffer)``.

    :param buffer_size: Max number of element in the buffer
    :param observation_space: Observation space (a ``spaces.Dict``)
    :param action_space: Action space; ``spaces.Discrete`` (one mask bit per action)
    :param device: PyTorch device
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
    ) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"BitMaskDictRolloutBuffer stores one mask bit per action of a spaces.Discrete, got {action_space}; "
                "use sb3-contrib's MaskableDictRolloutBuffer (rollout_buffer_class=None) for other action spaces"
            )
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        self.mask_dims = int(self.action_space.n)  # type: ignore[attr-defined]
        # All actions allowed until add() says otherwise, as in sb3-contrib (unpackbits drops the padding bits)
        self.action_masks = np.full((self.buffer_size, self.n_envs, math.ceil(self.mask_dims / 8)), 0xFF, dtype=np.uint8)
        # Not MaskableDictRolloutBuffer.reset: it would allocate the float32 masks that this buffer is here to avoid
        DictRolloutBuffer.reset(self)
        self._rollout_entries: dict[str, th.Tensor] | None = None

    def add(self, *args: Any, action_masks: np.ndarray | None = None, **kwargs: Any) -> None:
        """
        :param action_masks: Masks applied to constrain the choice of possible actions
        """
        if action_masks is not None:
            allowed = np.asarray(action_masks, dtype=bool).reshape(self.n_envs, self.mask_dims)
            self.action_masks[self.pos] = np.packbits(allowed, axis=-1)
        DictRolloutBuffer.add(self, *args, **kwargs)

    def to_torch(self, array: np.ndarray, copy: bool = False) -> th.Tensor:
        """
        As SB3's, without copying by default: every array a minibatch is made of is already its own copy, indexed out
        of the rollout (copying a v1 minibatch's observations again took ~7% of an update).

        :param array: a numpy array
        :param copy: copy it even so
        """
        return super().to_torch(array, copy=copy)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> MaskableDictRolloutBufferSamples:
        samples = DictRolloutBuffer._get_samples(self, batch_inds, env)
        allowed = np.unpackbits(self.action_masks[batch_inds], axis=-1, count=self.mask_dims).view(bool)
        observations = ScannedObservations(samples.observations, self._minibatch_entries(batch_inds))
        return MaskableDictRolloutBufferSamples(observations, *samples[1:], action_masks=self.to_torch(allowed))

    def _minibatch_entries(self, batch_inds: np.ndarray) -> dict[str, th.Tensor]:
        """
        The set entries of a minibatch's observation matrices, taken from the rollout's, found once (an update reads
        each observation once per epoch: the scans were ~15% of it on ``LinguisticParse-v1``).

        :param batch_inds: the minibatch's indices into the flattened rollout
        :return: :func:`~sb3_parsing.sparse.flat_set_entries` of each key's minibatch matrix
        """
        if self._rollout_entries is None:  # the observations are flattened by now, one per index
            self._rollout_entries = {key: flat_set_entries(th.from_numpy(obs)) for key, obs in self.observations.items()}
        indices = th.as_tensor(batch_inds)
        found = {}
        for key, entries in self._rollout_entries.items():
            size = math.prod(self.obs_shape[key])
            picked, at = matching_pairs(entries // size, indices)  # each sample's entries, in minibatch order
            found[key] = (picked * size + entries[at] % size).to(self.device)
        return found


def wasted_cells(observations: dict[str, th.Tensor]) -> th.Tensor:
    """
    The actions that cannot change a parsing env's state, read from its observation: every cell of a padding row
    (a zero ``text`` row) and every cell already set in ``history``.

    :param observations: a batch of (preprocessed) observations with ``text`` and ``history`` keys
    :return: a boolean tensor ``(batch, rows * columns)`` in the action layout ``m * columns + n``
    """
    padding = observations["text"].sum(dim=-1) == 0
    return (padding.unsqueeze(-1) | (observations["history"] > 0.5)).flatten(start_dim=1)


class TokenQNetwork(QNetwork):
    """
    Q-network of :class:`TokenDQNPolicy`. With ``mask_wasted``, the cells that cannot change the state
    (:func:`wasted_cells`) get a Q-value below every other cell's, with no gradient: they are never chosen greedily
    and never bootstrapped from, and a transition that took one (while exploring) trains nothing.

    :param mask_wasted: rank the wasted cells last
    :param kwargs: keyword arguments of SB3's ``QNetwork``
    """

    def __init__(self, *, mask_wasted: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_wasted = mask_wasted

    def forward(self, obs: dict[str, th.Tensor]) -> th.Tensor:  # type: ignore[override]
        q_values = super().forward(obs)
        if not self.mask_wasted:
            return q_values
        wasted = wasted_cells(obs)
        floor = q_values.detach().min(dim=1, keepdim=True).values - 1.0
        return th.where(wasted, floor, q_values)


class TokenDQNPolicy(DQNMultiInputPolicy):
    """
    DQN policy for the parsing envs: per-token features (Transformer by default), per-row Q-values, and by default
    no greedy action or bootstrap on a cell that cannot change the state (see :class:`TokenQNetwork`).

    :param mask_wasted: rank padding rows and already-set cells last (DQN has no action masks: this reads them
        from the observation)
    :param kwargs: keyword arguments of SB3's DQN ``MultiInputPolicy``
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Any,
        mask_wasted: bool = True,
        **kwargs: Any,
    ) -> None:
        self.mask_wasted = mask_wasted
        kwargs.setdefault("net_arch", [])  # the Q-values come from the token head, not from an MLP
        super().__init__(observation_space, action_space, lr_schedule, **_with_token_features(kwargs))

    def make_q_net(self) -> QNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        q_net = TokenQNetwork(mask_wasted=self.mask_wasted, **net_args)
        n_rows = self.observation_space["text"].shape[0]  # type: ignore[index]
        head = _token_head(n_rows, q_net.features_dim, int(self.action_space.n))  # type: ignore[attr-defined]
        q_net.q_net = nn.Sequential(head)
        return q_net.to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_wasted": self.mask_wasted}
