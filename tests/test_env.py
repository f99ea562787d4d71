import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sb3_parsing import GrammarError, LinguisticParseEnv
from sb3_parsing.wrappers import constituents_of

PUNCTUATED = """
%start S
S ';' S => S
NP 'runs' => S
'the' N => NP
dog => N
cat => N
"""


def _rollout_expert(env: LinguisticParseEnv, seed: int) -> tuple[int, dict]:
    _, info = env.reset(seed=seed)
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.expert_action())
        steps += 1
        done = terminated or truncated
    assert terminated and not truncated and reward == env.success_reward
    return steps, info


def test_default_registration_spaces_and_info() -> None:
    env = gym.make("LinguisticParse-v0")
    inner = env.unwrapped
    assert isinstance(inner, LinguisticParseEnv)
    assert inner.ruleset.name == "english" and inner.columns == "rules"
    obs, info = env.reset(seed=0)
    assert set(obs) == {"text", "history"}
    assert obs["text"].dtype == obs["history"].dtype == np.uint8
    assert obs["text"].shape == (12, len(inner.ruleset.alphabet))  # obs_len follows max_len
    assert obs["history"].shape == (12, inner.ruleset.n_rules)
    assert env.action_space.n == 12 * inner.ruleset.n_rules
    tokens = info["sentence"].split()
    assert 3 <= len(tokens) <= 12
    assert obs["text"][: len(tokens)].sum(axis=1).tolist() == [1] * len(tokens)
    assert obs["text"][len(tokens) :].sum() == 0
    assert {"sentence", "n_parses", "min_actions", "n_actions", "matched", "dead_end", "is_success"} <= set(info)
    _, _, _, _, info = env.step(0)
    assert info["n_actions"] == 1


@pytest.mark.parametrize(
    "kwargs", [{}, {"columns": "labels"}, {"mask_mode": "oracle"}, {"grammar": "arithmetic"}, {"observe_derived": True}]
)
def test_checkers_pass(kwargs: dict) -> None:
    sb3_check_env(LinguisticParseEnv(**kwargs))
    gym_check_env(gym.make("LinguisticParse-v0", **kwargs).unwrapped)


def test_checkers_pass_for_a_custom_grammar_file(tmp_path) -> None:
    path = tmp_path / "punctuated.rules"
    path.write_text(PUNCTUATED)
    env = LinguisticParseEnv(grammar=str(path), min_len=3, max_len=8, split="all")
    sb3_check_env(env)
    gym_check_env(gym.make("LinguisticParse-v0", grammar=path, min_len=3, max_len=8, obs_len=8, split="all").unwrapped)


@pytest.mark.parametrize("columns", ["rules", "labels"])
@pytest.mark.parametrize("grammar", ["english", "arithmetic", "dyck"])
def test_expert_wins_every_episode_in_exactly_min_actions(grammar: str, columns: str) -> None:
    env = LinguisticParseEnv(grammar=grammar, columns=columns, min_len=1, max_len=10)
    for seed in range(15):
        steps, info = _rollout_expert(env, seed)
        assert steps == info["min_actions"] == info["n_actions"]
        assert info["is_success"]


def test_wasted_attempts_change_nothing() -> None:
    env = LinguisticParseEnv(max_len=12, obs_len=16)
    obs, info = env.reset(seed=1)
    n_tokens = len(info["sentence"].split())
    padding_action = n_tokens * env.n_columns  # first cell of the first padding row
    obs2, reward, terminated, _, info = env.step(padding_action)
    assert np.array_equal(obs2["history"], obs["history"]) and reward == 0 and not terminated
    obs3, *_ = env.step(3)
    obs4, reward, *_, info = env.step(3)
    assert np.array_equal(obs3["history"], obs4["history"])
    assert obs4["history"].sum() == 1 and info["n_actions"] == 3


def test_masks_follow_history_and_oracle() -> None:
    env = LinguisticParseEnv(mask_mode="history")
    _, info = env.reset(seed=2)
    n_cells = len(info["sentence"].split()) * env.n_columns
    mask = env.action_masks()
    assert mask.dtype == bool and mask.shape == (env.action_space.n,)
    assert mask[:n_cells].all() and not mask[n_cells:].any()
    env.step(5)
    assert not env.action_masks()[5]

    oracle_env = LinguisticParseEnv(mask_mode="oracle")
    oracle_env.reset(seed=2)
    analysis = oracle_env.analysis
    oracle_mask = oracle_env.action_masks()
    assert np.flatnonzero(oracle_mask).tolist() == analysis.chart_cells.tolist()
    gold, _ = analysis.cheapest_tree()
    assert all(oracle_mask[c] for c in gold)
    wrong = int(np.flatnonzero(~oracle_mask[:n_cells])[0])
    *_, info = oracle_env.step(wrong)
    assert not info["matched"]
    *_, info = oracle_env.step(min(gold))
    assert info["matched"]


