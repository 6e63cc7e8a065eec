"""The feature catalogue: every value that rules and the model may read, declared once.

Rules are type-checked against this catalogue and the model's metadata must name
features from it; the feature engine fills a float64 matrix whose columns follow
``CATALOGUE`` order exactly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CATALOGUE",
    "ENUMS",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "FeatureKind",
    "FeatureSpec",
    "feature_index",
]


class FeatureKind(enum.Enum):
    """How a feature's float64 value is to be read."""

    BOOL = "bool"  # 0.0 or 1.0
    INT = "int"  # a whole number
    FLOAT = "float"  # a real number
    ENUM = "enum"  # a whole number naming a member of ``FeatureSpec.enum``


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureSpec:
    """One catalogue entry."""

    name: str
    kind: FeatureKind
    unit: str
    description_en: str
    description_zh: str
    computed: str
    enum: str = ""  # for ENUM features: a key of ``ENUMS``
    nonnegative: bool = True  # every value >= 0 (used by the rule checker for division)
    model_input: bool = True  # offered to the model (pure identifiers are not)


# Enum members as rule authors write them, with the integer the engine stores.
# The numbers equal the proto enum numbers, so a proto value passes through as is.
ENUMS: dict[str, dict[str, int]] = {
    "TransactionType": {
        "TRANSFER_OUT": 1,
        "TRANSFER_IN": 2,
        "CASH_WITHDRAWAL": 3,
        "CASH_DEPOSIT": 4,
        "CARD_PAYMENT": 5,
        "BILL_PAYMENT": 6,
        "SALARY": 7,
        "VIRTUAL_ASSET": 8,
    },
    "Channel": {
        "MOBILE": 1,
        "ONLINE": 2,
        "TELLER": 3,
        "ATM": 4,
        "POS": 5,
        "API": 6,
    },
    "RiskLevel": {
        "UNKNOWN": 0,
        "LOW": 1,
        "MEDIUM": 2,
        "HIGH": 3,
    },
}

_B, _I, _F, _E = FeatureKind.BOOL, FeatureKind.INT, FeatureKind.FLOAT, FeatureKind.ENUM


def _spec(name: str, kind: FeatureKind, unit: str, en: str, zh: str, computed: str, **kw: object) -> FeatureSpec:
    return FeatureSpec(
        name=name, kind=kind, unit=unit, description_en=en, description_zh=zh, computed=computed, **kw  # type: ignore[arg-type]
    )


def _windows() -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    labels = {
        "1h": ("1 hour", "1小时"), "24h": ("24 hours", "24小时"), "7d": ("7 days", "7天"), "30d": ("30 days", "30天")
    }
    for direction, en_dir, zh_dir in (("out", "outgoing", "转出"), ("in", "incoming", "转入")):
        for w, (en_w, zh_w) in labels.items():
            specs.append(
                _spec(
                    f"{direction}_count_{w}", _I, "transactions",
                    f"Number of {en_dir} transactions of the account in the {en_w} before this one",
                    f"此前{zh_w}内{zh_dir}交易笔数",
                    f"count of accepted, non-blocked {direction}flows with event_time in (t-{w}, t]",
                )
            )
            specs.append(
                _spec(
                    f"{direction}_sum_{w}", _F, "CNY",
                    f"Sum of {en_dir} amounts of the account in the {en_w} before this one",
                    f"此前{zh_w}内{zh_dir}金额合计(元)",
                    f"sum of amount_cny over accepted, non-blocked {direction}flows in (t-{w}, t]",
                )
            )
    return specs


