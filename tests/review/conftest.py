"""Fixtures for the review tests: a real pipeline (in-memory features, compiled rules, the shipped model),
a small simulated bank, a real redis-server, and ScoreRequests built from simulated rows."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from google.protobuf.timestamp_pb2 import Timestamp
from outpost.v1 import outpost_pb2 as pb

from features import FeatureConfig, FeatureEngine, new_batch, stable_key
from models import ModelRunner, SimulationConfig, default_model_dir, simulate
from rules_engine import RuleSet
from server import ActionPolicy, ScoringPipeline, Settings, Snapshot


@pytest.fixture(autouse=True)
def english_chart_titles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chart titles are checked in English: the same on a machine with a CJK font (titles then add Chinese)."""
    import review._charts as charts_module

    monkeypatch.setattr(charts_module, "_cjk_family", lambda: None)


# A small rule file: one active rule that alerts (floor REVIEW), one shadow rule, one rule on labels.
RULES_YAML = """
version: "test-1"
rules:
  - id: BIG_AMOUNT
    description: {zh-CN: 大额转出, en: large outflow}
    typology: unusual_amount
    when: is_outflow and amount_cny >= 50000
    score: 500
    action_floor: REVIEW
    reason: {zh-CN: "转出金额{amount_cny:,.0f}元", en: "outflow of {amount_cny:,.0f} CNY"}
  - id: NIGHT_SHADOW
    description: {zh-CN: 夜间交易, en: night-time}
    typology: velocity
    mode: shadow
    when: is_night
    score: 100
    reason: {zh-CN: "凌晨交易", en: "night-time transaction"}
  - id: PAYEE_REPORTED
    description: {zh-CN: 收款方曾被举报, en: payee reported}
    typology: telecom_fraud_victim
    when: counterparty_fraud_reports >= 1
    score: 600
    action_floor: CHALLENGE
    reason:
      zh-CN: "收款方已有{counterparty_fraud_reports:.0f}次欺诈确认"
      en: "payee has {counterparty_fraud_reports:.0f} fraud reports"
"""

T0_US = 1_780_000_000_000_000  # 2026-05-28T20:26:40Z
HOUR_US = 3_600_000_000


@pytest.fixture(scope="session")
def rules() -> RuleSet:
    return RuleSet.compile(RULES_YAML, source="test_rules.yaml")


@pytest.fixture(scope="session")
def policy() -> ActionPolicy:
    return ActionPolicy.load(Settings().policy_path)


@pytest.fixture(scope="session")
def model() -> ModelRunner:
    runner = ModelRunner.load(default_model_dir())
    runner.warm()
    return runner


@pytest.fixture
def pipeline(rules: RuleSet, policy: ActionPolicy) -> ScoringPipeline:
    """The server's ScoringPipeline over an in-memory feature engine and the test rules (no model)."""
    return ScoringPipeline(engine=FeatureEngine.open(FeatureConfig()), snapshot=Snapshot(rules, None), policy=policy)


def make_batch(amounts_cny: Sequence[float] | np.ndarray, *, accounts: Sequence[str] | None = None,
               start_us: int = T0_US, step_us: int = 60_000_000, counterparty: str = "payee-1", apply: int = 1,
               txn_type: int = 1, channel: int = 1) -> np.ndarray:
    """Transaction records: outflows (TRANSFER_OUT via MOBILE by default), one minute apart."""
    n = len(amounts_cny)
    batch = new_batch(n)
    batch["event_time_us"] = start_us + np.arange(n, dtype=np.int64) * step_us
    names = accounts or [f"acct-{i}" for i in range(n)]
    batch["account_key"] = [stable_key(a) for a in names]
    batch["counterparty_key"] = stable_key(counterparty)
    batch["amount_minor"] = batch["amount_fen"] = np.round(np.asarray(amounts_cny) * 100).astype(np.int64)
    batch["txn_type"] = txn_type
    batch["channel"] = channel
    batch["apply"] = apply
    return batch


@pytest.fixture(scope="session")
def bank() -> pd.DataFrame:
    """A small simulated bank (canonical columns with is_fraud and typology labels)."""
    return simulate(SimulationConfig(accounts=400, days=21, seed=11, fraud_scale=3.0))


@pytest.fixture(scope="session")
def bank_csv(bank: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bank") / "transactions.csv"
    bank.to_csv(path, index=False)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, stopped at the end of the session."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    client.close()
    yield url
    process.terminate()
    process.wait(timeout=10)


def _stamp(value: object) -> Timestamp | None:
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)) or pd.isna(value):
        return None
    stamp = Timestamp()
    stamp.FromDatetime(pd.Timestamp(value).tz_convert("UTC").to_pydatetime().replace(tzinfo=None))
    return stamp


def request_from_row(row: pd.Series, *, explain: bool = False) -> pb.ScoreRequest:
    """A ScoreRequest for one canonical transaction row (as a payment gateway would send it)."""
    text = {k: ("" if pd.isna(row.get(k)) else str(row.get(k))) for k in (
        "transaction_id", "account_id", "counterparty_id", "currency", "device_id", "country", "region",
        "merchant_category", "counterparty_bank", "counterparty_country", "branch_id", "customer_id",
        "balance_currency")}
    transaction = pb.Transaction(
        transaction_id=text["transaction_id"], event_time=_stamp(row["event_time"]), account_id=text["account_id"],
        counterparty_id=text["counterparty_id"], amount_minor=int(row["amount_minor"]), currency=text["currency"],
        type=pb.TransactionType.Value("TRANSACTION_TYPE_" + str(row["type"])),  # type: ignore[arg-type]
        channel=pb.Channel.Value("CHANNEL_" + str(row["channel"])),  # type: ignore[arg-type]
        device_id=text["device_id"],
        country=text["country"], region=text["region"], merchant_category=text["merchant_category"],
        counterparty_bank=text["counterparty_bank"], counterparty_country=text["counterparty_country"],
        branch_id=text["branch_id"],
    )
    customer = pb.Customer(customer_id=text["customer_id"], age=max(int(row.get("customer_age", -1)), 0),
                           is_employee=bool(int(row.get("is_employee", 0))))
    opened = _stamp(row.get("account_opened"))
    if opened is not None:
        customer.account_opened.CopyFrom(opened)
    if not pd.isna(row.get("balance_minor")):
        customer.balance_minor = int(row["balance_minor"])
        customer.balance_currency = text["balance_currency"] or text["currency"]
    level = str(row.get("risk_level", "") or "")
    if level in ("LOW", "MEDIUM", "HIGH"):
        customer.risk_level = pb.RiskLevel.Value("RISK_LEVEL_" + level)  # type: ignore[assignment]
    return pb.ScoreRequest(transaction=transaction, customer=customer, locale="en", explain=explain)


def utc(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
