"""load_transactions: any CSV or Parquet through a column mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models import DataError, SimulationConfig, load_transactions, simulate

THEIRS = {"account_id": "acct", "counterparty_id": "payee", "event_time": "ts", "amount_minor": "fen",
          "type": "kind", "is_fraud": "label"}


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    """A few thousand simulated transactions."""
    return simulate(SimulationConfig(accounts=100, days=20, seed=9))


def _their_file(sim: pd.DataFrame, path: Path) -> Path:
    theirs = sim.drop(columns=["currency"]).rename(columns=THEIRS)
    theirs = theirs.sample(frac=1.0, random_state=1)  # not sorted: loading sorts by time
    theirs["ts"] = theirs["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    if path.suffix == ".csv":
        theirs.to_csv(path, index=False)
    else:
        theirs.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_mapping_renames_and_constants(sim: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    """Mapped columns come back under canonical names, '=CNY' fills a constant, rows sorted by time."""
    path = _their_file(sim, tmp_path / f"theirs{suffix}")
    loaded = load_transactions(path, {**THEIRS, "currency": "=CNY"})
    assert loaded["event_time"].is_monotonic_increasing
    assert (loaded["currency"] == "CNY").all()
    assert loaded["amount_minor"].dtype == "int64"
    merged = loaded.merge(sim, on="transaction_id", suffixes=("", "_sim"))
    assert len(merged) == len(sim)
    assert (merged["account_id"] == merged["account_id_sim"]).all()
    assert (merged["amount_minor"] == merged["amount_minor_sim"]).all()
    assert (merged["is_fraud"] == merged["is_fraud_sim"]).all()
    assert (merged["event_time"] == merged["event_time_sim"]).all()


def test_mapping_from_yaml_and_json_files(sim: pd.DataFrame, tmp_path: Path) -> None:
    """A mapping can be a YAML or JSON file."""
    path = _their_file(sim, tmp_path / "theirs.csv")
    mapping = {**THEIRS, "currency": "=CNY"}
    (tmp_path / "m.json").write_text(json.dumps(mapping))
    (tmp_path / "m.yaml").write_text("\n".join(f"{k}: '{v}'" for k, v in mapping.items()))
    a = load_transactions(path, tmp_path / "m.json")
    b = load_transactions(path, tmp_path / "m.yaml")
    pd.testing.assert_frame_equal(a, b)


def test_missing_required_column_is_named(sim: pd.DataFrame, tmp_path: Path) -> None:
    """Without a currency column or constant the error names the column and how to map it."""
    path = _their_file(sim, tmp_path / "theirs.csv")
    with pytest.raises(DataError, match="currency"):
        load_transactions(path, THEIRS)


def test_mapping_to_absent_column(sim: pd.DataFrame, tmp_path: Path) -> None:
    """A mapping that points at a column the file lacks says which."""
    path = _their_file(sim, tmp_path / "theirs.csv")
    with pytest.raises(DataError, match="'nope'"):
        load_transactions(path, {**THEIRS, "currency": "=CNY", "channel": "nope"})


def test_unknown_canonical_key(tmp_path: Path) -> None:
    """A mapping key that is not a canonical column is refused."""
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    with pytest.raises(DataError, match="unknown canonical"):
        load_transactions(path, {"acount_id": "a"})
