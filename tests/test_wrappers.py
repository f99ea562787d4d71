import pickle
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env

import sb3_parsing  # noqa: F401  (registers the env ids)
from sb3_parsing import DEFAULT_ENV_KWARGS
from sb3_parsing.env import LinguisticParseEnv
from sb3_parsing.grammar import RuleSet
from sb3_parsing.wrappers import LinguisticParseGoalEnv, constituents_of, encode_constituents, make_goal_env

GOAL_ID = "LinguisticParseGoal-v0"

# Grammars the package does not ship, each with a feature the goal encoding must survive.
CUSTOM = {
    # left recursion, unary chains, quoted punctuation, a terminal spelled like a label
    "calc": """
        %start E
        E '+' T => E
        E '*' T => E
        T => E
        F => T
        '(' E ')' => F
        N => F
        "N" => N
        x => N
    """,
    # two goal labels, a long unary chain and an ambiguous binary rule
    "chains": """
        %start S Q
        A A => A
        a => A
        A => B
        B => C
        C => S
        C '?' => Q
    """,
    # comment, directive and arrow characters as tokens, in an ambiguous binary rule
    "symbols": """
        %start S
        S '#' S => S
        '%' => S
        b '=>' => S
    """,
}
SMALL = dict(min_len=1, max_len=6, n_sentences=40)


def _goal_env(grammar: str | RuleSet, **kwargs: Any) -> LinguisticParseGoalEnv:
    if isinstance(grammar, str) and grammar in CUSTOM:
        grammar = RuleSet.from_text(CUSTOM[grammar], grammar)
    return make_goal_env(grammar=grammar, **{**SMALL, **kwargs})


