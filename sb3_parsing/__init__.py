"""Reinforcement-learning parsers for Stable-Baselines3: the LinguisticParse game, its extractors, masks and goals."""

from gymnasium import register

from sb3_parsing.grammar import GrammarError, Rule, RuleSet, available_grammars
from sb3_parsing.oracle import Derivation, Oracle, SentenceAnalysis, shared_oracle
from sb3_parsing.env import LinguisticParseEnv
from sb3_parsing.wrappers import ParseGoalWrapper, make_goal_env

__version__ = "0.1.0"

__all__ = [
    "Derivation",
    "GrammarError",
    "LinguisticParseEnv",
    "Oracle",
    "ParseGoalWrapper",
    "Rule",
    "RuleSet",
    "SentenceAnalysis",
    "available_grammars",
    "make_goal_env",
    "shared_oracle",
]

# The task every published figure is quoted on: an ambiguous grammar, 3 to 12 tokens, one column per rule.
DEFAULT_ENV_KWARGS = dict(grammar="english", min_len=3, max_len=12, columns="rules")

register(id="LinguisticParse-v0", entry_point="sb3_parsing.env:LinguisticParseEnv", kwargs=DEFAULT_ENV_KWARGS)

# The same game as a goal-conditioned env for HerReplayBuffer (achieved_goal / desired_goal, compute_reward).
register(id="LinguisticParseGoal-v0", entry_point="sb3_parsing.wrappers:make_goal_env", kwargs=DEFAULT_ENV_KWARGS)
