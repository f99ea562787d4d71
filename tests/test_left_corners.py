import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.grammar import RuleSet
from sb3_parsing.left_corners import LeftCornerFeatures
from sb3_parsing import sparse
from sb3_parsing.policies import BitMaskDictRolloutBuffer, FactoredMaskableTokenPolicy
from sb3_parsing.wrappers import encode_constituents

GRAMMAR = RuleSet.from_text(
    "%start S\nNP VP => S\nDet N => NP\nDet Adj N => NP\nV NP => VP\nthe => Det\ndog => N\nsees => V\nold => Adj\nold => N\n"
)
RULE = {str(rule): i for i, rule in enumerate(GRAMMAR.rules)}
SMALL_NETWORK = dict(features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16))


def _rows(tokens: list[str], set_columns: list[list[int]], n_columns: int) -> tuple[th.Tensor, th.Tensor]:
    index = {symbol.name: i for i, symbol in enumerate(GRAMMAR.alphabet) if not symbol.is_label}
    text = th.zeros(len(tokens), len(GRAMMAR.alphabet))
    text[th.arange(len(tokens)), th.tensor([index[t] for t in tokens])] = 1.0
    history = th.zeros(len(tokens), n_columns)
    for row, columns in enumerate(set_columns):
        history[row, columns] = 1.0
    return text, history


def test_rule_columns_start_at_their_first_word_or_at_a_set_cell_of_their_first_label() -> None:
    features = LeftCornerFeatures(GRAMMAR, "rules")
    text, history = _rows(["the", "old"], [[RULE["the => Det"]], []], len(GRAMMAR.rules))
    word, corner = features(text, history).unbind(dim=-2)
    assert word[0].nonzero().flatten().tolist() == [RULE["the => Det"]]
    assert sorted(word[1].nonzero().flatten().tolist()) == sorted([RULE["old => Adj"], RULE["old => N"]])
    # "the => Det" set in row 0 makes Det a left corner there: the two NP rules that start with Det
    assert sorted(corner[0].nonzero().flatten().tolist()) == sorted([RULE["Det N => NP"], RULE["Det Adj N => NP"]])
    assert not corner[1].any()


def test_with_derived_rows_only_constituents_that_took_start_a_column() -> None:
    features = LeftCornerFeatures(GRAMMAR, "rules")
    # "the => Det" attempted at both rows: it takes at row 0 ("the"), not at row 1 ("old")
    text, history = _rows(["the", "old"], [[RULE["the => Det"]], [RULE["the => Det"]]], len(GRAMMAR.rules))
    label = {name: i for i, name in enumerate(GRAMMAR.labels)}
    derived = encode_constituents([(0, 1, label["Det"])], obs_len=2, n_labels=len(GRAMMAR.labels))
    _, attempted = features(text, history).unbind(dim=-2)
    _, took = features(text, history, th.as_tensor(derived)).unbind(dim=-2)
    det_first = sorted([RULE["Det N => NP"], RULE["Det Adj N => NP"]])
    assert sorted(attempted[1].nonzero().flatten().tolist()) == det_first, "an attempt counts without the derived rows"
    assert sorted(took[0].nonzero().flatten().tolist()) == det_first
    assert not took[1].any()


def test_label_columns_start_where_one_of_their_rules_can() -> None:
    features = LeftCornerFeatures(GRAMMAR, "labels")
    label = {name: i for i, name in enumerate(GRAMMAR.labels)}
    text, history = _rows(["old", "sees"], [[label["Det"]], [label["NP"]]], len(GRAMMAR.labels))
    word, corner = features(text, history).unbind(dim=-2)
    assert sorted(word[0].nonzero().flatten().tolist()) == sorted([label["Adj"], label["N"]])
    assert word[1].nonzero().flatten().tolist() == [label["V"]]
    assert corner[0].nonzero().flatten().tolist() == [label["NP"]]
    assert corner[1].nonzero().flatten().tolist() == [label["S"]]


