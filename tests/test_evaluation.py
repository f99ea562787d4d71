"""The evaluation loop, its baselines, agent loading and the training callback."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

import sb3_parsing  # noqa: F401
from sb3_parsing import RuleSet
from sb3_parsing.callbacks import ParseMetricsCallback
from sb3_parsing.corpus import TreeSentence, sample_trees
from sb3_parsing.evaluation import (
    ExpertPlayer,
    ModelPlayer,
    RandomPlayer,
    TopDownPlayer,
    ViterbiPlayer,
    baseline_players,
    evaluate_player,
    load_agent,
    longer_sentences,
    observed_env_kwargs,
    rule_kind,
    training_seconds,
)
from sb3_parsing.trees import tree_nodes
from script_loader import load_script


@pytest.fixture(scope="module")
def env():
    return gym.make("LinguisticParse-v0", split="test")


@pytest.fixture(scope="module")
def sentences(env):
    return list(env.unwrapped.sentences[:20])


def test_expert_needs_min_actions(env, sentences):
    result = evaluate_player(env, ExpertPlayer(), sentences)
    assert result["n_sentences"] == 20
    assert result["success_rate"] == 1.0
    assert result["attempts_per_min_actions"] == result["solved_attempts_per_min_actions"] == 1.0
    assert result["chart_share"] == 1.0  # every expert action sets a constituent of the chart


class _OffChartPlayer:
    """Sets, in order, the unset cells of the sentence's rows that no chart constituent holds."""

    def start(self, env):
        analysis = env.unwrapped.analysis
        chart = set(analysis.chart_cells.tolist())
        self.cells = iter(c for c in range(analysis.n_cells) if c not in chart)

    def act(self, env, obs):
        return next(self.cells)


def test_chart_share_counts_the_actions_that_set_chart_constituents(env, sentences):
    result = evaluate_player(env, _OffChartPlayer(), sentences[:5])
    assert result["success_rate"] == 0.0
    assert result["chart_share"] == 0.0


class _RepeatPlayer:
    """Sets the expert's first cell (a chart constituent), then sets it again and again."""

    def start(self, env):
        self.cell = env.unwrapped.expert_action()

    def act(self, env, obs):
        return self.cell


def test_chart_share_counts_a_repeated_cell_once(sentences):
    env = gym.make("LinguisticParse-v0", sentences=[" ".join(sentences[0])], split="all", max_steps=8)
    result = evaluate_player(env, _RepeatPlayer(), sentences[:1])
    assert result["attempts"] == 8.0
    assert result["chart_share"] == 1 / 8, "only the first of the 8 attempts set a new chart cell"


class _DeadEndsFirstPlayer:
    """Sets the chart cells that no winning tree uses, then plays the expert."""

    def start(self, env):
        chart, useful = set(env.unwrapped.analysis.chart_cells.tolist()), set(env.unwrapped.useful_cells().tolist())
        self.dead_ends = sorted(chart - useful)

    def act(self, env, obs):
        return self.dead_ends.pop() if self.dead_ends else env.unwrapped.expert_action()


def test_dead_end_share_counts_the_new_chart_constituents_of_no_winning_tree(env, sentences):
    n_dead_ends = []
    for sentence in sentences:
        env.reset(options={"sentence": list(sentence)})
        chart, useful = set(env.unwrapped.analysis.chart_cells.tolist()), set(env.unwrapped.useful_cells().tolist())
        assert useful <= chart
        n_dead_ends.append(len(chart - useful))
    assert sum(n_dead_ends) > 0, "some of these sentences have chart constituents that no parse uses"
    result = evaluate_player(env, _DeadEndsFirstPlayer(), sentences)
    assert result["success_rate"] == 1.0 and result["chart_share"] == 1.0
    assert result["dead_end_share"] == pytest.approx(sum(n_dead_ends) / (result["attempts"] * len(sentences)))
    assert evaluate_player(env, ExpertPlayer(), sentences)["dead_end_share"] == 0.0


