"""Rule test cases: example feature rows with the rules they must (and must not) hit.

A cases file (YAML) lists cases; each gives a partial feature row over a documented
"ordinary transaction" (``ORDINARY_TRANSACTION``; a file may override it with
``defaults:``), the rules that must hit (``hit``), those that must not (``miss``), and
optionally ``exact: true`` (no rule outside ``hit`` may hit). Analysts keep such files as
regression tests for their own rule files; the shipped pack has one case that hits and one
that does not for every rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features import FeatureKind
from rules_engine._checks import SymbolTable, closest_name
from rules_engine._errors import RuleCasesError, RuleDiagnostic
from rules_engine._ruleset import RuleSet
from rules_engine._yaml import MappingNode, Node, ScalarNode, SequenceNode, YamlSource, describe_node

__all__ = ["ORDINARY_TRANSACTION", "CaseFailure", "RuleCase", "case_coverage", "load_cases", "parse_cases",
           "run_cases"]

# A 300 CNY mobile transfer at 14:00 to a known payee by a 35-year-old, low-risk customer with
# a 20,000 CNY balance and everyday habits. Features not listed here are 0.
ORDINARY_TRANSACTION: Mapping[str, float | str | bool] = {
    "amount_cny": 300.0,
    "txn_type": "TRANSFER_OUT",
    "channel": "MOBILE",
    "is_outflow": True,
    "mcc": 0,
    "is_cross_border": False,
    "is_round_amount": False,
    "is_just_under_threshold": False,
    "local_hour": 14,
    "is_night": False,
    "customer_age": 35,
    "account_age_days": 1500.0,
    "risk_level": "LOW",
    "is_employee": False,
    "balance_cny": 20000.0,
    "amount_to_balance": 0.015,
    "out_count_1h": 0,
    "out_sum_1h": 0.0,
    "out_count_24h": 2,
    "out_sum_24h": 450.0,
    "out_count_7d": 9,
    "out_sum_7d": 2600.0,
    "out_count_30d": 35,
    "out_sum_30d": 11000.0,
    "in_count_1h": 0,
    "in_sum_1h": 0.0,
    "in_count_24h": 0,
    "in_sum_24h": 0.0,
    "in_count_7d": 1,
    "in_sum_7d": 200.0,
    "in_count_30d": 3,
    "in_sum_30d": 15500.0,
    "cash_out_count_24h": 0,
    "cash_out_sum_24h": 0.0,
    "cash_branches_24h": 0,
    "fan_out_24h": 2,
    "fan_out_7d": 6,
    "fan_in_24h": 0,
    "fan_in_7d": 1,
    "rapid_in_out_24h": 0.0,
    "seconds_since_last": 5400.0,
    "days_dormant": 0.0625,
    "txn_count_total": 800,
    "is_new_counterparty": False,
    "is_new_device": False,
    "amount_vs_typical": 1.1,
    "under_threshold_count_7d": 0,
    "night_count_7d": 0,
    "counterparty_fraud_reports": 0,
    "counterparty_fraud_rate": 0.0,
}

_TOP_KEYS = ("defaults", "cases")
_CASE_KEYS = ("name", "features", "hit", "miss", "exact")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleCase:
    """One example: a full feature row and what it must and must not hit."""

    name: str
    file: str
    line: int
    row: tuple[float, ...]
    hit: frozenset[str]
    miss: frozenset[str]
    exact: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFailure:
    """A case whose hits differ from its expectations (or whose kernel and reference results differ)."""

    case: RuleCase
    missing: tuple[str, ...]  # should have hit, did not
    unexpected: tuple[str, ...]  # hit, should not have
    kernel_mismatch: tuple[str, ...] = ()  # rules where the kernel disagrees with the reference evaluator

    def __str__(self) -> str:
        parts = []
        if self.missing:
            parts.append("expected to hit but did not: " + ", ".join(self.missing))
        if self.unexpected:
            parts.append("hit but should not: " + ", ".join(self.unexpected))
        if self.kernel_mismatch:
            parts.append("kernel and reference evaluator disagree (a compiler bug, please report it): "
                         + ", ".join(self.kernel_mismatch))
        return f"{self.case.file}:{self.case.line}: case {self.case.name!r}: " + "; ".join(parts)


def _value(
    source: YamlSource, symbols: SymbolTable, name_node: Node, value_node: Node, errors: list[RuleDiagnostic],
    case_name: str,
) -> tuple[str, float] | None:
    name = source.scalar(name_node) if isinstance(name_node, ScalarNode) else None
    if not isinstance(name, str) or name not in symbols.features:
        errors.append(source.diagnostic(
            name_node, "", f"case {case_name!r}: unknown feature {name!r}", expected="a feature of the catalogue",
            got=str(name), suggestion=closest_name(str(name), list(symbols.features)),
        ))
        return None
    _, spec = symbols.features[name]
    raw = source.scalar(value_node) if isinstance(value_node, ScalarNode) else None
    if spec.kind is FeatureKind.ENUM:
        members = symbols.enums[spec.enum]
        if isinstance(raw, str) and raw in members:
            return name, float(members[raw])
        errors.append(source.diagnostic(
            value_node, "", f"case {case_name!r}: {name} takes a {spec.enum} name", expected=", ".join(members),
            got=str(raw), suggestion=closest_name(str(raw), list(members)),
        ))
        return None
    if spec.kind is FeatureKind.BOOL:
        if isinstance(raw, bool) or raw in (0, 1):
            return name, float(bool(raw))
        errors.append(source.diagnostic(value_node, "", f"case {case_name!r}: {name} takes true or false",
                                        expected="true or false", got=describe_node(value_node)))
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        errors.append(source.diagnostic(value_node, "", f"case {case_name!r}: {name} takes a number",
                                        expected="a number", got=describe_node(value_node)))
        return None
    if spec.kind is FeatureKind.INT and not float(raw).is_integer():
        errors.append(source.diagnostic(value_node, "", f"case {case_name!r}: {name} takes a whole number",
                                        expected="a whole number", got=str(raw)))
        return None
    return name, float(raw)


def _ordinary_row(symbols: SymbolTable) -> list[float]:
    row = [0.0] * len(symbols.features)
    for name, value in ORDINARY_TRANSACTION.items():
        if name not in symbols.features:
            continue
        index, spec = symbols.features[name]
        row[index] = float(symbols.enums[spec.enum][value]) if isinstance(value, str) else float(value)
    return row


def _features(
    source: YamlSource, symbols: SymbolTable, node: Node, errors: list[RuleDiagnostic], case_name: str
) -> dict[str, float]:
    if not isinstance(node, MappingNode):
        errors.append(source.diagnostic(node, "", f"case {case_name!r}: features must be a mapping",
                                        expected="a mapping of feature: value", got=describe_node(node)))
        return {}
    values: dict[str, float] = {}
    for name_node, value_node in node.value:
        parsed = _value(source, symbols, name_node, value_node, errors, case_name)
        if parsed is not None:
            if parsed[0] in values:
                errors.append(source.diagnostic(name_node, "", f"case {case_name!r}: {parsed[0]} is given twice"))
            values[parsed[0]] = parsed[1]
    return values


def _rule_ids(
    source: YamlSource, rules: RuleSet, node: Node, errors: list[RuleDiagnostic], case_name: str
) -> frozenset[str]:
    known = [rule.id for rule in rules.rules]
    if not isinstance(node, SequenceNode):
        errors.append(source.diagnostic(node, "", f"case {case_name!r}: expected a list of rule ids",
                                        expected="[R_..., ...]", got=describe_node(node)))
        return frozenset()
    ids: set[str] = set()
    for item in node.value:
        value = source.scalar(item) if isinstance(item, ScalarNode) else None
        if not isinstance(value, str) or value not in known:
            errors.append(source.diagnostic(
                item, "", f"case {case_name!r}: no rule {value!r} in {rules.source}", expected="a rule id",
                got=str(value), suggestion=closest_name(str(value), known),
            ))
        else:
            ids.add(value)
    return frozenset(ids)


def parse_cases(text: str, rules: RuleSet, *, source: str = "<string>") -> tuple[RuleCase, ...]:
    """The cases of a cases-file text, checked against ``rules``; raises RuleCasesError listing every problem."""
    yaml_source = YamlSource.of(text, source)
    symbols = SymbolTable.from_catalogue()
    errors: list[RuleDiagnostic] = []
    root, problems = yaml_source.compose()
    if problems:
        raise RuleCasesError(problems)
    if not isinstance(root, MappingNode):
        raise RuleCasesError([yaml_source.diagnostic(root or (1, 1), "", "a cases file is a mapping with 'cases'",
                                                     expected="cases: [...]")])
    top: dict[str, Node] = {}
    for key_node, value_node in root.value:
        key = yaml_source.scalar(key_node) if isinstance(key_node, ScalarNode) else None
        if key not in _TOP_KEYS:
            errors.append(yaml_source.diagnostic(key_node, "", f"unknown key {key!r} in the cases file",
                                                 expected="defaults or cases", got=str(key),
                                                 suggestion=closest_name(str(key), list(_TOP_KEYS))))
        else:
            top[str(key)] = value_node
    base = _ordinary_row(symbols)
    if "defaults" in top:
        for name, value in _features(yaml_source, symbols, top["defaults"], errors, "defaults").items():
            base[symbols.features[name][0]] = value
    cases: list[RuleCase] = []
    cases_node = top.get("cases")
    if not isinstance(cases_node, SequenceNode) or not cases_node.value:
        errors.append(yaml_source.diagnostic(cases_node or root, "", "the cases file needs a non-empty 'cases' list",
                                             expected="cases: [...]"))
        cases_node = None
    for case_node in cases_node.value if cases_node is not None else []:
        line = yaml_source.position(case_node)[0]
        if not isinstance(case_node, MappingNode):
            errors.append(yaml_source.diagnostic(case_node, "", "a case must be a mapping", expected="a mapping"))
            continue
        fields: dict[str, Node] = {}
        for key_node, value_node in case_node.value:
            key = yaml_source.scalar(key_node) if isinstance(key_node, ScalarNode) else None
            if key not in _CASE_KEYS:
                errors.append(yaml_source.diagnostic(key_node, "", f"unknown key {key!r} in a case",
                                                     expected=", ".join(_CASE_KEYS), got=str(key),
                                                     suggestion=closest_name(str(key), list(_CASE_KEYS))))
            else:
                fields[str(key)] = value_node
        name_value = yaml_source.scalar(fields["name"]) if isinstance(fields.get("name"), ScalarNode) else None
        name = name_value if isinstance(name_value, str) and name_value else f"line {line}"
        if "name" not in fields:
            errors.append(yaml_source.diagnostic(case_node, "", "the case has no 'name'", expected="name: ..."))
        row = list(base)
        if "features" in fields:
            for feature, value in _features(yaml_source, symbols, fields["features"], errors, name).items():
                row[symbols.features[feature][0]] = value
        hit = _rule_ids(yaml_source, rules, fields["hit"], errors, name) if "hit" in fields else frozenset()
        miss = _rule_ids(yaml_source, rules, fields["miss"], errors, name) if "miss" in fields else frozenset()
        exact_value = yaml_source.scalar(fields["exact"]) if isinstance(fields.get("exact"), ScalarNode) else False
        if not isinstance(exact_value, bool):
            errors.append(yaml_source.diagnostic(fields["exact"], "", f"case {name!r}: exact takes true or false"))
            exact_value = False
        if hit & miss:
            errors.append(yaml_source.diagnostic(case_node, "", f"case {name!r}: {', '.join(sorted(hit & miss))} "
                                                 "is both in hit and in miss"))
        if not (hit or miss or exact_value):
            errors.append(yaml_source.diagnostic(case_node, "", f"case {name!r} expects nothing; give hit, miss "
                                                 "or exact: true", expected="hit, miss or exact"))
        cases.append(RuleCase(name=name, file=source, line=line, row=tuple(row), hit=hit, miss=miss,
                              exact=exact_value))
    if errors:
        raise RuleCasesError(sorted(errors, key=lambda d: (d.line, d.column)))
    return tuple(cases)


def load_cases(path: Path | str, rules: RuleSet) -> tuple[RuleCase, ...]:
    """The cases of a cases file; raises RuleCasesError (also when the file cannot be read)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RuleCasesError([RuleDiagnostic(file=str(path), rule_id="", line=1, column=1,
                                             message=f"cannot read the cases file: {error}")]) from error
    return parse_cases(text, rules, source=str(path))