@pytest.mark.parametrize("columns", ["rules", "labels"])
def test_every_cell_of_a_parse_starts_at_its_word_or_at_another_cell_of_the_parse(columns: str) -> None:
    # A node's first child starts where the node does: a word, or a node whose cell is in the same row of H
    env = gym.make("LinguisticParse-v0", columns=columns)
    features = LeftCornerFeatures(env.unwrapped.ruleset, columns)
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        terminated = False
        while not terminated:
            obs, _, terminated, _, _ = env.step(env.unwrapped.expert_action())
        word, corner = features(th.as_tensor(obs["text"]), th.as_tensor(obs["history"])).unbind(dim=-2)
        history = th.as_tensor(obs["history"]).bool()
        assert (word.bool() | corner.bool())[history].all()
        assert not (word.bool() | corner.bool()).all(), "the features rule cells out"


@pytest.mark.parametrize(("columns", "observe_derived"), [("rules", False), ("rules", True), ("labels", True)])
def test_rows_are_marked_where_a_feature_marks_an_unset_cell(columns: str, observe_derived: bool) -> None:
    env = gym.make("LinguisticParse-v0", columns=columns, observe_derived=observe_derived)
    features = LeftCornerFeatures(env.unwrapped.ruleset, columns)
    rng = np.random.default_rng(0)
    observations = []
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        for _ in range(int(rng.integers(0, 20))):  # expert and random cells: rows with and without work left
            mask = env.unwrapped.action_masks()
            action = env.unwrapped.expert_action() if rng.random() < 0.6 else int(rng.choice(np.flatnonzero(mask)))
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        observations.append(obs)
    rows = [th.as_tensor(np.stack([obs[key] for obs in observations])) for key in ("text", "history", "derived") if key in obs]
    batch, obs_len = rows[0].shape[:2]
    cell_features = [features(*rows)]
    if observe_derived:
        every_row = (th.arange(batch).repeat_interleave(obs_len), th.arange(obs_len).repeat(batch))
        fits = features.fits(features.read({"text": rows[0], "derived": rows[2]}), *every_row).view(batch, obs_len, 1, -1)
        cell_features.append(fits * rows[0].any(dim=-1).view(batch, obs_len, 1, 1))  # a padding row has no work
    else:
        cell_features.append(th.zeros_like(cell_features[0][..., :1, :]))
    unset = rows[1].eq(0).unsqueeze(-2)
    expected = th.cat(cell_features, dim=-2).masked_fill(~unset, 0.0).amax(dim=-1)
    marked = features.marks_unset_cells(*rows)
    assert th.equal(marked, expected)
    for feature in range(2 + observe_derived):
        assert 0 < marked[..., feature].sum() < rows[0].any(dim=-1).sum(), "some real rows marked, not all"


def test_policy_learns_the_weights_of_the_left_corners() -> None:
    env = gym.make("LinguisticParse-v0", max_steps=16, observe_derived=True)
    policy_kwargs = dict(grammar="english", **SMALL_NETWORK)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=policy_kwargs)
    weights = model.policy.action_net.left_corner_weights
    row_weights = model.policy.action_net.row_corner_weights
    start = th.full((3,), math.log(env.unwrapped.n_columns))
    row_start = th.full((3,), math.log(env.unwrapped.obs_len))
    assert th.equal(weights.detach(), start) and th.equal(row_weights.detach(), row_start)
    model.learn(128)
    assert (weights.detach() != start).all() and (row_weights.detach() != row_start).all()
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        mask = env.unwrapped.action_masks()
        action, _ = model.predict(obs, action_masks=mask, deterministic=True)
        assert mask[int(action)]
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break


def _expert_steps(env: gym.Env, n: int, sentence: str | None = None) -> dict[str, np.ndarray]:
    obs, _ = env.reset(seed=0, options=None if sentence is None else {"sentence": sentence})
    for _ in range(n):  # the words' rules: the first constituents, of which the corners then start phrases
        obs, *_ = env.step(env.unwrapped.expert_action())
    return obs


