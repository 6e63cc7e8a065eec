"""The models CLI: simulate, train and evaluate subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models import cli


def test_simulate_writes_csv_and_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """simulate writes the requested file; CSV and Parquet hold the same transactions."""
    for name in ("t.csv", "t.parquet"):
        code = cli.main(["simulate", "--accounts", "100", "--days", "15", "--seed", "2", "--out", str(tmp_path / name)])
        assert code == 0
    assert "transactions" in capsys.readouterr().out
    csv = pd.read_csv(tmp_path / "t.csv")
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    assert len(csv) == len(parquet) > 0
    assert list(csv["transaction_id"]) == list(parquet["transaction_id"])


def test_train_from_data_with_mapping_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """train --data with a mapping registers a model; evaluate prints the table and saves it to metadata."""
    data = tmp_path / "theirs.parquet"
    assert cli.main(["simulate", "--accounts", "600", "--days", "30", "--seed", "3", "--out", str(data)]) == 0
    frame = pd.read_parquet(data).rename(columns={"account_id": "acct", "is_fraud": "label"})
    frame.to_parquet(data, index=False)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("account_id: acct\nis_fraud: label\n")
    code = cli.main(["train", "--data", str(data), "--mapping", str(mapping), "--out", str(tmp_path / "reg"),
                     "--version", "v-test", "--trees", "10", "--leaves", "7", "--learning-rate", "0.1",
                     "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ONNX parity" in out and "average precision" in out
    meta = json.loads((tmp_path / "reg" / "v-test" / "metadata.json").read_text())
    params = meta["training"]["lightgbm_params"]
    assert (params["num_leaves"], params["learning_rate"], meta["onnx"]["trees"]) == (7, 0.1, 10)
    assert meta["training"]["command"].startswith("outpost train --data")
    code = cli.main(["evaluate", "--model", str(tmp_path / "reg" / "v-test"), "--accounts", "600", "--days", "30",
                     "--seed", "4"])
    assert code == 0
    assert "recall by typology" in capsys.readouterr().out


def test_bad_usage_and_errors_return_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors exit 2; a missing data file exits 1 with a message."""
    assert cli.main(["train"]) == 2
    assert cli.main(["train", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 1
    assert "error:" in capsys.readouterr().err
    assert cli.main(["train", "--simulate", "--leaves", "1", "--out", str(tmp_path)]) == 1
    assert "num_leaves must be >= 2" in capsys.readouterr().err