def run_cases(rules: RuleSet, cases: tuple[RuleCase, ...] | list[RuleCase]) -> list[CaseFailure]:
    """Evaluate every case in one batch (kernel and reference evaluator); the failures, in case order."""
    if not cases:
        return []
    matrix = np.array([case.row for case in cases], dtype=np.float64)
    hits = rules.evaluate(matrix)
    reference = rules.evaluate_reference(matrix)
    ids = [rule.id for rule in rules.rules]
    failures: list[CaseFailure] = []
    for i, case in enumerate(cases):
        fired = {ids[k] for k in np.flatnonzero(hits[i])}
        missing = tuple(sorted(case.hit - fired))
        unexpected = set(case.miss & fired)
        if case.exact:
            unexpected |= fired - case.hit
        mismatch = tuple(ids[k] for k in np.flatnonzero(hits[i] != reference[i]))
        if missing or unexpected or mismatch:
            failures.append(CaseFailure(case=case, missing=missing, unexpected=tuple(sorted(unexpected)),
                                        kernel_mismatch=mismatch))
    return failures


def case_coverage(rules: RuleSet, cases: tuple[RuleCase, ...] | list[RuleCase]) -> tuple[list[str], list[str]]:
    """Rule ids that no case names in ``hit``, and those that no case names in ``miss``, in rule order."""
    hit_named = set().union(*(case.hit for case in cases)) if cases else set()
    miss_named = set().union(*(case.miss for case in cases)) if cases else set()
    ids = [rule.id for rule in rules.rules]
    return [i for i in ids if i not in hit_named], [i for i in ids if i not in miss_named]