def _cell_features(features: LeftCornerFeatures, obs: dict[str, np.ndarray]) -> th.Tensor:
    """The three features of every cell of one observation, ``(obs_len, 3, n_columns)``."""
    rows = [th.as_tensor(obs[key]) for key in ("text", "history", "derived") if key in obs]
    obs_len = rows[0].shape[0]
    if "derived" not in obs:
        return th.cat([features(*rows), th.zeros(obs_len, 1, features.n_columns)], dim=-2)
    reading = features.read({"text": rows[0].unsqueeze(0), "derived": rows[2].unsqueeze(0)})
    fits = features.fits(reading, th.zeros(obs_len, dtype=th.long), th.arange(obs_len))
    return th.cat([features(*rows), fits.unsqueeze(-2)], dim=-2)


@pytest.mark.parametrize("observe_derived", [False, True])
def test_left_corners_reach_the_column_logits(observe_derived: bool) -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=observe_derived)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=32, policy_kwargs=dict(grammar="english", **SMALL_NETWORK))
    features = LeftCornerFeatures(env.unwrapped.ruleset)
    columns = int(env.unwrapped.n_columns)
    obs = _expert_steps(env, 3)
    cell_features = _cell_features(features, obs)
    for feature in range(2 + observe_derived):  # word, corner, then fits far ahead of everything else
        with th.no_grad():  # in the rows with an unset cell that the feature marks (set cells are masked)
            model.policy.action_net.left_corner_weights.copy_(th.tensor([50.0, 0.0, 0.0]).roll(feature))
            model.policy.action_net.row_corner_weights.copy_(th.tensor([50.0, 0.0, 0.0]).roll(feature))
            action = int(model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).mode())
        assert cell_features[action // columns, feature, action % columns] == 1


@pytest.mark.parametrize("observe_derived", [False, True])
def test_rows_with_marked_unset_cells_reach_the_row_logits(observe_derived: bool) -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=observe_derived)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=32, policy_kwargs=dict(grammar="english", **SMALL_NETWORK))
    features = LeftCornerFeatures(env.unwrapped.ruleset)
    obs = _expert_steps(env, 4)
    marked = features.marks_unset_cells(*(th.as_tensor(obs[key]) for key in ("text", "history", "derived") if key in obs))
    for feature in range(2 + observe_derived):  # rows with an unset cell of the token's words, of a corner, that fits
        assert 0 < marked[:, feature].sum() < int(obs["text"].any(axis=1).sum()), "some real rows marked, not all"
        with th.no_grad():
            model.policy.action_net.row_corner_weights.copy_(th.tensor([50.0, 0.0, 0.0]).roll(feature))
            distribution = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0])
        assert marked[int(distribution.row_log_probs.argmax()), feature] == 1


def test_row_logits_add_how_the_column_logits_score_the_rows_unset_fitting_cells() -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=True)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=32, policy_kwargs=dict(grammar="english", **SMALL_NETWORK))
    head = model.policy.action_net
    features = LeftCornerFeatures(env.unwrapped.ruleset)
    obs = _expert_steps(env, 4)
    observations = model.policy.obs_to_tensor(obs)[0]
    tokens = 3.0 * th.randn(1, head.n_rows, head.column.in_features, generator=th.Generator().manual_seed(0))
    fitting_unset = _cell_features(features, obs)[:, 2].bool() & th.as_tensor(obs["history"]).eq(0)
    assert 0 < fitting_unset.any(dim=-1).sum() < int(obs["text"].any(axis=1).sum()), "some real rows fit, not all"
    with th.no_grad():
        scores = head.column(tokens)[0].masked_fill(~fitting_unset, -math.inf)
        mass = th.logaddexp(th.zeros(head.n_rows), scores.logsumexp(dim=-1))  # log(1 + sum(exp)), 0 with none
        marked = features.marks_unset_cells(*(th.as_tensor(obs[key]) for key in ("text", "history", "derived")))
        expected = head.row(tokens)[0, :, 0] + (head.row_corner_weights * marked).sum(dim=-1) + mass
        assert th.allclose(head.row_logits(tokens, observations)[0], expected, atol=1e-5)


