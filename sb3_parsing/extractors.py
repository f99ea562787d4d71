"""
Features extractors that read a parsing observation as a sequence of token rows.

Every key of the ``spaces.Dict`` observation is a ``Box`` of shape ``(L, k)`` whose row ``m`` describes
token ``m``; the extractors concatenate the keys row by row (in sorted key order) into ``(batch, L, sum k)``
and treat the result as a sentence of ``L`` tokens. A row is real iff its ``text`` row is nonzero; padding
rows are zeroed before any layer that mixes rows and are left out of pooling, so whatever the environment
writes in them never reaches the features. Constituent keys (:data:`CONSTITUENT_KEYS`: a goal env's goals, the
game's ``derived``) are read as :func:`goal_spans` views: each token sees whether it is inside, the first or the
last token of such a constituent of each label.

Use them with SB3's ``MultiInputPolicy``::

    PPO("MultiInputPolicy", env, policy_kwargs=dict(
        features_extractor_class=TokenTransformerExtractor,
        features_extractor_kwargs=dict(embed_dim=64, n_layers=2),
    ))
"""

import itertools
import math
from collections.abc import Iterator

import gymnasium as gym
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import TensorDict
from torch import nn
from torch.nn import functional as F

from sb3_parsing.sparse import any_set, observed_entries, set_entries

__all__ = [
    "CONSTITUENT_KEYS",
    "GOAL_KEYS",
    "TokenConvExtractor",
    "TokenExtractor",
    "TokenMLPExtractor",
    "TokenTransformerExtractor",
    "goal_span_entries",
    "goal_spans",
]

#: The goals of a goal env's observation (:class:`~sb3_parsing.wrappers.LinguisticParseGoalEnv`)
GOAL_KEYS = ("achieved_goal", "desired_goal")
#: The keys read as span views: the goals, and the constituents the history derives (``observe_derived=True``)
CONSTITUENT_KEYS = (*GOAL_KEYS, "derived")

_POOLINGS = ("mean", "max", "mean_max", "tokens")
# Rows at least this wide are embedded as a sparse product: below it, the dense one is as fast (a 256 x 24-row batch,
# one thread: 14 ms both at 256 features, 67 vs 35 ms at 1,024, 349 vs 129 ms at 4,096)
SPARSE_ROWS_MIN_WIDTH = 256
_POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "relative", "relative_keys")


def _token_layout(observation_space: gym.Space) -> tuple[list[str], int, int]:
    """
    Check that ``observation_space`` is a Dict of 2-D Boxes with the same number of rows and a ``text`` key.

    :param observation_space: The observation space of the environment
    :return: the keys in concatenation order (sorted), the number of rows ``L`` and the summed width
    """
    if not isinstance(observation_space, spaces.Dict):
        raise ValueError(
            "Token extractors need a spaces.Dict observation space with a 'text' key "
            f"(use MultiInputPolicy), got {observation_space}"
        )
    if "text" not in observation_space.spaces:
        raise ValueError(
            "Token extractors need a 'text' key of shape (L, alphabet_size) in the observation space, "
            f"got keys {sorted(observation_space.spaces)}"
        )
    text_space = observation_space.spaces["text"]
    if not isinstance(text_space, spaces.Box) or len(text_space.shape) != 2 or text_space.shape[1] < 1:
        raise ValueError(f"Observation key 'text' must be a 2-D Box of shape (L, alphabet_size), got {text_space}")
    n_rows = text_space.shape[0]
    expected = f"(L, k) = ({n_rows}, k)"
    keys = sorted(observation_space.spaces)
    token_dim = 0
    for key in keys:
        space = observation_space.spaces[key]
        if not isinstance(space, spaces.Box):
            raise ValueError(f"Observation key '{key}' must be a spaces.Box of shape {expected}, got {space}")
        if len(space.shape) != 2 or space.shape[1] < 1:
            raise ValueError(f"Observation key '{key}' must be a 2-D Box of shape {expected} with k >= 1, got {space.shape}")
        if space.shape[0] != n_rows:
            raise ValueError(
                f"Observation key '{key}' must have the same number of rows as 'text': expected shape {expected}, "
                f"got {space.shape}"
            )
        token_dim += space.shape[1]
    return keys, n_rows, token_dim


