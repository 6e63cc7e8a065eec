"""The shipped rule pack: size, coverage of typologies and features, calibration, and its cases."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from rules_engine import ORDINARY_TRANSACTION, TYPOLOGIES, RuleSet, case_coverage, load_cases, run_cases
from tests.rules_engine.rule_files import PACK_CASES

TELLER_CHANNEL = 3


def test_pack_size_and_breadth(pack: RuleSet) -> None:
    """At least 56 rules over at least 18 distinct features, every typology covered."""
    assert len(pack.rules) >= 56
    assert len(pack.feature_names_used) >= 18
    assert set(TYPOLOGIES) == {rule.typology for rule in pack.rules}
    assert pack.version.startswith("2026.11.1+")


def test_pack_has_shadow_examples_and_sensible_scores(pack: RuleSet) -> None:
    """A few rules are in shadow mode; scores are on the 0..1000 scale (0 = fitted away) and none decides alone."""
    shadow = [rule.id for rule in pack.rules if not rule.active]
    assert 1 <= len(shadow) <= 5
    assert all(0 <= rule.score < 900 for rule in pack.rules)
    assert sum(rule.score > 0 for rule in pack.rules) >= len(pack.rules) // 2
    assert all(rule.action_floor in (0, 2, 3, 4) for rule in pack.rules)


def test_teller_withdrawal_rules_carry_guidance_in_both_languages(pack: RuleSet) -> None:
    """Every teller rule tells the teller what to say, in zh-CN and en."""
    teller = [rule for rule in pack.rules if rule.channels == frozenset({TELLER_CHANNEL})]
    assert len(teller) >= 4
    for rule in teller:
        assert "CASH_WITHDRAWAL" in rule.when
        assert rule.guidance_zh and rule.guidance_en
    # The elderly-customer rule warns about the "safe account" scam.
    elderly = pack.rules[pack.index_of("R_TELLER_ELDERLY_LARGE_SHARE")]
    assert "安全账户" in elderly.guidance_zh and "safe account" in elderly.guidance_en


def test_every_rule_has_a_hit_case_and_a_miss_case(pack: RuleSet) -> None:
    """The cases file names every rule at least once in 'hit' and once in 'miss'."""
    cases = load_cases(PACK_CASES, pack)
    no_hit, no_miss = case_coverage(pack, cases)
    assert no_hit == [] and no_miss == []


def test_pack_cases_pass(pack: RuleSet) -> None:
    """All cases of the shipped cases file pass (kernel and reference evaluator agree)."""
    cases = load_cases(PACK_CASES, pack)
    failures = run_cases(pack, cases)
    assert [str(f) for f in failures] == []
    assert len(cases) >= 2 * len(pack.rules)


def test_the_ordinary_transaction_hits_nothing(pack: RuleSet) -> None:
    """The documented ordinary row, which every case starts from, triggers no rule."""
    cases = load_cases(PACK_CASES, pack)
    ordinary = next(case for case in cases if case.name == "ordinary mobile transfer")
    assert ordinary.exact and not ordinary.hit
    assert pack.evaluate(np.array([ordinary.row])).sum() == 0
    assert set(ORDINARY_TRANSACTION) <= pack.feature_names_used | {"mcc", "balance_cny"} | set(ORDINARY_TRANSACTION)


def test_everyday_payments_hit_nothing(pack: RuleSet) -> None:
    """The 'exact' cases with no expected hits (salary, groceries, bills, ...) hit no rule at all."""
    cases = [case for case in load_cases(PACK_CASES, pack) if case.exact and not case.hit]
    assert len(cases) >= 10
    hits = pack.evaluate(np.array([case.row for case in cases]))
    assert hits.sum() == 0


def test_every_reason_and_guidance_renders(pack: RuleSet) -> None:
    """Each rule's messages render in both languages for the row that hits it, with no placeholder left."""
    cases = load_cases(PACK_CASES, pack)
    rendered: collections.Counter[str] = collections.Counter()
    for case in cases:
        for rule_id in case.hit:
            index = pack.index_of(rule_id)
            for locale in ("zh-CN", "en"):
                text = pack.reason(index, np.array(case.row), locale) + pack.guidance(index, np.array(case.row), locale)
                assert "{" not in text and "}" not in text, text
                rendered[rule_id] += 1
    assert len(rendered) == len(pack.rules)


@pytest.mark.parametrize("typology", sorted(TYPOLOGIES))
def test_each_typology_has_a_hitting_case(pack: RuleSet, typology: str) -> None:
    """For every typology, some case hits one of its rules."""
    cases = load_cases(PACK_CASES, pack)
    ids = {rule.id for rule in pack.rules if rule.typology == typology}
    assert any(case.hit & ids for case in cases)
