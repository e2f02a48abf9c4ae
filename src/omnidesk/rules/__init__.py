"""Rules: admins' TOML files that classify and route every message.

See ``docs/rules.md`` for the file format. The daemon holds a :class:`RulesHolder`;
the pipeline calls ``holder.current.evaluate(rule_input)`` for a :class:`Decision`.
"""

from .check import CheckReport, Defined, ExampleFailure, check_rules, run_examples, undefined_names
from .engine import Example, Rule, RuleSet
from .evaluation import ClassMetrics, EvalReport, evaluate_labelled
from .holder import RulesHolder
from .language import detect_language, load_language_model
from .loader import load_rules
from .problems import Problem, RulesError

__all__ = [
    "CheckReport",
    "ClassMetrics",
    "Defined",
    "EvalReport",
    "Example",
    "ExampleFailure",
    "Problem",
    "Rule",
    "RuleSet",
    "RulesError",
    "RulesHolder",
    "check_rules",
    "detect_language",
    "evaluate_labelled",
    "load_language_model",
    "load_rules",
    "run_examples",
    "undefined_names",
]
