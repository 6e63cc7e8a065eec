"""Human-readable messages for model explanations: one template per model feature, in zh-CN and en.

A model reason says what about *this* transaction pushed the score up, in words a teller or an
analyst reads, e.g. ``model_reason("amount_vs_typical", 12.3, "zh-CN") == "金额为该账户常见金额的12倍"``.
Locale "en" picks English; anything else zh-CN (as everywhere in Outpost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from features import CATALOGUE, ENUMS

__all__ = ["MESSAGE_TEMPLATES", "model_reason", "reason_shares"]

_ENUM_ZH: dict[str, dict[str, str]] = {
    "TransactionType": {
        "TRANSFER_OUT": "转账转出", "TRANSFER_IN": "转账转入", "CASH_WITHDRAWAL": "取现", "CASH_DEPOSIT": "存现",
        "CARD_PAYMENT": "刷卡消费", "BILL_PAYMENT": "缴费", "SALARY": "工资入账", "VIRTUAL_ASSET": "虚拟资产交易",
    },
    "Channel": {
        "MOBILE": "手机银行", "ONLINE": "网上银行", "TELLER": "柜面", "ATM": "ATM", "POS": "POS", "API": "开放接口",
    },
    "RiskLevel": {"UNKNOWN": "未评级", "LOW": "低", "MEDIUM": "中", "HIGH": "高"},
}
_ENUM_EN: dict[str, dict[str, str]] = {
    "TransactionType": {
        "TRANSFER_OUT": "outgoing transfer", "TRANSFER_IN": "incoming transfer", "CASH_WITHDRAWAL": "cash withdrawal",
        "CASH_DEPOSIT": "cash deposit", "CARD_PAYMENT": "card payment", "BILL_PAYMENT": "bill payment",
        "SALARY": "salary", "VIRTUAL_ASSET": "virtual-asset transaction",
    },
    "Channel": {"MOBILE": "mobile banking", "ONLINE": "online banking", "TELLER": "teller counter", "ATM": "ATM",
                "POS": "POS terminal", "API": "open API"},
    "RiskLevel": {"UNKNOWN": "unrated", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"},
}


def _enum_name(enum: str, value: float, table: dict[str, dict[str, str]]) -> str:
    for name, number in ENUMS[enum].items():
        if number == round(value):
            return table[enum][name]
    return str(round(value))


# (zh-CN, en) templates; {v} is the value, formatted by the template.
_T: dict[str, tuple[str, str]] = {
    "amount_cny": ("交易金额{v:,.0f}元", "amount of {v:,.0f} CNY"),
    "is_outflow": ("资金转出账户", "money leaves the account"),
    "mcc": ("商户类别码{v:.0f}", "merchant category {v:.0f}"),
    "is_cross_border": ("跨境交易", "cross-border transaction"),
    "is_round_amount": ("整千元金额", "a round amount (whole thousands of CNY)"),
    "is_just_under_threshold": ("现金金额略低于5万元大额报告标准",
                                "cash just under the 50,000 CNY reporting threshold"),
    "local_hour": ("交易时间为北京时间{v:.0f}点", "made at {v:.0f}:00 Beijing time"),
    "is_night": ("凌晨交易", "made in the middle of the night"),
    "customer_age": ("客户年龄{v:.0f}岁", "customer aged {v:.0f}"),
    "account_age_days": ("账户开立仅{v:.0f}天", "account opened only {v:.0f} days ago"),
    "is_employee": ("客户为本行员工", "the customer is a bank employee"),
    "balance_cny": ("交易前余额{v:,.0f}元", "balance of {v:,.0f} CNY before the transaction"),
    "amount_to_balance": ("转出金额占余额的{v:.0%}", "outflow of {v:.0%} of the balance"),
    "cash_out_count_24h": ("24小时内已取现{v:.0f}笔", "{v:.0f} cash withdrawals in the last 24 hours"),
    "cash_out_sum_24h": ("24小时内已取现{v:,.0f}元", "{v:,.0f} CNY withdrawn in cash in the last 24 hours"),
    "cash_branches_24h": ("24小时内在{v:.0f}个网点取现", "cash withdrawn at {v:.0f} branches within 24 hours"),
    "fan_out_24h": ("24小时内向{v:.0f}个不同账户转出", "paid {v:.0f} different accounts in the last 24 hours"),
    "fan_out_7d": ("7天内向{v:.0f}个不同账户转出", "paid {v:.0f} different accounts in the last 7 days"),
    "fan_in_24h": ("24小时内收到{v:.0f}个不同账户转入", "received money from {v:.0f} different accounts in 24 hours"),
    "fan_in_7d": ("7天内收到{v:.0f}个不同账户转入", "received money from {v:.0f} different accounts in 7 days"),
    "rapid_in_out_24h": ("24小时内转出达转入的{v:.0%}(快进快出)",
                         "{v:.0%} of the last 24 hours' inflow moved straight out"),
    "seconds_since_last": ("距上一笔交易{v:,.0f}秒", "{v:,.0f} seconds after the previous transaction"),
    "days_dormant": ("账户此前静默{v:.0f}天", "the account was dormant for {v:.0f} days"),
    "txn_count_total": ("账户历史交易仅{v:.0f}笔", "only {v:.0f} earlier transactions on the account"),
    "is_new_counterparty": ("首次向该对手账户交易", "first transaction with this counterparty"),
    "is_new_device": ("使用从未用过的新设备", "made from a device never used on this account"),
    "amount_vs_typical": ("金额为该账户常见金额的{v:.0f}倍", "amount is {v:.0f} times the account's typical amount"),
    "under_threshold_count_7d": ("7天内{v:.0f}笔现金略低于大额报告标准",
                                 "{v:.0f} cash amounts just under the reporting threshold in 7 days"),
    "night_count_7d": ("7天内凌晨交易{v:.0f}笔", "{v:.0f} night-time transactions in the last 7 days"),
    "counterparty_fraud_reports": ("对手账户已有{v:.0f}次确认欺诈记录",
                                   "the counterparty has {v:.0f} confirmed fraud reports"),
    "counterparty_fraud_rate": ("对手账户已标注交易中{v:.0%}为欺诈",
                                "{v:.0%} of the counterparty's labelled outcomes were fraud"),
}
_WINDOWS = {"1h": ("1小时", "hour"), "24h": ("24小时", "24 hours"), "7d": ("7天", "7 days"), "30d": ("30天", "30 days")}
for _w, (_zh, _en) in _WINDOWS.items():
    _T[f"out_count_{_w}"] = (f"近{_zh}内转出{{v:.0f}}笔", f"{{v:.0f}} outgoing transactions in the last {_en}")
    _T[f"out_sum_{_w}"] = (f"近{_zh}内转出{{v:,.0f}}元", f"{{v:,.0f}} CNY paid out in the last {_en}")
    _T[f"in_count_{_w}"] = (f"近{_zh}内转入{{v:.0f}}笔", f"{{v:.0f}} incoming transactions in the last {_en}")
    _T[f"in_sum_{_w}"] = (f"近{_zh}内转入{{v:,.0f}}元", f"{{v:,.0f}} CNY received in the last {_en}")

_ENUM_T: dict[str, tuple[str, str, str]] = {
    "txn_type": ("TransactionType", "交易类型:{name}", "transaction type: {name}"),
    "channel": ("Channel", "交易渠道:{name}", "channel: {name}"),
    "risk_level": ("RiskLevel", "客户风险等级为{name}", "customer risk level {name}"),
}

MESSAGE_TEMPLATES: frozenset[str] = frozenset(_T) | frozenset(_ENUM_T)
_SPECS = {spec.name: spec for spec in CATALOGUE}


def _fallback(feature_name: str, value: float, zh: bool) -> str:
    # A feature added to the catalogue after these templates: say what it is and its value.
    spec = _SPECS.get(feature_name)
    if spec is None:
        return f"{feature_name}={value:g}"
    return f"{spec.description_zh}: {value:g}" if zh else f"{spec.description_en}: {value:g}"


def model_reason(feature_name: str, value: float, locale: str) -> str:
    """The message for a model explanation of ``feature_name`` at ``value``, in ``locale`` ("en" or zh-CN)."""
    zh = locale != "en"
    if feature_name in _ENUM_T:
        enum, t_zh, t_en = _ENUM_T[feature_name]
        name = _enum_name(enum, value, _ENUM_ZH if zh else _ENUM_EN)
        text = (t_zh if zh else t_en).format(name=name)
        return text if zh else text[:1].upper() + text[1:]
    template = _T.get(feature_name)
    if template is None:
        return _fallback(feature_name, value, zh)
    fmt: Callable[..., str] = (template[0] if zh else template[1]).format
    text = fmt(v=value)
    return text if zh else text[:1].upper() + text[1:]


def reason_shares(contributions: Sequence[tuple[str, float]], model_points: float) -> list[tuple[str, float]]:
    """The model's points of a decision, shared out over its explanation (``ModelRunner.explain``: feature name and
    log-odds contribution): in proportion to the contributions, or equally when they do not add up to more than
    zero. The reply and the alert word the same shares."""
    total = sum(c for _, c in contributions)
    if total > 0:
        return [(name, model_points * (c / total)) for name, c in contributions]
    return [(name, model_points / max(len(contributions), 1)) for name, _ in contributions]