def _rollout(env: LinguisticParseGoalEnv, n_steps: int, seed: int, expert_share: float = 0.5) -> dict[str, Any]:
    """Random (and partly expert) transitions; every per-step invariant of the goal env is checked on the way."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    episode = 0
    data: dict[str, list] = {key: [] for key in ("achieved", "desired", "reward", "info", "episode")}
    for _ in range(n_steps):
        if rng.random() < expert_share:
            action = env.expert_action()
        else:
            action = int(rng.integers(env.action_space.n))
        previous = obs["achieved_goal"]
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        achieved, desired = obs["achieved_goal"], obs["desired_goal"]
        single = env.compute_reward(achieved, desired, info)
        assert isinstance(single, float)
        assert reward == single
        assert (reward == 0.0) == info["is_success"] == terminated
        assert constituents_of(desired) == [env.root_constituent()]
        history = set(np.flatnonzero(obs["history"]).tolist())
        assert constituents_of(achieved) == sorted(env.analysis.derived_constituents(history))
        assert np.all(achieved >= previous), "achieved goals only grow during an episode"
        n_tokens = len(env.analysis.tokens)
        assert not achieved[n_tokens:].any() and not desired[n_tokens:].any(), "padding rows of the goals stay zero"
        for key, value in (("achieved", achieved), ("desired", desired), ("reward", reward), ("info", info)):
            data[key].append(value)
        data["episode"].append(episode)
        if terminated or truncated:
            obs, info = env.reset()
            episode += 1
    return {key: np.array(values) if key != "info" else values for key, values in data.items()}


def _check_batches(env: LinguisticParseGoalEnv, data: dict[str, Any], rng: np.random.Generator) -> None:
    """Batched compute_reward equals the step rewards and the single calls on relabeled goals (sets, one constituent)."""
    rewards = env.compute_reward(data["achieved"], data["desired"], data["info"])
    assert isinstance(rewards, np.ndarray)
    assert rewards.shape == (len(data["reward"]),)
    np.testing.assert_array_equal(rewards, data["reward"])
    # "future" relabeling: the desired goal becomes a later achieved goal of the same episode (SB3's HerReplayBuffer)
    index = np.arange(len(data["reward"]))
    last = np.array([index[data["episode"] == e].max() for e in data["episode"]])
    future = rng.integers(index, last + 1)
    relabeled = env.compute_reward(data["achieved"], data["achieved"][future], np.array(data["info"]))
    singles = [
        env.compute_reward(data["achieved"][i], data["achieved"][j], data["info"][i])
        for i, j in zip(index, future, strict=True)
    ]
    np.testing.assert_array_equal(relabeled, singles)
    # the next state reaches its own future goal exactly when nothing more is achieved later
    np.testing.assert_array_equal(relabeled == 0, np.all(data["achieved"] == data["achieved"][future], axis=(1, 2)))
    # one constituent of the future achieved set (ConstituentHerReplayBuffer): reached iff already derived
    shape = env.observation_space["desired_goal"].shape
    for i, j in zip(index, future, strict=True):
        for constituent in constituents_of(data["achieved"][j])[:3]:
            goal = encode_constituents([constituent], *shape[:1], env.n_labels)
            expected = 0.0 if constituent in constituents_of(data["achieved"][i]) else -1.0
            assert env.compute_reward(data["achieved"][i], goal, {}) == expected


# --- spaces and the goal encoding ------------------------------------------------------------------
@pytest.mark.parametrize("columns", ["rules", "labels"])
def test_spaces_shapes_and_dtypes(columns: str) -> None:
    env = make_goal_env(**{**DEFAULT_ENV_KWARGS, "columns": columns})
    goal_shape = (env.obs_len, env.ruleset.n_labels * env.obs_len)
    assert set(env.observation_space.spaces) == {"text", "history", "achieved_goal", "desired_goal"}
    plain = LinguisticParseEnv(**{**DEFAULT_ENV_KWARGS, "columns": columns})
    for key in ("text", "history"):
        assert env.observation_space[key] == plain.observation_space[key]
    for key in ("achieved_goal", "desired_goal"):
        space = env.observation_space[key]
        assert isinstance(space, spaces.Box)
        assert space.shape == goal_shape
        assert space.dtype == np.uint8
    assert env.action_space == plain.action_space
    obs, _ = env.reset(seed=1)
    obs2, *_ = env.step(env.action_space.sample())
    for observation in (obs, obs2):
        assert env.observation_space.contains(observation)
        for key, value in observation.items():
            assert value.dtype == np.uint8 and value.shape == env.observation_space[key].shape


def test_encoding_layout_and_round_trip() -> None:
    constituents = [(0, 5, 2), (0, 1, 0), (3, 5, 2), (4, 5, 1)]
    goal = encode_constituents(constituents, obs_len=6, n_labels=3)
    assert goal.shape == (6, 18) and goal.sum() == 4
    assert goal[0, 2 * 6 + 4] == 1  # row = start, column = label * obs_len + length - 1
    assert goal.reshape(6, 3, 6)[3, 2, 1] == 1
    assert constituents_of(goal) == sorted(constituents)
    assert constituents_of(np.zeros_like(goal)) == []


def test_desired_goal_is_the_root_constituent_only() -> None:
    env = _goal_env("english", max_len=10)
    obs, info = env.reset(seed=0)
    root = (0, len(info["sentence"].split()), env.ruleset.labels.index("S"))
    desired = obs["desired_goal"]
    assert constituents_of(desired) == [root]
    for _ in range(40):
        np.testing.assert_array_equal(obs["desired_goal"], desired)
        assert root not in constituents_of(obs["achieved_goal"])
        obs, reward, terminated, truncated, _ = env.step(env.expert_action())
        if terminated or truncated:
            break
    assert terminated and reward == 0.0 and root in constituents_of(obs["achieved_goal"])


def test_the_first_spanning_goal_label_is_the_root() -> None:
    # both S and Q span "a a": the root is the first goal label of %start that spans the sentence
    text = """
        %start Q S
        a => A
        A A => S
        A A => Q
        A => Q
    """
    env = make_goal_env(grammar=RuleSet.from_text(text, "two_roots"), sentences=["a a", "a"], split="all", columns="labels")
    obs, _ = env.reset(options={"sentence": "a a"})
    assert constituents_of(obs["desired_goal"]) == [(0, 2, env.ruleset.labels.index("Q"))]
    obs, _ = env.reset(options={"sentence": "a"})
    assert constituents_of(obs["desired_goal"]) == [(0, 1, env.ruleset.labels.index("Q"))]


# --- what achieved_goal means --------------------------------------------------------------------
def test_achieved_goal_needs_the_whole_derivation() -> None:
    rs = RuleSet.from_text(CUSTOM["calc"], "calc")
    env = make_goal_env(grammar=rs, sentences=["x", "x + x"], split="all", columns="rules")
    rule = {str(r): i for i, r in enumerate(rs.rules)}

    def cell(position: int, text: str) -> int:
        return position * rs.n_rules + rule[text]

    def achieved(obs: dict[str, np.ndarray]) -> set[tuple[int, int, str]]:
        return {(start, end, rs.labels[label]) for start, end, label in constituents_of(obs["achieved_goal"])}

    obs, _ = env.reset(options={"sentence": "x"})
    # top of the unary chain first: nothing below it is set, so nothing is derived
    obs, reward, *_ = env.step(cell(0, "T => E"))
    assert achieved(obs) == set() and reward == -1.0
    steps = [("x => N", "N"), ("N => F", "F"), ("F => T", "T")]
    expected: set[tuple[int, int, str]] = set()
    for text, name in steps[:-1]:
        obs, reward, terminated, *_ = env.step(cell(0, text))
        expected.add((0, 1, name))
        assert achieved(obs) == expected and reward == -1.0 and not terminated
    obs, reward, terminated, _, info = env.step(cell(0, "F => T"))
    # completing the chain derives T and, with T => E already set, E: the whole sentence is parsed
    assert achieved(obs) == {(0, 1, "N"), (0, 1, "F"), (0, 1, "T"), (0, 1, "E")}
    assert reward == 0.0 and terminated and info["is_success"]

    obs, _ = env.reset(options={"sentence": "x + x"})
    for text in ("x => N", "N => F", "F => T"):
        obs, *_ = env.step(cell(2, text))
    assert achieved(obs) == {(2, 3, "N"), (2, 3, "F"), (2, 3, "T")}  # the right operand, at position 2
    obs, *_ = env.step(cell(2, "F => T"))  # a wasted attempt changes nothing
    assert achieved(obs) == {(2, 3, "N"), (2, 3, "F"), (2, 3, "T")}
    for position, text in ((0, "x => N"), (0, "N => F"), (0, "F => T"), (0, "T => E")):
        obs, reward, *_ = env.step(cell(position, text))
    assert (0, 1, "E") in achieved(obs) and reward == -1.0  # the left operand is an E, not yet the sentence
    obs, reward, terminated, *_ = env.step(cell(0, "E + T => E"))
    assert (0, 3, "E") in achieved(obs) and reward == 0.0 and terminated


def test_success_and_the_root_agree_on_ambiguous_sentences() -> None:
    env = _goal_env("english", max_len=10)
    data = _rollout(env, 600, seed=3, expert_share=0.7)
    assert data["reward"].max() == 0.0 and data["reward"].min() == -1.0  # both outcomes occurred


# --- compute_reward ------------------------------------------------------------------------------
def test_compute_reward_single_and_batch() -> None:
    env = _goal_env("arithmetic")
    obs_len, n_labels = env.obs_len, env.n_labels
    desired = encode_constituents([(0, 3, 0)], obs_len, n_labels)
    achieved = np.zeros_like(desired)
    assert env.compute_reward(achieved, desired, {}) == -1.0
    assert isinstance(env.compute_reward(achieved, desired, {}), float)
    achieved = encode_constituents([(0, 3, 0), (1, 2, 1)], obs_len, n_labels)  # achieving more still succeeds
    assert env.compute_reward(achieved, desired, {}) == 0.0
    assert env.compute_reward(desired, achieved, {}) == -1.0
    # another span or label of the same start is another constituent
    for other in ((0, 2, 0), (0, 3, 1), (1, 3, 0)):
        assert env.compute_reward(encode_constituents([other], obs_len, n_labels), desired, {}) == -1.0
    batch_achieved = np.stack([achieved, np.zeros_like(achieved), achieved])
    batch_desired = np.stack([desired] * 3)
    rewards = env.compute_reward(batch_achieved, batch_desired, [{}, {}, {}])
    assert isinstance(rewards, np.ndarray) and rewards.shape == (3,) and rewards.dtype == np.float32
    np.testing.assert_array_equal(rewards, [0.0, -1.0, 0.0])
    np.testing.assert_array_equal(env.compute_reward(batch_achieved, desired, None), rewards)  # broadcast
    grid = env.compute_reward(np.stack([batch_achieved, batch_achieved]), batch_desired, np.array([{}] * 6).reshape(2, 3))
    assert grid.shape == (2, 3)
    np.testing.assert_array_equal(env.compute_reward(batch_achieved.astype(np.float32), batch_desired, None), rewards)
    with pytest.raises(ValueError, match="obs_len"):
        env.compute_reward(achieved.reshape(-1), desired.reshape(-1), {})


@pytest.mark.parametrize("grammar", ["english", "arithmetic", "dyck", *CUSTOM])
@pytest.mark.parametrize("columns", ["rules", "labels"])
def test_step_rewards_equal_compute_reward(grammar: str, columns: str) -> None:
    env = _goal_env(grammar, columns=columns)
    data = _rollout(env, 800, seed=len(grammar))
    assert (data["reward"] == 0.0).any(), "the rollout should win some episodes"
    _check_batches(env, data, np.random.default_rng(0))


@st.composite
def _rulesets(draw: st.DrawFn) -> str:
    """
    Random grammars: every label has an all-terminal rule (so it is productive), unary chain rules only go
    to a lower label (so there are no unary cycles), longer patterns are free (left recursion, ambiguity).
    """
    n_labels = draw(st.integers(1, 4))
    labels = [f"L{i}" for i in range(n_labels)]
    terminals = ["a", "b", "'+'", "'('", "')'", '"L0"']
    rules: dict[str, None] = {}
    for i, label in enumerate(labels):
        base = draw(st.lists(st.sampled_from(terminals), min_size=1, max_size=2))
        rules[f"{' '.join(base)} => {label}"] = None
        for _ in range(draw(st.integers(0, 2))):
            if i + 1 < n_labels and draw(st.booleans()):
                pattern = [draw(st.sampled_from(labels[i + 1 :]))]
            else:
                pattern = draw(st.lists(st.sampled_from(labels + terminals), min_size=2, max_size=3))
            rules[f"{' '.join(pattern)} => {label}"] = None
    return "%start L0\n" + "\n".join(rules)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_rulesets(), columns=st.sampled_from(["rules", "labels"]), seed=st.integers(0, 2**16))
def test_step_rewards_equal_compute_reward_on_random_grammars(text: str, columns: str, seed: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreachable labels
        rs = RuleSet.from_text(text, "random")
    env = make_goal_env(grammar=rs, columns=columns, split="all", min_len=1, max_len=5, n_sentences=20)
    data = _rollout(env, 250, seed=seed)
    _check_batches(env, data, np.random.default_rng(seed))


# --- the env around the goals ----------------------------------------------------------------------
def test_masks_and_expert_pass_through() -> None:
    env = gym.make(GOAL_ID, mask_mode="oracle")
    env.reset(seed=4)
    base = env.unwrapped
    assert isinstance(base, LinguisticParseEnv)
    for _ in range(5):
        np.testing.assert_array_equal(env.get_wrapper_attr("action_masks")(), base.action_masks())
        assert env.get_wrapper_attr("expert_action")() == base.expert_action()
        env.step(env.get_wrapper_attr("expert_action")())
    vec_env = make_vec_env(GOAL_ID, n_envs=2, seed=0)
    vec_env.reset()
    masks = get_action_masks(vec_env)
    assert masks.shape == (2, vec_env.action_space.n) and masks.dtype == bool  # type: ignore[attr-defined]


def test_sb3_env_checker_checks_the_goal_api() -> None:
    # SB3's check_env treats an env as a goal env when env.unwrapped has compute_reward, and calls it on the env it is
    # given (gym.make's OrderEnforcing does not forward it): give it the env itself
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 2-D Boxes have an "unconventional shape"
        check_env(make_goal_env(**DEFAULT_ENV_KWARGS))
        check_env(gym.make(GOAL_ID, mask_mode="oracle", columns="labels").unwrapped)


def test_sb3_env_checker_catches_a_wrong_compute_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LinguisticParseGoalEnv, "compute_reward", lambda self, achieved, desired, info: 12345.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(AssertionError, match="compute_reward"):
            check_env(make_goal_env(**DEFAULT_ENV_KWARGS))


def test_registered_like_the_plain_env() -> None:
    plain, goal = gym.spec("LinguisticParse-v0"), gym.spec(GOAL_ID)
    assert goal.kwargs == plain.kwargs
    env = gym.make(GOAL_ID)
    assert isinstance(env.unwrapped, LinguisticParseGoalEnv) and isinstance(env.unwrapped, LinguisticParseEnv)
    plain = gym.make("LinguisticParse-v0")
    obs, info = env.reset(seed=7)
    plain_obs, plain_info = plain.reset(seed=7)
    for _ in range(5):  # the same sentences, episode after episode
        assert info == plain_info
        for key in ("text", "history"):
            np.testing.assert_array_equal(obs[key], plain_obs[key])
        (obs, info), (plain_obs, plain_info) = env.reset(), plain.reset()


def test_same_seed_same_trajectory_and_pickling() -> None:
    def trajectory(env: gym.Env) -> list:
        env.reset(seed=11)
        env.action_space.seed(11)
        steps = []
        for _ in range(60):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            steps.append(({k: v.tolist() for k, v in obs.items()}, reward, terminated, truncated, info))
            if terminated or truncated:
                env.reset()
        return steps

    env = _goal_env("dyck")
    assert trajectory(env) == trajectory(_goal_env("dyck"))
    assert trajectory(pickle.loads(pickle.dumps(env))) == trajectory(env)
