"""Reinforcement-learning parsers for Stable-Baselines3: the LinguisticParse game, its extractors, masks and goals."""

import warnings

from gymnasium import register

from sb3_parsing.grammar import GrammarError, Rule, RuleSet, available_grammars
from sb3_parsing.oracle import Derivation, Oracle, SentenceAnalysis, shared_oracle
from sb3_parsing.env import LinguisticParseEnv
from sb3_parsing.wrappers import LinguisticParseGoalEnv, make_goal_env

__version__ = "0.1.0"

__all__ = [
    "Derivation",
    "GrammarError",
    "LinguisticParseEnv",
    "LinguisticParseGoalEnv",
    "Oracle",
    "Rule",
    "RuleSet",
    "SentenceAnalysis",
    "available_grammars",
    "make_goal_env",
    "shared_oracle",
]

# The quick start: an ambiguous grammar, 3 to 12 tokens, one column per rule (obs_len follows max_len).
DEFAULT_ENV_KWARGS = dict(grammar="english", min_len=3, max_len=12, columns="rules")
# The flagship: a broad English PCFG (2,588 rules, 1,400 words), 3 to 20 tokens on 24 rows.
FLAGSHIP_ENV_KWARGS = dict(grammar="english_v1", min_len=3, max_len=20, obs_len=24, columns="rules")

#: Every task id the package registers, with its keyword arguments of LinguisticParseEnv.
TASKS: dict[str, dict] = {
    "LinguisticParse-v0": DEFAULT_ENV_KWARGS,
    "LinguisticParse-v1": FLAGSHIP_ENV_KWARGS,
    # Only the sentence's own tree wins: trees sampled from the weighted grammars (the real parsing problem).
    "LinguisticParseTree-v0": dict(DEFAULT_ENV_KWARGS, grammar="english_pcfg", target="tree"),
    "LinguisticParseTree-v1": dict(FLAGSHIP_ENV_KWARGS, target="tree"),
    # The other built-in grammars: left-recursive arithmetic, balanced brackets.
    "LinguisticParseArithmetic-v0": dict(grammar="arithmetic", min_len=3, max_len=15, columns="rules"),
    "LinguisticParseDyck-v0": dict(grammar="dyck", min_len=2, max_len=16, columns="rules"),
}
for _task_id, _kwargs in TASKS.items():
    register(id=_task_id, entry_point="sb3_parsing.env:LinguisticParseEnv", kwargs=_kwargs)
# v0 and v1 are two tasks (a small grammar and the flagship), not two versions of one: gym.make("...-v0") must not
# tell users that v0 is "out of date".
warnings.filterwarnings(
    "ignore", message=r".*The environment LinguisticParse\w*-v0 is out of date", category=DeprecationWarning
)

# The same game as a goal-conditioned env for HerReplayBuffer (achieved_goal / desired_goal, compute_reward).
register(id="LinguisticParseGoal-v0", entry_point="sb3_parsing.wrappers:make_goal_env", kwargs=DEFAULT_ENV_KWARGS)