def _fitting_by_search(ruleset: RuleSet, columns: str, obs: dict[str, np.ndarray]) -> set[tuple[int, int, int]]:
    """The fitting cells by a plain recursive search over the patterns: (row, column, end of the constituent)."""
    obs_len, labels = obs["text"].shape[0], {label: i for i, label in enumerate(ruleset.labels)}
    starts, label_indices, lengths = np.nonzero(obs["derived"].reshape(obs_len, len(labels), obs_len))
    constituents = set(zip(starts.tolist(), (starts + lengths + 1).tolist(), label_indices.tolist(), strict=True))
    alphabet = list(ruleset.alphabet)
    tokens = [alphabet[int(i)].name if row.any() else None for row, i in zip(obs["text"], obs["text"].argmax(-1), strict=True)]

    def ends(pattern: tuple, position: int) -> set[int]:
        if not pattern:
            return {position}
        first, rest = pattern[0], pattern[1:]
        if not first.is_label:
            return ends(rest, position + 1) if position < obs_len and tokens[position] == first.name else set()
        label = labels[first.name]
        return {e for start, end, other in constituents if (start, other) == (position, label) for e in ends(rest, end)}

    return {
        (row, index if columns == "rules" else labels[rule.label], end)
        for row in range(obs_len)
        if tokens[row] is not None
        for index, rule in enumerate(ruleset.rules)
        for end in ends(rule.pattern, row)
    }


def _fits_by_search(ruleset: RuleSet, columns: str, obs: dict[str, np.ndarray]) -> np.ndarray:
    """``fits`` by :func:`_fitting_by_search`, ``(obs_len, n_columns)``."""
    fits = np.zeros((obs["text"].shape[0], len(ruleset.rules) if columns == "rules" else len(ruleset.labels)))
    for row, column, _ in _fitting_by_search(ruleset, columns, obs):
        fits[row, column] = 1
    return fits


@pytest.mark.parametrize(
    ("env_id", "columns"),
    [("LinguisticParse-v0", "rules"), ("LinguisticParse-v0", "labels"), ("LinguisticParseArithmetic-v0", "rules")],
)
def test_fits_marks_the_cells_whose_whole_pattern_follows_from_the_row(env_id: str, columns: str) -> None:
    env = gym.make(env_id, columns=columns, observe_derived=True)
    features = LeftCornerFeatures(env.unwrapped.ruleset, columns)
    rng = np.random.default_rng(0)
    n_fitting = 0
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        for _ in range(30):  # expert and random cells: constituents that lead to a parse and dead ends
            obs_len = obs["text"].shape[0]
            every_row = (th.zeros(obs_len, dtype=th.long), th.arange(obs_len))
            reading = features.read({key: th.as_tensor(obs[key])[None] for key in ("text", "derived")})
            fits = features.fits(reading, *every_row)
            expected = _fits_by_search(env.unwrapped.ruleset, columns, obs)
            assert np.array_equal(fits.numpy(), expected)
            cells = features.fitting_cells(reading, *every_row)
            found = zip(cells.rows.tolist(), cells.columns.tolist(), cells.ends.tolist(), strict=True)
            assert set(found) == _fitting_by_search(env.unwrapped.ruleset, columns, obs), "each constituent's end"
            n_fitting += int(expected.sum())
            mask = env.unwrapped.action_masks()
            action = env.unwrapped.expert_action() if rng.random() < 0.5 else int(rng.choice(np.flatnonzero(mask)))
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    assert n_fitting > 100


