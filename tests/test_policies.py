import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO, HerReplayBuffer

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.extractors import TokenConvExtractor
from sb3_parsing.grammar import RuleSet
from sb3_parsing.policies import (
    BitMaskDictRolloutBuffer,
    ExactMaskableCategorical,
    ExactMaskableCategoricalDistribution,
    FactoredMaskableDistribution,
    FactoredMaskableTokenPolicy,
    MaskableTokenPolicy,
    RowColumnActionHead,
    TokenActionHead,
    TokenDQNPolicy,
    TokenPolicy,
)


def test_token_action_head_scores_each_row_from_its_own_latent() -> None:
    head = TokenActionHead(n_rows=4, token_dim=3, n_columns=5)
    latent = th.randn(2, 4 * 3)
    logits = head(latent)
    assert logits.shape == (2, 4 * 5)
    changed = latent.clone()
    changed[:, 3:6] += 1.0  # row 1 only
    diff = (head(changed) - logits).abs().view(2, 4, 5).sum(dim=(0, 2))
    assert diff[1] > 0 and diff[0] == diff[2] == diff[3] == 0
    # action m * n_columns + n reads row m: the same weights for every row
    row = head.linear(latent.view(2, 4, 3)[:, 2])
    assert th.allclose(logits[:, 2 * 5 : 3 * 5], row)


@pytest.mark.parametrize(("algo", "policy"), [(MaskablePPO, MaskableTokenPolicy), (PPO, TokenPolicy)])
@pytest.mark.parametrize("env_id", ["LinguisticParse-v0", "LinguisticParseGoal-v0"])
def test_token_policies_train_on_both_env_ids(algo: type, policy: type, env_id: str) -> None:
    env = gym.make(env_id, max_steps=16)
    policy_kwargs = dict(features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16))
    model = algo(policy, env, n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=policy_kwargs, seed=0)
    before = [p.detach().clone() for p in model.policy.action_net.parameters()]
    model.learn(128)
    assert isinstance(model.policy.action_net, TokenActionHead)
    after = list(model.policy.action_net.parameters())
    assert any(not th.equal(a, b) for a, b in zip(before, after, strict=True))  # the head is in the optimizer
    obs, _ = env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    kwargs = {"action_masks": mask} if algo is MaskablePPO else {}
    action, _ = model.predict(obs, deterministic=True, **kwargs)
    assert 0 <= int(action) < env.action_space.n
    if algo is MaskablePPO:
        assert mask[int(action)]


def test_factored_policy_trains_and_keeps_to_the_masks() -> None:
    env = gym.make("LinguisticParse-v0", max_steps=16)
    policy_kwargs = dict(features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16))
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=policy_kwargs)
    assert isinstance(model.policy.action_net, RowColumnActionHead)
    assert isinstance(model.policy.action_dist, FactoredMaskableDistribution)
    before = [p.detach().clone() for p in model.policy.action_net.parameters()]
    model.learn(128)
    assert all(not th.equal(a, b) for a, b in zip(before, model.policy.action_net.parameters(), strict=True))
    obs, _ = env.reset(seed=0)
    for deterministic in (True, False):
        for _ in range(20):
            mask = env.unwrapped.action_masks()
            action, _ = model.predict(obs, deterministic=deterministic, action_masks=mask)
            assert mask[int(action)]


def _factored(n_rows: int = 3, n_columns: int = 4, batch: int = 2, seed: int = 0):
    th.manual_seed(seed)
    head = RowColumnActionHead(n_rows, token_dim=5, n_columns=n_columns)
    tokens = th.randn(batch, n_rows, 5, requires_grad=True)
    return FactoredMaskableDistribution(n_rows, n_columns).proba_distribution(tokens, head), head, tokens


def _flat_log_probs(head: RowColumnActionHead, tokens: th.Tensor, masks: th.Tensor) -> th.Tensor:
    """log p(m, n) = log p(m) + log p(n | m), cell by cell, each softmax over the allowed rows or columns."""
    rows_allowed = masks.any(dim=-1)
    row = th.log_softmax(head.row(tokens).squeeze(-1).masked_fill(~rows_allowed, -math.inf), dim=-1)
    column = th.log_softmax(head.column(tokens).masked_fill(~masks, -math.inf), dim=-1)
    return (row.unsqueeze(-1) + column).masked_fill(~masks, -math.inf).flatten(start_dim=1)


