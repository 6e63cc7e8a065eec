"""The rule as the rest of Outpost sees it, and the vocabularies a rule file draws from."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACTION_FLOORS", "MODES", "TYPOLOGIES", "Rule"]

# Typology ids and what they cover; a rule names exactly one.
TYPOLOGIES: dict[str, str] = {
    "account_takeover": "someone else operates the account (new device, new payee, drained balance)",
    "card_testing": "card testing and compromised cards (small probes, bursts, then large payments)",
    "cross_border": "cross-border transfers and payments (large, split, to new payees)",
    "dormant_account": "long-dormant accounts that suddenly move money",
    "employee_misconduct": "bank employees' own accounts used for customer money, cash or gambling",
    "gambling": "gambling payments and gambling collection accounts (MCC 7995 and similar)",
    "illegal_fundraising": "illegal fundraising: many investors paying in, pooled money moved out",
    "illegal_intermediary": "account rental and payment laundering (跑分): accounts that pass others' money",
    "money_mule": "money mules: rapid in-and-out, fan-in/fan-out, cash-out of received money",
    "structuring": "splitting cash to stay under the 50,000 CNY reporting threshold",
    "telecom_fraud_victim": "customers being defrauded (telecom/online fraud): draining to new or reported payees",
    "unusual_amount": "amounts far outside the account's habits or its risk profile",
    "velocity": "unusually many transactions or counterparties in a short window",
    "virtual_assets": "virtual-asset trading (illegal in the PRC) and over-the-counter crypto patterns",
}

# The least action a hit forces, with the numbers of the proto's Action enum.
ACTION_FLOORS: dict[str, int] = {"REVIEW": 2, "CHALLENGE": 3, "BLOCK": 4}

MODES = ("active", "shadow")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One compiled rule, as written in the rule file.

    ``score`` is the rule's weight on the 0..1000 scale; ``action_floor`` uses the proto
    Action numbers (0 none, 2 REVIEW, 3 CHALLENGE, 4 BLOCK); ``channels`` holds Channel
    numbers (empty: every channel). ``reason_*``/``guidance_*`` are the raw templates
    (guidance '' when the rule has none); ``when`` is the condition's source text.
    """

    id: str
    description_zh: str
    description_en: str
    typology: str
    score: float
    action_floor: int
    channels: frozenset[int]
    mode: str
    reason_zh: str
    reason_en: str
    guidance_zh: str
    guidance_en: str
    when: str

    @property
    def active(self) -> bool:
        """True unless the rule is in shadow mode (evaluated and counted, never scored)."""
        return self.mode == "active"
