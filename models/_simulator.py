"""A deterministic simulator of bank customers in Shenzhen and their transactions, with labelled fraud.

``simulate(SimulationConfig(...))`` returns a pandas DataFrame in the canonical tabular format
(the columns ``features.encode_frame`` reads, plus the labels ``is_fraud`` and ``typology``),
sorted by event time. Everyday behaviour is generated with vectorised numpy; the fraud
typologies (a few hundred accounts) are injected account by account. The same seed gives the
same frame, byte for byte. docs/models.md describes every typology.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["TYPOLOGIES", "SimulationConfig", "simulate"]

# Labelled typologies, in the order of their integer codes (0 is "normal").
TYPOLOGIES: tuple[str, ...] = (
    "telecom_fraud_victim",
    "money_mule",
    "illegal_fundraising",
    "structuring",
    "dormant_account",
    "card_testing",
    "gambling",
    "virtual_assets",
    "illegal_intermediary",
    "employee_misconduct",
)
_TYPO = {name: i + 1 for i, name in enumerate(TYPOLOGIES)}

# Share of accounts that carry each typology at fraud_scale 1.0.
_DEFAULT_PREVALENCE: dict[str, float] = {
    "telecom_fraud_victim": 0.006,
    "money_mule": 0.0025,
    "illegal_fundraising": 0.0005,
    "structuring": 0.0015,
    "dormant_account": 0.0015,
    "card_testing": 0.004,
    "gambling": 0.002,
    "virtual_assets": 0.0015,
    "illegal_intermediary": 0.0008,
    "employee_misconduct": 0.0003,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationConfig:
    """What to simulate. The same configuration always produces the same transactions."""

    accounts: int = 20_000
    days: int = 120
    seed: int = 7
    start: dt.date = dt.date(2026, 1, 1)  # local (Asia/Shanghai) date of the first simulated day
    fraud_scale: float = 1.0  # multiplies every typology's prevalence
    unconfirmed_share: float = 0.08  # typology accounts whose fraud is never confirmed (labelled normal)
    # Fraud evolves: these typologies only appear from this share of the period on (a new wave the
    # analysts wrote rules for before the model saw enough of it) ...
    emerging: tuple[str, ...] = ("structuring", "virtual_assets")
    emerging_from: float = 0.7
    # ... and telecom-fraud victims are sent to the counter for cash more and more (share added by the end).
    teller_drift: float = 0.3
    prevalence: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_PREVALENCE))

    def __post_init__(self) -> None:
        if self.accounts < 50:
            raise ValueError(f"accounts must be at least 50, got {self.accounts}")
        if self.days < 14:
            raise ValueError(f"days must be at least 14 (typologies need room), got {self.days}")
        if self.fraud_scale < 0:
            raise ValueError(f"fraud_scale must be >= 0, got {self.fraud_scale}")
        unknown = sorted((set(self.prevalence) | set(self.emerging)) - set(TYPOLOGIES))
        if unknown:
            raise ValueError(f"unknown typologies in prevalence: {unknown}; known: {list(TYPOLOGIES)}")


# --- enumerations used while generating (codes are indices) -------------------------
_TYPES = ("", "TRANSFER_OUT", "TRANSFER_IN", "CASH_WITHDRAWAL", "CASH_DEPOSIT", "CARD_PAYMENT", "BILL_PAYMENT",
          "SALARY", "VIRTUAL_ASSET")
T_OUT, T_IN, T_CASH_OUT, T_CASH_IN, T_CARD, T_BILL, T_SALARY, T_VA = range(1, 9)
_INFLOW_TYPES = np.array([T_IN, T_CASH_IN, T_SALARY])
_CHANNELS = ("", "MOBILE", "ONLINE", "TELLER", "ATM", "POS", "API")
C_MOBILE, C_ONLINE, C_TELLER, C_ATM, C_POS, C_API = range(1, 7)
_COUNTRIES = ("", "CN", "HK", "MO", "JP", "TH", "SG", "US", "GB", "KR", "MY", "KH", "PH", "KY", "SC", "MT", "NG", "AE")
_CN = 1
_TRAVEL = np.array([2, 3, 4, 5, 6, 7, 8, 9, 10])  # where customers travel
_OFFSHORE = np.array([6, 13, 14, 15, 17, 2])  # virtual-asset and shell destinations
_CARD_FRAUD = np.array([7, 8, 16, 12, 11, 2])  # merchants where stolen cards are tested
_GAMBLING_ABROAD = np.array([3, 11, 12, 11, 12])  # Macau, Cambodia, Philippines
# Shenzhen districts (administrative codes); other cities for domestic travel.
_REGIONS = ("", "440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311",
            "110000", "310000", "440100")
_SZ_REGIONS = np.arange(1, 10)
_BRANCHES_PER_REGION = 5
_BANKS = ("", "ICBC", "CCB", "ABC", "BOC", "BCM", "CMB", "PAB", "CITIC", "CIB", "SPDB", "DBSSSGSG", "HSBCHKHH",
          "BKCHHKHH", "CITIUS33")
_DOMESTIC_BANKS = np.arange(1, 11)
_FOREIGN_BANKS = np.arange(11, 15)
_RISK = ("UNKNOWN", "LOW", "MEDIUM", "HIGH")

# Merchant categories: (mcc, share of card payments, median CNY, log-sigma).
_MCCS = np.array([5411, 5812, 5814, 5541, 4121, 5311, 5999, 5912, 5732, 7011, 4511, 5944, 5691, 5977])
_MCC_SHARE = np.array([0.25, 0.16, 0.14, 0.07, 0.08, 0.06, 0.07, 0.04, 0.02, 0.02, 0.015, 0.005, 0.05, 0.025])
_MCC_MEDIAN = np.array([80, 120, 35, 300, 40, 400, 100, 60, 1500, 600, 1500, 3000, 350, 200], dtype=np.float64)
_MCC_SIGMA = np.array([0.8, 0.7, 0.5, 0.4, 0.6, 0.9, 1.0, 0.7, 0.8, 0.5, 0.5, 0.9, 0.7, 0.7])
MCC_GAMBLING = 7995

# Local hour profile of everyday activity (Asia/Shanghai).
_DAY_PROFILE = np.array([0.6, 0.3, 0.15, 0.1, 0.1, 0.3, 1, 3, 5, 6, 6, 6.5, 7, 6, 6, 6, 6, 7, 8, 8.5, 8, 6, 3.5, 1.6])
_DAY_PROFILE = _DAY_PROFILE / _DAY_PROFILE.sum()
_BUSINESS_HOURS = np.zeros(24)
_BUSINESS_HOURS[9:17] = 1.0
_BUSINESS_HOURS = _BUSINESS_HOURS / _BUSINESS_HOURS.sum()
_NIGHT_HOURS = np.zeros(24)
_NIGHT_HOURS[[22, 23, 0, 1, 2, 3, 4, 5]] = [1, 2, 3, 3, 2.5, 2, 1.5, 1]
_NIGHT_HOURS = _NIGHT_HOURS / _NIGHT_HOURS.sum()

# Counterparty identifier kinds: how a (kind, number) pair is written out.
CP_NONE, CP_PERSON, CP_ACCOUNT, CP_MERCHANT, CP_BILLER, CP_EMPLOYER, CP_PENSION, CP_SCAM, CP_GAMBLING, CP_VASP, \
    CP_SHELL = range(11)
_CP_FORMAT: dict[int, Callable[[int], str]] = {
    CP_NONE: lambda n: "",
    CP_PERSON: lambda n: f"6217{n:012d}",
    CP_ACCOUNT: lambda n: _account_id(n),
    CP_MERCHANT: lambda n: f"MER{n:09d}",
    CP_BILLER: lambda n: ("BILL-ELEC-SZ", "BILL-WATER-SZ", "BILL-GAS-SZ", "BILL-TEL-CM", "BILL-PROP")[n % 5],
    CP_EMPLOYER: lambda n: f"EMP{n:06d}",
    CP_PENSION: lambda n: "SSF-440300",
    CP_SCAM: lambda n: f"6230{n:012d}",
    CP_GAMBLING: lambda n: f"GMB{n:05d}",
    CP_VASP: lambda n: f"VASP{n:04d}",
    CP_SHELL: lambda n: f"CO{n:08d}",
}
DEV_NONE, DEV_OWN, DEV_FRAUD = range(3)
_DEV_FORMAT: dict[int, Callable[[int], str]] = {
    DEV_NONE: lambda n: "",
    DEV_OWN: lambda n: f"DEV{n:09d}",
    DEV_FRAUD: lambda n: f"DVX{n:08d}",
}

_US_PER_S = 1_000_000
_DAY_S = 86_400
_LOCAL_OFFSET_S = 8 * 3600


def _account_id(index: int) -> str:
    return f"6222{index:012d}"


# --- the event table ------------------------------------------------------------------
_COLUMNS: dict[str, type[np.generic]] = {
    "acct": np.int64,  # simulated account index
    "t": np.int64,  # local seconds since the start of the first day
    "type": np.int8,
    "channel": np.int8,
    "amount": np.int64,  # fen
    "cp_kind": np.int8,
    "cp_num": np.int64,
    "mcc": np.int16,
    "dev_kind": np.int8,
    "dev_num": np.int64,
    "country": np.int8,
    "cp_country": np.int8,
    "region": np.int8,
    "bank": np.int8,
    "branch": np.int32,  # -1: none
    "fraud": np.int8,
    "typology": np.int8,
}


class _Events:
    """Columns of generated events, appended in chunks and concatenated once."""

    def __init__(self) -> None:
        self._chunks: list[dict[str, np.ndarray]] = []

    def add(self, **cols: np.ndarray | int) -> None:
        n = max(np.size(v) for v in cols.values() if isinstance(v, np.ndarray))
        chunk: dict[str, np.ndarray] = {}
        for name, dtype in _COLUMNS.items():
            value = cols.pop(name, -1 if name == "branch" else 0)
            arr = np.asarray(value, dtype=dtype)
            chunk[name] = np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr.astype(dtype, copy=False)
            if chunk[name].shape != (n,):
                raise ValueError(f"column {name} has shape {chunk[name].shape}, expected ({n},)")
        if cols:
            raise ValueError(f"unknown event columns {sorted(cols)}")
        self._chunks.append(chunk)

    def table(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate([c[name] for c in self._chunks]) for name in _COLUMNS}


@dataclass(slots=True)
class _Population:
    n: int
    age: np.ndarray
    opened_day: np.ndarray  # account opening, in days relative to the first simulated day (negative: before)
    region: np.ndarray
    home_branch: np.ndarray
    risk: np.ndarray
    employee: np.ndarray
    initial_balance: np.ndarray  # fen
    salary: np.ndarray  # fen per month, 0 when none
    pension: np.ndarray  # fen per month, 0 when none
    employer: np.ndarray
    traveller: np.ndarray
    business: np.ndarray
    business_scale: np.ndarray  # multiplies a business's typical cash deposit
    collector: np.ndarray  # receives many small payments from many payers (shop, landlord, tutor, group buys)
    night_owl: np.ndarray  # shift workers and night owls: much of their activity is at night
    gamer: np.ndarray  # small digital-goods top-ups, often at night, in bursts
    activity: np.ndarray  # multiplies everyday rates


def _hours(rng: np.random.Generator, n: int, profile: np.ndarray) -> np.ndarray:
    hour = rng.choice(24, size=n, p=profile)
    return hour * 3600 + rng.integers(0, 3600, size=n)


def _lognormal_fen(
    rng: np.random.Generator, median: np.ndarray | float, sigma: np.ndarray | float, n: int
) -> np.ndarray:
    yuan = np.asarray(median) * np.exp(np.asarray(sigma) * rng.standard_normal(n))
    fen: np.ndarray = np.maximum(np.round(yuan * 100), 100).astype(np.int64)
    return fen


def _round_to(fen: np.ndarray, yuan: int) -> np.ndarray:
    step = yuan * 100
    return np.maximum(np.round(fen / step), 1).astype(np.int64) * step


def _population(rng: np.random.Generator, cfg: SimulationConfig) -> _Population:
    n = cfg.accounts
    elderly = rng.random(n) < 0.2
    age = np.where(elderly, rng.integers(60, 91, n), np.clip(np.round(rng.normal(38, 11, n)), 18, 59)).astype(np.int64)
    opened_day = -rng.integers(30, 15 * 365, n)
    recent = rng.random(n) < 0.04
    opened_day = np.where(recent, -rng.integers(1, 90, n), opened_day)
    region = rng.choice(_SZ_REGIONS, size=n)
    home_branch = (region - 1) * _BRANCHES_PER_REGION + rng.integers(0, _BRANCHES_PER_REGION, n)
    risk = rng.choice(np.array([1, 2, 3, 0]), size=n, p=[0.84, 0.11, 0.02, 0.03])
    employee = (rng.random(n) < 0.01).astype(np.int8)
    savings_median = np.where(age >= 60, 90_000.0, np.where(age < 25, 6_000.0, 30_000.0))
    initial_balance = _lognormal_fen(rng, savings_median, 1.0, n)
    has_salary = (age < 60) & (rng.random(n) < 0.88)
    salary = np.where(has_salary, _lognormal_fen(rng, 9_000.0, 0.45, n), 0)
    pension = np.where((age >= 60) & (rng.random(n) < 0.85), _lognormal_fen(rng, 4_500.0, 0.3, n), 0)
    return _Population(
        n=n,
        age=age,
        opened_day=opened_day,
        region=region,
        home_branch=home_branch,
        risk=risk,
        employee=employee,
        initial_balance=initial_balance,
        salary=salary,
        pension=pension,
        employer=rng.integers(0, max(50, n // 40), n),
        traveller=rng.random(n) < 0.12,
        business=rng.random(n) < 0.05,
        business_scale=np.exp(0.6 * rng.standard_normal(n)),
        collector=rng.random(n) < 0.025,
        night_owl=rng.random(n) < 0.05,
        gamer=(age < 35) & (rng.random(n) < 0.06),
        activity=np.exp(0.5 * rng.standard_normal(n)) * np.where(age >= 70, 0.6, 1.0),
    )


def _everyday(rng: np.random.Generator, cfg: SimulationConfig, pop: _Population, ev: _Events) -> None:
    """Salaries and pensions in, bills, card payments, family transfers, cash: the unlabelled majority."""
    days = cfg.days
    n = pop.n
    idx = np.arange(n)

    # Salaries (around the 10th) and pensions (the 15th), monthly.
    for pay, day_of_month, cp_kind in ((pop.salary, 9, CP_EMPLOYER), (pop.pension, 14, CP_PENSION)):
        payees = idx[pay > 0]
        for month_start in range(0, days, 30):
            day = month_start + day_of_month + rng.integers(-1, 2, payees.size)
            keep = (day >= 0) & (day < days)
            who = payees[keep]
            m = who.size
            ev.add(
                acct=who, t=day[keep] * _DAY_S + 9 * 3600 + rng.integers(0, 7200, m), type=T_SALARY, channel=C_API,
                amount=np.round(pay[who] * rng.uniform(0.97, 1.05, m)).astype(np.int64),
                cp_kind=cp_kind, cp_num=pop.employer[who] if cp_kind == CP_EMPLOYER else 0,
                country=_CN, cp_country=_CN, region=pop.region[who], bank=rng.choice(_DOMESTIC_BANKS, m),
            )

    def poisson(rate_per_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = rng.poisson(rate_per_day * days)
        who = np.repeat(idx, counts)
        return who, rng.integers(0, days, who.size)

    def owner_hours(who: np.ndarray) -> np.ndarray:
        """Seconds into the local day: the everyday profile, or the night for night owls much of the time."""
        m = who.size
        night = pop.night_owl[who] & (rng.random(m) < 0.45)
        return np.where(night, _hours(rng, m, _NIGHT_HOURS), _hours(rng, m, _DAY_PROFILE))

    def own_device(who: np.ndarray, day: np.ndarray, switch_day: np.ndarray) -> np.ndarray:
        device: np.ndarray = who * 2 + (day >= switch_day[who]).astype(np.int64)
        return device

    # A few customers change phones during the period: a new device from that day on.
    switch_day = np.where(rng.random(n) < 0.06, rng.integers(1, days, n), days + 1)

    # Card payments.
    who, day = poisson(0.16 * pop.activity)
    m = who.size
    cat = rng.choice(_MCCS.size, size=m, p=_MCC_SHARE / _MCC_SHARE.sum())
    channel = rng.choice(np.array([C_POS, C_ONLINE, C_MOBILE]), size=m, p=[0.6, 0.25, 0.15])
    abroad = pop.traveller[who] & (rng.random(m) < 0.06)
    country = np.where(abroad, rng.choice(_TRAVEL, m), _CN)
    online = channel != C_POS
    # Abroad, local daytime in the Americas and Europe is night in Beijing.
    shift = np.where(country == 7, 13 * 3600, np.where(country == 8, 8 * 3600, 0))
    ev.add(
        acct=who, t=day * _DAY_S + (owner_hours(who) + shift) % _DAY_S, type=T_CARD, channel=channel,
        amount=_lognormal_fen(rng, _MCC_MEDIAN[cat], _MCC_SIGMA[cat], m), cp_kind=CP_MERCHANT,
        cp_num=_MCCS[cat] * 10_000 + rng.integers(0, 400, m), mcc=_MCCS[cat],
        dev_kind=np.where(online, DEV_OWN, DEV_NONE), dev_num=np.where(online, own_device(who, day, switch_day), 0),
        country=country, cp_country=country,
        region=np.where(abroad, 0, np.where(rng.random(m) < 0.03, rng.integers(10, 13, m), pop.region[who])),
    )

    # Lottery tickets (MCC 7995 too, small, daytime, domestic): why the gambling MCC alone is not fraud.
    players = pop.activity * (rng.random(n) < 0.04)
    who, day = poisson(0.12 * players)
    m = who.size
    ev.add(
        acct=who, t=day * _DAY_S + _hours(rng, m, _DAY_PROFILE), type=T_CARD, channel=C_POS,
        amount=_round_to(_lognormal_fen(rng, 20.0, 0.8, m), 2), cp_kind=CP_MERCHANT,
        cp_num=MCC_GAMBLING * 10_000 + rng.integers(0, 30, m), mcc=MCC_GAMBLING, country=_CN, cp_country=_CN,
        region=pop.region[who],
    )

    # Bills.
    who, day = poisson(np.full(n, 0.09))
    m = who.size
    channel = rng.choice(np.array([C_API, C_ONLINE, C_MOBILE]), size=m, p=[0.5, 0.2, 0.3])
    with_dev = channel != C_API
    ev.add(
        acct=who, t=day * _DAY_S + _hours(rng, m, _DAY_PROFILE), type=T_BILL, channel=channel,
        amount=_lognormal_fen(rng, 180.0, 0.6, m), cp_kind=CP_BILLER, cp_num=rng.integers(0, 5, m),
        dev_kind=np.where(with_dev, DEV_OWN, DEV_NONE), dev_num=np.where(with_dev, own_device(who, day, switch_day), 0),
        country=_CN, cp_country=_CN, region=pop.region[who], bank=rng.choice(_DOMESTIC_BANKS, m),
    )

    # Transfers to family (two or three regular payees) and to new payees (rent, friends, purchases).
    who, day = poisson(0.06 * pop.activity)
    m = who.size
    ev.add(
        acct=who, t=day * _DAY_S + owner_hours(who), type=T_OUT,
        channel=rng.choice(np.array([C_MOBILE, C_ONLINE]), size=m, p=[0.8, 0.2]),
        amount=_round_to(_lognormal_fen(rng, 1_500.0, 0.9, m), 10), cp_kind=CP_PERSON,
        cp_num=who * 4 + rng.integers(0, 3, m), dev_kind=DEV_OWN, dev_num=own_device(who, day, switch_day),
        country=_CN, cp_country=_CN, region=pop.region[who], bank=rng.choice(_DOMESTIC_BANKS, m),
    )
    who, day = poisson(0.02 * pop.activity)
    m = who.size
    big = rng.random(m) < 0.05  # a deposit on a flat, a car, a wedding gift: large and to someone new
    amount = np.where(big, _round_to(_lognormal_fen(rng, 40_000.0, 0.8, m), 100), _lognormal_fen(rng, 700.0, 1.1, m))
    ev.add(
        acct=who, t=day * _DAY_S + _hours(rng, m, _DAY_PROFILE), type=T_OUT,
        channel=rng.choice(np.array([C_MOBILE, C_ONLINE, C_TELLER]), size=m, p=[0.7, 0.25, 0.05]),
        amount=amount, cp_kind=CP_PERSON, cp_num=1_000_000_000 + rng.integers(0, 10**10, m),
        dev_kind=DEV_OWN, dev_num=own_device(who, day, switch_day), country=_CN, cp_country=_CN,
        region=pop.region[who], bank=rng.choice(_DOMESTIC_BANKS, m),
    )
    # Incoming transfers from family and friends (more for customers without a salary).
    who, day = poisson(np.where(pop.salary + pop.pension > 0, 0.025, 0.12) * pop.activity)
    m = who.size
    ev.add(
        acct=who, t=day * _DAY_S + _hours(rng, m, _DAY_PROFILE), type=T_IN, channel=C_ONLINE,
        amount=_round_to(_lognormal_fen(rng, 1_200.0, 0.9, m), 10), cp_kind=CP_PERSON,
        cp_num=np.where(rng.random(m) < 0.7, who * 4 + rng.integers(0, 3, m),
                        1_000_000_000 + rng.integers(0, 10**10, m)),
        country=_CN, cp_country=_CN, region=pop.region[who], bank=rng.choice(_DOMESTIC_BANKS, m),
    )

    # Cash withdrawals: ATM mostly, the elderly at the teller; a few large ones at the counter.
    who, day = poisson(np.where(pop.age >= 60, 0.05, 0.03))
    m = who.size
    teller = rng.random(m) < np.where(pop.age[who] >= 60, 0.55, 0.12)
    large = teller & (rng.random(m) < 0.04)
    amount = np.where(teller, _round_to(_lognormal_fen(rng, 4_000.0, 0.7, m), 100),
                      _round_to(_lognormal_fen(rng, 800.0, 0.7, m), 100))
    amount = np.where(large, _round_to(_lognormal_fen(rng, 60_000.0, 0.6, m), 1000), amount)
    branch = np.where(rng.random(m) < 0.8, pop.home_branch[who], rng.integers(0, 9 * _BRANCHES_PER_REGION, m))
    ev.add(
        acct=who, t=day * _DAY_S + np.where(teller, _hours(rng, m, _BUSINESS_HOURS), _hours(rng, m, _DAY_PROFILE)),
        type=T_CASH_OUT, channel=np.where(teller, C_TELLER, C_ATM), amount=amount, country=_CN,
        region=branch // _BRANCHES_PER_REGION + 1, branch=branch,
    )
    # Cash deposits: small businesses several times a week, sometimes just under the threshold.
    who, day = poisson(np.where(pop.business, 0.35, 0.01))
    m = who.size
    amount = _round_to(_lognormal_fen(rng, np.where(pop.business[who], 12_000.0 * pop.business_scale[who], 3_000.0),
                                      0.6, m), 100)
    ev.add(
        acct=who, t=day * _DAY_S + _hours(rng, m, _BUSINESS_HOURS), type=T_CASH_IN,
        channel=np.where(amount > 2_000_000, C_TELLER, rng.choice(np.array([C_TELLER, C_ATM]), m)), amount=amount,
        country=_CN, region=pop.region[who], branch=pop.home_branch[who],
    )
    # Legitimate-looking small virtual-asset purchases by a handful of customers (never confirmed as fraud).
    dabblers = (rng.random(n) < 0.015).astype(np.float64)
    who, day = poisson(0.04 * dabblers)
    m = who.size
    ev.add(
        acct=who, t=day * _DAY_S + owner_hours(who), type=T_VA, channel=C_MOBILE,
        amount=_round_to(_lognormal_fen(rng, 2_500.0, 1.1, m), 10), cp_kind=CP_VASP, cp_num=rng.integers(0, 60, m),
        dev_kind=DEV_OWN, dev_num=own_device(who, day, switch_day), country=_CN,
        cp_country=np.where(rng.random(m) < 0.5, _CN, rng.choice(_OFFSHORE, m)), region=pop.region[who],
    )

    # Collectors (a small shop, a landlord, a tutor, a group-buy organiser): many payers, odd amounts, swept
    # to suppliers in lumps. They look like mules and rented accounts, and are not.
    who, day = poisson(0.7 * pop.collector)
    m = who.size
    ev.add(
        acct=who, t=day * _DAY_S + owner_hours(who), type=T_IN, channel=C_ONLINE,
        amount=_lognormal_fen(rng, 350.0, 1.0, m), cp_kind=CP_PERSON,
        cp_num=np.where(rng.random(m) < 0.4, who * 4 + rng.integers(0, 3, m),
                        2_000_000_000 + who * 64 + rng.integers(0, 64, m)),
        country=_CN, cp_country=_CN, region=pop.region[who], bank=rng.choice(_DOMESTIC_BANKS, m),
    )
    who, day = poisson(0.08 * pop.collector)
    m = who.size
    ev.add(
        acct=who, t=day * _DAY_S + owner_hours(who), type=T_OUT,
        channel=rng.choice(np.array([C_MOBILE, C_ONLINE, C_API]), size=m, p=[0.5, 0.3, 0.2]),
        amount=_round_to(_lognormal_fen(rng, 2_500.0, 0.8, m), 10), cp_kind=CP_SHELL,
        cp_num=who * 4 + rng.integers(0, 4, m), dev_kind=DEV_OWN, dev_num=own_device(who, day, switch_day),
        country=_CN, cp_country=_CN, region=pop.region[who], bank=rng.choice(_DOMESTIC_BANKS, m),
    )

    # Gamers: bursts of small digital-goods payments, mostly at night, sometimes from a new phone.
    who, day = poisson(0.06 * pop.gamer)
    m = who.size
    burst = rng.integers(1, 6, m)
    who, day = np.repeat(who, burst), np.repeat(day, burst)
    start = np.repeat(np.where(rng.random(m) < 0.6, _hours(rng, m, _NIGHT_HOURS), _hours(rng, m, _DAY_PROFILE)),
                      burst)
    k = who.size
    foreign = rng.random(k) < 0.15
    ev.add(
        acct=who, t=day * _DAY_S + (start + rng.integers(0, 900, k)) % _DAY_S, type=T_CARD,
        channel=rng.choice(np.array([C_ONLINE, C_MOBILE]), size=k),
        amount=_round_to(_lognormal_fen(rng, 30.0, 0.9, k), 1),
        cp_kind=CP_MERCHANT, cp_num=5816 * 10_000 + rng.integers(0, 50, k), mcc=5816, dev_kind=DEV_OWN,
        dev_num=own_device(who, day, switch_day), country=np.where(foreign, 7, _CN),
        cp_country=np.where(foreign, rng.choice(np.array([7, 9, 6]), k), _CN), region=pop.region[who],
    )


class _Injector:
    """Adds labelled typology events, account by account, and notes accounts whose everyday life changes."""

    def __init__(self, rng: np.random.Generator, cfg: SimulationConfig, pop: _Population, ev: _Events) -> None:
        self.rng = rng
        self.cfg = cfg
        self.pop = pop
        self.ev = ev
        self.quiet: list[tuple[int, int, int]] = []  # (account, first quiet day, first active day again)
        self.opened: dict[int, int] = {}  # account -> new opening day
        self.fraud_device = 0
        self.fresh_cp = 0
        self.scam_pool: np.ndarray = np.zeros(0, dtype=np.int64)
        self.mules: np.ndarray = np.zeros(0, dtype=np.int64)
        self.current = ""  # the typology being injected

    # helpers ----------------------------------------------------------------------
    def new_device(self) -> int:
        self.fraud_device += 1
        return self.fraud_device

    def new_cp(self, k: int = 1) -> np.ndarray:
        start = self.fresh_cp
        self.fresh_cp += k
        return 5_000_000_000 + np.arange(start, start + k)

    def day_start(self, lo: float, hi: float) -> int:
        """A start day in [lo, hi) of the period; emerging typologies start no earlier than ``emerging_from``."""
        days = self.cfg.days
        if self.current in self.cfg.emerging:
            lo = max(lo, self.cfg.emerging_from)
            hi = max(hi, lo + 0.05)
        return int(self.rng.integers(int(lo * days), max(int(lo * days) + 1, int(hi * days))))

    def add(
        self, acct: int, t: np.ndarray, typology: str, *, fraud: bool = True, **cols: np.ndarray | int | None
    ) -> None:
        t = np.asarray(t, dtype=np.int64)
        t = np.clip(t, 0, self.cfg.days * _DAY_S - 1)
        if cols.get("region") is None:
            cols["region"] = int(self.pop.region[acct])
        cols.setdefault("country", _CN)
        given: dict[str, np.ndarray | int] = {k: v for k, v in cols.items() if v is not None}
        self.ev.add(acct=np.full(t.size, acct), t=t, fraud=int(fraud), typology=_TYPO[typology] if fraud else 0,
                    **given)

    # typologies -------------------------------------------------------------------
    def telecom_fraud_victim(self, acct: int, balance_at: Callable[[int, int], int]) -> None:
        """A scam call, then large transfers to new (scam) accounts or a teller withdrawal of most of the balance."""
        rng = self.rng
        day = self.day_start(0.05, 0.98)
        t0 = day * _DAY_S + int(rng.integers(9 * 3600, 17 * 3600))
        balance = max(balance_at(acct, t0), 2_000_000)
        elderly = self.pop.age[acct] >= 60
        # Scammers move victims to the bank counter as online transfer controls tighten: the cash share grows.
        drift = self.cfg.teller_drift * day / self.cfg.days
        if rng.random() < (0.35 if elderly else 0.1) + drift:
            share = rng.uniform(0.5, 0.95)
            amount = int(_round_to(np.array([balance * share]), 1000)[0])
            branch = int(self.pop.home_branch[acct]) if rng.random() < 0.7 else int(rng.integers(0, 45))
            self.add(acct, np.array([t0]), "telecom_fraud_victim", type=T_CASH_OUT, channel=C_TELLER,
                     amount=amount, branch=branch, region=branch // _BRANCHES_PER_REGION + 1)
            return
        k = int(rng.integers(1, 5))
        shares = rng.dirichlet(np.ones(k)) * rng.uniform(0.4, 0.95)
        amounts = np.maximum(_round_to(balance * shares, 100 if rng.random() < 0.6 else 1), 50_000)
        t = t0 + np.cumsum(rng.integers(120, 5400, k))
        cps = rng.choice(self.scam_pool, size=k)
        open_mules = np.array([m for m in self.mules if self.opened.get(int(m), 0) <= day], dtype=np.int64)
        own = open_mules.size > 0 and rng.random() < 0.4
        dev = (DEV_OWN, acct * 2) if rng.random() < 0.8 else (DEV_FRAUD, self.new_device())
        for i in range(k):
            if own:  # paid into one of our own mule accounts: the mule sees the matching inflow
                mule = int(rng.choice(open_mules))
                self.add(acct, t[i:i + 1], "telecom_fraud_victim", type=T_OUT, channel=C_MOBILE,
                         amount=amounts[i:i + 1], cp_kind=CP_ACCOUNT, cp_num=mule, dev_kind=dev[0], dev_num=dev[1],
                         cp_country=_CN, bank=6)
                self.add(mule, t[i:i + 1] + 1, "money_mule", type=T_IN, channel=C_ONLINE, amount=amounts[i:i + 1],
                         cp_kind=CP_ACCOUNT, cp_num=acct, cp_country=_CN, bank=6)
            else:
                self.add(acct, t[i:i + 1], "telecom_fraud_victim", type=T_OUT,
                         channel=C_MOBILE if rng.random() < 0.8 else C_ONLINE, amount=amounts[i:i + 1],
                         cp_kind=CP_SCAM, cp_num=int(cps[i]), dev_kind=dev[0], dev_num=dev[1], cp_country=_CN,
                         bank=int(rng.choice(_DOMESTIC_BANKS)))

    def money_mule(self, acct: int) -> None:
        """Many inflows from different payers, forwarded within minutes to hours, some cash out at ATMs."""
        rng = self.rng
        start = self.day_start(0.05, 0.9)
        self.opened[acct] = start - int(rng.integers(3, 60))
        length = int(rng.integers(3, 15))
        dev = self.new_device() if rng.random() < 0.6 else 0
        for day in range(start, min(start + length, self.cfg.days)):
            if rng.random() < 0.3:
                continue
            k = int(rng.integers(1, 7))
            t_in = day * _DAY_S + np.sort(rng.integers(8 * 3600, 23 * 3600, k))
            amounts = _round_to(_lognormal_fen(rng, 8_000.0, 0.8, k), 10 if rng.random() < 0.5 else 1)
            payers = rng.integers(0, 400, k)
            self.add(acct, t_in, "money_mule", type=T_IN, channel=C_ONLINE, amount=amounts,
                     cp_kind=np.where(payers < 200, CP_PERSON, CP_SCAM), cp_num=self.new_cp(k),
                     cp_country=_CN, bank=rng.choice(_DOMESTIC_BANKS, k))
            total = int(amounts.sum())
            j = int(rng.integers(1, 4))
            shares = rng.dirichlet(np.ones(j)) * rng.uniform(0.85, 0.99)
            t_out = t_in[-1] + np.cumsum(rng.integers(60, 4 * 3600, j))
            cash = rng.random(j) < 0.25
            out_amounts = np.maximum(_round_to(total * shares, 100), 10_000)
            abroad = rng.random(j) < 0.15
            branches = rng.integers(0, 45, j)
            self.add(acct, t_out, "money_mule", type=np.where(cash, T_CASH_OUT, T_OUT),
                     channel=np.where(cash, C_ATM, C_MOBILE), amount=np.where(cash, np.minimum(out_amounts, 2_000_000),
                                                                              out_amounts),
                     cp_kind=np.where(cash, CP_NONE, CP_SCAM), cp_num=np.where(cash, 0, rng.choice(self.scam_pool, j)),
                     dev_kind=np.where(cash, DEV_NONE, DEV_FRAUD if dev else DEV_OWN),
                     dev_num=np.where(cash, 0, dev if dev else acct * 2),
                     cp_country=np.where(cash, 0, np.where(abroad, rng.choice(_OFFSHORE, j), _CN)),
                     bank=np.where(cash, 0, np.where(abroad, rng.choice(_FOREIGN_BANKS, j),
                                                     rng.choice(_DOMESTIC_BANKS, j))),
                     branch=np.where(cash, branches, -1))

    def illegal_fundraising(self, acct: int) -> None:
        """Fan-in from many small payers (round sums, daytime), pooled and moved on in large transfers."""
        rng = self.rng
        start = self.day_start(0.02, 0.7)
        length = int(rng.integers(15, 40))
        payers = self.new_cp(int(rng.integers(40, 160)))
        balance = 0
        for day in range(start, min(start + length, self.cfg.days)):
            k = int(rng.poisson(4 if rng.random() < 0.3 else 1.2))
            if k:
                amounts = rng.choice(np.array([5_000, 10_000, 20_000, 30_000, 50_000]) * 100, size=k,
                                     p=[0.3, 0.35, 0.2, 0.1, 0.05])
                amounts = np.where(rng.random(k) < 0.3, _lognormal_fen(rng, 8_000.0, 0.7, k), amounts)
                self.add(acct, day * _DAY_S + rng.integers(9 * 3600, 20 * 3600, k), "illegal_fundraising",
                         type=T_IN, channel=C_ONLINE, amount=amounts, cp_kind=CP_PERSON, cp_num=rng.choice(payers, k),
                         cp_country=_CN, bank=rng.choice(_DOMESTIC_BANKS, k))
                balance += int(amounts.sum())
            if balance > 20_000_000 and rng.random() < 0.35:
                amount = int(_round_to(np.array([balance * rng.uniform(0.6, 0.9)]), 1000)[0])
                va = rng.random() < 0.2
                self.add(acct, np.array([day * _DAY_S + int(rng.integers(15 * 3600, 23 * 3600))]),
                         "illegal_fundraising", type=T_VA if va else T_OUT, channel=C_ONLINE, amount=amount,
                         cp_kind=CP_VASP if va else CP_SHELL, cp_num=int(rng.integers(0, 40)),
                         dev_kind=DEV_OWN, dev_num=acct * 2,
                         cp_country=int(rng.choice(_OFFSHORE)) if va else _CN, bank=int(rng.choice(_DOMESTIC_BANKS)))
                balance -= amount

    def structuring(self, acct: int) -> None:
        """Repeated cash just under the 50,000 CNY reporting threshold, at several branches over a few days."""
        rng = self.rng
        start = self.day_start(0.02, 0.95)
        k = int(rng.integers(3, 9))
        days = start + np.sort(rng.integers(0, 8, k))
        amounts = _round_to(rng.uniform(42_000, 49_900, k) * 100, 100)
        deposit = rng.random() < 0.7
        branches = rng.integers(0, 45, k)
        self.add(acct, days * _DAY_S + _hours(rng, k, _BUSINESS_HOURS), "structuring",
                 type=T_CASH_IN if deposit else T_CASH_OUT, channel=np.where(rng.random(k) < 0.8, C_TELLER, C_ATM),
                 amount=amounts, branch=branches, region=branches // _BRANCHES_PER_REGION + 1)

    def dormant_account(self, acct: int, *, fraud: bool) -> None:
        """Months of silence, then a large inflow moved on within hours (or, unlabelled, a quiet return)."""
        rng = self.rng
        days = self.cfg.days
        quiet_from = int(rng.integers(1, max(2, days // 6)))
        wake = int(rng.integers(min(days - 2, quiet_from + max(30, days // 2)), days - 1))
        self.quiet.append((acct, quiet_from, wake))
        t0 = wake * _DAY_S + int(rng.integers(8 * 3600, 22 * 3600))
        if not fraud:
            large = rng.random() < 0.35  # back from abroad, an inheritance, a flat to buy: large and legitimate
            amount = int(_round_to(_lognormal_fen(rng, 120_000.0 if large else 3_000.0, 0.8, 1), 10)[0])
            self.add(acct, np.array([t0]), "dormant_account", fraud=False, type=T_IN, channel=C_ONLINE,
                     amount=amount, cp_kind=CP_PERSON, cp_num=acct * 4, cp_country=_CN,
                     bank=int(rng.choice(_DOMESTIC_BANKS)))
            if large:
                self.add(acct, np.array([t0 + int(rng.integers(3600, 3 * _DAY_S))]), "dormant_account", fraud=False,
                         type=T_OUT, channel=C_TELLER if rng.random() < 0.3 else C_ONLINE,
                         amount=int(amount * rng.uniform(0.5, 0.9)) // 1000 * 1000, cp_kind=CP_SHELL,
                         cp_num=int(self.new_cp()[0]), dev_kind=DEV_OWN, dev_num=acct * 2, cp_country=_CN,
                         bank=int(rng.choice(_DOMESTIC_BANKS)))
            return
        amount = int(_round_to(_lognormal_fen(rng, 150_000.0, 0.8, 1), 100)[0])
        self.add(acct, np.array([t0]), "dormant_account", type=T_IN, channel=C_ONLINE, amount=amount,
                 cp_kind=CP_SHELL, cp_num=int(self.new_cp()[0]), cp_country=_CN, bank=int(rng.choice(_DOMESTIC_BANKS)))
        j = int(rng.integers(1, 4))
        shares = rng.dirichlet(np.ones(j)) * rng.uniform(0.9, 0.99)
        abroad = rng.random(j) < 0.3
        dev_kind, dev_num = (DEV_FRAUD, self.new_device()) if rng.random() < 0.7 else (DEV_OWN, acct * 2)
        self.add(acct, t0 + np.cumsum(rng.integers(300, 6 * 3600, j)), "dormant_account", type=T_OUT,
                 channel=C_ONLINE, amount=_round_to(amount * shares, 100), cp_kind=CP_SCAM,
                 cp_num=rng.choice(self.scam_pool, j), dev_kind=dev_kind, dev_num=dev_num,
                 cp_country=np.where(abroad, rng.choice(_OFFSHORE, j), _CN),
                 bank=np.where(abroad, rng.choice(_FOREIGN_BANKS, j), rng.choice(_DOMESTIC_BANKS, j)))

    def card_testing(self, acct: int) -> None:
        """A stolen card: a burst of tiny online payments (often at night, abroad, new device), then big buys."""
        rng = self.rng
        day = self.day_start(0.02, 0.99)
        night = rng.random() < 0.65
        t0 = day * _DAY_S + int(_hours(rng, 1, _NIGHT_HOURS if night else _DAY_PROFILE)[0])
        abroad = rng.random() < 0.65
        country = int(rng.choice(_CARD_FRAUD)) if abroad else _CN
        dev = self.new_device()
        k = int(rng.integers(4, 16))
        t = t0 + np.cumsum(rng.integers(5, 240, k))
        merchants = rng.integers(0, 200, k)
        self.add(acct, t, "card_testing", type=T_CARD, channel=C_ONLINE,
                 amount=np.maximum(np.round(rng.uniform(0.5, 40, k) * 100), 50).astype(np.int64),
                 cp_kind=CP_MERCHANT, cp_num=5999 * 10_000 + merchants, mcc=5999,
                 dev_kind=DEV_FRAUD, dev_num=dev, country=country, cp_country=country, region=0 if abroad else None)
        j = int(rng.integers(1, 5))
        big = rng.choice(np.array([5732, 5944, 5691]), j)
        self.add(acct, t[-1] + np.cumsum(rng.integers(60, 3 * 3600, j)), "card_testing", type=T_CARD,
                 channel=C_ONLINE, amount=_lognormal_fen(rng, 6_000.0, 0.6, j), cp_kind=CP_MERCHANT,
                 cp_num=big * 10_000 + rng.integers(0, 400, j), mcc=big, dev_kind=DEV_FRAUD, dev_num=dev,
                 country=country, cp_country=country, region=0 if abroad else None)

    def gambling(self, acct: int) -> None:
        """Weeks of night-time stakes: MCC 7995 card payments (often abroad) and transfers to betting agents."""
        rng = self.rng
        start = self.day_start(0.02, 0.8)
        length = int(rng.integers(10, 50))
        agents = rng.integers(0, 300, 3)
        for day in range(start, min(start + length, self.cfg.days)):
            if rng.random() < 0.55:
                continue
            k = int(rng.integers(1, 5))
            night = rng.random(k) < 0.7
            secs = np.where(night, _hours(rng, k, _NIGHT_HOURS), _hours(rng, k, _DAY_PROFILE))
            card = rng.random(k) < 0.5
            abroad = card & (rng.random(k) < 0.6)
            country = np.where(abroad, rng.choice(_GAMBLING_ABROAD, k), _CN)
            self.add(acct, day * _DAY_S + secs, "gambling", type=np.where(card, T_CARD, T_OUT),
                     channel=np.where(card, C_ONLINE, C_MOBILE),
                     amount=_round_to(_lognormal_fen(rng, 2_000.0, 1.0, k), 10),
                     cp_kind=np.where(card, CP_MERCHANT, CP_GAMBLING),
                     cp_num=np.where(card, MCC_GAMBLING * 10_000 + 5_000 + rng.integers(0, 40, k),
                                     rng.choice(agents, k)),
                     mcc=np.where(card, MCC_GAMBLING, 0), dev_kind=DEV_OWN, dev_num=acct * 2, country=country,
                     cp_country=country, region=np.where(abroad, 0, int(self.pop.region[acct])),
                     bank=np.where(card, 0, rng.choice(_DOMESTIC_BANKS, k)))
            if rng.random() < 0.15:  # occasional winnings come back
                self.add(acct, np.array([day * _DAY_S + int(_hours(rng, 1, _NIGHT_HOURS)[0])]), "gambling",
                         type=T_IN, channel=C_ONLINE, amount=_round_to(_lognormal_fen(rng, 5_000.0, 0.8, 1), 10),
                         cp_kind=CP_GAMBLING, cp_num=int(rng.choice(agents)), cp_country=_CN,
                         bank=int(rng.choice(_DOMESTIC_BANKS)))

    def virtual_assets(self, acct: int) -> None:
        """Pooled inflows converted to virtual assets at offshore platforms."""
        rng = self.rng
        for _ in range(int(rng.integers(1, 4))):
            day = self.day_start(0.02, 0.98)
            k = int(rng.integers(0, 6))
            t_in = day * _DAY_S + np.sort(rng.integers(8 * 3600, 20 * 3600, k))
            if k:
                self.add(acct, t_in, "virtual_assets", type=T_IN, channel=C_ONLINE,
                         amount=_round_to(_lognormal_fen(rng, 15_000.0, 0.7, k), 10), cp_kind=CP_PERSON,
                         cp_num=self.new_cp(k), cp_country=_CN, bank=rng.choice(_DOMESTIC_BANKS, k))
            j = int(rng.integers(1, 3))
            t = (t_in[-1] if k else day * _DAY_S + 10 * 3600) + np.cumsum(rng.integers(600, 8 * 3600, j))
            abroad = rng.random(j) < 0.75
            self.add(acct, t, "virtual_assets", type=T_VA, channel=np.where(rng.random(j) < 0.7, C_MOBILE, C_ONLINE),
                     amount=_round_to(_lognormal_fen(rng, 30_000.0, 0.9, j), 100), cp_kind=CP_VASP,
                     cp_num=rng.integers(5, 60, j), dev_kind=DEV_OWN, dev_num=acct * 2,
                     cp_country=np.where(abroad, rng.choice(_OFFSHORE, j), _CN),
                     bank=np.where(abroad, rng.choice(_FOREIGN_BANKS, j), 0))

    def illegal_intermediary(self, acct: int) -> None:
        """A rented account (跑分): dozens of odd-amount payments a day, day and night, swept out in lumps."""
        rng = self.rng
        start = self.day_start(0.02, 0.9)
        length = int(rng.integers(4, 15))
        dev = self.new_device()
        for day in range(start, min(start + length, self.cfg.days)):
            k = int(rng.integers(3, 25))
            t_in = day * _DAY_S + np.sort(rng.integers(0, _DAY_S, k))
            amounts = np.maximum(np.round(rng.uniform(100, 5_000, k)) * 100 - rng.integers(0, 2, k) * 100, 10_000)
            self.add(acct, t_in, "illegal_intermediary", type=T_IN, channel=C_ONLINE, amount=amounts.astype(np.int64),
                     cp_kind=CP_PERSON, cp_num=self.new_cp(k), cp_country=_CN, bank=rng.choice(_DOMESTIC_BANKS, k))
            sweeps = int(rng.integers(1, 4))
            cut = np.sort(rng.choice(np.arange(1, k + 1), size=min(sweeps, k), replace=False))
            prev = 0
            for c in cut:
                amount = int(amounts[prev:c].sum() * rng.uniform(0.9, 0.98)) // 100 * 100
                prev = c
                if amount <= 0:
                    continue
                self.add(acct, np.array([t_in[c - 1] + int(rng.integers(60, 1800))]), "illegal_intermediary",
                         type=T_OUT, channel=C_API if rng.random() < 0.5 else C_MOBILE, amount=amount,
                         cp_kind=CP_SCAM, cp_num=int(rng.choice(self.scam_pool)), dev_kind=DEV_FRAUD, dev_num=dev,
                         cp_country=_CN, bank=int(rng.choice(_DOMESTIC_BANKS)))

    def employee_misconduct(self, acct: int) -> None:
        """An employee takes money from customers' accounts and moves it out in cash or abroad."""
        rng = self.rng
        for _ in range(int(rng.integers(2, 6))):
            day = self.day_start(0.05, 0.98)
            t = day * _DAY_S + int(rng.integers(9 * 3600, 17 * 3600))
            amount = int(_round_to(_lognormal_fen(rng, 30_000.0, 0.6, 1), 1000)[0])
            victim = int(rng.integers(0, self.pop.n))
            self.add(acct, np.array([t]), "employee_misconduct", type=T_IN, channel=C_TELLER, amount=amount,
                     cp_kind=CP_ACCOUNT, cp_num=victim, cp_country=_CN, bank=6,
                     branch=int(self.pop.home_branch[acct]))
            out = rng.random() < 0.5
            self.add(acct, np.array([t + int(rng.integers(600, 2 * _DAY_S))]), "employee_misconduct",
                     type=T_CASH_OUT if out else (T_VA if rng.random() < 0.5 else T_OUT),
                     channel=C_TELLER if out else C_MOBILE, amount=int(amount * rng.uniform(0.8, 1.0)) // 100 * 100,
                     cp_kind=CP_NONE if out else CP_SHELL, cp_num=0 if out else int(self.new_cp()[0]),
                     cp_country=0 if out else int(rng.choice(_OFFSHORE)),
                     branch=int(self.pop.home_branch[acct]) if out else -1,
                     dev_kind=DEV_NONE if out else DEV_OWN, dev_num=0 if out else acct * 2)


