"""Validation of incoming requests and their encoding into transaction records (features.TXN_DTYPE).

Validation collects every bad field (as ``google.rpc.BadRequest`` field violations) before anything is scored,
so an invalid request changes no state. Encoding follows the rules written in ``features.encode_frame``'s
docstring, so that the online and offline paths produce identical records.

The serving path uses ``RequestValidator.check_and_encode``: one pass over each request's fields that decides
validity and builds the record together. It only answers "valid or not"; the words of the violations come from
``RequestValidator.score_request``, run on the rejected requests alone, so both paths report the same thing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
from outpost.v1 import outpost_pb2 as pb

from features import NO_BALANCE, NO_TIME, TXN_DTYPE, FeatureConfig, new_batch, stable_key
from server._wire import PYTHON, WireDecoder

__all__ = [
    "FieldViolation",
    "RequestValidator",
    "TransactionField",
    "WireBatch",
    "encode_requests",
    "normalise_locale",
    "now_us",
    "review_extra",
]

_MAX_ID = 128
_MAX_AMOUNT_MINOR = 10**15  # ten trillion major units: above any real single payment
_MAX_FEN = 10**17  # 10**15 CNY: the most an amount or balance may be worth once converted (keeps sums in 64 bits)
_US = 1_000_000
_YEAR_1850_US = -3_786_825_600 * _US
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_MCC = re.compile(r"^[0-9]{1,4}$")
_LOCALES = {"": "zh-CN", "zh-CN": "zh-CN", "zh": "zh-CN", "zh-Hans": "zh-CN", "en": "en", "en-US": "en", "en-GB": "en"}
_TYPES = frozenset(v for v in pb.TransactionType.values() if v != 0)
_CHANNELS = frozenset(v for v in pb.Channel.values() if v != 0)
_RISK_LEVELS = frozenset(pb.RiskLevel.values())
_OUTCOMES = frozenset(v for v in pb.Outcome.values() if v != 0)
# Every string _COUNTRY accepts: a set lookup instead of a regular expression on the hot path.
_ALPHA2 = frozenset(a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ONE_DAY_US = 86_400 * _US
# Identifier -> stable_key memo of one validator; emptied when it grows past this many entries.
_KEY_MEMO_SIZE = 1 << 16

_FIELD_1 = b"\x0a"  # ScoreBatchRequest.requests: field 1, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request and what is wrong, in words a client developer can act on."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class WireBatch:
    """A ScoreBatch's requests, checked and encoded from the call's wire bytes."""

    records: np.ndarray  # (n,) TXN_DTYPE
    transaction_ids: list[str]
    explain: np.ndarray  # (n,) bool: the requests' explain flags

    @classmethod
    def of_messages(cls, reqs: Sequence[pb.ScoreRequest], records: np.ndarray) -> WireBatch:
        """Ids and explain flags read from the parsed requests (when the compiled decoder could not read them)."""
        return cls(records, [r.transaction.transaction_id for r in reqs],
                   np.fromiter((r.explain for r in reqs), dtype=np.bool_, count=len(reqs)))


def now_us() -> int:
    """The wall clock in microseconds, only to reject event times too far from it; features never see it."""
    return time.time_ns() // 1000


def normalise_locale(locale: str) -> str:
    """'zh-CN' or 'en' (validated beforehand)."""
    return _LOCALES.get(locale, "zh-CN")


def _check_id(out: list[FieldViolation], path: str, value: str, *, required: bool) -> None:
    if not value:
        if required:
            out.append(FieldViolation(path, "required: a non-empty identifier"))
        return
    if len(value) > _MAX_ID:
        out.append(FieldViolation(path, f"too long: at most {_MAX_ID} characters, got {len(value)}"))
    elif not value.isprintable():
        out.append(FieldViolation(path, "must contain printable characters only"))


def _check_text(out: list[FieldViolation], path: str, value: str) -> None:
    if len(value) > _MAX_ID:
        out.append(FieldViolation(path, f"too long: at most {_MAX_ID} characters, got {len(value)}"))
    elif value and not value.isprintable():
        out.append(FieldViolation(path, "must contain printable characters only"))


class RequestValidator:
    """Checks requests field by field; ``now_us`` is only used to reject absurd timestamps, never for features."""

    def __init__(self, config: FeatureConfig, *, max_skew_days: int) -> None:
        self._config = config
        self._max_skew_us = max_skew_days * 86_400 * _US
        self._ratios: dict[str, tuple[int, int]] = {}  # known currency -> config.fen_ratio, filled on first use
        self._keys = _KeyMemo()
        self._wire = WireDecoder(
            config, max_skew_us=self._max_skew_us, locales=tuple(_LOCALES), types=_TYPES, channels=_CHANNELS,
            risk_levels=_RISK_LEVELS,
        )

    def check_and_encode(
        self, reqs: Sequence[pb.ScoreRequest], now_us: int, *, indexed: bool = True
    ) -> tuple[list[FieldViolation], np.ndarray | None]:
        """Validate and encode requests in one pass over their fields: (violations, None) or ([], records).

        The violations are exactly those ``score_request`` reports for each rejected request, in request order,
        their paths prefixed ``requests[i].`` when ``indexed`` (ScoreBatch) and bare otherwise (Score). The
        records are exactly those ``encode_requests`` returns.
        """
        rows, rejected = self._scan(reqs, now_us)
        if rejected:
            violations = [
                v
                for i in rejected
                for v in self.score_request(reqs[i], now_us, prefix=f"requests[{i}]." if indexed else "")
            ]
            if violations:
                return violations, None
            # The one-pass check is meant to be exactly as strict as score_request; were it ever stricter, these
            # requests are valid after all and get the reference encoding.
            return [], encode_requests(reqs, self._config)
        return [], np.array(rows, dtype=TXN_DTYPE) if rows else new_batch(0)

    def check_and_encode_wire(
        self, reqs: Sequence[pb.ScoreRequest], wire: bytes, now_us: int
    ) -> tuple[list[FieldViolation], WireBatch | None]:
        """``check_and_encode(reqs, now_us)`` for a ScoreBatch whose serialized ScoreBatchRequest is ``wire``, with
        the requests' transaction ids and explain flags.

        The compiled decoder (server._wire) checks and encodes the requests it is sure of straight from the bytes,
        and reads their ids and flags there too (reading them from the parsed messages cost about 1 µs a request);
        the others go through ``_scan`` here. Same result as ``check_and_encode``, tested field by field.
        """
        decoded = self._wire.decode(wire, len(reqs), now_us)
        if decoded is None:
            return self._check_messages(reqs, now_us)
        records = decoded.records
        unsure = np.flatnonzero(decoded.status == PYTHON).tolist()
        ids = decoded.transaction_ids(wire)
        if not unsure:
            return [], WireBatch(records, ids, decoded.explain)
        rows, rejected = self._scan([reqs[i] for i in unsure], now_us)
        if rejected:
            return self._check_messages(reqs, now_us)  # words the violations of the whole batch, in order
        records[unsure] = np.array(rows, dtype=TXN_DTYPE)
        for i in unsure:
            ids[i] = reqs[i].transaction.transaction_id
            decoded.explain[i] = reqs[i].explain
        return [], WireBatch(records, ids, decoded.explain)

    def _check_messages(
        self, reqs: Sequence[pb.ScoreRequest], now_us: int
    ) -> tuple[list[FieldViolation], WireBatch | None]:
        violations, records = self.check_and_encode(reqs, now_us)
        return violations, None if records is None else WireBatch.of_messages(reqs, records)

    def check_and_encode_each(
        self, reqs: Sequence[pb.ScoreRequest], datas: Sequence[bytes], now_us: int
    ) -> tuple[np.ndarray, dict[int, list[FieldViolation]]]:
        """Score calls queued together, each alone: their records (TXN_DTYPE, row-aligned; rows of rejected requests
        are undefined) and the violations of the rejected ones, by index. ``datas`` are the requests' wire bytes.

        The compiled decoder of ScoreBatch reads the requests' bytes, framed as the entries of one ScoreBatchRequest
        (1.4 against 5.6 µs a request from 25 on, in process); the requests it is not sure of take
        ``check_and_encode_row``. Each request is judged on its own: one rejected call does not reject the others.
        """
        wire = b"".join(_FIELD_1 + _varint(len(data)) + data for data in datas)
        decoded = self._wire.decode(wire, len(reqs), now_us)
        if decoded is None:  # the bytes hold another count of requests: judge every one in Python
            unsure = list(range(len(reqs)))
            records = new_batch(len(reqs))
        else:
            unsure = np.flatnonzero(decoded.status == PYTHON).tolist()
            records = decoded.records
        rejected: dict[int, list[FieldViolation]] = {}
        for i in unsure:
            violations, record = self.check_and_encode_row(reqs[i], now_us)
            if violations:
                rejected[i] = violations
            else:
                records[i] = record
        return records, rejected

    def check_and_encode_row(
        self, req: pb.ScoreRequest, now_us: int
    ) -> tuple[list[FieldViolation], tuple[int, ...] | None]:
        """One Score request: (violations, None) or ([], its record as a tuple in TXN_DTYPE field order).

        For callers that gather single requests into a batch: ``np.array(rows, dtype=TXN_DTYPE)`` once per batch
        costs far less than a one-row array per request and a concatenation.
        """
        rows, rejected = self._scan((req,), now_us)
        if rejected:
            violations = self.score_request(req, now_us)
            if violations:
                return violations, None
            return [], tuple(encode_requests((req,), self._config)[0].tolist())
        return [], rows[0]

    def _new_ratio(self, currency: str) -> tuple[int, int] | None:
        """The fen ratio of a currency not seen before (then remembered), or None when it is not a known currency."""
        if not currency or not self._config.is_known_currency(currency):
            return None
        ratio = self._ratios[currency] = self._config.fen_ratio(currency)
        return ratio

    def _scan(self, reqs: Sequence[pb.ScoreRequest], now_us: int) -> tuple[list[tuple[int, ...]], list[int]]:
        """Records (as TXN_DTYPE tuples) of the requests score_request accepts, and the indices of the others.

        Each field is read once into a local; checks are the conditions of ``score_request`` written as one
        predicate per group of fields, with no string built unless a request is rejected.
        """
        config = self._config
        home = config.home_country
        max_skew = self._max_skew_us
        ratios = self._ratios
        keys = self._keys
        if len(keys) > _KEY_MEMO_SIZE:
            keys.clear()
        locales, types, channels, levels, alpha2 = _LOCALES, _TYPES, _CHANNELS, _RISK_LEVELS, _ALPHA2
        max_id, max_amount, us, year_1850 = _MAX_ID, _MAX_AMOUNT_MINOR, _US, _YEAR_1850_US
        rows: list[tuple[int, ...]] = []
        rejected: list[int] = []
        for i, req in enumerate(reqs):
            if req.locale not in locales or not req.HasField("transaction"):
                rejected.append(i)
                continue
            t = req.transaction
            txn_id = t.transaction_id
            account = t.account_id
            counterparty = t.counterparty_id
            device = t.device_id
            branch = t.branch_id
            region = t.region
            bank = t.counterparty_bank
            texts = txn_id + account + counterparty + device + branch + region + bank
            if (
                not (txn_id and account and texts.isprintable())
                or (len(texts) > max_id
                and max(len(txn_id), len(account), len(counterparty), len(device), len(branch), len(region), len(bank))
                > max_id)
            ):
                rejected.append(i)
                continue
            when = t.event_time
            seconds = when.seconds
            nanos = when.nanos
            event_us = seconds * us + nanos // 1000
            if (
                (not (seconds or nanos)
                and not t.HasField("event_time"))
                or not 0 <= nanos < 1_000_000_000
                or abs(event_us - now_us) > max_skew
            ):
                rejected.append(i)
                continue
            amount = t.amount_minor
            currency = t.currency
            ratio = ratios.get(currency) or self._new_ratio(currency)
            if ratio is None:
                rejected.append(i)
                continue
            txn_type = t.type
            channel = t.channel
            country = t.country
            counterparty_country = t.counterparty_country
            mcc = t.merchant_category
            if (
                not 0 < amount <= max_amount
                or txn_type not in types
                or channel not in channels
                or (country and country not in alpha2)
                or (counterparty_country and counterparty_country not in alpha2)
                or (mcc and not (len(mcc) <= 4 and mcc.isascii() and mcc.isdigit()))
            ):
                rejected.append(i)
                continue
            # An absent customer reads as the default message, which validates and encodes exactly like no
            # customer at all: no HasField needed.
            c = req.customer
            customer_id = c.customer_id
            age = c.age
            balance = c.balance_minor
            balance_currency = c.balance_currency
            level = c.risk_level
            if (
                len(customer_id) > max_id
                or not customer_id.isprintable()
                or not 0 <= age <= 150
                or abs(balance) > max_amount
                or level not in levels
            ):
                rejected.append(i)
                continue
            balance_ratio = ratio
            if balance_currency:
                balance_ratio = ratios.get(balance_currency) or self._new_ratio(balance_currency)  # type: ignore[assignment]
                if balance_ratio is None:
                    rejected.append(i)
                    continue
            if c.HasField("birth_date"):
                birth = c.birth_date
                birth_nanos = birth.nanos
                birth_us = birth.seconds * us + birth_nanos // 1000
                if not 0 <= birth_nanos < 1_000_000_000 or birth_us < year_1850 or birth_us > event_us:
                    rejected.append(i)
                    continue
                age = _age_years(birth_us, event_us)
            elif age <= 0:
                age = -1
            opened = c.account_opened
            opened_seconds = opened.seconds
            opened_nanos = opened.nanos
            if opened_seconds or opened_nanos or c.HasField("account_opened"):
                opened_us = opened_seconds * us + opened_nanos // 1000
                if (
                    not 0 <= opened_nanos < 1_000_000_000
                    or opened_us < year_1850
                    or opened_us > event_us + _ONE_DAY_US
                ):
                    rejected.append(i)
                    continue
            else:
                opened_us = NO_TIME
            if balance or balance_currency:
                p, q = balance_ratio
                balance_fen = (2 * balance * p + q) // (2 * q)
                if abs(balance_fen) > _MAX_FEN:
                    rejected.append(i)
                    continue
            else:
                balance_fen = NO_BALANCE
            p, q = ratio
            amount_fen = (2 * amount * p + q) // (2 * q)
            if amount_fen > _MAX_FEN:
                rejected.append(i)
                continue
            rows.append((
                event_us,
                keys[account],
                keys[counterparty],
                keys[device],
                keys[branch],
                amount,
                amount_fen,
                balance_fen,
                opened_us,
                int(mcc) if mcc else 0,
                age,
                txn_type,
                channel,
                level,
                1 if c.is_employee else 0,
                1 if (country and country != home) or (counterparty_country and counterparty_country != home) else 0,
                0 if req.dry_run else 1,
            ))
        return rows, rejected

    def _check_time(self, out: list[FieldViolation], path: str, ts: object, now_us: int) -> int | None:
        seconds: int = ts.seconds  # type: ignore[attr-defined]
        nanos: int = ts.nanos  # type: ignore[attr-defined]
        if not 0 <= nanos < 1_000_000_000:
            out.append(FieldViolation(path, "nanos must be in 0..999999999"))
            return None
        micros = seconds * _US + nanos // 1000
        if abs(micros - now_us) > self._max_skew_us:
            out.append(
                FieldViolation(
                    path, f"too far from the current time (more than {self._max_skew_us // (86_400 * _US)} days away)"
                )
            )
            return None
        return micros

    def score_request(self, req: pb.ScoreRequest, now_us: int, prefix: str = "") -> list[FieldViolation]:
        out: list[FieldViolation] = []
        if req.locale not in _LOCALES:
            out.append(FieldViolation(f"{prefix}locale", "must be 'zh-CN' or 'en' (or empty for zh-CN)"))
        if not req.HasField("transaction"):
            out.append(FieldViolation(f"{prefix}transaction", "required"))
            return out
        t = req.transaction
        p = f"{prefix}transaction."
        _check_id(out, p + "transaction_id", t.transaction_id, required=True)
        _check_id(out, p + "account_id", t.account_id, required=True)
        _check_id(out, p + "counterparty_id", t.counterparty_id, required=False)
        for name in ("device_id", "region", "counterparty_bank", "branch_id"):
            _check_text(out, p + name, getattr(t, name))
        event_us = None
        if not t.HasField("event_time"):
            out.append(FieldViolation(p + "event_time", "required: the business time of the transaction"))
        else:
            event_us = self._check_time(out, p + "event_time", t.event_time, now_us)
        if t.amount_minor <= 0:
            out.append(FieldViolation(p + "amount_minor", "must be > 0 (minor units, e.g. fen for CNY)"))
        elif t.amount_minor > _MAX_AMOUNT_MINOR:
            out.append(FieldViolation(p + "amount_minor", f"must be <= {_MAX_AMOUNT_MINOR}"))
        if not t.currency:
            out.append(FieldViolation(p + "currency", "required: an ISO 4217 code such as CNY"))
        elif not self._config.is_known_currency(t.currency):
            out.append(FieldViolation(p + "currency", f"unknown currency {t.currency[:8]!r}: not in the rate table"))
        elif 0 < t.amount_minor <= _MAX_AMOUNT_MINOR and self._config.to_fen(t.currency, t.amount_minor) > _MAX_FEN:
            out.append(FieldViolation(p + "amount_minor", _too_much(t.currency)))
        if t.type not in _TYPES:
            out.append(FieldViolation(p + "type", "must be a TransactionType other than UNSPECIFIED"))
        if t.channel not in _CHANNELS:
            out.append(FieldViolation(p + "channel", "must be a Channel other than UNSPECIFIED"))
        for name in ("country", "counterparty_country"):
            value = getattr(t, name)
            if value and not _COUNTRY.fullmatch(value):
                out.append(FieldViolation(p + name, "must be an ISO 3166-1 alpha-2 code such as CN"))
        if t.merchant_category and not _MCC.fullmatch(t.merchant_category):
            out.append(FieldViolation(p + "merchant_category", "must be a 4-digit ISO 18245 merchant category code"))
        if req.HasField("customer"):
            c = req.customer
            q = f"{prefix}customer."
            _check_text(out, q + "customer_id", c.customer_id)
            if not 0 <= c.age <= 150:
                out.append(FieldViolation(q + "age", "must be in 0..150 (0 = unknown)"))
            if c.HasField("birth_date"):
                birth = _micros(c.birth_date)
                if not 0 <= c.birth_date.nanos < 1_000_000_000 or birth < _YEAR_1850_US:
                    out.append(FieldViolation(q + "birth_date", "must be a valid date after 1850"))
                elif event_us is not None and birth > event_us:
                    out.append(FieldViolation(q + "birth_date", "must be before the transaction's event_time"))
            if c.HasField("account_opened"):
                opened = _micros(c.account_opened)
                if not 0 <= c.account_opened.nanos < 1_000_000_000 or opened < _YEAR_1850_US:
                    out.append(FieldViolation(q + "account_opened", "must be a valid date after 1850"))
                elif event_us is not None and opened > event_us + 86_400 * _US:
                    out.append(FieldViolation(q + "account_opened", "must not be after the transaction's event_time"))
            if abs(c.balance_minor) > _MAX_AMOUNT_MINOR:
                out.append(FieldViolation(q + "balance_minor", f"must be within +-{_MAX_AMOUNT_MINOR}"))
            if c.balance_currency and not self._config.is_known_currency(c.balance_currency):
                out.append(FieldViolation(q + "balance_currency", "unknown currency: not in the rate table"))
            elif abs(c.balance_minor) <= _MAX_AMOUNT_MINOR and (c.balance_minor or c.balance_currency):
                balance_currency = c.balance_currency or t.currency
                if (
                    self._config.is_known_currency(balance_currency)
                    and abs(self._config.to_fen(balance_currency, c.balance_minor)) > _MAX_FEN
                ):
                    out.append(FieldViolation(q + "balance_minor", _too_much(balance_currency)))
            if c.risk_level not in _RISK_LEVELS:
                out.append(FieldViolation(q + "risk_level", "must be a RiskLevel value"))
        return out

    def outcome_request(self, req: pb.ReportOutcomeRequest, now_us: int) -> list[FieldViolation]:
        out: list[FieldViolation] = []
        _check_id(out, "transaction_id", req.transaction_id, required=True)
        if req.outcome not in _OUTCOMES:
            out.append(FieldViolation("outcome", "must be an Outcome other than UNSPECIFIED"))
        if not req.HasField("reported_at"):
            out.append(FieldViolation("reported_at", "required: the business time the outcome became known"))
        else:
            self._check_time(out, "reported_at", req.reported_at, now_us)
        _check_id(out, "account_id", req.account_id, required=False)
        _check_id(out, "counterparty_id", req.counterparty_id, required=False)
        _check_text(out, "analyst", req.analyst)
        if len(req.note) > 4096:
            out.append(FieldViolation("note", "too long: at most 4096 characters"))
        return out


class _KeyMemo(dict[str, int]):
    """stable_key of identifiers seen recently (accounts, payees and devices recur): a miss computes and keeps it."""

    def __missing__(self, key: str) -> int:
        value = self[key] = stable_key(key)
        return value


def _too_much(currency: str) -> str:
    return (f"worth more than {_MAX_FEN // 100:,} CNY at the configured rate of {currency[:8]}: "
            "check the amount and its currency")


def _micros(ts: object) -> int:
    return int(ts.seconds) * _US + int(ts.nanos) // 1000  # type: ignore[attr-defined]


def _age_years(birth_us: int, event_us: int) -> int:
    """Whole years between two UTC instants by calendar date (the rule encode_frame documents)."""
    import datetime as dt

    b = dt.datetime.fromtimestamp(birth_us / _US, tz=dt.UTC).date()
    e = dt.datetime.fromtimestamp(event_us / _US, tz=dt.UTC).date()
    return e.year - b.year - ((e.month, e.day) < (b.month, b.day))


def encode_requests(reqs: Sequence[pb.ScoreRequest], config: FeatureConfig) -> np.ndarray:
    """Transaction records for validated requests (one per request, in order).

    Rows are built as tuples in ``TXN_DTYPE`` field order and converted in one call: assigning field by field
    into a structured array costs several times more per request.
    """
    home = config.home_country
    to_fen = config.to_fen
    rows = []
    for req in reqs:
        t = req.transaction
        event_us = _micros(t.event_time)
        age, opened, balance, risk, employee = -1, NO_TIME, NO_BALANCE, 0, 0
        if req.HasField("customer"):
            c = req.customer
            if c.HasField("birth_date"):
                age = _age_years(_micros(c.birth_date), event_us)
            elif c.age > 0:
                age = c.age
            if c.HasField("account_opened"):
                opened = _micros(c.account_opened)
            if c.balance_minor or c.balance_currency:
                balance = to_fen(c.balance_currency or t.currency, c.balance_minor)
            risk, employee = c.risk_level, int(c.is_employee)
        cross_border = (bool(t.country) and t.country != home) or (
            bool(t.counterparty_country) and t.counterparty_country != home
        )
        rows.append((
            event_us,
            stable_key(t.account_id),
            stable_key(t.counterparty_id),
            stable_key(t.device_id),
            stable_key(t.branch_id),
            t.amount_minor,
            to_fen(t.currency, t.amount_minor),
            balance,
            opened,
            int(t.merchant_category) if t.merchant_category else 0,
            age,
            t.type,
            t.channel,
            risk,
            employee,
            int(cross_border),
            0 if req.dry_run else 1,
        ))
    return np.array(rows, dtype=TXN_DTYPE) if rows else new_batch(0)


class TransactionField(Sequence[str]):
    """A row-aligned, lazy view of one string field of the requests' transactions (e.g. raw account ids).

    Decision sinks read it only for the few rows they keep (alerts), so nothing is copied per call.
    """

    def __init__(self, requests: Sequence[pb.ScoreRequest], field: str) -> None:
        self._requests = requests
        self._field = field

    def __len__(self) -> int:
        return len(self._requests)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [str(getattr(r.transaction, self._field)) for r in self._requests[index]]
        return str(getattr(self._requests[index].transaction, self._field))


def review_extra(requests: Sequence[pb.ScoreRequest]) -> dict[str, object]:
    """What decision sinks get besides the records: raw account and counterparty ids, lazily."""
    return {
        "account_ids": TransactionField(requests, "account_id"),
        "counterparty_ids": TransactionField(requests, "counterparty_id"),
    }
