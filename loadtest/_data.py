"""Where the transactions of a load test come from: a bank's own CSV/Parquet file, or the simulator.

Both come from the ``models`` package, so the harness reads files exactly as training and
backtests do (including a column mapping for a bank's own column names), and simulates the same
realistic Shenzhen mix with labelled fraud bursts. ``models`` errors are translated here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from loadtest._errors import DataError

if TYPE_CHECKING:  # imported by the functions, so client processes start without pandas
    import pandas as pd

__all__ = ["load_transactions", "simulated_transactions"]

# Rows per account per day the simulator yields (about 0.49 measured); used to size a simulation.
_ROWS_PER_ACCOUNT_DAY = 0.45
_SIM_DAYS = 28


def load_transactions(path: Path, *, mapping: Path | None = None) -> pd.DataFrame:
    """Canonical transactions from a ``.csv`` or ``.parquet`` file (renamed through ``mapping``), by event time."""
    import models

    if not path.is_file():
        raise DataError(f"--data {path}: file not found")
    try:
        frame: pd.DataFrame = models.load_transactions(path, mapping)
    except models.DataError as exc:
        raise DataError(f"--data {path}: {exc}") from None
    return frame


def simulated_transactions(rows: int, *, seed: int = 7, fraud_scale: float = 1.0) -> pd.DataFrame:
    """At least ``rows`` simulated transactions over four weeks (more when the simulation yields more)."""
    from models import SimulationConfig, simulate

    rows = max(rows, 1)
    accounts = max(200, math.ceil(rows / (_ROWS_PER_ACCOUNT_DAY * _SIM_DAYS)))
    try:
        frame = simulate(SimulationConfig(accounts=accounts, days=_SIM_DAYS, seed=seed, fraud_scale=fraud_scale))
        while len(frame) < rows:  # the yield varies with the seed; grow until there is enough
            accounts = math.ceil(accounts * 1.2 * rows / max(len(frame), 1))
            frame = simulate(SimulationConfig(accounts=accounts, days=_SIM_DAYS, seed=seed, fraud_scale=fraud_scale))
    except ValueError as exc:
        raise DataError(f"cannot simulate transactions: {exc}") from None
    return frame