def test_truncation_after_max_steps() -> None:
    env = LinguisticParseEnv(max_steps=5)
    env.reset(seed=0)
    for step in range(5):
        _, _, terminated, truncated, _ = env.step(env.action_space.n - 1)  # always a padding row: never wins
        assert not terminated
        assert truncated == (step == 4)


def test_reward_shaping() -> None:
    env = LinguisticParseEnv(success_reward=10.0, step_penalty=0.1, constituent_bonus=0.5)
    env.reset(seed=4)
    gold, _ = env.analysis.cheapest_tree()
    useful = np.zeros(env.analysis.n_cells, dtype=bool)
    useful[env.analysis.useful_cells] = True
    wrong = int(np.flatnonzero(~useful)[0])
    assert env.step(wrong)[1] == pytest.approx(-0.1)
    rewards, info = [], {"is_success": False}
    while not info["is_success"]:
        *_, reward, _, _, info = env.step(env.expert_action())
        rewards.append(reward)
    assert rewards[:-1] == pytest.approx([0.4] * (len(gold) - 1))
    assert rewards[-1] == pytest.approx(10.4)


def test_same_seed_same_sentences_and_trajectories() -> None:
    def run(seed: int) -> list:
        env = LinguisticParseEnv()
        env.action_space.seed(seed)
        trace = []
        obs, info = env.reset(seed=seed)
        trace.append(info["sentence"])
        for _ in range(200):
            action = env.action_space.sample(mask=env.action_masks().astype(np.int8))
            obs, reward, terminated, truncated, info = env.step(action)
            trace.append((obs["history"].tobytes(), reward, terminated, truncated, info["sentence"]))
            if terminated or truncated:
                obs, info = env.reset()
                trace.append(info["sentence"])
        return trace

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_sentences_from_list_and_reset_option() -> None:
    env = LinguisticParseEnv(sentences=["John saw Mary", "Mary saw John with a dog"], split="all")
    seen = {env.reset(seed=s)[1]["sentence"] for s in range(20)}
    assert seen == {"John saw Mary", "Mary saw John with a dog"}
    _, info = env.reset(options={"sentence": "the dog saw the man in the park"})
    assert info["sentence"] == "the dog saw the man in the park" and info["n_parses"] == 2


def test_limit_lengths_draws_only_short_sentences_until_lifted() -> None:
    env = LinguisticParseEnv(sentences=["John saw Mary", "Mary saw John with a dog", "the dog saw Mary"], split="all")
    env.limit_lengths(4)
    assert {env.reset(seed=s)[1]["sentence"] for s in range(20)} == {"John saw Mary", "the dog saw Mary"}
    env.limit_lengths(None)
    assert "Mary saw John with a dog" in {env.reset(seed=s)[1]["sentence"] for s in range(20)}
    with pytest.raises(ValueError, match=r"no sentence of the 'all' split has 2 tokens or fewer \(the shortest has 3\)"):
        env.limit_lengths(2)


def test_bad_sentences_are_named() -> None:
    with pytest.raises(GrammarError, match=r"'unicorn'.*word 2"):
        LinguisticParseEnv(sentences=["John unicorn Mary"], split="all")
    with pytest.raises(GrammarError, match="more than max_len=4"):
        LinguisticParseEnv(sentences=["the dog saw the man"], max_len=4, split="all")


def test_train_and_test_splits_do_not_overlap() -> None:
    train, test = LinguisticParseEnv(split="train"), LinguisticParseEnv(split="test")
    assert train.sentences and test.sentences
    assert not set(train.sentences) & set(test.sentences)


def test_render_modes() -> None:
    env = LinguisticParseEnv(render_mode="ansi")
    _, info = env.reset(seed=0)
    while not info["is_success"]:
        *_, info = env.step(env.expert_action())
    text = env.render()
    assert info["sentence"] in text and "parse:" in text
    rgb = LinguisticParseEnv(render_mode="rgb_array")
    rgb.reset(seed=0)
    image = rgb.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    rgb.step(rgb.expert_action())
    assert not np.array_equal(image, rgb.render())


def test_bad_arguments_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="unknown columns='cells'"):
        LinguisticParseEnv(columns="cells")
    with pytest.raises(ValueError, match="unknown mask_mode='all'"):
        LinguisticParseEnv(mask_mode="all")
    with pytest.raises(GrammarError, match="arithmetic, dyck, english"):
        LinguisticParseEnv(grammar="french")
    with pytest.raises(ValueError, match="outside the action space"):
        env = LinguisticParseEnv()
        env.reset(seed=0)
        env.step(env.action_space.n)


def test_matched_means_a_new_chart_constituent() -> None:
    env = LinguisticParseEnv(mask_mode="history")
    env.reset(seed=0)
    cell = int(env.analysis.chart_cells[0])
    assert env.step(cell)[4]["matched"]
    assert not env.step(cell)[4]["matched"], "setting a cell again is a wasted attempt, not a match"