def test_the_fitting_cells_of_any_rows_are_the_readings_of_every_row() -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=True)
    features = LeftCornerFeatures(env.unwrapped.ruleset)
    observations = [_expert_steps(env, n_steps) for n_steps in (3, 6)]
    batch = {key: th.as_tensor(np.stack([obs[key] for obs in observations])) for key in ("text", "derived")}
    reading = features.read(batch)
    n_real = int(batch["text"][1].any(dim=-1).sum())
    samples, rows = th.tensor([1, 0, 1, 1, 0]), th.tensor([0, 2, n_real, 0, 1])  # a repeat and a padding row
    cells = features.fitting_cells(reading, samples, rows)
    expected = {
        (index, column, end)
        for index, (sample, row) in enumerate(zip(samples.tolist(), rows.tolist(), strict=True))
        for found_row, column, end in _fitting_by_search(env.unwrapped.ruleset, "rules", observations[sample])
        if found_row == row
    }
    found = list(zip(cells.rows.tolist(), cells.columns.tolist(), cells.ends.tolist(), strict=True))
    assert len(found) == len(set(found)) and set(found) == expected
    assert {index for index, *_ in expected} == {0, 1, 3, 4}, "every real row has its word's rule, the padding row none"


def test_a_policy_step_follows_the_prefix_tree_once(monkeypatch: pytest.MonkeyPatch) -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=True)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=32, policy_kwargs=dict(grammar="english", span_ends=True))
    walks = []
    walk = LeftCornerFeatures._walk

    def counted_walk(self: LeftCornerFeatures, *args: th.Tensor) -> object:
        walks.append(args[-1].numel())
        return walk(self, *args)

    monkeypatch.setattr(LeftCornerFeatures, "_walk", counted_walk)
    obs = model.policy.obs_to_tensor(_expert_steps(env, 4))[0]
    masks = th.as_tensor(env.unwrapped.action_masks()).unsqueeze(0)
    with th.no_grad():
        actions, _, _ = model.policy(obs, action_masks=masks)  # a rollout's: rows, then the drawn row's columns
        model.policy.evaluate_actions(obs, actions, action_masks=masks)  # an update's: rows, columns, entropy
    assert walks == [int(obs["text"].any(dim=-1).sum())] * 2, "once per batch, from every real row"


def test_a_policy_scans_each_matrix_of_a_batch_once_and_an_update_none(monkeypatch: pytest.MonkeyPatch) -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=True)
    policy_kwargs = dict(grammar="english", span_ends=True, **SMALL_NETWORK)
    model = MaskablePPO(
        FactoredMaskableTokenPolicy,
        env,
        n_steps=16,
        batch_size=8,
        rollout_buffer_class=BitMaskDictRolloutBuffer,
        policy_kwargs=policy_kwargs,
    )
    model.learn(16)
    scans = []
    flat_set_entries = sparse.flat_set_entries
    monkeypatch.setattr(sparse, "flat_set_entries", lambda matrix: scans.append(matrix.shape) or flat_set_entries(matrix))
    obs = model.policy.obs_to_tensor(_expert_steps(env, 4))[0]
    with th.no_grad():
        model.policy(obs, action_masks=th.as_tensor(env.unwrapped.action_masks()).unsqueeze(0))
    shapes = {key: matrix.shape for key, matrix in obs.items()}
    assert sorted(scans) == sorted([shapes["text"], shapes["derived"]]), "once each, by the extractor and the head"
    scans.clear()
    batch = next(model.rollout_buffer.get(batch_size=8))
    model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten(), action_masks=batch.action_masks)
    assert scans == [], "the rollout buffer found the minibatch's entries"


def test_policy_refuses_another_grammar_than_the_envs_with_how_to_fix() -> None:
    env = gym.make("LinguisticParse-v0")
    with pytest.raises(ValueError, match="give the policy the env's grammar"):
        MaskablePPO(FactoredMaskableTokenPolicy, env, policy_kwargs=dict(grammar="arithmetic"))