CATALOGUE: tuple[FeatureSpec, ...] = (
    # --- this transaction -------------------------------------------------------------
    _spec("amount_cny", _F, "CNY", "Amount in CNY", "金额(元)",
          "amount_minor converted to CNY with the configured rate table"),
    _spec("txn_type", _E, "", "Transaction type", "交易类型", "Transaction.type", enum="TransactionType"),
    _spec("channel", _E, "", "Channel", "渠道", "Transaction.channel", enum="Channel"),
    _spec("is_outflow", _B, "", "Money leaves the account", "资金转出",
          "type is TRANSFER_OUT, CASH_WITHDRAWAL, CARD_PAYMENT, BILL_PAYMENT or VIRTUAL_ASSET"),
    _spec("mcc", _I, "", "Merchant category code (0 when none)", "商户类别码(无则为0)",
          "Transaction.merchant_category parsed as an integer"),
    _spec("is_cross_border", _B, "", "Transaction or counterparty outside the home country", "跨境交易",
          "country or counterparty_country set and different from the home country (CN)"),
    _spec("is_round_amount", _B, "", "Whole multiple of 1,000 CNY", "整千元金额",
          "amount_cny >= 1000 and amount_cny is a whole multiple of 1000"),
    _spec("is_just_under_threshold", _B, "", "Cash amount just under the reporting threshold",
          "现金金额略低于大额报告标准",
          "cash deposit or withdrawal with amount in [0.9 x threshold, threshold) (threshold 50,000 CNY)"),
    _spec("local_hour", _I, "hour", "Hour of day in Asia/Shanghai", "北京时间小时",
          "hour of event_time at UTC+8 (Asia/Shanghai has no daylight saving)"),
    _spec("is_night", _B, "", "Between 00:00 and 05:59 local time", "凌晨交易(0-6点)", "local_hour < 6"),
    # --- the customer -----------------------------------------------------------------
    _spec("customer_age", _I, "years", "Customer age (-1 when unknown)", "客户年龄(未知为-1)",
          "whole years from Customer.birth_date to event_time, else Customer.age, else -1", nonnegative=False),
    _spec("account_age_days", _F, "days", "Days since the account was opened (-1 when unknown)", "开户天数(未知为-1)",
          "(event_time - Customer.account_opened) in days", nonnegative=False),
    _spec("risk_level", _E, "", "Customer risk level from KYC", "客户风险等级", "Customer.risk_level",
          enum="RiskLevel"),
    _spec("is_employee", _B, "", "The customer is a bank employee", "本行员工", "Customer.is_employee"),
    _spec("balance_cny", _F, "CNY", "Balance before this transaction (-1 when unknown)", "交易前余额(元,未知为-1)",
          "Customer.balance_minor converted to CNY", nonnegative=False),
    _spec("amount_to_balance", _F, "ratio", "Outflow amount as a share of the balance", "转出金额占余额比例",
          "amount_cny / balance_cny for outflows with a known positive balance, else 0"),
    # --- velocity over event-time windows ---------------------------------------------
    *_windows(),
    _spec("cash_out_count_24h", _I, "transactions", "Cash withdrawals in the 24 hours before this one",
          "此前24小时内取现笔数",
          "count of non-blocked CASH_WITHDRAWAL in (t-24h, t]"),
    _spec("cash_out_sum_24h", _F, "CNY", "Cash withdrawn in the 24 hours before this one", "此前24小时内取现金额(元)",
          "sum of non-blocked CASH_WITHDRAWAL amounts in (t-24h, t]"),
    _spec("cash_branches_24h", _I, "branches",
          "Distinct branches of cash withdrawals in the last 24 hours, this one included",
          "24小时内(含本笔)取现网点数",
          "distinct branch_id over non-blocked CASH_WITHDRAWAL events in (t-24h, t] "
          "plus this one if it is a withdrawal"),
    _spec("fan_out_24h", _I, "accounts", "Distinct counterparties paid in the 24 hours before this one",
          "此前24小时内转出对手账户数",
          "distinct counterparty_id over non-blocked outflows in (t-24h, t]"),
    _spec("fan_out_7d", _I, "accounts", "Distinct counterparties paid in the 7 days before this one",
          "此前7天内转出对手账户数",
          "distinct counterparty_id over non-blocked outflows in (t-7d, t]"),
    _spec("fan_in_24h", _I, "accounts", "Distinct payers in the 24 hours before this one", "此前24小时内转入对手账户数",
          "distinct counterparty_id over non-blocked inflows in (t-24h, t]"),
    _spec("fan_in_7d", _I, "accounts", "Distinct payers in the 7 days before this one", "此前7天内转入对手账户数",
          "distinct counterparty_id over non-blocked inflows in (t-7d, t]"),
    _spec("rapid_in_out_24h", _F, "ratio", "Outflow within 24 hours as a share of the inflow before it (capped at 10)",
          "24小时内转出占转入比例(快进快出,上限10)",
          "(out_sum_24h + this outflow) / in_sum_24h when in_sum_24h > 0, else 0; capped at 10"),
    _spec("seconds_since_last", _F, "seconds", "Seconds since the account's previous transaction (-1 when none)",
          "距上一笔交易秒数(无则为-1)",
          "t - the latest event_time <= t among earlier events, blocked attempts included",
          nonnegative=False),
    _spec("days_dormant", _F, "days", "Days without any transaction before this one (0 when none before)",
          "此前静默天数(无历史为0)", "max(0, seconds_since_last) / 86400"),
    _spec("txn_count_total", _I, "transactions", "Transactions of the account ever seen before this one",
          "历史交易总笔数",
          "count of all earlier accepted events, blocked attempts included"),
    _spec("is_new_counterparty", _B, "", "First time this account deals with this counterparty", "首次与该对手交易",
          "counterparty_id set and never on an earlier non-blocked transaction of this account"),
    _spec("is_new_device", _B, "", "A device never seen on this account before", "新设备",
          "device_id set, the account has history, and the device was never on an earlier non-blocked transaction"),
    _spec("amount_vs_typical", _F, "ratio", "Amount relative to the account's typical amount (1 when no history)",
          "金额为该账户常见金额的倍数(无历史为1)",
          "amount_cny / exponentially weighted mean of earlier non-blocked amounts, in arrival order (weight 0.1)"),
    _spec("under_threshold_count_7d", _I, "transactions", "Cash amounts just under the reporting threshold in 7 days",
          "7天内略低于大额报告标准的现金交易笔数",
          "count of non-blocked cash deposits and withdrawals in (t-7d, t] with is_just_under_threshold"),
    _spec("night_count_7d", _I, "transactions", "Night-time transactions in the 7 days before this one",
          "此前7天内凌晨交易笔数",
          "count of earlier events in (t-7d, t] with local hour < 6, blocked attempts included"),
    _spec("counterparty_fraud_reports", _I, "reports",
          "Confirmed-fraud outcomes on this counterparty known at event time",
          "截至交易时该对手已确认欺诈次数",
          "count of CONFIRMED_FRAUD outcomes for this counterparty with reported_at <= t"),
    _spec("counterparty_fraud_rate", _F, "ratio", "Share of labelled outcomes on this counterparty that were fraud",
          "该对手已标注结果中确认欺诈的比例",
          "confirmed-fraud / all outcomes for this counterparty with reported_at <= t; 0 when none"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in CATALOGUE)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feature_index(name: str) -> int:
    """Column of ``name`` in the feature matrix; KeyError names the feature."""
    try:
        return FEATURE_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}") from None
