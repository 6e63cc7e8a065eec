"""model_reason: messages for model explanations in zh-CN and en."""

from __future__ import annotations

import pytest

from features import CATALOGUE
from models import model_reason, reason_shares
from models._reasons import MESSAGE_TEMPLATES


def test_documented_example() -> None:
    """The example from the brief, verbatim."""
    assert model_reason("amount_vs_typical", 12.3, "zh-CN") == "金额为该账户常见金额的12倍"


def test_english() -> None:
    """Locale 'en' gives English, capitalised."""
    assert model_reason("amount_vs_typical", 12.3, "en") == "Amount is 12 times the account's typical amount"


def test_unknown_locale_falls_back_to_chinese() -> None:
    """Any locale other than 'en' is answered in zh-CN."""
    assert model_reason("is_new_device", 1.0, "fr") == model_reason("is_new_device", 1.0, "zh-CN")


@pytest.mark.parametrize("spec", [s for s in CATALOGUE if s.model_input], ids=lambda s: s.name)
def test_every_model_feature_has_a_template(spec: object) -> None:
    """Each model_input feature of the catalogue has its own template in both languages."""
    name = spec.name  # type: ignore[attr-defined]
    assert name in MESSAGE_TEMPLATES
    zh, en = model_reason(name, 3.0, "zh-CN"), model_reason(name, 3.0, "en")
    assert zh and en and zh != en
    assert name not in zh and name not in en


def test_enum_features_name_the_member() -> None:
    """Enum features are rendered with the member's name, not its number."""
    assert model_reason("channel", 3.0, "zh-CN") == "交易渠道:柜面"
    assert model_reason("txn_type", 3.0, "en") == "Transaction type: cash withdrawal"


def test_percentages_and_thousands() -> None:
    """Ratios print as percentages, amounts with thousands separators."""
    assert model_reason("amount_to_balance", 0.85, "zh-CN") == "转出金额占余额的85%"
    assert model_reason("amount_cny", 123456.0, "en") == "Amount of 123,456 CNY"


def test_reason_shares_split_the_model_points_by_contribution() -> None:
    """The model's points go to the explained features in proportion, or equally when nothing adds up above 0."""
    shares = reason_shares([("fan_in_24h", 0.6), ("amount_cny", 0.2)], 400.0)
    assert [name for name, _ in shares] == ["fan_in_24h", "amount_cny"]
    assert [points for _, points in shares] == pytest.approx([300.0, 100.0])
    assert reason_shares([("a", 0.0), ("b", -0.1)], 300.0) == [("a", 150.0), ("b", 150.0)]
    assert reason_shares([], 300.0) == []