def test_saved_policy_keeps_its_grammar(tmp_path) -> None:
    env = gym.make("LinguisticParse-v0")
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=32, policy_kwargs=dict(grammar="english", **SMALL_NETWORK))
    with th.no_grad():
        model.policy.action_net.left_corner_weights.copy_(th.tensor([1.5, -0.5, 2.0]))
    model.save(tmp_path / "model.zip")
    loaded = MaskablePPO.load(tmp_path / "model.zip")
    assert loaded.policy.grammar == "english"
    assert th.equal(loaded.policy.action_net.left_corner_weights.detach(), th.tensor([1.5, -0.5, 2.0]))
    obs, _ = env.reset(seed=4)
    mask = env.unwrapped.action_masks()
    assert np.array_equal(
        model.predict(obs, action_masks=mask, deterministic=True)[0],
        loaded.predict(obs, action_masks=mask, deterministic=True)[0],
    )


# Far enough into the expert's parse for a cell to fit two constituents (an E over 1 and over 3 tokens at one row),
# in a sampled sentence and in one of obs_len tokens, where a constituent ending on the last row has no token after it
@pytest.mark.parametrize(("sentence", "n_steps"), [(None, 12), ("1 + 2 * ( x - 3 ) / y + 2 - 1", 20)])
def test_span_ends_score_a_fitting_cell_by_the_end_of_its_constituent_and_what_follows(
    sentence: str | None, n_steps: int
) -> None:
    env = gym.make("LinguisticParseArithmetic-v0", observe_derived=True)
    policy_kwargs = dict(grammar="arithmetic", span_ends=True, **SMALL_NETWORK)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=32, policy_kwargs=policy_kwargs)
    head = model.policy.action_net
    obs = _expert_steps(env, n_steps, sentence)
    observations = model.policy.obs_to_tensor(obs)[0]
    tokens = 3.0 * th.randn(1, head.n_rows, head.column.in_features, generator=th.Generator().manual_seed(0))
    every_row = th.arange(head.n_rows).unsqueeze(0)
    span_end, head.span_end = head.span_end, None
    with th.no_grad():
        without = head.column_logits(tokens, every_row, observations)[0]
        head.span_end = span_end
        with_ends = head.column_logits(tokens, every_row, observations)[0]
        expected = th.zeros_like(without)
        fitting = _fitting_by_search(env.unwrapped.ruleset, "rules", obs)
        for row, column, end in fitting:  # the best of the constituents a cell could derive
            after = tokens[0, min(end, head.n_rows - 1)]
            score = th.cat([tokens[0, end - 1], after]) @ span_end.weight[column] + span_end.bias[column]
            expected[row, column] = score if expected[row, column] == 0 else max(expected[row, column], score)
    assert len({(row, column) for row, column, _ in fitting}) < len(fitting), "some cell can derive two constituents"
    if sentence is not None:
        assert any(end == head.n_rows for *_, end in fitting), "some constituent ends on the last row"
    assert th.allclose(with_ends - without, expected, atol=1e-5)


def test_span_ends_need_the_grammar() -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=True)
    with pytest.raises(ValueError, match="give the policy the grammar"):
        MaskablePPO(FactoredMaskableTokenPolicy, env, policy_kwargs=dict(span_ends=True))


def test_span_ends_survive_save_and_load(tmp_path: Path) -> None:
    env = gym.make("LinguisticParseArithmetic-v0", observe_derived=True)
    policy_kwargs = dict(grammar="arithmetic", span_ends=True, **SMALL_NETWORK)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=32, policy_kwargs=policy_kwargs)
    model.save(tmp_path / "model")
    loaded = MaskablePPO.load(tmp_path / "model")
    assert loaded.policy.action_net.span_end is not None
    obs = model.policy.obs_to_tensor(_expert_steps(env, 12))[0]
    every_row = th.arange(model.policy.action_net.n_rows).unsqueeze(0)

    def column_logits(policy: FactoredMaskableTokenPolicy) -> th.Tensor:
        distribution = policy.get_distribution(obs)
        return distribution.head.column_logits(distribution.tokens, every_row, obs)

    with th.no_grad():
        assert th.equal(column_logits(model.policy), column_logits(loaded.policy))