def _balance_lookup(table: dict[str, np.ndarray], initial: np.ndarray) -> Callable[[int, int], int]:
    """Balance of an account just before local time t, from the events generated so far."""
    order = np.lexsort((table["t"], table["acct"]))
    acct = table["acct"][order]
    t = table["t"][order]
    signed = np.where(np.isin(table["type"][order], _INFLOW_TYPES), 1, -1) * table["amount"][order]
    running = np.cumsum(signed)
    starts = np.searchsorted(acct, np.arange(initial.size))
    ends = np.searchsorted(acct, np.arange(initial.size), side="right")

    def balance_at(account: int, at: int) -> int:
        lo, hi = int(starts[account]), int(ends[account])
        k = lo + int(np.searchsorted(t[lo:hi], at))
        before = running[k - 1] - (running[lo - 1] if lo > 0 else 0) if k > lo else 0
        return int(initial[account] + before)

    return balance_at


def _format(kinds: np.ndarray, nums: np.ndarray, formats: dict[int, Callable[[int], str]]) -> np.ndarray:
    """Strings for (kind, number) codes, formatting each distinct code once."""
    key = kinds.astype(np.int64) * (1 << 48) + nums.astype(np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)
    strings = np.array([formats[int(k >> 48)](int(k & ((1 << 48) - 1))) for k in uniq], dtype=object)
    formatted: np.ndarray = strings[inverse]
    return formatted


