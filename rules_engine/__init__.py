"""Outpost's rule engine: an analyst's rule language compiled to one numba kernel.

``RuleSet.load(path)`` reads a YAML rule file, checks every rule against the feature
catalogue (rejecting the whole file with every error when anything is wrong), and compiles
all conditions into one ``numba.njit(nogil=True, cache=True)`` kernel; ``RuleSet.evaluate``
then returns the (n, R) hit matrix of a feature batch in one call. See docs/rules.md.
"""

from rules_engine._cases import (
    ORDINARY_TRANSACTION,
    CaseFailure,
    RuleCase,
    case_coverage,
    load_cases,
    parse_cases,
    run_cases,
)
from rules_engine._errors import (
    RuleCasesError,
    RuleCompileError,
    RuleDiagnostic,
    RuleError,
    RuleEvaluationError,
    RuleKernelError,
)
from rules_engine._kernel import CACHE_DIR_ENV, KernelOptions
from rules_engine._model import ACTION_FLOORS, TYPOLOGIES, Rule
from rules_engine._ruleset import RuleSet, hit_cells, hits_by_row

__all__ = [
    "ACTION_FLOORS",
    "CACHE_DIR_ENV",
    "ORDINARY_TRANSACTION",
    "TYPOLOGIES",
    "CaseFailure",
    "KernelOptions",
    "Rule",
    "RuleCase",
    "RuleCasesError",
    "RuleCompileError",
    "RuleDiagnostic",
    "RuleError",
    "RuleEvaluationError",
    "RuleKernelError",
    "RuleSet",
    "case_coverage",
    "hit_cells",
    "hits_by_row",
    "load_cases",
    "parse_cases",
    "run_cases",
]