def test_by_length_summarizes_the_sentences_of_each_length(env, sentences):
    result = evaluate_player(env, _DeadEndsFirstPlayer(), sentences)
    by_length = result["by_length"]
    lengths = sorted({len(s) for s in sentences})
    assert len(lengths) > 1 and list(by_length) == [str(n) for n in lengths]
    for length in lengths:
        of_length = [s for s in sentences if len(s) == length]
        dead_ends = min_actions = 0
        for sentence in of_length:
            env.reset(options={"sentence": list(sentence)})
            chart, useful = set(env.unwrapped.analysis.chart_cells.tolist()), set(env.unwrapped.useful_cells().tolist())
            dead_ends += len(chart - useful)
            min_actions += env.unwrapped.analysis.min_actions
        row = by_length[str(length)]
        assert row["n_sentences"] == len(of_length) and row["success_rate"] == 1.0
        # the dead ends, then the expert's min_actions
        assert row["attempts"] == pytest.approx((dead_ends + min_actions) / len(of_length))
        assert row["dead_end_share"] == pytest.approx(dead_ends / (dead_ends + min_actions))
    assert sum(row["n_sentences"] for row in by_length.values()) == len(sentences)


def test_by_rule_kind_splits_the_attempts_and_dead_ends_by_the_rule_of_the_cell(sentences):
    env = gym.make("LinguisticParse-v1", split="test")  # v0's dead ends are all binary
    v1_sentences = list(env.unwrapped.sentences[:5])
    kinds = [rule_kind(rule) for rule in env.unwrapped.ruleset.rules]
    expected_dead_ends = Counter()
    for sentence in v1_sentences:
        env.reset(options={"sentence": list(sentence)})
        chart, useful = set(env.unwrapped.analysis.chart_cells.tolist()), set(env.unwrapped.useful_cells().tolist())
        expected_dead_ends.update(kinds[cell % env.unwrapped.n_columns] for cell in chart - useful)
    result = evaluate_player(env, _DeadEndsFirstPlayer(), v1_sentences)
    by_kind, n_attempts = result["by_rule_kind"], result["attempts"] * len(v1_sentences)
    assert set(by_kind) == set(kinds) and sum(row["attempt_share"] for row in by_kind.values()) == pytest.approx(1.0)
    dead_ends = {kind: row["dead_end_share"] * row["attempt_share"] * n_attempts for kind, row in by_kind.items()}
    assert len([kind for kind in dead_ends if round(dead_ends[kind]) > 0]) > 1, "dead ends of several kinds"
    assert dead_ends == pytest.approx({kind: expected_dead_ends[kind] for kind in by_kind})
    assert rule_kind(RuleSet.from_text("%start S\nA => S\nA B C => S\nx => A\nx y => B\ny => C\nA y => C").rules[0]) == "unary"
    labels_env = gym.make("LinguisticParse-v0", split="test", columns="labels")
    assert "by_rule_kind" not in evaluate_player(labels_env, ExpertPlayer(), sentences[:2])


def test_useful_cells_of_a_tree_target_are_the_target_trees_cells():
    env = gym.make("LinguisticParseTree-v0", split="test")
    base = env.unwrapped
    for tokens, tree in zip(base.sentences, base.trees, strict=True):
        env.reset(options={"sentence": list(tokens), "tree": tree})
        if base.analysis.n_parses > 1:  # the other parses' cells are not useful
            break
    assert base.analysis.n_parses > 1
    oracle = base.oracle
    expected = {start * oracle.n_columns + oracle.column_of(rule) for start, _, rule in tree_nodes(tree, oracle.ruleset)}
    assert base.useful_cells().tolist() == sorted(expected)
    assert set(base.analysis.useful_cells.tolist()) > expected


def test_top_down_without_limit_always_parses_and_never_beats_the_expert(sentences):
    unlimited = gym.make("LinguisticParse-v0", sentences=[" ".join(s) for s in sentences], split="all", max_steps=10**6)
    result = evaluate_player(unlimited, TopDownPlayer(), sentences)
    assert result["success_rate"] == 1.0
    assert result["attempts_per_min_actions"] >= 1.0


