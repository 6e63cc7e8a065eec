"""The simulator: determinism, canonical format, consistent balances, labelled typologies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import TABULAR_COLUMNS, FeatureConfig, encode_frame
from models import TYPOLOGIES, SimulationConfig, simulate


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A small simulation with every typology scaled up so each one occurs."""
    return simulate(SimulationConfig(accounts=1500, days=45, seed=11, fraud_scale=6.0))


def test_same_seed_same_frame(frame: pd.DataFrame) -> None:
    """Simulating twice with one configuration gives identical frames."""
    again = simulate(SimulationConfig(accounts=1500, days=45, seed=11, fraud_scale=6.0))
    pd.testing.assert_frame_equal(frame, again)


def test_other_seed_other_frame() -> None:
    """A different seed gives different transactions."""
    a = simulate(SimulationConfig(accounts=200, days=20, seed=1))
    b = simulate(SimulationConfig(accounts=200, days=20, seed=2))
    assert len(a) != len(b) or not a["amount_minor"].equals(b["amount_minor"])


def test_canonical_columns_and_order(frame: pd.DataFrame) -> None:
    """Columns are the canonical tabular ones plus the labels, sorted by event time, encodable."""
    assert set(frame.columns) - {"is_fraud", "typology"} <= set(TABULAR_COLUMNS)
    assert frame["event_time"].is_monotonic_increasing
    assert str(frame["event_time"].dt.tz) == "UTC"
    assert (frame["amount_minor"] > 0).all()
    assert frame["transaction_id"].is_unique
    records = encode_frame(frame, FeatureConfig())
    assert len(records) == len(frame)


def test_balances_are_consistent(frame: pd.DataFrame) -> None:
    """Each transaction's balance_before equals the previous one's after the previous movement, never negative."""
    inflow = frame["type"].isin(["TRANSFER_IN", "CASH_DEPOSIT", "SALARY"])
    signed = np.where(inflow, frame["amount_minor"], -frame["amount_minor"])
    by_account = frame.assign(signed=signed).groupby("account_id", sort=False)
    after = frame["balance_minor"] + signed
    expected_next = after.groupby(frame["account_id"]).shift(1)
    has_previous = expected_next.notna()
    assert (frame["balance_minor"][has_previous] == expected_next[has_previous]).all()
    assert (frame["balance_minor"] >= 0).all()
    assert by_account.ngroups > 1000


def test_every_typology_is_labelled(frame: pd.DataFrame) -> None:
    """Every typology appears, and labels agree: typology is '' exactly on normal rows."""
    fraud = frame["is_fraud"] == 1
    assert set(frame.loc[fraud, "typology"]) == set(TYPOLOGIES)
    assert (frame.loc[~fraud, "typology"] == "").all()


def test_fraud_share_at_default_scale() -> None:
    """At the default prevalence fraud is a small share of transactions (0.3% to 2%)."""
    sim = simulate(SimulationConfig(accounts=4000, days=40, seed=5))
    assert 0.003 <= sim["is_fraud"].mean() <= 0.02


def test_telecom_victims_lean_elderly(frame: pd.DataFrame) -> None:
    """Telecom-fraud victims are much older on average than the customer base."""
    victims = frame.loc[frame["typology"] == "telecom_fraud_victim", "customer_age"]
    assert victims.mean() > frame.drop_duplicates("account_id")["customer_age"].mean() + 5


def test_structuring_sits_just_under_threshold(frame: pd.DataFrame) -> None:
    """Structuring rows are cash in [42,000, 50,000) CNY."""
    rows = frame[frame["typology"] == "structuring"]
    assert rows["type"].isin(["CASH_DEPOSIT", "CASH_WITHDRAWAL"]).all()
    assert rows["amount_minor"].between(4_200_000, 4_999_999).all()


def test_emerging_typologies_start_late() -> None:
    """Emerging typologies occur only after emerging_from of the period."""
    cfg = SimulationConfig(accounts=1500, days=40, seed=3, fraud_scale=6.0, emerging=("structuring",),
                           emerging_from=0.5)
    sim = simulate(cfg)
    start = sim["event_time"].min()
    rows = sim[sim["typology"] == "structuring"]
    assert len(rows) > 0
    assert ((rows["event_time"] - start) >= pd.Timedelta(days=0.5 * 40 - 1)).all()


def test_config_validation() -> None:
    """Bad configurations are refused with a message saying what is wrong."""
    with pytest.raises(ValueError, match="accounts"):
        SimulationConfig(accounts=3)
    with pytest.raises(ValueError, match="unknown typologies"):
        SimulationConfig(prevalence={"bank_robbery": 0.1})