def test_dead_end_means_a_new_chart_constituent_of_no_winning_tree() -> None:
    env = LinguisticParseEnv(mask_mode="history")
    # "the man with the big telescope with John in John saw John": several parses, and constituents that none uses
    env.reset(options={"sentence": "the man with the big telescope with John in John saw John".split()})
    useful = set(env.useful_cells().tolist())
    dead_ends = sorted(set(env.analysis.chart_cells.tolist()) - useful)
    assert dead_ends, "this sentence has chart constituents that no parse uses"
    no_chart_cell = next(c for c in range(env.analysis.n_cells) if c not in set(env.analysis.chart_cells.tolist()))
    for cell, matched, dead_end in [(dead_ends[0], True, True), (dead_ends[0], False, False), (min(useful), True, False),
                                    (no_chart_cell, False, False)]:  # fmt: skip
        info = env.step(cell)[4]
        assert (info["matched"], info["dead_end"]) == (matched, dead_end), f"cell {cell}"


@pytest.mark.parametrize(("grammar", "columns"), [("english", "rules"), ("arithmetic", "labels"), ("dyck", "rules")])
def test_derived_key_holds_what_the_history_derives(grammar: str, columns: str) -> None:
    env = LinguisticParseEnv(grammar=grammar, columns=columns, max_len=8, observe_derived=True)
    assert "derived" not in LinguisticParseEnv(grammar=grammar, columns=columns, max_len=8).observation_space.spaces
    rng = np.random.default_rng(0)
    grown = False
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert obs["derived"].shape == (8, env.ruleset.n_labels * 8) and not obs["derived"].any()
        done = False
        while not done:
            # random cells of the chart, then the expert's: attempts in any order, some that never take
            action = int(rng.choice(env.analysis.chart_cells)) if rng.random() < 0.5 else env.expert_action()
            before = obs["derived"]
            obs, _, terminated, truncated, _ = env.step(action)
            assert obs in env.observation_space
            assert constituents_of(obs["derived"]) == sorted(env.analysis.derived_constituents(env.history_cells()))
            grown |= bool((obs["derived"] > before).any())
            assert (obs["derived"] >= before).all(), "what is derived stays derived"
            done = terminated or truncated
    assert grown


def test_obs_len_follows_max_len_on_a_registered_id() -> None:
    env = gym.make("LinguisticParse-v0", max_len=20, n_sentences=20)
    obs, info = env.reset(seed=0)
    assert obs["history"].shape[0] == 20 and len(info["sentence"].split()) <= 20
    with pytest.raises(ValueError, match="raise obs_len to 20 or more, or leave it out"):
        gym.make("LinguisticParse-v0", max_len=20, obs_len=16)


def test_a_users_sentence_file_is_used_whole(tmp_path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("John saw Mary\nMary saw John\nthe dog saw John\nJohn saw the dog\n")
    assert len(LinguisticParseEnv(sentences=path).sentences) == 4
    held_out = LinguisticParseEnv(sentences=path, split="test", test_fraction=0.5).sentences
    assert 0 < len(held_out) < 4


def test_decode_action_names_position_and_rule() -> None:
    env = LinguisticParseEnv()
    rule = env.ruleset.rules.index(next(r for r in env.ruleset.rules if r.label == "NP"))
    assert env.decode_action(2 * env.n_columns + rule) == (2, str(env.ruleset.rules[rule]))
    with pytest.raises(ValueError, match="outside the action space"):
        env.decode_action(env.action_space.n)


def test_human_render_prints_every_frame(capsys: pytest.CaptureFixture[str]) -> None:
    env = LinguisticParseEnv(render_mode="human")
    _, info = env.reset(seed=0)
    assert info["sentence"] in capsys.readouterr().out
    env.step(env.expert_action())
    assert info["sentence"] in capsys.readouterr().out
    assert env.render() is None and capsys.readouterr().out == "", "render() in human mode prints nothing more"
    quiet = LinguisticParseEnv()
    quiet.reset(seed=0)
    with pytest.warns(UserWarning, match="without specifying any render mode"):
        assert quiet.render() is None


def test_a_large_corpus_is_parsed_when_drawn_and_errors_name_the_line(tmp_path, monkeypatch) -> None:
    import sb3_parsing.env as env_module

    path = tmp_path / "corpus.txt"
    path.write_text("John saw Mary\nMary saw John\nthe dog the\n")
    with pytest.raises(GrammarError, match=r"corpus.txt line 3: .*'the dog the' has no complete parse"):
        LinguisticParseEnv(sentences=path, max_len=5)  # a small corpus is parsed up front
    monkeypatch.setattr(env_module, "PARSED_UP_FRONT", 2)
    env = LinguisticParseEnv(sentences=path, max_len=5)  # past the limit: parsed when drawn
    with pytest.raises(GrammarError, match=r"corpus.txt line 3: .*'the dog the' has no complete parse"):
        for seed in range(50):
            env.reset(seed=seed)