def _lookup(names: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    looked_up: np.ndarray = np.array(names, dtype=object)[codes]
    return looked_up


def simulate(cfg: SimulationConfig) -> pd.DataFrame:
    """Simulate ``cfg.accounts`` customers over ``cfg.days`` days; canonical columns plus labels, by event time."""
    seeds = np.random.SeedSequence(cfg.seed).spawn(3)
    rng_pop, rng_everyday, rng_fraud = (np.random.default_rng(s) for s in seeds)
    pop = _population(rng_pop, cfg)
    everyday = _Events()
    _everyday(rng_everyday, cfg, pop, everyday)
    normal = everyday.table()

    fraud_events = _Events()
    inj = _Injector(rng_fraud, cfg, pop, fraud_events)
    n = cfg.accounts
    counts = {name: round(n * cfg.prevalence.get(name, 0.0) * cfg.fraud_scale) for name in TYPOLOGIES}
    # Disjoint account sets: victims lean elderly, mules and rented accounts young, misconduct needs employees.
    free = np.ones(n, dtype=bool)

    def pick(k: int, weight: np.ndarray) -> np.ndarray:
        w = weight * free
        k = min(k, int((w > 0).sum()))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        chosen = rng_fraud.choice(n, size=k, replace=False, p=w / w.sum())
        free[chosen] = False
        return np.sort(chosen)

    ones = np.ones(n)
    young = np.where(pop.age < 30, 4.0, 1.0)
    chosen = {
        "employee_misconduct": pick(counts["employee_misconduct"], pop.employee.astype(np.float64)),
        "money_mule": pick(counts["money_mule"], young),
        "illegal_intermediary": pick(counts["illegal_intermediary"], young),
        "telecom_fraud_victim": pick(counts["telecom_fraud_victim"], np.where(pop.age >= 60, 5.0, 1.0)),
        "dormant_account": pick(counts["dormant_account"], ones),
        "dormant_legit": pick(counts["dormant_account"] * 2, ones),
    }
    for name in ("illegal_fundraising", "structuring", "card_testing", "gambling", "virtual_assets"):
        chosen[name] = pick(counts[name], ones)
    inj.mules = chosen["money_mule"]
    inj.scam_pool = 7_000_000_000 + np.arange(max(8, counts["telecom_fraud_victim"] // 3))

    inj.current = "money_mule"
    for acct in chosen["money_mule"]:
        inj.money_mule(int(acct))
    inj.current = "dormant_account"
    for acct in chosen["dormant_account"]:
        inj.dormant_account(int(acct), fraud=True)
    for acct in chosen["dormant_legit"]:
        inj.dormant_account(int(acct), fraud=False)
    for name in ("illegal_fundraising", "structuring", "card_testing", "gambling", "virtual_assets",
                 "illegal_intermediary", "employee_misconduct"):
        method = getattr(inj, name)
        inj.current = name
        for acct in chosen[name]:
            method(int(acct))

    # Everyday life stops while an account sleeps and before a (mule's) account is opened.
    keep = np.ones(normal["acct"].size, dtype=bool)
    day = normal["t"] // _DAY_S
    for acct, q0, q1 in inj.quiet:
        keep &= ~((normal["acct"] == acct) & (day >= q0) & (day < q1))
    for acct, opened in inj.opened.items():
        pop.opened_day[acct] = opened
        keep &= ~((normal["acct"] == acct) & (day < max(opened, 0)))
    normal = {k: v[keep] for k, v in normal.items()}

    # Victims lose a share of what they hold at the time of the scam: look balances up on everyday events.
    balance_at = _balance_lookup(normal, pop.initial_balance)
    inj.current = "telecom_fraud_victim"
    for acct in chosen["telecom_fraud_victim"]:
        inj.telecom_fraud_victim(int(acct), balance_at)

    if fraud_events._chunks:
        injected = fraud_events.table()
        # Not every case is ever confirmed: some typology accounts keep normal labels, as in a bank's data.
        culprits = np.concatenate([v for k, v in chosen.items() if k != "dormant_legit"])
        unconfirmed = culprits[rng_fraud.random(culprits.size) < cfg.unconfirmed_share]
        hidden = np.isin(injected["acct"], unconfirmed)
        injected["fraud"][hidden] = 0
        injected["typology"][hidden] = 0
        table = {k: np.concatenate([normal[k], injected[k]]) for k in _COLUMNS}
    else:
        table = normal
    return _to_frame(cfg, pop, table)


def _to_frame(cfg: SimulationConfig, pop: _Population, table: dict[str, np.ndarray]) -> pd.DataFrame:
    # Order by time; ties broken by account, type and amount so the order never depends on generation order.
    order = np.lexsort((table["amount"], table["type"], table["acct"], table["t"]))
    table = {k: v[order] for k, v in table.items()}
    acct = table["acct"]
    n_rows = acct.size

    # Balance before each transaction; accounts that would go negative get a larger opening balance.
    inflow = np.isin(table["type"], _INFLOW_TYPES)
    signed = np.where(inflow, table["amount"], -table["amount"])
    by_acct = np.argsort(acct, kind="stable")
    acct_sorted = acct[by_acct]
    signed_sorted = signed[by_acct]
    running = np.cumsum(signed_sorted)
    first = np.searchsorted(acct_sorted, acct_sorted)
    base = np.where(first > 0, running[np.maximum(first - 1, 0)], 0)
    after = running - base  # cumulative within the account, this event included
    before = after - signed_sorted
    low = np.minimum.reduceat(after, np.unique(first)) if n_rows else np.zeros(0, dtype=np.int64)
    low_per_acct = np.zeros(pop.n, dtype=np.int64)
    low_per_acct[acct_sorted[np.unique(first)]] = low
    opening = np.maximum(pop.initial_balance, -low_per_acct + 50_000)
    balance_sorted = opening[acct_sorted] + before
    balance = np.empty(n_rows, dtype=np.int64)
    balance[by_acct] = balance_sorted

    start_utc = dt.datetime.combine(cfg.start, dt.time(), tzinfo=dt.UTC) - dt.timedelta(hours=8)
    start_us = int(start_utc.timestamp()) * _US_PER_S
    event_us = start_us + table["t"] * _US_PER_S
    opened_us = start_us + pop.opened_day * _DAY_S * _US_PER_S

    fraud = table["fraud"].astype(np.int8)
    typology = np.where(fraud == 1, table["typology"], 0)
    branch = table["branch"]
    branch_names = np.array([""] + [f"SZB{i:03d}" for i in range(9 * _BRANCHES_PER_REGION)], dtype=object)
    mcc = table["mcc"].astype(np.int64)
    mcc_names = np.where(mcc > 0, mcc.astype(str).astype(object), "")
    frame = pd.DataFrame(
        {
            "transaction_id": np.char.add("T", np.char.zfill(np.arange(n_rows).astype(str), 10)).astype(object),
            "event_time": pd.to_datetime(event_us, unit="us", utc=True),
            "account_id": _format(np.full(n_rows, CP_ACCOUNT), acct, _CP_FORMAT),
            "counterparty_id": _format(table["cp_kind"], table["cp_num"], _CP_FORMAT),
            "amount_minor": table["amount"].astype(np.int64),
            "currency": "CNY",
            "type": _lookup(_TYPES, table["type"]),
            "channel": _lookup(_CHANNELS, table["channel"]),
            "device_id": _format(table["dev_kind"], table["dev_num"], _DEV_FORMAT),
            "country": _lookup(_COUNTRIES, table["country"]),
            "region": _lookup(_REGIONS, table["region"]),
            "merchant_category": mcc_names,
            "counterparty_bank": _lookup(_BANKS, table["bank"]),
            "counterparty_country": _lookup(_COUNTRIES, table["cp_country"]),
            "branch_id": branch_names[branch + 1],
            "customer_id": _lookup(tuple(f"C{i:08d}" for i in range(pop.n)), acct),
            "customer_age": pop.age[acct].astype(np.int64),
            "account_opened": pd.to_datetime(opened_us[acct], unit="us", utc=True),
            "balance_minor": balance,
            "balance_currency": "CNY",
            "risk_level": _lookup(_RISK, pop.risk[acct]),
            "is_employee": pop.employee[acct].astype(np.int64),
            "is_fraud": fraud.astype(np.int64),
            "typology": _lookup(("", *TYPOLOGIES), typology),
        }
    )
    return frame