def test_factored_distribution_is_a_row_then_a_column() -> None:
    distribution, head, tokens = _factored()
    masks = th.tensor([[[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], [[0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]]]).bool()
    distribution.apply_masking(masks.flatten(start_dim=1))
    expected = _flat_log_probs(head, tokens, masks)
    log_probs = th.stack([distribution.log_prob(th.tensor([cell, cell])) for cell in range(12)], dim=1)
    assert th.allclose(log_probs, expected)
    assert th.allclose(log_probs.exp().sum(dim=1), th.ones(2))
    # Exact entropy before any action is scored: that of the flat distribution
    fresh, _, _ = _factored()
    fresh.apply_masking(masks.flatten(start_dim=1))
    flat_entropy = -(expected.exp() * expected.masked_fill(~masks.flatten(start_dim=1), 0.0)).sum(-1)
    assert th.allclose(fresh.entropy(), flat_entropy)
    # Samples keep to the masks and follow the probabilities
    draws = th.stack([distribution.sample() for _ in range(3000)])
    assert masks.flatten(start_dim=1).gather(1, draws.T).all()
    frequency = th.stack([th.bincount(draws[:, i], minlength=12) for i in range(2)]) / 3000
    assert th.allclose(frequency, expected.exp().detach(), atol=0.04)
    # The mode: the most probable cell
    assert th.equal(distribution.mode(), expected.argmax(dim=-1))


def test_factored_entropy_estimates_columns_at_the_scored_rows() -> None:
    distribution, head, tokens = _factored()
    distribution.apply_masking(None)
    actions = th.tensor([5, 8])  # rows 1 and 2
    distribution.log_prob(actions)
    row = th.log_softmax(head.row(tokens).squeeze(-1), dim=-1)
    column = th.log_softmax(head.column(tokens[th.arange(2), actions // 4]), dim=-1)
    expected = -(row.exp() * row).sum(-1) - (column.exp() * column).sum(-1)
    assert th.allclose(distribution.entropy(), expected)
    distribution.entropy().sum().backward()
    assert th.isfinite(tokens.grad).all()


@pytest.mark.parametrize("draw", ["sample", "mode"])
def test_factored_entropy_after_drawing_estimates_columns_at_the_drawn_rows(draw: str) -> None:
    distribution, head, tokens = _factored(seed=3)
    masks = th.tensor([[[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], [[0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]]]).bool()
    distribution.apply_masking(masks.flatten(start_dim=1))
    rows = getattr(distribution, draw)() // 4
    row = th.log_softmax(head.row(tokens).squeeze(-1).masked_fill(~masks.any(dim=-1), -math.inf), dim=-1)
    column = th.log_softmax(head.column(tokens[th.arange(2), rows]).masked_fill(~masks[th.arange(2), rows], -math.inf), -1)
    expected = -(row.exp() * row.nan_to_num(neginf=0.0)).sum(-1) - (column.exp() * column.nan_to_num(neginf=0.0)).sum(-1)
    assert th.allclose(distribution.entropy(), expected)


def test_factored_log_prob_of_the_sampled_actions_reuses_their_column_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    distribution, head, tokens = _factored(seed=5)
    masks = th.tensor([[[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], [[0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]]]).bool()
    distribution.apply_masking(masks.flatten(start_dim=1))
    scored = []
    column_logits = head.column_logits

    def counted_column_logits(tokens: th.Tensor, rows: th.Tensor, *args: object) -> th.Tensor:
        scored.append(rows)
        return column_logits(tokens, rows, *args)

    monkeypatch.setattr(head, "column_logits", counted_column_logits)
    actions = distribution.sample()
    log_prob = distribution.log_prob(actions)
    assert len(scored) == 1
    assert th.allclose(log_prob, _flat_log_probs(head, tokens, masks).gather(1, actions.unsqueeze(-1)).squeeze(-1))
    other = (actions + 4) % 12  # the next row (from row 0 or 2: another one), each item's rows scored anew
    distribution.log_prob(other)
    assert len(scored) == 2 and th.equal(scored[-1], other // 4)


def test_factored_distribution_leaves_an_item_without_allowed_cells_unmasked() -> None:
    distribution, _, tokens = _factored()
    masks = th.zeros(2, 12, dtype=th.bool)
    masks[1, 7] = True
    distribution.apply_masking(masks)
    assert (distribution.sample()[1] == 7).item()
    loss = distribution.log_prob(th.tensor([3, 7])).sum() + distribution.entropy().sum()
    loss.backward()
    assert th.isfinite(loss) and th.isfinite(tokens.grad).all()


def test_token_policy_with_another_extractor() -> None:
    env = gym.make("LinguisticParse-v0")
    policy_kwargs = dict(features_extractor_class=TokenConvExtractor, features_extractor_kwargs=dict(embed_dim=8))
    model = MaskablePPO(MaskableTokenPolicy, env, n_steps=32, batch_size=32, policy_kwargs=policy_kwargs)
    assert model.policy.features_extractor.features_dim == env.unwrapped.obs_len * 8


def test_pooled_features_are_refused_with_a_fix() -> None:
    env = gym.make("LinguisticParse-v0")
    with pytest.raises(ValueError, match="pooling='tokens'"):
        MaskablePPO(MaskableTokenPolicy, env, policy_kwargs=dict(net_arch=dict(pi=[33], vf=[8])))


def test_masked_cells_are_never_chosen() -> None:
    env = gym.make("LinguisticParse-v0")
    model = MaskablePPO(MaskableTokenPolicy, env, n_steps=32, batch_size=32, seed=1)
    obs, _ = env.reset(seed=3)
    for _ in range(10):
        mask = env.unwrapped.action_masks()
        action, _ = model.predict(obs, action_masks=mask)
        assert mask[int(action)]
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert np.asarray(obs["history"]).sum() > 0


@pytest.mark.parametrize("env_id", ["LinguisticParse-v0", "LinguisticParseGoal-v0"])
def test_token_dqn_policy_trains_with_and_without_her(env_id: str) -> None:
    env = gym.make(env_id, max_steps=16)
    her = dict(replay_buffer_class=HerReplayBuffer, replay_buffer_kwargs=dict(n_sampled_goal=2)) if "Goal" in env_id else {}
    policy_kwargs = dict(features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16))
    model = DQN(
        TokenDQNPolicy, env, learning_starts=64, buffer_size=1000, batch_size=16, policy_kwargs=policy_kwargs, seed=0, **her
    )
    head = model.policy.q_net.q_net[0]
    assert isinstance(head, TokenActionHead)
    before = head.linear.weight.detach().clone()
    model.learn(160)
    assert not th.equal(before, head.linear.weight)
    obs, _ = env.reset(seed=0)
    q_values = model.policy.q_net(model.policy.obs_to_tensor(obs)[0])
    assert q_values.shape == (1, env.action_space.n)


def _played_obs(env: gym.Env, n_actions: int) -> dict[str, np.ndarray]:
    """An observation after ``n_actions`` expert actions on a fresh sentence."""
    obs, _ = env.reset(seed=3)
    for _ in range(n_actions):
        obs, *_ = env.step(env.unwrapped.expert_action())
    return obs


@pytest.mark.parametrize("env_id", ["LinguisticParse-v0", "LinguisticParseGoal-v0"])
def test_token_dqn_policy_ranks_wasted_cells_last_without_gradient(env_id: str) -> None:
    env = gym.make(env_id, obs_len=16)  # rows past any sentence: padding cells are wasted too
    policy_kwargs = dict(features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16))
    model = DQN(TokenDQNPolicy, env, learning_starts=0, buffer_size=100, policy_kwargs=policy_kwargs, seed=0)
    obs = _played_obs(env, 3)
    wasted = ~env.unwrapped.action_masks()  # padding rows and the 3 cells set
    assert wasted.sum() > 3 and not wasted.all()
    obs_tensor = model.policy.obs_to_tensor(obs)[0]
    q_values = model.policy.q_net(obs_tensor)[0]
    assert q_values[wasted].max() < q_values[~wasted].min()
    q_values[wasted].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.policy.q_net.parameters())
    for seed in range(5):  # whatever the weights, the greedy action can change the state
        th.manual_seed(seed)
        model.policy.q_net.q_net[0].linear.reset_parameters()
        assert not wasted[model.predict(obs, deterministic=True)[0]]


def test_token_dqn_policy_without_masking_scores_every_cell() -> None:
    env = gym.make("LinguisticParse-v0")
    policy_kwargs = dict(mask_wasted=False, features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16))
    model = DQN(TokenDQNPolicy, env, learning_starts=0, buffer_size=100, policy_kwargs=policy_kwargs, seed=0)
    obs_tensor = model.policy.obs_to_tensor(_played_obs(env, 3))[0]
    q_values = model.policy.q_net(obs_tensor)
    q_values.sum().backward()
    head_grad = model.policy.q_net.q_net[0].linear.weight.grad
    assert head_grad is not None and head_grad.abs().sum(dim=1).all()  # every column gets a gradient


def test_token_dqn_policy_keeps_mask_wasted_through_save_and_load(tmp_path: Path) -> None:
    env = gym.make("LinguisticParse-v0")
    policy_kwargs = dict(mask_wasted=False, features_extractor_kwargs=dict(embed_dim=16, n_layers=1, n_heads=2, ff_dim=16))
    model = DQN(TokenDQNPolicy, env, learning_starts=0, buffer_size=100, policy_kwargs=policy_kwargs, seed=0)
    model.save(tmp_path / "dqn")
    loaded = DQN.load(tmp_path / "dqn")
    assert loaded.policy.q_net.mask_wasted is False and loaded.policy.q_net_target.mask_wasted is False


N_ACTIONS = 100_000
ALLOWED = [5, 77, N_ACTIONS - 1]


def _masked_logits(offset: float, dtype: th.dtype) -> tuple[th.Tensor, th.Tensor]:
    """Two rows of random logits over 10^5 actions, of which three are allowed, at ``offset`` + 0, 1, 2."""
    generator = th.Generator().manual_seed(0)
    logits = (3 * th.randn(2, N_ACTIONS, generator=generator)).to(dtype)
    allowed = th.zeros(2, N_ACTIONS, dtype=th.bool)
    allowed[:, ALLOWED] = True
    logits[:, ALLOWED] = (offset + th.tensor([0.0, 1.0, 2.0])).to(dtype)
    return logits.requires_grad_(), allowed


@pytest.mark.parametrize("offset", [0.0, 1e9, -1e9])
def test_exact_masking_at_any_logit_scale(offset: float) -> None:
    # sb3-contrib's -1e8 fill fails at -1e9: the masked actions get all the probability
    logits, allowed = _masked_logits(offset, th.float32)
    distribution = ExactMaskableCategorical(logits=logits, masks=allowed)
    # The reference: a softmax over the allowed logits alone, in float64, of the same float32 values
    expected = th.softmax(logits.detach()[:, ALLOWED].double(), dim=-1)
    probs = distribution.probs
    assert not probs[~allowed].any(), "a masked action has a nonzero probability"
    assert th.allclose(probs[:, ALLOWED].double(), expected, atol=1e-6)
    samples = distribution.sample((200,))
    assert allowed.gather(1, samples.T).all()
    log_prob = distribution.log_prob(th.tensor([ALLOWED[0], ALLOWED[2]]))
    assert th.allclose(log_prob.double(), expected.log()[[0, 1], [0, 2]], atol=1e-5)
    entropy = distribution.entropy()
    assert th.allclose(entropy.double(), -(expected * expected.log()).sum(-1), atol=1e-5)
    (log_prob.sum() + entropy.sum()).backward()
    assert logits.grad is not None and th.isfinite(logits.grad).all()
    assert logits.grad[~allowed].abs().max() < 1e-9, "a masked logit got a gradient"  # (rounding of a constant that cancels)


@pytest.mark.parametrize("dtype", [th.float16, th.bfloat16, th.float64])
def test_exact_masking_in_other_precisions(dtype: th.dtype) -> None:
    # In float16 sb3-contrib's -1e8 is -inf: its gradients are NaN
    logits, allowed = _masked_logits(0.0, dtype)
    distribution = ExactMaskableCategorical(logits=logits, masks=allowed)
    loss = distribution.log_prob(th.tensor(ALLOWED[:2])).sum() + distribution.entropy().sum()
    loss.backward()
    assert logits.grad is not None and th.isfinite(logits.grad).all()
    reference = ExactMaskableCategorical(logits=logits.detach().float(), masks=allowed)
    assert th.allclose(distribution.entropy().float(), reference.entropy(), atol=2e-2)
    assert not distribution.probs[~allowed].any()


def test_row_without_allowed_action_is_left_unmasked() -> None:
    logits, allowed = _masked_logits(0.0, th.float32)
    allowed[1] = False
    distribution = ExactMaskableCategorical(logits=logits, masks=allowed)
    assert th.isfinite(distribution.entropy()).all()
    assert th.allclose(distribution.probs[1], th.softmax(logits.detach()[1], dim=-1))
    assert not distribution.probs[0][~allowed[0]].any()
    # Removing the masks restores the original distribution
    distribution.apply_masking(None)
    assert th.allclose(distribution.probs, th.softmax(logits.detach(), dim=-1))


def _rollout_space(n_rows: int, n_columns: int) -> spaces.Dict:
    return spaces.Dict(
        {"text": spaces.Box(0, 1, (n_rows, 3), np.uint8), "history": spaces.Box(0, 1, (n_rows, n_columns), np.uint8)}
    )


def test_bit_mask_buffer_gives_back_the_masks_of_each_sample() -> None:
    n_steps, n_envs, n_actions = 6, 3, 4 * 13  # 52 actions: not a multiple of 8
    space = _rollout_space(4, 13)
    buffer = BitMaskDictRolloutBuffer(n_steps, space, spaces.Discrete(n_actions), device="cpu", n_envs=n_envs)
    rng = np.random.default_rng(0)
    masks = rng.random((n_steps, n_envs, n_actions)) < 0.3
    for step in range(n_steps):
        obs = {key: np.full((n_envs, *box.shape), 0, np.uint8) for key, box in space.spaces.items()}
        obs["text"][:, 0, 0] = step  # which step a sample comes from, read back below
        obs["history"] = (rng.random((n_envs, *space["history"].shape)) < 0.2).astype(np.uint8)
        actions = np.arange(n_envs)  # which env
        zeros = th.zeros(n_envs)
        buffer.add(obs, actions, np.zeros(n_envs), np.zeros(n_envs), zeros, zeros, action_masks=masks[step])
    assert buffer.action_masks.nbytes == n_steps * n_envs * math.ceil(n_actions / 8)
    seen = 0
    for batch in buffer.get(batch_size=5):
        assert batch.action_masks.dtype == th.bool and batch.action_masks.shape[1] == n_actions
        for key, matrix in batch.observations.items():  # found once for the rollout, as the minibatch's own
            assert th.equal(batch.observations.found[key], matrix.flatten().nonzero().squeeze(-1))
        for obs_text, env_index, mask in zip(batch.observations["text"], batch.actions, batch.action_masks, strict=True):
            assert np.array_equal(mask.numpy(), masks[int(obs_text[0, 0]), int(env_index)])
            seen += 1
    assert seen == n_steps * n_envs


def test_bit_mask_buffer_minibatches_are_their_own_copies() -> None:
    # The buffer hands out its arrays without copying them again: writing into a minibatch must not reach the rollout
    buffer = BitMaskDictRolloutBuffer(2, _rollout_space(2, 5), spaces.Discrete(10), device="cpu", n_envs=2)
    for _ in range(2):
        obs = {"text": np.ones((2, 2, 3), np.uint8), "history": np.zeros((2, 2, 5), np.uint8)}
        buffer.add(obs, np.zeros(2), np.ones(2), np.zeros(2), th.zeros(2), th.zeros(2), action_masks=np.ones((2, 10)))
    buffer.compute_returns_and_advantage(last_values=th.zeros(2), dones=np.zeros(2))
    for batch in buffer.get():
        for tensor in (*batch.observations.values(), batch.actions, batch.returns, batch.advantages, batch.action_masks):
            tensor.zero_()
    for batch in buffer.get():
        assert batch.observations["text"].all() and batch.action_masks.all() and batch.returns.ne(0).all()


def test_bit_mask_buffer_allows_everything_until_told_otherwise() -> None:
    buffer = BitMaskDictRolloutBuffer(2, _rollout_space(2, 5), spaces.Discrete(10), device="cpu")
    for _ in range(2):
        obs = {"text": np.zeros((1, 2, 3), np.uint8), "history": np.zeros((1, 2, 5), np.uint8)}
        buffer.add(obs, np.zeros(1), np.zeros(1), np.zeros(1), th.zeros(1), th.zeros(1))
    assert all(batch.action_masks.all() for batch in buffer.get())


def test_bit_mask_buffer_refuses_other_action_spaces() -> None:
    with pytest.raises(ValueError, match=r"spaces.Discrete.*MaskableDictRolloutBuffer"):
        BitMaskDictRolloutBuffer(4, _rollout_space(2, 5), spaces.MultiDiscrete([3, 4]), device="cpu")


def _lexicon_grammar(n_nouns: int) -> RuleSet:
    """'the N V the N' with ``n_nouns`` nouns: one rule per noun, so the rules are the columns of a wide history."""
    nouns = "".join(f"n{i} => N\n" for i in range(n_nouns))
    return RuleSet.from_text(f"%start S\nNP VP => S\nDet N => NP\nV NP => VP\nthe => Det\nsees => V\n{nouns}")


@pytest.mark.parametrize("policy", [MaskableTokenPolicy, FactoredMaskableTokenPolicy])
def test_maskable_token_policies_train_at_1e5_actions(policy: type) -> None:
    obs_len = 24
    ruleset = _lexicon_grammar(math.ceil(N_ACTIONS / obs_len))
    # mask_mode="oracle" allows the chart's cells only: about 10 of the 10^5 actions
    env = gym.make(
        "LinguisticParse-v0",
        grammar=ruleset,
        min_len=5,
        max_len=5,
        obs_len=obs_len,
        n_sentences=16,
        max_steps=8,
        mask_mode="oracle",
    )
    n_actions = int(env.action_space.n)
    assert n_actions >= N_ACTIONS
    policy_kwargs = dict(features_extractor_kwargs=dict(embed_dim=8, n_layers=1, n_heads=2, ff_dim=8))
    model = MaskablePPO(
        policy,
        env,
        n_steps=32,
        batch_size=16,
        n_epochs=1,
        policy_kwargs=policy_kwargs,
        rollout_buffer_class=BitMaskDictRolloutBuffer,
        seed=0,
    )
    flat = policy is MaskableTokenPolicy
    assert isinstance(model.policy.action_dist, ExactMaskableCategoricalDistribution if flat else FactoredMaskableDistribution)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(32)  # one rollout, one update of two minibatches
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    buffer = model.rollout_buffer
    # The masks of the rollout: 1 bit per action (sb3-contrib's float32 masks would take 32 times more)
    assert buffer.action_masks.nbytes == 32 * math.ceil(n_actions / 8)
    # Every action the rollout took was allowed by the mask stored with it
    batch = next(buffer.get())
    assert batch.action_masks.gather(1, batch.actions.long()).all()
    assert (batch.action_masks.sum(dim=1) <= 20).all()  # all but a few actions masked
    # A greedy action on a fresh sentence is allowed
    obs, _ = env.reset(seed=1)
    mask = env.unwrapped.action_masks()
    action, _ = model.predict(obs, action_masks=mask, deterministic=True)
    assert mask[int(action)]


def test_token_policies_read_the_stored_uint8_observation_as_sb3s_float32_copy() -> None:
    env = gym.make("LinguisticParse-v0", observe_derived=True)
    model = MaskablePPO(FactoredMaskableTokenPolicy, env, n_steps=16, batch_size=16, policy_kwargs=dict(grammar="english"))
    obs, _ = env.reset(seed=0)
    for _ in range(3):  # some history and derived constituents
        obs, *_ = env.step(env.unwrapped.expert_action())
    stored, _ = model.policy.obs_to_tensor(obs)
    assert stored["history"].dtype == th.uint8 and stored["derived"].any()
    as_float = {key: value.float() for key, value in stored.items()}
    read = []  # the dtype the extractor gets: not preprocess_obs's float32 copy
    model.policy.features_extractor.register_forward_pre_hook(lambda _, inputs: read.append(inputs[0]["history"].dtype))
    masks = env.unwrapped.action_masks()[None]
    actions = th.as_tensor(np.flatnonzero(masks[0])[:1])
    with th.no_grad():
        assert th.equal(model.policy.extract_features(stored), model.policy.extract_features(as_float))
        values, log_prob, entropy = model.policy.evaluate_actions(stored, actions, action_masks=masks)
        float_values, float_log_prob, float_entropy = model.policy.evaluate_actions(as_float, actions, action_masks=masks)
    assert th.allclose(values, float_values) and th.allclose(log_prob, float_log_prob)
    assert th.allclose(entropy, float_entropy)
    assert read[0] == th.uint8