def test_top_down_plays_the_oracle_search_in_order(env, sentences):
    player = TopDownPlayer()
    obs, _ = env.reset(options={"sentence": list(sentences[0])})
    player.start(env)
    expected = [c for c in env.unwrapped.oracle.top_down_attempts(sentences[0])]
    first = player.act(env, obs)
    assert first == expected[0]


def test_random_is_masked_and_seeded(env, sentences):
    player = RandomPlayer(seed=3)
    obs, _ = env.reset(options={"sentence": list(sentences[0])})
    for _ in range(10):
        mask = env.unwrapped.action_masks()
        action = player.act(env, obs)
        assert mask[action]
        obs, *_ = env.step(action)
    a = evaluate_player(env, RandomPlayer(seed=1), sentences[:5])
    b = evaluate_player(env, RandomPlayer(seed=1), sentences[:5])
    assert a == b


def test_model_player_uses_masks_for_maskable_ppo(env, sentences):
    model = MaskablePPO("MultiInputPolicy", make_vec_env("LinguisticParse-v0", n_envs=1), seed=0)
    player = ModelPlayer(model)
    assert player.masked
    obs, _ = env.reset(options={"sentence": list(sentences[0])})
    for _ in range(20):
        action = player.act(env, obs)
        assert env.unwrapped.action_masks()[action], "a masked model must never repeat a set cell or pick padding"
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break


def test_longer_sentences_fit_the_observation():
    env = gym.make("LinguisticParse-v0", split="test", max_len=12, obs_len=16)
    long = longer_sentences(env, n_sentences=5)
    base = env.unwrapped
    assert long and all(base.max_len < len(s) <= base.obs_len for s in long)
    long_env = gym.make("LinguisticParse-v0", sentences=[" ".join(s) for s in long], split="all", max_len=base.obs_len)
    assert long_env.observation_space == env.observation_space
    assert evaluate_player(long_env, ExpertPlayer(), long)["success_rate"] == 1.0


def test_evaluate_player_rejects_no_sentences(env):
    with pytest.raises(ValueError, match="at least one sentence"):
        evaluate_player(env, ExpertPlayer(), [])


def test_load_agent_from_zip(tmp_path):
    model = PPO("MultiInputPolicy", make_vec_env("LinguisticParse-v0", n_envs=1), n_steps=32, batch_size=32)
    model.save(tmp_path / "ppo" / "agent.zip")
    loaded, env_id = load_agent(tmp_path / "ppo" / "agent.zip")
    assert isinstance(loaded, PPO) and env_id == "LinguisticParse-v0"
    with pytest.raises(ValueError, match="cannot tell the algorithm"):
        model.save(tmp_path / "agent.zip")
        load_agent(tmp_path / "agent.zip")


def test_training_seconds_run_from_the_first_monitor_start_to_the_last_episode_end(tmp_path):
    assert training_seconds(tmp_path) is None, "no Monitor files: no time"
    # Two envs' Monitor files (SB3's format: a JSON header with t_start, then r, l, t with t from that start)
    for name, t_start, ends in [("0.monitor.csv", 100.0, [1.0, 5.0]), ("1.monitor.csv", 103.0, [2.0])]:
        rows = "".join(f"0.0,8,{end}\n" for end in ends)
        (tmp_path / name).write_text(f'#{{"t_start": {t_start}, "env_id": "LinguisticParse-v0"}}\nr,l,t\n{rows}')
    assert training_seconds(tmp_path) == pytest.approx(5.0)


def test_load_agent_with_the_env_kwargs_it_was_trained_with(tmp_path):
    task = dict(grammar="dyck", max_len=6, obs_len=8)
    model = PPO("MultiInputPolicy", make_vec_env("LinguisticParse-v0", n_envs=1, env_kwargs=task), n_steps=32, batch_size=32)
    model.save(tmp_path / "ppo" / "dyck.zip")
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        load_agent(tmp_path / "ppo" / "dyck.zip")  # the default task has other spaces
    loaded, _ = load_agent(tmp_path / "ppo" / "dyck.zip", env_kwargs=task)
    assert loaded.observation_space == model.observation_space


