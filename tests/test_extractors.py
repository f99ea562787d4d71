import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO

from sb3_parsing.extractors import (
    GOAL_KEYS,
    SPARSE_ROWS_MIN_WIDTH,
    TokenConvExtractor,
    TokenMLPExtractor,
    TokenTransformerExtractor,
    goal_spans,
)
from sb3_parsing.wrappers import encode_constituents

N_ROWS, ALPHABET, N_COLUMNS, N_LABELS = 7, 5, 4, 3

# Small widths keep the file fast; every non-default option is exercised by some case
EXTRACTORS = [
    pytest.param(TokenMLPExtractor, dict(features_dim=24, embed_dim=16), id="mlp"),
    pytest.param(TokenMLPExtractor, dict(features_dim=24, embed_dim=16, n_layers=1, pooling="max"), id="mlp-max"),
    pytest.param(TokenMLPExtractor, dict(embed_dim=8, pooling="tokens"), id="mlp-tokens"),
    pytest.param(TokenConvExtractor, dict(features_dim=24, embed_dim=16, kernel_size=3), id="conv"),
    pytest.param(
        TokenConvExtractor, dict(features_dim=24, embed_dim=16, kernel_size=5, n_layers=3, pooling="mean"), id="conv-wide"
    ),
    pytest.param(TokenTransformerExtractor, dict(features_dim=24, embed_dim=16, n_heads=2, ff_dim=32), id="transformer"),
    pytest.param(
        TokenTransformerExtractor,
        dict(features_dim=24, embed_dim=16, n_heads=4, ff_dim=32, n_layers=1, positional_encoding="learned", dropout=0.1),
        id="transformer-learned",
    ),
    pytest.param(
        TokenTransformerExtractor,
        dict(features_dim=24, embed_dim=16, n_heads=2, ff_dim=32, positional_encoding="relative", max_distance=2),
        id="transformer-relative",
    ),
    pytest.param(
        TokenTransformerExtractor,
        dict(features_dim=24, embed_dim=16, n_heads=2, ff_dim=32, positional_encoding="relative_keys", max_distance=3),
        id="transformer-relative-keys",
    ),
    pytest.param(
        TokenTransformerExtractor,
        dict(features_dim=24, embed_dim=16, n_heads=2, ff_dim=32, positional_encoding="relative_keys", mark_boundaries=True),
        id="transformer-relative-keys-boundaries",
    ),
]


def make_space(goal: bool, n_rows: int = N_ROWS) -> spaces.Dict:
    widths = {"text": ALPHABET, "history": N_COLUMNS}
    if goal:
        widths.update({key: N_LABELS * n_rows for key in GOAL_KEYS})  # the layout of encode_constituents
    return spaces.Dict({key: spaces.Box(0, 1, shape=(n_rows, width), dtype=np.uint8) for key, width in widths.items()})


