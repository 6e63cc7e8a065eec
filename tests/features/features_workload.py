"""Generated histories for the feature tests: batches of transactions with late events, blocked rows, dry runs,
several currencies, and outcome labels that arrive with delays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features import NO_BALANCE, NO_TIME, FeatureConfig, new_batch

HOUR = 3_600_000_000
DAY = 24 * HOUR
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


@dataclass
class Call:
    """One score() call and the blocked flags its commit() receives."""

    txns: np.ndarray
    blocked: np.ndarray


@dataclass
class Outcome:
    """One record_outcome() call."""

    counterparty: int
    reported_at: int
    fraud: bool


@dataclass
class Workload:
    """A sequence of calls and outcomes in processing order."""

    steps: list[Call | Outcome] = field(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        """The score/commit calls only."""
        return [s for s in self.steps if isinstance(s, Call)]


def generate(
    config: FeatureConfig,
    *,
    seed: int,
    rows: int,
    accounts: int = 25,
    late_days: float = 4.0,
    blocked_share: float = 0.1,
    dry_share: float = 0.07,
    batches: bool = True,
) -> Workload:
    """A random but reproducible history; late events are at most ``late_days`` behind the clock."""
    rng = np.random.default_rng(seed)
    currencies = ["CNY", "CNY", "CNY", "USD", "JPY", "EUR", "KWD", "HKD"]
    counterparties = [int(x) for x in rng.integers(1, 2**63, 40, dtype=np.int64)]
    weights = 1.0 / np.arange(1, accounts + 1)
    weights /= weights.sum()
    account_keys = [int(x) for x in rng.integers(1, 2**63, accounts, dtype=np.int64)]
    devices = {a: [int(x) for x in rng.integers(1, 2**63, 3, dtype=np.int64)] for a in account_keys}
    branches = [int(x) for x in rng.integers(1, 2**63, 5, dtype=np.int64)]
    clock = T0
    work = Workload()
    made = 0
    while made < rows:
        size = 1 if not batches or rng.random() < 0.6 else int(rng.integers(2, 7))
        size = min(size, rows - made)
        batch = new_batch(size)
        hot = rng.choice(account_keys, size=2, p=weights)
        for i in range(size):
            clock += int(rng.exponential(25 * 60 * 1_000_000))
            r = rng.random()
            if r < 0.15:
                t = clock - int(rng.integers(0, 50 * 60 * 1_000_000))
            elif r < 0.2:
                t = clock - int(rng.integers(0, int(late_days * DAY)))
            else:
                t = clock
            account = int(hot[int(rng.integers(0, 2))]) if size > 1 else int(rng.choice(account_keys, p=weights))
            typ = int(rng.choice([1, 2, 3, 4, 5, 6, 7, 8], p=[0.25, 0.25, 0.12, 0.08, 0.14, 0.06, 0.05, 0.05]))
            currency = str(rng.choice(currencies))
            kind = rng.random()
            if kind < 0.15 and typ in (3, 4):
                fen = int(rng.integers(config.just_under_low_fen, config.threshold_fen))
                currency = "CNY"
                minor = fen
            elif kind < 0.3:
                minor = int(rng.integers(1, 30)) * 100_000
                currency = "CNY"
            else:
                minor = int(rng.lognormal(10, 1.5)) + 1
            batch[i]["event_time_us"] = t
            batch[i]["account_key"] = account
            batch[i]["counterparty_key"] = 0 if rng.random() < 0.15 else counterparties[int(rng.integers(0, 40))]
            batch[i]["device_key"] = 0 if rng.random() < 0.2 else devices[account][int(rng.integers(0, 3))]
            batch[i]["branch_key"] = branches[int(rng.integers(0, 5))] if typ in (3, 4) and rng.random() < 0.9 else 0
            batch[i]["amount_minor"] = minor
            batch[i]["amount_fen"] = config.to_fen(currency, minor)
            batch[i]["balance_fen"] = NO_BALANCE if rng.random() < 0.3 else int(rng.integers(-10_000, 10**8))
            batch[i]["account_opened_us"] = NO_TIME if rng.random() < 0.3 else T0 - int(rng.integers(0, 3000 * DAY))
            batch[i]["mcc"] = int(rng.choice([0, 5411, 6011, 7995]))
            batch[i]["customer_age"] = int(rng.integers(-1, 90))
            batch[i]["txn_type"] = typ
            batch[i]["channel"] = int(rng.integers(0, 7))
            batch[i]["risk_level"] = int(rng.integers(0, 4))
            batch[i]["is_employee"] = int(rng.random() < 0.05)
            batch[i]["cross_border"] = int(rng.random() < 0.1)
            batch[i]["apply"] = 0 if rng.random() < dry_share else 1
        blocked = (rng.random(size) < blocked_share) & (batch["apply"] == 1)
        work.steps.append(Call(txns=batch, blocked=blocked))
        made += size
        if rng.random() < 0.08:
            reported = clock + int(rng.integers(-2 * HOUR, 6 * HOUR))
            work.steps.append(Outcome(counterparties[int(rng.integers(0, 12))], reported, bool(rng.random() < 0.6)))
    return work


def all_rows(work: Workload) -> np.ndarray:
    """Every row of every call, in processing order."""
    return np.concatenate([c.txns for c in work.calls])