def test_load_agent_gives_an_agent_that_reads_derived_constituents_their_key(tmp_path):
    env = make_vec_env("LinguisticParse-v0", n_envs=1, env_kwargs=dict(observe_derived=True))
    model = PPO("MultiInputPolicy", env, n_steps=32, batch_size=32)
    model.save(tmp_path / "ppo" / "derived.zip")
    loaded, _ = load_agent(tmp_path / "ppo" / "derived.zip")
    assert "derived" in loaded.observation_space.spaces
    assert observed_env_kwargs(loaded.observation_space) == {"observe_derived": True}
    assert observed_env_kwargs(make_vec_env("LinguisticParse-v0", n_envs=1).observation_space) == {}


def test_parse_metrics_callback_logs_attempts(tmp_path):
    env = make_vec_env("LinguisticParse-v0", n_envs=2, env_kwargs=dict(max_steps=8))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = ParseMetricsCallback()
    model.learn(64, callback=callback)
    progress = (tmp_path / "progress.csv").read_text().splitlines()
    assert {"rollout/attempts", "rollout/attempts_per_min_actions"} <= set(progress[0].split(","))
    assert len(callback.attempts) > 0 and np.mean(callback.attempts) == 8.0, "every episode is truncated after 8 actions"
    assert {"rollout/chart_share", "rollout/dead_end_share"} <= set(progress[0].split(","))
    assert np.mean(callback.chart_shares) < 0.5, "an untrained agent sets mostly cells outside the chart"


def test_parse_metrics_callback_chart_share_is_one_when_only_chart_cells_can_be_set():
    env = make_vec_env("LinguisticParse-v0", n_envs=2, env_kwargs=dict(max_steps=8, mask_mode="oracle"))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1)
    callback = ParseMetricsCallback()
    model.learn(64, callback=callback)
    assert len(callback.chart_shares) > 0 and set(callback.chart_shares) == {1.0}
    # Chart cells at random: on ambiguous sentences some are constituents of no parse
    assert 0.0 < np.mean(callback.dead_end_shares) < 1.0


# --- tree targets: exact match and labeled bracket F1 of the first complete parse ------------------------
PP_SENTENCE = ("John", "saw", "the", "man", "with", "a", "telescope")
VERB_ATTACHMENT = "(S (NP (Name John)) (VP (VP (V saw) (NP (Det the) (N man))) (PP (P with) (NP (Det a) (N telescope)))))"
NOUN_ATTACHMENT = "(S (NP (Name John)) (VP (V saw) (NP (NP (Det the) (N man)) (PP (P with) (NP (Det a) (N telescope))))))"


class _TreePlayer:
    """Builds one given tree, children first, then plays legal moves."""

    def __init__(self, tree):
        self.tree = tree

    def start(self, env):
        base = env.unwrapped
        self.cells = iter([s * base.n_columns + base.oracle.column_of(r) for s, _, r in tree_nodes(self.tree, base.ruleset)])

    def act(self, env, obs):
        history = obs["history"].reshape(-1)
        return next((c for c in self.cells if not history[c]), int(np.flatnonzero(env.unwrapped.action_masks())[0]))


@pytest.fixture(scope="module")
def pp_env():
    return gym.make("LinguisticParse-v0", sentences=[" ".join(PP_SENTENCE)], split="all", max_len=7)


def test_first_complete_parse_is_scored_against_the_sentence_tree(pp_env):
    gold = [TreeSentence(PP_SENTENCE, VERB_ATTACHMENT)]
    right = evaluate_player(pp_env, _TreePlayer(VERB_ATTACHMENT), gold)
    assert right["success_rate"] == 1.0
    assert right["parsed"] == right["exact_match"] == right["bracket_f1"] == right["sentence_f1"] == 1.0
    wrong = evaluate_player(pp_env, _TreePlayer(NOUN_ATTACHMENT), gold)
    assert wrong["parsed"] == 1.0 and wrong["exact_match"] == 0.0
    # 7 brackets each (preterminals excluded), 6 shared: VP 1-4 against NP 2-7
    assert wrong["bracket_precision"] == wrong["bracket_recall"] == wrong["bracket_f1"] == wrong["sentence_f1"] == 6 / 7
    # without trees, no tree metrics
    assert "exact_match" not in evaluate_player(pp_env, _TreePlayer(VERB_ATTACHMENT), [PP_SENTENCE])


