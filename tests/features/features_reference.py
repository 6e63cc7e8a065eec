"""Reference implementation of every catalogue feature: plain Python over the full history, no pruning.

Deliberately naive (lists and sets, recomputed per row) so that it is easy to check by reading; the engine's
features must equal these on generated histories. Semantics follow docs/features.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features import CATALOGUE, NO_BALANCE, NO_TIME, FeatureConfig

HOUR = 3_600_000_000
DAY = 24 * HOUR
WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
OUT_TYPES = {1, 3, 5, 6, 8}
IN_TYPES = {2, 4, 7}


@dataclass
class Event:
    """One applied transaction as the reference remembers it."""

    time: int
    fen: int
    typ: int
    counterparty: int
    device: int
    branch: int
    blocked: bool


class Reference:
    """Feature semantics over the complete history of applied transactions."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.history: dict[int, list[Event]] = {}
        self.outcomes: list[tuple[int, int, bool]] = []  # (counterparty, reported_at, fraud)

    def local_hour(self, t: int) -> int:
        """Hour of day at the configured UTC offset."""
        return ((t + self.config.utc_offset_us) // HOUR) % 24

    def just_under(self, typ: int, fen: int) -> bool:
        """Cash amount in [fraction x threshold, threshold)."""
        return typ in (3, 4) and self.config.just_under_low_fen <= fen < self.config.threshold_fen

    def typical(self, events: list[Event]) -> float:
        """Exponentially weighted mean of the non-blocked amounts, in processing order."""
        weight = self.config.typical_weight_float
        ewma = 0.0
        for e in events:
            if not e.blocked:
                ewma = float(e.fen) if ewma == 0.0 else ewma * (1.0 - weight) + e.fen * weight
        return ewma

    def features(self, row: np.void) -> dict[str, float]:
        """Every catalogue feature of one TXN_DTYPE row, from the history before it."""
        t = int(row["event_time_us"])
        fen = int(row["amount_fen"])
        typ = int(row["txn_type"])
        cp = int(row["counterparty_key"])
        dev = int(row["device_key"])
        branch = int(row["branch_key"])
        bal = int(row["balance_fen"])
        opened = int(row["account_opened_us"])
        events = self.history.get(int(row["account_key"]), [])
        f: dict[str, float] = {}
        outflow = typ in OUT_TYPES
        hour = self.local_hour(t)
        f["amount_cny"] = fen / 100
        f["txn_type"] = typ
        f["channel"] = int(row["channel"])
        f["is_outflow"] = float(outflow)
        f["mcc"] = int(row["mcc"])
        f["is_cross_border"] = float(row["cross_border"] != 0)
        f["is_round_amount"] = float(fen >= 100_000 and fen % 100_000 == 0)
        f["is_just_under_threshold"] = float(self.just_under(typ, fen))
        f["local_hour"] = hour
        f["is_night"] = float(hour < 6)
        f["customer_age"] = int(row["customer_age"])
        f["account_age_days"] = -1.0 if opened == NO_TIME else (t - opened) / DAY
        f["risk_level"] = int(row["risk_level"])
        f["is_employee"] = float(row["is_employee"] != 0)
        f["balance_cny"] = -1.0 if bal == NO_BALANCE else bal / 100
        f["amount_to_balance"] = fen / bal if bal != NO_BALANCE and outflow and bal > 0 else 0.0
        moved = [e for e in events if not e.blocked]

        def within(e: Event, w: int) -> bool:
            return 0 <= t - e.time < w

        for direction, types in (("out", OUT_TYPES), ("in", IN_TYPES)):
            for name, w in WINDOWS.items():
                chosen = [e for e in moved if e.typ in types and within(e, w)]
                f[f"{direction}_count_{name}"] = len(chosen)
                f[f"{direction}_sum_{name}"] = sum(e.fen for e in chosen) / 100
        cash = [e for e in moved if e.typ == 3 and within(e, DAY)]
        f["cash_out_count_24h"] = len(cash)
        f["cash_out_sum_24h"] = sum(e.fen for e in cash) / 100
        branches = {e.branch for e in cash if e.branch}
        if typ == 3 and branch:
            branches.add(branch)
        f["cash_branches_24h"] = len(branches)
        for direction, types in (("out", OUT_TYPES), ("in", IN_TYPES)):
            for name in ("24h", "7d"):
                f[f"fan_{direction}_{name}"] = len(
                    {e.counterparty for e in moved if e.typ in types and e.counterparty and within(e, WINDOWS[name])}
                )
        in_sum = sum(e.fen for e in moved if e.typ in IN_TYPES and within(e, DAY))
        out_sum = sum(e.fen for e in moved if e.typ in OUT_TYPES and within(e, DAY))
        if in_sum > 0:
            ratio = (float(out_sum) + (fen if outflow else 0)) / in_sum
            f["rapid_in_out_24h"] = min(ratio, self.config.rapid_in_out_cap)
        else:
            f["rapid_in_out_24h"] = 0.0
        earlier = [e.time for e in events if e.time <= t]
        if earlier:
            seconds = (t - max(earlier)) / 1_000_000
            f["seconds_since_last"] = seconds
            f["days_dormant"] = seconds / 86_400
        else:
            f["seconds_since_last"] = -1.0
            f["days_dormant"] = 0.0
        f["txn_count_total"] = len(events)
        f["is_new_counterparty"] = float(cp != 0 and cp not in {e.counterparty for e in moved})
        f["is_new_device"] = float(dev != 0 and len(events) > 0 and dev not in {e.device for e in moved})
        typical = self.typical(events)
        f["amount_vs_typical"] = fen / typical if typical > 0 else 1.0
        f["under_threshold_count_7d"] = sum(1 for e in moved if within(e, 7 * DAY) and self.just_under(e.typ, e.fen))
        f["night_count_7d"] = sum(1 for e in events if within(e, 7 * DAY) and self.local_hour(e.time) < 6)
        known = [fraud for (c, when, fraud) in self.outcomes if cp and c == cp and when <= t]
        f["counterparty_fraud_reports"] = sum(known)
        f["counterparty_fraud_rate"] = sum(known) / len(known) if known else 0.0
        return f

    def score_and_commit(self, txns: np.ndarray, blocked: np.ndarray) -> np.ndarray:
        """Features of a score() call (rows see earlier rows as applied, not blocked), then the commit."""
        names = [spec.name for spec in CATALOGUE]
        out = np.empty((len(txns), len(names)))
        added: list[tuple[int, Event]] = []
        for i, row in enumerate(txns):
            f = self.features(row)
            out[i] = [f[name] for name in names]
            if row["apply"]:
                event = Event(
                    time=int(row["event_time_us"]), fen=int(row["amount_fen"]), typ=int(row["txn_type"]),
                    counterparty=int(row["counterparty_key"]), device=int(row["device_key"]),
                    branch=int(row["branch_key"]), blocked=False,
                )
                self.history.setdefault(int(row["account_key"]), []).append(event)
                added.append((i, event))
        for i, event in added:
            event.blocked = bool(blocked[i])
        return out

    def record_outcome(self, counterparty: int, reported_at: int, fraud: bool) -> None:
        """A labelled outcome on a counterparty, known from reported_at on."""
        self.outcomes.append((counterparty, reported_at, fraud))
