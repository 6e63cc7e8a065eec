"""The Prometheus endpoint of a real server, scraped over HTTP, and the Grafana dashboard built on it."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from outpost.v1 import outpost_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from models import default_model_dir
from server._metrics import METRIC_NAMES
from server._settings import PACKAGE_ROOT
from tests.hardening.conftest import Samples, rpc_code, sample, scrape
from tests.server.conftest import BASE_TIME, RunningServer, make_settings, start_server, ts, txn

DASHBOARD = PACKAGE_ROOT / "ops" / "grafana" / "outpost-dashboard.json"
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_info")


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(make_settings(tmp_path_factory.mktemp("metrics"), metrics_addr="127.0.0.1:0",
                                        model_min_budget_ms=5_000.0))
    yield server
    server.stop()


def _scrape(server: RunningServer) -> Samples:
    assert server.app.metrics_port
    return scrape(server.app.metrics_port)


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def _scrape_until(server: RunningServer, done: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """A scrape in which ``done`` holds, trying for ``timeout`` seconds: the decision sinks (actions, rule hits)
    see a call once its reply is on its way, so a scrape right after the reply may come first."""
    deadline = time.monotonic() + timeout
    after = _scrape(server)
    while not done(after) and time.monotonic() < deadline:
        time.sleep(0.05)
        after = _scrape(server)
    return after


def _families(server: RunningServer) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.app.metrics_port}/metrics", timeout=10) as response:
        names = {f.name for f in text_string_to_metric_families(response.read().decode("utf-8"))}
    return names | {n.removesuffix("_info") for n in names}  # the text format names an info family X_info


def test_calls_latency_actions_rule_hits_and_state_are_counted(metered: RunningServer) -> None:
    """Calls by method and code, latency histogram, actions by channel, active and shadow rule hits, state size."""
    before = _scrape(metered)
    replies = [metered.scoring.Score(txn(f"acct-met-{k}", at=BASE_TIME + dt.timedelta(minutes=k))) for k in range(5)]
    deposit = metered.scoring.Score(txn("acct-met-cash", amount_minor=4_800_000, type=pb.TRANSACTION_TYPE_CASH_DEPOSIT,
                                        channel=pb.CHANNEL_TELLER, counterparty="", branch_id="SZ-01"))
    assert rpc_code(lambda: metered.scoring.Score(txn("acct-met-bad", currency="ZZZ"))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    metered.scoring.ReportOutcome(pb.ReportOutcomeRequest(
        transaction_id="t-unknown-met", outcome=pb.OUTCOME_FALSE_POSITIVE, reported_at=ts(BASE_TIME),
        counterparty_id="merchant-coffee-1"))
    after = _scrape_until(metered, lambda now: _delta(before, now, "outpost_actions_total", channel="TELLER",
                                                      action=pb.Action.Name(deposit.action).removeprefix("ACTION_"))
                          > 0)

    assert _delta(before, after, "outpost_calls_total", method="Score", code="OK") == 6
    assert _delta(before, after, "outpost_calls_total", method="Score", code="INVALID_ARGUMENT") == 1
    assert _delta(before, after, "outpost_calls_total", method="ReportOutcome", code="OK") == 1
    assert _delta(before, after, "outpost_call_latency_seconds_count", method="Score", code="OK") == 6
    assert _delta(before, after, "outpost_call_latency_seconds_bucket", method="Score", code="OK", le="+Inf") == 6
    assert _delta(before, after, "outpost_rejected_inputs_total", method="Score") == 1
    pos = [r for r in replies if r.action == pb.ACTION_ALLOW]
    assert _delta(before, after, "outpost_actions_total", channel="POS", action="ALLOW") == len(pos) > 0
    assert _delta(before, after, "outpost_actions_total", channel="TELLER",
                  action=pb.Action.Name(deposit.action).removeprefix("ACTION_")) == 1
    assert _delta(before, after, "outpost_rule_hits_total", rule="R_STRUCT_JUST_UNDER_SINGLE", mode="shadow") == 1
    assert "R_STRUCT_JUST_UNDER_SINGLE" not in deposit.rule_hits  # shadow: counted, never shown to the client
    for rule in deposit.rule_hits:
        assert _delta(before, after, "outpost_rule_hits_total", rule=rule, mode="active") == 1
    assert _delta(before, after, "outpost_model_seconds_count") >= 1
    assert sample(after, "outpost_state_accounts") == metered.admin.GetStatus(pb.GetStatusRequest()).accounts >= 6
    assert sample(after, "outpost_state_bytes") > 0
    assert sample(after, "outpost_calls_in_flight") == 0
    assert sample(after, "outpost_dependency_up", dependency="state") == 1


def test_degraded_answers_are_counted_by_reason(metered: RunningServer) -> None:
    """A call whose deadline leaves no time for the model counts in outpost_degraded_total{reason="deadline"}."""
    before = _scrape(metered)
    reply = metered.scoring.Score(txn("acct-met-late", dry_run=True), timeout=2)
    assert reply.degraded_reason == "deadline"
    after = _scrape(metered)
    assert _delta(before, after, "outpost_degraded_total", reason="deadline") == 1
    assert _delta(before, after, "outpost_degraded_total") == 1


def test_versions_info_follows_reloads_at_once(metered: RunningServer) -> None:
    """outpost_versions_info names the versions in use, and changes as soon as a model is switched."""
    status = metered.admin.GetStatus(pb.GetStatusRequest())
    info = sample(_scrape(metered), "outpost_versions_info", ruleset_version=status.ruleset_version,
                  model_version=status.model_version)
    assert info == 1
    copy = _registry(metered) / "gbm-metrics-copy"
    shutil.copytree(default_model_dir(), copy)
    meta = json.loads((copy / "metadata.json").read_text(encoding="utf-8"))
    meta["version"] = "gbm-metrics-copy"
    (copy / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    try:
        assert metered.admin.ReloadModel(pb.ReloadModelRequest(model_version="gbm-metrics-copy")).ok
        assert sample(_scrape(metered), "outpost_versions_info", model_version="gbm-metrics-copy") == 1
        assert sample(_scrape(metered), "outpost_versions_info", model_version=status.model_version) == 0
    finally:
        assert metered.admin.ReloadModel(pb.ReloadModelRequest()).ok


def test_every_metric_family_is_exported(metered: RunningServer) -> None:
    """Each name in server._metrics.METRIC_NAMES is on the endpoint (a dashboard can rely on the list)."""
    assert set(METRIC_NAMES) <= _families(metered)


def _dashboard_exprs() -> list[str]:
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"expr", "definition"} and isinstance(value, str):
                    exprs.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    return exprs


def test_dashboard_references_only_real_metrics_and_shows_them_all(metered: RunningServer) -> None:
    """Every outpost_* name in the Grafana dashboard exists on the endpoint, and every family appears in it."""
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    named = {m for e in exprs for m in re.findall(r"\boutpost_[a-z0-9_]+", e)}
    families = _families(metered)
    for name in named:
        base = next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s) and name.removesuffix(s) in families),
                    name)
        assert base in families, f"the dashboard uses {name}, which Outpost does not export"
    shown = {next((n.removesuffix(s) for s in SUFFIXES if n.endswith(s)), n) for n in named}
    assert set(METRIC_NAMES) <= shown, f"not on the dashboard: {sorted(set(METRIC_NAMES) - shown)}"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["panels"]
    assert all(p.get("gridPos") for p in dashboard["panels"])


def _registry(server: RunningServer) -> Path:
    registry = server.app.settings.model_registry
    assert registry is not None
    registry.mkdir(parents=True, exist_ok=True)
    return registry


def test_a_score_batch_counts_every_rows_action_by_channel(metered: RunningServer) -> None:
    """A ScoreBatch of 40 rows over three channels (beyond the hand-counted small batches) adds each row's action
    under its channel."""
    channels = [pb.CHANNEL_POS, pb.CHANNEL_MOBILE, pb.CHANNEL_TELLER]
    requests = [
        txn(f"acct-met-batch-{k}", at=BASE_TIME + dt.timedelta(minutes=k), channel=channels[k % 3],
            amount_minor=12_345 if k % 5 else 4_800_000, type=pb.TRANSACTION_TYPE_TRANSFER_OUT,
            counterparty=f"cp-met-{k}")
        for k in range(40)
    ]
    before = _scrape(metered)
    replies = metered.scoring.ScoreBatch(pb.ScoreBatchRequest(requests=requests), timeout=30).responses
    expected: dict[tuple[str, str], int] = {}
    for request, reply in zip(requests, replies, strict=True):
        key = (pb.Channel.Name(request.transaction.channel).removeprefix("CHANNEL_"),
               pb.Action.Name(reply.action).removeprefix("ACTION_"))
        expected[key] = expected.get(key, 0) + 1
    assert len({action for _, action in expected}) > 1  # more than one action among the rows

    def counted(after: Samples) -> dict[tuple[str, str], float]:
        return {key: _delta(before, after, "outpost_actions_total", channel=key[0], action=key[1]) for key in expected}

    assert counted(_scrape_until(metered, lambda after: counted(after) == expected)) == expected