def test_a_sentence_with_no_parse_built_misses_every_gold_bracket(pp_env):
    gold = [TreeSentence(PP_SENTENCE, VERB_ATTACHMENT)]
    result = evaluate_player(pp_env, _OffChartPlayer(), gold)
    assert result["parsed"] == result["exact_match"] == result["bracket_recall"] == result["bracket_f1"] == 0.0
    assert result["bracket_precision"] == 0.0 and result["sentence_f1"] == 0.0


@pytest.fixture(scope="module")
def pcfg_trees():
    return sample_trees(RuleSet.builtin("english_pcfg"), 40, 3, 10, seed=4)


def test_viterbi_player_builds_the_most_probable_tree(pcfg_trees):
    env = gym.make(
        "LinguisticParse-v0", grammar="english_pcfg", sentences=[" ".join(t.tokens) for t in pcfg_trees], split="all"
    )
    env.reset(options={"sentence": list(pcfg_trees[0].tokens)})
    if not hasattr(env.unwrapped.analysis, "viterbi_tree"):
        pytest.skip("the oracle has no viterbi_tree() yet")
    viterbi_trees = []
    for sentence in pcfg_trees:
        env.reset(options={"sentence": list(sentence.tokens)})
        viterbi_trees.append(TreeSentence(sentence.tokens, env.unwrapped.analysis.viterbi_tree()))
    # scored against its own trees, the Viterbi player's first parse is exactly the Viterbi tree
    own = evaluate_player(env, ViterbiPlayer(), viterbi_trees)
    assert own["success_rate"] == own["exact_match"] == own["bracket_f1"] == 1.0
    against_sampled = evaluate_player(env, ViterbiPlayer(), pcfg_trees)
    pairs = list(zip(viterbi_trees, pcfg_trees, strict=True))
    same_tree = np.mean([v.tree == t.tree for v, t in pairs])
    # a history can hold several trees with the same cells (PPs chained at one position)
    ruleset = env.unwrapped.ruleset

    def cells(tree):  # columns="rules": a cell is a rule at a start position
        return {(start, rule) for start, _, rule in tree_nodes(tree, ruleset)}

    # the sampled tree counts as built when the Viterbi cells hold all of its cells
    held = np.mean([cells(t.tree) <= cells(v.tree) for v, t in pairs])
    assert same_tree < against_sampled["exact_match"] <= held
    assert 0.5 < against_sampled["exact_match"] < 1.0, (
        "ambiguous sentences: the most probable tree is not always the one sampled"
    )
    random = evaluate_player(env, RandomPlayer(seed=0), pcfg_trees)
    assert random["bracket_f1"] < against_sampled["bracket_f1"]


def test_by_length_scores_the_trees_of_each_length_as_a_corpus_of_its_own(pcfg_trees):
    env = gym.make(
        "LinguisticParse-v0", grammar="english_pcfg", sentences=[" ".join(t.tokens) for t in pcfg_trees], split="all"
    )
    by_length = evaluate_player(env, ViterbiPlayer(), pcfg_trees)["by_length"]
    lengths = sorted({len(t.tokens) for t in pcfg_trees})
    assert list(by_length) == [str(n) for n in lengths]
    tree_keys = ("parsed", "exact_match", "bracket_precision", "bracket_recall", "bracket_f1", "sentence_f1")
    for length in lengths:
        alone = evaluate_player(env, ViterbiPlayer(), [t for t in pcfg_trees if len(t.tokens) == length])
        assert {key: by_length[str(length)][key] for key in tree_keys} == {key: alone[key] for key in tree_keys}
    # not every length is scored alike: the sampled tree is not always the most probable one
    assert len({row["exact_match"] for row in by_length.values()}) > 1


def test_baseline_players_add_viterbi_for_weighted_grammars_only():
    assert "Viterbi parse" not in baseline_players(RuleSet.builtin("english"))
    players = baseline_players(RuleSet.builtin("english_pcfg"), seed=5)
    assert isinstance(players["Viterbi parse"], ViterbiPlayer)
    assert list(players) == ["random (masked)", "top-down search", "expert", "Viterbi parse"]