def goal_span_entries(
    goal: th.Tensor, mask: th.Tensor, constituents: tuple[th.Tensor, ...] | None = None
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """
    The set entries of :func:`goal_spans` ``(goal, mask)``, in the order ``nonzero`` gives them, found from the goal's
    few constituents without building the views.

    :param goal: (batch, L, n_labels * L) goal rows
    :param mask: (batch, L) real rows; constituents that start in other rows (padding, junk, NaN) are dropped
    :param constituents: the goal's set entries read as (batch, L, n_labels, L), if found already
    :return: the batch items, rows and features (``3 * label`` + 0 inside, 1 first, 2 last) of the set entries
    """
    batch, n_rows, width = goal.shape
    n_labels = width // n_rows
    if constituents is None:
        constituents = set_entries(goal.view(batch, n_rows, n_labels, n_rows))
    items, starts, labels, lengths = constituents
    real = mask[items, starts]
    items, starts, labels, lengths = items[real], starts[real], labels[real], lengths[real]
    lasts = starts + lengths  # the length is stored minus 1; a last row past the L rows is not marked
    n_inside = lasts.clamp(max=n_rows - 1) - starts + 1
    inside = th.repeat_interleave(th.arange(items.numel(), device=goal.device), n_inside)
    first_of_inside = th.repeat_interleave(n_inside.cumsum(0) - n_inside, n_inside)
    inside_rows = starts[inside] + th.arange(inside.numel(), device=goal.device) - first_of_inside
    on_rows = lasts < n_rows
    entries_items = th.cat([items[inside], items, items[on_rows]])
    entries_rows = th.cat([inside_rows, starts, lasts[on_rows]])
    features = th.cat([3 * labels[inside], 3 * labels + 1, 3 * labels[on_rows] + 2])
    # Constituents of one label that overlap set an entry once
    flat = th.unique((entries_items * n_rows + entries_rows) * (3 * n_labels) + features)
    items, rows, features = th.unravel_index(flat, (batch, n_rows, 3 * n_labels))
    return items, rows, features


def goal_spans(goal: th.Tensor, mask: th.Tensor, constituents: tuple[th.Tensor, ...] | None = None) -> th.Tensor:
    """
    A goal in the layout of :func:`~sb3_parsing.wrappers.encode_constituents` (row ``m``: the constituents that start
    at ``m``, one bit per (label, length)) seen from every row: ``view[m, label]`` holds whether row ``m`` is inside,
    the first or the last token of a constituent of that label in the goal. The root ``(0, n, S)`` marks every token
    "inside an S", a relabeled NP over tokens 3-4 marks those two: each token reads the goal's span and label, and
    the same weights read goals of any length, on any number of rows.

    :param goal: (batch, L, n_labels * L) goal rows
    :param mask: (batch, L) real rows; bits in other rows (padding, junk, NaN) are dropped
    :param constituents: the goal's set entries read as (batch, L, n_labels, L), if found already
    :return: (batch, L, n_labels * 3), each value 0 or 1 (float32)
    """
    batch, n_rows, width = goal.shape
    views = th.zeros((batch, n_rows, 3 * (width // n_rows)), device=goal.device)
    views[goal_span_entries(goal, mask, constituents)] = 1.0
    return views


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")


class TokenExtractor(BaseFeaturesExtractor):
    """
    Shared part of the token extractors: validation, token rows with their mask, masked pooling and output layer.
    They read observations of any dtype: float32 (SB3's ``preprocess_obs``) or as the env stores them (uint8), as the
    token policies of :mod:`sb3_parsing.policies` pass them.

    :param observation_space: The observation space of the environment (Dict of (L, k) Boxes with a 'text' key)
    :param features_dim: Number of features extracted
    :param embed_dim: Width of the per-token representation that is pooled
    :param pooling: How token representations are pooled over real rows: "mean", "max", "mean_max" (both,
        concatenated), or "tokens": no pooling, the rows side by side with padding zeroed and ``features_dim``
        ignored (``L * embed_dim`` features), for a policy that scores each cell ``(position, column)`` from its
        row, as :mod:`sb3_parsing.policies` does
    :param goal_spans: read the :data:`CONSTITUENT_KEYS` (a goal env's goals, the game's ``derived``) as
        :func:`goal_spans` views (``3 * n_labels`` features per row) rather than as their raw rows (``n_labels * L``,
        one bit per (label, length) at the start)
    """

    def __init__(
        self, observation_space: gym.Space, features_dim: int, embed_dim: int, pooling: str, goal_spans: bool
    ) -> None:
        keys, n_rows, token_dim = _token_layout(observation_space)
        _check_positive(features_dim=features_dim, embed_dim=embed_dim)
        span_keys = [key for key in keys if goal_spans and key in CONSTITUENT_KEYS]
        for key in span_keys:
            width = observation_space[key].shape[1]  # type: ignore[index]
            if width % n_rows:
                raise ValueError(
                    f"goal_spans reads '{key}' in the layout of encode_constituents, n_labels * L = n_labels * {n_rows} "
                    f"columns, got {width}: pass goal_spans=False to read it as plain rows"
                )
            token_dim += 3 * (width // n_rows) - width
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        # "tokens" keeps one feature vector per row, side by side: the features are (batch, L * embed_dim)
        super().__init__(observation_space, n_rows * embed_dim if pooling == "tokens" else features_dim)
        self.keys = keys
        self.span_keys = span_keys
        self.n_rows = n_rows
        self.token_dim = token_dim
        self.pooling = pooling
        pooled_dim = 2 * embed_dim if pooling == "mean_max" else embed_dim
        self.head = nn.Identity() if pooling == "tokens" else nn.Sequential(nn.Linear(pooled_dim, features_dim), nn.ReLU())

    def _key_rows(self, observations: TensorDict, mask: th.Tensor) -> dict[str, th.Tensor]:
        """Each key's rows as the network reads them: constituent keys as span views with ``goal_spans``."""
        rows = {key: observations[key] for key in self.keys}
        for key in self.span_keys:
            rows[key] = goal_spans(rows[key], mask, self._constituents(observations, key))
        return rows

    def _constituents(self, observations: TensorDict, key: str) -> tuple[th.Tensor, ...]:
        """The set entries of a constituent key read as (batch, L, n_labels, L), found once per batch"""
        batch, n_rows, width = observations[key].shape
        return observed_entries(observations, key, (batch, n_rows, width // n_rows, n_rows))

    def _tokens(self, observations: TensorDict) -> tuple[th.Tensor, th.Tensor]:
        """
        :param observations: Dict of (batch, L, k) tensors
        :return: token rows (batch, L, token_dim) with padding rows zeroed, and the real-row mask (batch, L)
        """
        mask = any_set(observations["text"])
        tokens = th.cat(list(self._key_rows(observations, mask).values()), dim=-1).float()
        # masked_fill rather than a product, so that junk such as NaN in padding rows cannot leak either
        return tokens.masked_fill(~mask.unsqueeze(-1), 0.0), mask

    def _embed_rows(self, observations: TensorDict, linear: nn.Linear) -> tuple[th.Tensor, th.Tensor]:
        """
        ``linear`` applied to the token rows of :meth:`_tokens`; rows of :data:`SPARSE_ROWS_MIN_WIDTH` features or
        more through :meth:`_sparse_embed_rows`.

        :param observations: Dict of (batch, L, k) tensors
        :param linear: a layer from ``token_dim`` features
        :return: the embedded rows (batch, L, out_features), padding rows at the bias, and the real-row mask (batch, L)
        """
        if self.token_dim >= SPARSE_ROWS_MIN_WIDTH:
            return self._sparse_embed_rows(observations, linear)
        tokens, mask = self._tokens(observations)
        return linear(tokens), mask

    def _key_entries(
        self, observations: TensorDict, mask: th.Tensor
    ) -> Iterator[tuple[int, th.Tensor, th.Tensor, th.Tensor, th.Tensor | None]]:
        """
        Each key's set entries in real rows, in the order ``nonzero`` gives them: the constituent keys' from
        :func:`goal_span_entries`, the others' from their matrix.

        :return: per key, the width of its rows as the network reads them, the batch items, rows and columns of the
            entries and their values (``None``: all 1)
        """
        n_rows = mask.shape[1]
        for key in self.keys:
            spans = key in self.span_keys
            if spans:
                width = 3 * (observations[key].shape[-1] // n_rows)
                items, rows, columns = goal_span_entries(observations[key], mask, self._constituents(observations, key))
            else:
                width = observations[key].shape[-1]
                items, rows, columns = observed_entries(observations, key)
            real = mask[items, rows].nonzero().squeeze(-1)
            items, rows, columns = items[real], rows[real], columns[real]
            yield width, items, rows, columns, None if spans else observations[key][items, rows, columns]

    def _sparse_embed_rows(self, observations: TensorDict, linear: nn.Linear) -> tuple[th.Tensor, th.Tensor]:
        """
        As :meth:`_embed_rows`, without building the token rows: the :meth:`_key_entries` weigh their columns of the
        weights, summed row by row by ``embedding_bag``. The rows are mostly zero (a one-hot word, a few set cells), and
        with 10^3 columns the dense product is most of an update (``scripts/benchmark_policy.py``).
        """
        mask = any_set(observations["text"])
        every_row = th.arange(mask.numel(), device=mask.device)
        weights = linear.weight.t()
        embedded = linear.bias.expand(mask.numel(), -1)
        start = 0
        for width, items, rows, columns, values in self._key_entries(observations, mask):
            offsets = th.searchsorted(items * mask.shape[1] + rows, every_row)  # each row's entries are one bag
            if values is not None:
                values = values.to(weights.dtype)
            bags = F.embedding_bag(columns, weights[start : start + width], offsets, mode="sum", per_sample_weights=values)
            embedded = embedded + bags
            start += width
        return embedded.view(*mask.shape, -1), mask

    def _pool(self, hidden: th.Tensor, mask: th.Tensor) -> th.Tensor:
        """
        :param hidden: per-token representation (batch, L, embed_dim)
        :param mask: real rows (batch, L)
        :return: features (batch, features_dim)
        """
        keep = mask.unsqueeze(-1)
        if self.pooling == "tokens":
            return hidden.masked_fill(~keep, 0.0).flatten(start_dim=1)
        has_rows = keep.any(dim=1)
        pooled = []
        if self.pooling in ("mean", "mean_max"):
            count = keep.sum(dim=1).clamp(min=1)
            pooled.append(hidden.masked_fill(~keep, 0.0).sum(dim=1) / count)
        if self.pooling in ("max", "mean_max"):
            largest = hidden.masked_fill(~keep, -math.inf).amax(dim=1)
            pooled.append(th.where(has_rows, largest, th.zeros_like(largest)))
        return self.head(th.cat(pooled, dim=-1))


class TokenMLPExtractor(TokenExtractor):
    """
    Per-token MLP (the same weights for every row) followed by masked pooling over real rows.
    It sees no word order beyond what the history columns encode; a cheap baseline.

    :param observation_space: The observation space of the environment (Dict of (L, k) Boxes with a 'text' key)
    :param features_dim: Number of features extracted
    :param embed_dim: Width of the hidden layers of the per-token MLP
    :param n_layers: Number of Linear + ReLU layers of the per-token MLP
    :param pooling: "mean", "max", "mean_max" (both, concatenated) over real rows only, or "tokens" (rows side by side)
    :param goal_spans: read constituent keys (goals, ``derived``) as span views (see :class:`TokenExtractor`)
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 128,
        embed_dim: int = 64,
        n_layers: int = 2,
        pooling: str = "mean_max",
        goal_spans: bool = True,
    ) -> None:
        _check_positive(n_layers=n_layers)
        super().__init__(observation_space, features_dim, embed_dim, pooling, goal_spans)
        layers: list[nn.Module] = []
        in_dim = self.token_dim
        for _ in range(n_layers):
            layers += [nn.Linear(in_dim, embed_dim), nn.ReLU()]
            in_dim = embed_dim
        self.token_mlp = nn.Sequential(*layers)

    def forward(self, observations: TensorDict) -> th.Tensor:
        tokens, mask = self._tokens(observations)
        return self._pool(self.token_mlp(tokens), mask)


class TokenConvExtractor(TokenExtractor):
    """
    Stack of 1-D convolutions over the token rows, then masked pooling over real rows.
    Padding rows are zeroed before the first convolution and after each one, so a sentence looks the same
    to the convolutions whatever its padding holds (as if it were zero-padded at its end).

    :param observation_space: The observation space of the environment (Dict of (L, k) Boxes with a 'text' key)
    :param features_dim: Number of features extracted
    :param embed_dim: Number of channels of each convolution
    :param n_layers: Number of Conv1d + ReLU layers
    :param kernel_size: Odd number of neighbouring tokens each convolution reads ("same" padding keeps L rows)
    :param pooling: "mean", "max", "mean_max" (both, concatenated) over real rows only, or "tokens" (rows side by side)
    :param goal_spans: read constituent keys (goals, ``derived``) as span views (see :class:`TokenExtractor`)
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 128,
        embed_dim: int = 64,
        n_layers: int = 2,
        kernel_size: int = 3,
        pooling: str = "mean_max",
        goal_spans: bool = True,
    ) -> None:
        _check_positive(n_layers=n_layers, kernel_size=kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, so that each token is the centre of its window, got {kernel_size}")
        super().__init__(observation_space, features_dim, embed_dim, pooling, goal_spans)
        channels = [self.token_dim] + [embed_dim] * n_layers
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding="same")
            for in_channels, out_channels in itertools.pairwise(channels)
        )

    def forward(self, observations: TensorDict) -> th.Tensor:
        tokens, mask = self._tokens(observations)
        hidden = tokens.transpose(1, 2)  # Conv1d wants (batch, channels, L)
        keep = mask.unsqueeze(1)
        for conv in self.convs:
            hidden = th.relu(conv(hidden)).masked_fill(~keep, 0.0)
        return self._pool(hidden.transpose(1, 2), mask)


class TokenTransformerExtractor(TokenExtractor):
    """
    Transformer encoder over the token rows (padding rows hidden by ``src_key_padding_mask``),
    then masked pooling over real rows.

    :param observation_space: The observation space of the environment (Dict of (L, k) Boxes with a 'text' key)
    :param features_dim: Number of features extracted
    :param embed_dim: Model width (d_model); must be divisible by ``n_heads``
    :param n_layers: Number of encoder layers
    :param n_heads: Number of attention heads
    :param ff_dim: Width of the feed-forward block of each layer
    :param dropout: Dropout in the encoder layers; 0 by default because on-policy algorithms compare
        log-probabilities computed in rollout (eval) mode and in training mode
    :param positional_encoding: how word order reaches the attention: "sinusoidal" (fixed vectors added to the rows)
        or "learned" (one trained vector per row), both absolute positions; or relative positions, no position
        vectors but a term on the attention score of every pair of rows that is a function of their signed distance
        clipped to ``max_distance``: "relative", a trained bias per head (as in T5, one table shared by the layers),
        or "relative_keys", the query times a trained key vector per distance (as in Shaw et al. 2018, one table per
        layer), which lets a query pick a precise neighbour and learns as fast as absolute positions do. Relative
        positions make the features of a token depend on its neighbours, not on where the sentence puts it, so they
        hold on sentences longer than any trained on, whose rows past the training length an absolute encoding has
        never seen filled
    :param max_distance: with relative positions, distances beyond this share one bias or key (each side); so that
        every one is trained, keep it below the longest training sentence
    :param mark_boundaries: add a trained vector to the first real row and another to the last: where the sentence
        starts and ends, which relative positions do not say, whatever its length
    :param pooling: "mean", "max", "mean_max" (both, concatenated) over real rows only, or "tokens" (rows side by side)
    :param goal_spans: read constituent keys (goals, ``derived``) as span views (see :class:`TokenExtractor`)
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 128,
        embed_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_dim: int = 128,
        dropout: float = 0.0,
        positional_encoding: str = "sinusoidal",
        max_distance: int = 8,
        mark_boundaries: bool = False,
        pooling: str = "mean_max",
        goal_spans: bool = True,
    ) -> None:
        _check_positive(n_layers=n_layers, n_heads=n_heads, ff_dim=ff_dim, max_distance=max_distance)
        if embed_dim % n_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by n_heads ({n_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if positional_encoding not in _POSITIONAL_ENCODINGS:
            raise ValueError(f"positional_encoding must be one of {_POSITIONAL_ENCODINGS}, got {positional_encoding!r}")
        super().__init__(observation_space, features_dim, embed_dim, pooling, goal_spans)
        self.embed = nn.Linear(self.token_dim, embed_dim)
        self.boundaries = nn.Parameter(0.02 * th.randn(2, embed_dim)) if mark_boundaries else None
        self.relative = positional_encoding.startswith("relative")
        self.relative_bias: nn.Embedding | None = None
        if positional_encoding == "relative":
            self.relative_bias = nn.Embedding(2 * max_distance + 1, n_heads)
            nn.init.zeros_(self.relative_bias.weight)  # start from plain attention, learn what distance is worth
        if self.relative:
            rows = th.arange(self.n_rows)
            distance = (rows.unsqueeze(0) - rows.unsqueeze(1)).clamp(-max_distance, max_distance) + max_distance
            self.register_buffer("distance_bucket", distance, persistent=False)
        elif positional_encoding == "learned":
            self.position = nn.Parameter(0.02 * th.randn(1, self.n_rows, embed_dim))
        else:
            self.register_buffer("position", _sinusoidal_encoding(self.n_rows, embed_dim), persistent=False)
        if not self.relative:
            layer = nn.TransformerEncoderLayer(
                embed_dim, n_heads, dim_feedforward=ff_dim, dropout=dropout, batch_first=True, norm_first=True
            )
            # Nested tensors would only speed up eval mode, and warn with norm_first
            self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False)
        else:
            # PyTorch's encoder layer returns NaN for a float attention mask on its inference fast path (no_grad and
            # eval, torch 2.13): the same pre-norm layers, with the relative terms added to the scores on every path
            n_distances = 2 * max_distance + 1 if positional_encoding == "relative_keys" else 0
            self.layers = nn.ModuleList(
                _RelativeEncoderLayer(embed_dim, n_heads, ff_dim, dropout, n_distances) for _ in range(n_layers)
            )
            self.norm = nn.LayerNorm(embed_dim)

    def forward(self, observations: TensorDict) -> th.Tensor:
        rows, mask = self._embed_rows(observations, self.embed)
        padding = ~mask
        # Depending on the PyTorch version, attention with every key masked is NaN (also in the gradients):
        # an item without real rows attends to row 0 instead (its pooled features are zero anyway)
        padding[:, 0] &= mask.any(dim=1)
        if self.boundaries is not None:
            first = mask & ~F.pad(mask[:, :-1], (1, 0))  # no real row before
            last = mask & ~F.pad(mask[:, 1:], (0, 1))  # no real row after
            rows = rows + first.unsqueeze(-1) * self.boundaries[0] + last.unsqueeze(-1) * self.boundaries[1]
        if not self.relative:
            return self._pool(self.encoder(rows + self.position, src_key_padding_mask=padding), mask)
        # Added to the attention scores (broadcast to batch, heads, L, L): -inf on padding keys, each head's distance bias
        score_bias = th.zeros_like(padding, dtype=rows.dtype).masked_fill(padding, -math.inf)[:, None, None, :]
        if self.relative_bias is not None:
            score_bias = score_bias + self.relative_bias(self.distance_bucket).permute(2, 0, 1)
        for layer in self.layers:
            rows = layer(rows, score_bias, self.distance_bucket)
        return self._pool(self.norm(rows), mask)


class _RelativeEncoderLayer(nn.Module):
    """
    Pre-norm Transformer encoder layer (as ``nn.TransformerEncoderLayer(norm_first=True)``) whose attention scores get
    an additive bias and, with ``n_distances``, the query times a trained key vector per distance bucket.

    :param embed_dim: Model width; must be divisible by ``n_heads``
    :param n_heads: Number of attention heads
    :param ff_dim: Width of the feed-forward block
    :param dropout: Dropout on the attention weights and after each block
    :param n_distances: Number of distance buckets with a key vector each (0: none)
    """

    def __init__(self, embed_dim: int, n_heads: int, ff_dim: int, dropout: float, n_distances: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.relative_keys = nn.Embedding(n_distances, embed_dim // n_heads) if n_distances else None
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)
        self.norm_attention = nn.LayerNorm(embed_dim)
        self.norm_feed_forward = nn.LayerNorm(embed_dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(embed_dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, embed_dim), nn.Dropout(dropout)
        )

    def forward(self, rows: th.Tensor, score_bias: th.Tensor, distance_bucket: th.Tensor) -> th.Tensor:
        """
        :param rows: (batch, L, embed_dim)
        :param score_bias: added to the attention scores of query row i and key row j, broadcastable to
            (batch, n_heads, L, L)
        :param distance_bucket: (L, L) distance bucket of key row j seen from query row i
        :return: (batch, L, embed_dim)
        """
        batch, n_rows, embed_dim = rows.shape
        query, key, value = self.qkv(self.norm_attention(rows)).view(batch, n_rows, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if self.relative_keys is not None:
            relative = th.einsum("bhid,ijd->bhij", query, self.relative_keys(distance_bucket))
            score_bias = score_bias + relative / math.sqrt(query.shape[-1])  # scaled as attention scales q . k
        dropout = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=score_bias, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(batch, n_rows, embed_dim)
        rows = rows + F.dropout(self.out(attended), dropout, self.training)
        return rows + self.feed_forward(self.norm_feed_forward(rows))


def _sinusoidal_encoding(n_rows: int, dim: int) -> th.Tensor:
    """
    Fixed positional encoding of "Attention Is All You Need".

    :param n_rows: Number of positions L
    :param dim: Encoding width
    :return: tensor of shape (1, n_rows, dim)
    """
    position = th.arange(n_rows, dtype=th.float32).unsqueeze(1)
    frequency = th.exp(th.arange(0, dim, 2, dtype=th.float32) * (-math.log(10000.0) / dim))
    encoding = th.zeros(n_rows, dim)
    encoding[:, 0::2] = th.sin(position * frequency)
    encoding[:, 1::2] = th.cos(position * frequency)[:, : dim // 2]
    return encoding.unsqueeze(0)