def random_obs(space: spaces.Dict, lengths: list[int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch of observations with the given sentence lengths; padding rows are zero in every key."""
    obs = {}
    for key, subspace in space.spaces.items():
        assert isinstance(subspace, spaces.Box)
        n_rows, width = subspace.shape
        values = np.zeros((len(lengths), n_rows, width), dtype=np.uint8)
        for item, length in enumerate(lengths):
            if key == "text":
                values[item, np.arange(length), rng.integers(0, ALPHABET, size=length)] = 1
            else:
                values[item, :length] = rng.integers(0, 2, size=(length, width))
        obs[key] = values
    return obs


def with_padding_junk(obs: dict[str, np.ndarray], lengths: list[int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    junk = {key: values.copy() for key, values in obs.items()}
    for key, values in junk.items():
        if key == "text":
            continue
        for item, length in enumerate(lengths):
            values[item, length:] = rng.integers(0, 2, size=values[item, length:].shape)
    return junk


def features(extractor: th.nn.Module, obs: dict[str, np.ndarray]) -> th.Tensor:
    with th.no_grad():
        return extractor({key: th.as_tensor(values).float() for key, values in obs.items()})


@pytest.mark.parametrize(("extractor_class", "kwargs"), EXTRACTORS)
@pytest.mark.parametrize("goal", [False, True])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_output_shape_and_dtype(extractor_class: type, kwargs: dict, goal: bool, batch_size: int) -> None:
    space = make_space(goal)
    extractor = extractor_class(space, **kwargs)
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(1, N_ROWS + 1, size=batch_size))
    out = features(extractor, random_obs(space, lengths, rng))
    expected_dim = N_ROWS * kwargs["embed_dim"] if kwargs.get("pooling") == "tokens" else kwargs["features_dim"]
    assert extractor.features_dim == expected_dim
    assert out.shape == (batch_size, expected_dim)
    assert out.dtype == th.float32
    assert th.isfinite(out).all()


def test_default_kwargs() -> None:
    space = make_space(goal=True)
    obs = random_obs(space, [1, N_ROWS], np.random.default_rng(0))
    for extractor_class in (TokenMLPExtractor, TokenConvExtractor, TokenTransformerExtractor):
        extractor = extractor_class(space)
        assert features(extractor, obs).shape == (2, extractor.features_dim)


@pytest.mark.parametrize(("extractor_class", "kwargs"), EXTRACTORS)
@pytest.mark.parametrize("goal", [False, True])
def test_padding_never_leaks(extractor_class: type, kwargs: dict, goal: bool) -> None:
    space = make_space(goal)
    extractor = extractor_class(space, **kwargs).eval()
    rng = np.random.default_rng(1)
    lengths = [1, 3, N_ROWS, 2, 5, 4]
    obs = random_obs(space, lengths, rng)
    clean = features(extractor, obs)
    for _ in range(3):
        assert th.allclose(features(extractor, with_padding_junk(obs, lengths, rng)), clean, atol=1e-5)


def test_goal_spans_tell_each_row_where_it_sits_in_the_goal() -> None:
    # The root (0, 5, S) and two overlapping NPs over tokens 2-3 and 3-4 (label 1), on a 5-token sentence in 7 rows
    goal = th.as_tensor(encode_constituents([(0, 5, 0), (3, 5, 1), (2, 4, 1)], N_ROWS, N_LABELS)).float().unsqueeze(0)
    mask = th.tensor([[True] * 5 + [False] * 2])
    view = goal_spans(goal, mask).view(N_ROWS, N_LABELS, 3)  # (row, label, [inside, first, last])
    assert view[:, 0].T.tolist() == [[1, 1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0]]
    assert view[:, 1].T.tolist() == [[0, 0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0]]
    assert not view[:, 2].any()
    # A bit that starts in a padding row is dropped, NaN included
    junk = goal.clone()
    junk[0, 5], junk[0, 6, 0] = 1.0, math.nan
    assert th.equal(goal_spans(junk, mask), goal_spans(goal, mask))


def test_goal_spans_mark_each_constituents_rows_once() -> None:
    rng = np.random.default_rng(4)
    goal = th.as_tensor(rng.random((6, N_ROWS, N_LABELS * N_ROWS)) < 0.2)
    mask = th.as_tensor(rng.random((6, N_ROWS)) < 0.7)
    expected = th.zeros(6, N_ROWS, N_LABELS, 3)
    for item, start, label, length in zip(*goal.view(6, N_ROWS, N_LABELS, N_ROWS).nonzero(as_tuple=True), strict=True):
        if mask[item, start]:
            last = int(start + length)  # marked only inside the rows
            expected[item, start : last + 1, label, 0] = 1.0
            expected[item, start, label, 1] = 1.0
            if last < N_ROWS:
                expected[item, last, label, 2] = 1.0
    assert th.equal(goal_spans(goal, mask), expected.flatten(start_dim=2))
    assert th.equal(goal_spans(goal.float(), mask), expected.flatten(start_dim=2))


def test_constituent_spans_set_the_row_width_and_refuse_other_layouts() -> None:
    extractor = TokenMLPExtractor(make_space(goal=True))
    raw = TokenMLPExtractor(make_space(goal=True), goal_spans=False)
    assert extractor.token_dim == ALPHABET + N_COLUMNS + 2 * 3 * N_LABELS
    assert raw.token_dim == ALPHABET + N_COLUMNS + 2 * N_LABELS * N_ROWS
    odd = spaces.Dict(dict(make_space(goal=False).spaces, desired_goal=spaces.Box(0, 1, (N_ROWS, N_ROWS + 1), np.uint8)))
    with pytest.raises(ValueError, match="pass goal_spans=False"):
        TokenMLPExtractor(odd)
    assert TokenMLPExtractor(odd, goal_spans=False).token_dim == ALPHABET + N_COLUMNS + N_ROWS + 1
    derived = spaces.Dict(dict(make_space(goal=False).spaces, derived=spaces.Box(0, 1, (N_ROWS, N_LABELS * N_ROWS), np.uint8)))
    assert TokenMLPExtractor(derived).token_dim == ALPHABET + N_COLUMNS + 3 * N_LABELS  # the game's derived key too


def test_wide_rows_are_embedded_as_a_sparse_product_with_the_dense_result() -> None:
    space = spaces.Dict(
        text=spaces.Box(0, 1, shape=(N_ROWS, 300), dtype=np.uint8),
        history=spaces.Box(0, 1, (N_ROWS, 400), np.uint8),
        derived=spaces.Box(0, 1, (N_ROWS, N_LABELS * N_ROWS), np.uint8),  # read as goal_spans views
    )
    extractor = TokenTransformerExtractor(space, embed_dim=16, n_heads=2, ff_dim=32, pooling="tokens")
    assert extractor.token_dim >= SPARSE_ROWS_MIN_WIDTH
    lengths = [1, 3, N_ROWS, 5]
    batch = {key: th.as_tensor(v).float() for key, v in random_obs(space, lengths, np.random.default_rng(2)).items()}
    embedded, mask = extractor._embed_rows(batch, extractor.embed)
    embedded.square().sum().backward()
    sparse_gradient = extractor.embed.weight.grad.clone()
    extractor.embed.weight.grad = None
    tokens, dense_mask = extractor._tokens(batch)
    dense = extractor.embed(tokens)
    dense.square().sum().backward()
    assert th.equal(mask, dense_mask)
    assert th.allclose(embedded, dense, atol=1e-5)
    assert th.allclose(sparse_gradient, extractor.embed.weight.grad, atol=1e-4)
    # NaN in the history of padding rows reaches neither the rows nor the features
    junk = dict(batch, history=batch["history"].masked_fill(~mask.unsqueeze(-1), math.nan))
    assert th.allclose(extractor._embed_rows(junk, extractor.embed)[0], dense, atol=1e-5)
    assert th.allclose(extractor(junk), extractor(batch), atol=1e-5)


@pytest.mark.parametrize(("extractor_class", "kwargs"), EXTRACTORS)
def test_more_padding_rows_change_nothing(extractor_class: type, kwargs: dict) -> None:
    # Stricter than junk in padding rows: padding rows that the network itself fills (biases, positions) must not
    # reach real rows either, so the same weights give the same features whatever L is
    if kwargs.get("positional_encoding") == "learned" or kwargs.get("pooling") == "tokens":
        pytest.skip("learned positions and per-row features have parameters per row, so no weights fit two values of L")
    rng = np.random.default_rng(4)
    lengths = [1, 4, N_ROWS]
    short_space, long_space = make_space(goal=True), make_space(goal=True, n_rows=N_ROWS + 3)
    short = extractor_class(short_space, **kwargs).eval()
    long = extractor_class(long_space, **kwargs).eval()
    long.load_state_dict(short.state_dict())
    obs = random_obs(short_space, lengths, rng)
    padded = {key: np.pad(values, ((0, 0), (0, 3), (0, 0))) for key, values in obs.items()}
    for key in GOAL_KEYS:  # three more rows, and three more lengths per label
        goal = obs[key].reshape(len(lengths), N_ROWS, N_LABELS, N_ROWS)
        padded[key] = np.pad(goal, ((0, 0), (0, 3), (0, 0), (0, 3))).reshape(len(lengths), N_ROWS + 3, -1)
    assert th.allclose(features(long, with_padding_junk(padded, lengths, rng)), features(short, obs), atol=1e-5)


@pytest.mark.parametrize(("extractor_class", "kwargs"), EXTRACTORS)
def test_real_rows_change_features(extractor_class: type, kwargs: dict) -> None:
    space = make_space(goal=True)
    extractor = extractor_class(space, **kwargs).eval()
    rng = np.random.default_rng(2)
    lengths = [4, 2, 6]
    obs = random_obs(space, lengths, rng)
    clean = features(extractor, obs)
    for key in ("history", "desired_goal", "text"):
        changed = {name: values.copy() for name, values in obs.items()}
        # The last real row of item 1, the closest a real row gets to the padding
        row = changed[key][1, lengths[1] - 1]
        if key == "text":
            changed[key][1, lengths[1] - 1] = np.roll(row, 1)
        else:
            changed[key][1, lengths[1] - 1] = 1 - row
        out = features(extractor, changed)
        assert not th.allclose(out[1], clean[1], atol=1e-5), f"changing a real row of '{key}' did not change the features"
        # Batch items stay independent
        assert th.allclose(out[[0, 2]], clean[[0, 2]], atol=1e-5)


@pytest.mark.parametrize(("extractor_class", "kwargs"), EXTRACTORS)
def test_item_without_real_rows_is_finite(extractor_class: type, kwargs: dict) -> None:
    # Not produced by the env, but attention with every key masked can be NaN and poison the gradients of the batch
    space = make_space(goal=False)
    extractor = extractor_class(space, **kwargs).train()
    obs = random_obs(space, [0, 3], np.random.default_rng(3))
    obs["history"][0] = 1
    out = extractor({key: th.as_tensor(values).float() for key, values in obs.items()})
    out.sum().backward()
    assert th.isfinite(out).all()
    assert all(th.isfinite(param.grad).all() for param in extractor.parameters() if param.grad is not None)


def _relative_tables(extractor: TokenTransformerExtractor) -> list[th.nn.Embedding]:
    """The trained tables of a relative-position extractor: its distance bias and each layer's distance keys."""
    tables = [extractor.relative_bias] + [layer.relative_keys for layer in extractor.layers]
    return [table for table in tables if table is not None]


def _randomized_relative_terms(extractor: TokenTransformerExtractor) -> TokenTransformerExtractor:
    """The extractor with random relative tables (the bias starts at zero, which would hide how distances are bucketed)."""
    with th.no_grad():
        for table in _relative_tables(extractor):
            table.weight.normal_(std=2.0)
    return extractor.eval()


@pytest.mark.parametrize(
    ("positional_encoding", "mark_boundaries", "equivariant"),
    [
        ("relative", 1, True),
        ("relative", 3, True),
        ("relative_keys", 1, True),
        ("sinusoidal", 1, False),
        ("learned", 3, False),
    ],
)
def test_only_relative_positions_see_a_sentence_alike_wherever_it_starts(
    positional_encoding: str, mark_boundaries: bool, equivariant: bool
) -> None:
    # What makes relative positions generalize to longer sentences: a token's features depend on its neighbours and
    # their distances, never on its row, so the rows that no training sentence reached are no different
    space = make_space(goal=True)
    kwargs = dict(embed_dim=16, n_heads=2, ff_dim=32, n_layers=2, pooling="tokens", mark_boundaries=mark_boundaries)
    extractor = TokenTransformerExtractor(space, positional_encoding=positional_encoding, **kwargs).eval()
    if extractor.relative:
        _randomized_relative_terms(extractor)
    rng = np.random.default_rng(5)
    obs = random_obs(space, [4], rng)
    shifted = {key: np.roll(values, 3, axis=1) for key, values in obs.items()}  # rows 3-6, rows 0-2 padding
    rows = features(extractor, obs).view(N_ROWS, 16)[:4]
    shifted_rows = features(extractor, shifted).view(N_ROWS, 16)[3:]
    assert th.allclose(rows, shifted_rows, atol=1e-5) == equivariant


@pytest.mark.parametrize("positional_encoding", ["relative", "relative_keys"])
def test_relative_positions_share_one_term_beyond_max_distance(positional_encoding: str) -> None:
    space = make_space(goal=False)
    kwargs = dict(embed_dim=16, n_heads=2, ff_dim=32, n_layers=1, pooling="tokens", max_distance=2)
    extractor = _randomized_relative_terms(TokenTransformerExtractor(space, positional_encoding=positional_encoding, **kwargs))

    def first_row(odd_row: int) -> th.Tensor:
        """Row 0's features for the sentence 'a b b b b b b' with a 'c' in place of the b at ``odd_row``."""
        text = np.zeros((1, N_ROWS, ALPHABET), dtype=np.uint8)
        text[0, :, 1] = 1
        text[0, 0], text[0, odd_row] = np.eye(ALPHABET)[0], np.eye(ALPHABET)[2]
        obs = {"text": text, "history": np.zeros((1, N_ROWS, N_COLUMNS), dtype=np.uint8)}
        return features(extractor, obs).view(N_ROWS, 16)[0]

    # From row 0, rows 3 and 5 are both beyond max_distance: one term, the same features; row 1 is not
    assert th.allclose(first_row(3), first_row(5), atol=1e-5)
    assert not th.allclose(first_row(1), first_row(5), atol=1e-5)


@pytest.mark.parametrize(("positional_encoding", "n_tables"), [("relative", 1), ("relative_keys", 2)])
def test_relative_tables_are_trained(positional_encoding: str, n_tables: int) -> None:
    space = make_space(goal=False)
    extractor = TokenTransformerExtractor(space, embed_dim=16, n_heads=2, ff_dim=32, positional_encoding=positional_encoding)
    obs = random_obs(space, [N_ROWS, 3], np.random.default_rng(7))
    out = extractor({key: th.as_tensor(values).float() for key, values in obs.items()})
    (out**2).sum().backward()
    tables = _relative_tables(extractor)
    assert len(tables) == n_tables  # one bias table shared by the layers, or one key table per layer (2 layers)
    assert all(table.weight.grad is not None and table.weight.grad.abs().sum() > 0 for table in tables)


def _box(n_rows: int, width: int) -> spaces.Box:
    return spaces.Box(0, 1, shape=(n_rows, width), dtype=np.uint8)


@pytest.mark.parametrize(
    ("space", "match"),
    [
        pytest.param(_box(N_ROWS, ALPHABET), "spaces.Dict observation space", id="not-dict"),
        pytest.param(spaces.Dict({"history": _box(N_ROWS, N_COLUMNS)}), "'text' key", id="no-text"),
        pytest.param(
            spaces.Dict({"text": _box(N_ROWS, ALPHABET), "history": _box(N_ROWS + 1, N_COLUMNS)}),
            r"'history'.*same number of rows.*\(7, k\).*\(8, 4\)",
            id="rows-mismatch",
        ),
        pytest.param(
            spaces.Dict({"text": _box(N_ROWS, ALPHABET), "history": spaces.Box(0, 1, shape=(N_ROWS,), dtype=np.uint8)}),
            r"'history'.*2-D Box of shape \(L, k\) = \(7, k\)",
            id="history-1d",
        ),
        pytest.param(
            spaces.Dict({"text": spaces.Box(0, 1, shape=(N_ROWS, ALPHABET, 2), dtype=np.uint8)}),
            r"'text'.*2-D Box of shape \(L, alphabet_size\)",
            id="text-3d",
        ),
        pytest.param(
            spaces.Dict({"text": _box(N_ROWS, ALPHABET), "step": spaces.Discrete(3)}),
            r"'step'.*spaces.Box",
            id="not-box",
        ),
    ],
)
@pytest.mark.parametrize("extractor_class", [TokenMLPExtractor, TokenConvExtractor, TokenTransformerExtractor])
def test_bad_space_raises(extractor_class: type, space: gym.Space, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        extractor_class(space)


@pytest.mark.parametrize(
    ("extractor_class", "kwargs", "match"),
    [
        (TokenMLPExtractor, dict(pooling="sum"), "pooling must be one of"),
        (TokenMLPExtractor, dict(n_layers=0), "n_layers must be a positive integer"),
        (TokenConvExtractor, dict(kernel_size=0), "kernel_size must be a positive integer"),
        (TokenConvExtractor, dict(kernel_size=4), "kernel_size must be odd"),
        (TokenConvExtractor, dict(features_dim=0), "features_dim must be a positive integer"),
        (TokenTransformerExtractor, dict(embed_dim=30, n_heads=4), r"embed_dim \(30\) must be divisible by n_heads \(4\)"),
        (TokenTransformerExtractor, dict(positional_encoding="rotary"), "positional_encoding must be one of"),
        (TokenTransformerExtractor, dict(dropout=1.0), "dropout must be in"),
        (TokenTransformerExtractor, dict(positional_encoding="relative", max_distance=0), "max_distance must be a positive"),
    ],
)
def test_bad_kwargs_raise(extractor_class: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        extractor_class(make_space(goal=False), **kwargs)


class TinyParseEnv(gym.Env):
    """
    Toy stand-in for the parsing env with the same observation contract:
    mark column 0 of every real token's history row, each once.

    :param goal: Whether to add ``achieved_goal`` and ``desired_goal`` keys
    """

    def __init__(self, goal: bool = False) -> None:
        self.goal = goal
        self.observation_space = make_space(goal)
        self.action_space = spaces.Discrete(N_ROWS * N_COLUMNS)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self._length = int(self.np_random.integers(1, N_ROWS + 1))
        text = np.zeros((N_ROWS, ALPHABET), dtype=np.uint8)
        text[np.arange(self._length), self.np_random.integers(0, ALPHABET, size=self._length)] = 1
        self._text = text
        self._history = np.zeros((N_ROWS, N_COLUMNS), dtype=np.uint8)
        self._n_steps = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        row, column = divmod(int(action), N_COLUMNS)
        hit = row < self._length and column == 0 and self._history[row, 0] == 0
        if row < self._length:
            self._history[row, column] = 1
        self._n_steps += 1
        terminated = bool(self._history[: self._length, 0].all())
        return self._obs(), 1.0 if hit else -0.1, terminated, self._n_steps >= 2 * N_ROWS, {}

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {"text": self._text.copy(), "history": self._history.copy()}
        if self.goal:
            marked = [(row, row + 1, 0) for row in range(N_ROWS) if self._history[row, 0]]
            obs.update(
                achieved_goal=encode_constituents(marked, N_ROWS, N_LABELS),
                desired_goal=encode_constituents([(row, row + 1, 0) for row in range(self._length)], N_ROWS, N_LABELS),
            )
        return obs


@pytest.mark.parametrize(("extractor_class", "kwargs"), EXTRACTORS)
def test_ppo_smoke(extractor_class: type, kwargs: dict) -> None:
    goal = extractor_class is not TokenMLPExtractor
    model = PPO(
        "MultiInputPolicy",
        TinyParseEnv(goal=goal),
        policy_kwargs=dict(features_extractor_class=extractor_class, features_extractor_kwargs=kwargs),
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        seed=0,
        device="cpu",
    )
    extractor = model.policy.features_extractor
    assert isinstance(extractor, extractor_class)
    before = [param.detach().clone() for param in extractor.parameters()]
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    assert any(not th.equal(old, new) for old, new in zip(before, extractor.parameters(), strict=True)), (
        "PPO did not update the features extractor"
    )
    obs, _ = TinyParseEnv(goal=goal).reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert model.action_space.contains(int(action))