def test_evaluate_script_scores_the_baselines_on_a_tree_file(tmp_path, pcfg_trees):
    trees = tmp_path / "trees.txt"
    trees.write_text("\n".join(t.tree for t in pcfg_trees[:8]) + "\n")
    report = tmp_path / "eval.json"
    script = Path(__file__).parent.parent / "scripts" / "evaluate.py"
    task = '{"grammar": "english_pcfg", "max_len": 10, "obs_len": 12}'
    command = [sys.executable, str(script), "--baselines-only", "--trees", str(trees), "--n-long", "3", "--json", str(report)]
    out = subprocess.run([*command, "--env-kwargs", task], capture_output=True, text=True, timeout=300, check=True)
    assert "exact" in out.stdout and "Viterbi parse" in out.stdout
    written = json.loads(report.read_text())
    assert written["env_kwargs"] == json.loads(task), "the JSON records the task it was measured on"
    results = written["results"]
    assert set(results) == {"trees", "11-12 tok"}
    for players in results.values():
        assert players["Viterbi parse"]["parsed"] == players["expert"]["parsed"] == 1.0
        assert 0.0 < players["Viterbi parse"]["bracket_f1"] <= 1.0
        assert players["random (masked)"]["parsed"] == players["random (masked)"]["bracket_f1"] == 0.0


def test_results_table_summarises_seeds(tmp_path) -> None:
    import json

    module = load_script("results_table")
    files = []
    for seed, (success, exact) in enumerate([(0.9, 0.5), (1.0, 0.7), (0.95, 0.6), (0.2, 0.1)]):
        metrics = {"success_rate": success, "attempts_per_min_actions": 1.0 + seed, "exact_match": exact}
        files.append(tmp_path / f"seed{seed}.json")
        files[-1].write_text(json.dumps({"results": {"held-out": {"agent": metrics}}}))
    table = module.results_table(files[:2])
    assert "Trained" not in table, "the runs' JSON has no training time"
    assert "| held-out | agent | 95.0% ± 7.1 (90.0-100.0) | 1.500 ± 0.707 (1.000-2.000) | 60.0% ± 14.1 (50.0-70.0) |" in table
    assert "bracket F1" not in table and "dead ends" not in table, "only the metrics the runs have"
    with_dead_ends = tmp_path / "dead_ends.json"
    with_dead_ends.write_text(json.dumps({"results": {"held-out": {"agent": {**metrics, "dead_end_share": 0.25}}}}))
    dead_end_table = module.results_table([with_dead_ends])
    assert "| dead ends |" in dead_end_table and "| 25.0% |" in dead_end_table
    # The interquartile mean of 4 runs drops the best and the worst: (0.9 + 0.95) / 2, within its bootstrap interval
    iqm, low, high = module.iqm_with_ci([0.9, 1.0, 0.95, 0.2])
    assert iqm == pytest.approx(0.925)
    assert 0.2 <= low <= iqm <= high <= 1.0 and low < high
    # The interval does not depend on numpy's global RNG (rliable resamples with it), and leaves it as it was
    near_an_edge = [0.232, 0.271, 0.260]  # P(every resample is the best run) = 1/27, close to the 2.5% tail
    intervals = set()
    for global_seed in range(8):
        np.random.seed(global_seed)
        intervals.add(module.iqm_with_ci(near_an_edge))
        assert np.random.rand() == np.random.RandomState(global_seed).rand()
    assert len(intervals) == 1
    iqm_rows = module.results_table(files).split("rliable")[1]
    assert "| held-out | agent | 92.5% [" in iqm_rows
    for seconds, file in zip([600.0, 900.0], files[:2], strict=True):
        file.write_text(json.dumps({**json.loads(file.read_text()), "num_timesteps": 4096, "train_seconds": seconds}))
    assert "Trained 4,096 steps in 10-15 minutes of wall-clock time each" in module.results_table(files[:2])
    files[1].write_text(json.dumps({**json.loads(files[1].read_text()), "train_seconds": 610.0}))
    assert "Trained 4,096 steps in 10 minutes of wall-clock time each" in module.results_table(files[:2])
