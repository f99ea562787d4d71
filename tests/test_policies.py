from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO, HerReplayBuffer

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing.extractors import TokenConvExtractor
from sb3_parsing.policies import MaskableTokenPolicy, TokenActionHead, TokenDQNPolicy, TokenPolicy


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


def test_token_policy_with_another_extractor() -> None:
    env = gym.make("LinguisticParse-v0")
    policy_kwargs = dict(features_extractor_class=TokenConvExtractor, features_extractor_kwargs=dict(embed_dim=8))
    model = MaskablePPO(MaskableTokenPolicy, env, n_steps=32, batch_size=32, policy_kwargs=policy_kwargs)
    assert model.policy.features_extractor.features_dim == 16 * 8


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
    env = gym.make(env_id)
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
