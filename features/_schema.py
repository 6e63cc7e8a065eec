"""The transaction record every part of Outpost passes around: one numpy structured row per transaction.

The server encodes a protobuf ``Transaction``/``Customer`` into this record; the simulator,
training and backtests encode tabular files into the same record (``encode_frame``), so
features are computed from identical inputs online and offline.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = [
    "NO_BALANCE",
    "NO_TIME",
    "TXN_DTYPE",
    "new_batch",
    "stable_key",
]

# Sentinels for values a request may leave unset.
NO_TIME = np.iinfo(np.int64).min
NO_BALANCE = np.iinfo(np.int64).min

TXN_DTYPE = np.dtype(
    [
        ("event_time_us", np.int64),  # business time, microseconds since the Unix epoch (UTC)
        ("account_key", np.uint64),  # stable_key(account_id); never 0 for a valid transaction
        ("counterparty_key", np.uint64),  # stable_key(counterparty_id); 0 when absent
        ("device_key", np.uint64),  # stable_key(device_id); 0 when absent
        ("branch_key", np.uint64),  # stable_key(branch_id); 0 when absent
        ("amount_minor", np.int64),  # amount in minor units of the transaction currency (> 0)
        ("amount_fen", np.int64),  # the same amount converted to CNY fen (rate table, integer arithmetic)
        ("balance_fen", np.int64),  # balance before the transaction in CNY fen; NO_BALANCE when unknown
        ("account_opened_us", np.int64),  # NO_TIME when unknown
        ("mcc", np.int32),  # merchant category code; 0 when absent
        ("customer_age", np.int16),  # whole years at event time; -1 when unknown
        ("txn_type", np.int8),  # TransactionType number (features.ENUMS["TransactionType"])
        ("channel", np.int8),  # Channel number
        ("risk_level", np.int8),  # RiskLevel number
        ("is_employee", np.int8),  # 0 / 1
        ("cross_border", np.int8),  # 0 / 1: country or counterparty country outside the home country
        ("apply", np.int8),  # 1: apply to state after scoring; 0: dry run
    ],
    align=True,
)


def new_batch(n: int) -> np.ndarray:
    """A batch of ``n`` records with every optional field set to its 'unknown' sentinel."""
    batch = np.zeros(n, dtype=TXN_DTYPE)
    batch["balance_fen"] = NO_BALANCE
    batch["account_opened_us"] = NO_TIME
    batch["customer_age"] = -1
    batch["apply"] = 1
    return batch


def stable_key(value: str) -> int:
    """A 64-bit key for an identifier, equal in every process and on every machine; 0 for ''.

    Identifiers are never stored in clear in the feature state, only these keys.
    """
    if not value:
        return 0
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest()
    key = int.from_bytes(digest, "little")
    return key or 1
