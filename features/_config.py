"""Configuration of the feature engine: currency rates, home country, local time, thresholds and state retention.

Money conversion is exact: rates are decimal strings turned into fractions, amounts stay integers, and the
only rounding (to whole fen) is half up, done once per amount.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

from features._errors import FeatureConfigError

__all__ = ["DEFAULT_RATES", "MINOR_UNIT_EXPONENTS", "FeatureConfig"]

# CNY per ONE major unit of each currency, as decimal strings (never floats).
DEFAULT_RATES: Mapping[str, str] = MappingProxyType(
    {
        "CNY": "1",
        "USD": "7.10",
        "EUR": "7.75",
        "GBP": "9.05",
        "HKD": "0.91",
        "MOP": "0.88",
        "TWD": "0.22",
        "JPY": "0.048",
        "KRW": "0.0052",
        "SGD": "5.30",
        "AUD": "4.65",
        "CAD": "5.15",
        "CHF": "8.10",
        "THB": "0.20",
        "MYR": "1.55",
        "VND": "0.00028",
        "RUB": "0.078",
        "AED": "1.93",
        "KWD": "23.10",
    }
)

# ISO 4217 minor-unit exponents that differ from 2 (every other currency has 2 decimals).
MINOR_UNIT_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "PYG": 0, "UGX": 0, "XAF": 0, "XOF": 0,
        "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    }
)

_CODE = re.compile(r"^[A-Z]{3}$")
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_LARGEST_WINDOW_SECONDS = 30 * 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConfig:
    """Everything the feature engine needs to know, validated once at construction.

    ``retention_days`` must cover the largest window (30 days) plus ``lateness_seconds``: events at most that
    late are scored exactly (see docs/features.md).
    """

    currency_rates: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RATES), hash=False)
    home_country: str = "CN"
    utc_offset_hours: int = 8
    reporting_threshold_cny: int = 50_000
    just_under_fraction: str = "0.9"
    lateness_seconds: int = 3600
    retention_days: int = 35
    typical_weight: str = "0.1"
    rapid_in_out_cap: float = 10.0
    snapshot_every: int = 1_000_000
    initial_accounts: int = 1024
    redis_key_prefix: str = "outpost"

    def __post_init__(self) -> None:
        rates: dict[str, str] = {}
        for code, rate in self.currency_rates.items():
            if not isinstance(code, str) or not _CODE.match(code):
                raise FeatureConfigError("currency_rates", f"{code!r} is not an ISO 4217 code (three capitals)")
            if not isinstance(rate, str) or not _DECIMAL.match(rate) or Fraction(rate) <= 0:
                raise FeatureConfigError(
                    "currency_rates", f"rate of {code} must be a positive decimal string such as '7.10', got {rate!r}"
                )
            rates[code] = rate
        if rates.get("CNY") is None or Fraction(rates["CNY"]) != 1:
            raise FeatureConfigError("currency_rates", "must contain 'CNY': '1' (rates are CNY per major unit)")
        object.__setattr__(self, "currency_rates", MappingProxyType(rates))
        if not re.match(r"^[A-Z]{2}$", self.home_country):
            raise FeatureConfigError(
                "home_country", f"use an ISO 3166-1 alpha-2 code such as 'CN', got {self.home_country!r}"
            )
        if not -12 <= self.utc_offset_hours <= 14:
            raise FeatureConfigError("utc_offset_hours", f"must be in -12..14, got {self.utc_offset_hours}")
        if self.reporting_threshold_cny <= 0:
            raise FeatureConfigError("reporting_threshold_cny", "must be a positive number of yuan")
        for name in ("just_under_fraction", "typical_weight"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _DECIMAL.match(value) or not 0 < Fraction(value) < 1:
                raise FeatureConfigError(name, f"must be a decimal string strictly between 0 and 1, got {value!r}")
        if self.lateness_seconds < 0:
            raise FeatureConfigError("lateness_seconds", "must be >= 0")
        if self.retention_days * 86_400 < _LARGEST_WINDOW_SECONDS + self.lateness_seconds:
            raise FeatureConfigError(
                "retention_days",
                f"must cover the 30-day window plus lateness_seconds ({self.lateness_seconds} s); raise it",
            )
        if not self.rapid_in_out_cap > 0:
            raise FeatureConfigError("rapid_in_out_cap", "must be > 0")
        if self.snapshot_every < 0:
            raise FeatureConfigError("snapshot_every", "must be >= 0 (0 = only explicit snapshots)")
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.redis_key_prefix):
            raise FeatureConfigError("redis_key_prefix", "use 1-64 letters, digits, '_', '.' or '-'")
        if self.initial_accounts < 1:
            raise FeatureConfigError("initial_accounts", "must be >= 1")

    def is_known_currency(self, code: str) -> bool:
        """True when ``code`` has a rate in ``currency_rates``."""
        return code in self.currency_rates

    def minor_exponent(self, code: str) -> int:
        """Number of decimals of ``code``'s minor unit (ISO 4217): 0 for JPY and KRW, 3 for KWD, else 2."""
        return MINOR_UNIT_EXPONENTS.get(code, 2)

    def fen_ratio(self, currency: str) -> tuple[int, int]:
        """(p, q) such that fen = amount_minor * p / q exactly, before rounding; reduced to lowest terms."""
        if currency not in self.currency_rates:
            raise FeatureConfigError(
                "currency_rates", f"no rate for currency {currency!r}; add it to currency_rates or reject the request"
            )
        return _fen_ratio(self.currency_rates[currency], self.minor_exponent(currency))

    def to_fen(self, currency: str, amount_minor: int) -> int:
        """``amount_minor`` of ``currency`` in CNY fen, rounded half up (towards +infinity) to a whole fen.

        Exact rational arithmetic: fen = floor(amount_minor * rate * 100 / 10**exponent + 1/2).
        """
        p, q = self.fen_ratio(currency)
        return (2 * int(amount_minor) * p + q) // (2 * q)

    # --- derived values used by the kernels (integers where money or time is involved) ----------------------
    @property
    def threshold_fen(self) -> int:
        """The reporting threshold in fen."""
        return self.reporting_threshold_cny * 100

    @property
    def just_under_low_fen(self) -> int:
        """Smallest amount in fen counted as 'just under' the threshold: ceil(fraction * threshold)."""
        low = Fraction(self.just_under_fraction) * self.threshold_fen
        return -((-low.numerator) // low.denominator)

    @property
    def retention_us(self) -> int:
        """How long events stay in the per-account event arena, in microseconds."""
        return self.retention_days * 86_400_000_000

    @property
    def utc_offset_us(self) -> int:
        """The local-time offset in microseconds."""
        return self.utc_offset_hours * 3_600_000_000

    @property
    def typical_weight_float(self) -> float:
        """Weight of the newest amount in the typical-amount moving average."""
        return float(Fraction(self.typical_weight))

    def state_fingerprint(self) -> str:
        """The settings that shape stored state; a data directory only reopens under the same fingerprint."""
        return (
            f"offset={self.utc_offset_hours};threshold={self.reporting_threshold_cny};"
            f"under={self.just_under_fraction};retention={self.retention_days};weight={self.typical_weight}"
        )


@functools.lru_cache(maxsize=1024)
def _fen_ratio(rate: str, exponent: int) -> tuple[int, int]:
    """(p, q) of rate * 100 / 10**exponent in lowest terms; cached because it is on every request's path."""
    ratio = Fraction(rate) * 100 / 10**exponent
    return ratio.numerator, ratio.denominator
