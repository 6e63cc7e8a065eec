"""Prometheus metrics on their own registry and HTTP port: calls, latency, decisions, rule hits, faults, versions.

Every name is listed in ``METRIC_NAMES`` (the Grafana dashboard in ``ops/grafana`` uses exactly these); the
operations guide (docs/operations.md) says what each one means.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from server._pipeline import Decisions, Snapshot
from server._policy import ACTION_NAMES

__all__ = ["METRIC_NAMES", "Metrics"]

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)
_MODEL_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)
_SYNC_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1000)
_CHANNELS = {1: "MOBILE", 2: "ONLINE", 3: "TELLER", 4: "ATM", 5: "POS", 6: "API"}

# Family names as exposed (counters gain _total, histograms _bucket/_sum/_count, info _info).
METRIC_NAMES = (
    "outpost_actions",
    "outpost_batch_rows",
    "outpost_call_latency_seconds",
    "outpost_calls",
    "outpost_calls_in_flight",
    "outpost_degraded",
    "outpost_dependency_up",
    "outpost_model_seconds",
    "outpost_rejected_inputs",
    "outpost_rule_hits",
    "outpost_security_events",
    "outpost_shed",
    "outpost_state_accounts",
    "outpost_state_bytes",
    "outpost_state_sync_seconds",
    "outpost_versions",
)


class _PipelineView(Protocol):
    @property
    def snapshot(self) -> Snapshot: ...


class _LiveState(Collector):
    """Values read when Prometheus scrapes: state size (from the state backend) and the versions in use."""

    def __init__(self) -> None:
        self.pipeline: _PipelineView | None = None
        self.stats: Callable[[], Mapping[str, int]] | None = None

    def describe(self) -> list[Metric]:
        return []  # no fixed description: the values appear once the service has loaded

    def collect(self) -> Iterator[Metric]:
        if self.stats is not None:
            try:
                stats = self.stats()
            except Exception:  # the backend is down: outpost_dependency_up says so; skip the sizes
                stats = None
            if stats is not None:
                yield GaugeMetricFamily("outpost_state_accounts", "Accounts in the feature state",
                                        value=float(stats.get("accounts", 0)))
                yield GaugeMetricFamily("outpost_state_bytes", "Memory held by the feature state",
                                        value=float(stats.get("state_bytes", 0)))
        if self.pipeline is not None:
            snap = self.pipeline.snapshot
            yield InfoMetricFamily(
                "outpost_versions",
                "Rule set and model versions in use",
                value={
                    "ruleset_version": snap.rules.version,
                    "model_version": snap.model_version,
                    "challenger_version": snap.challenger.version if snap.challenger is not None else "",
                },
            )


class Metrics:
    """Every metric Outpost exports; also a DecisionSink for actions, rule hits, degraded answers and model time."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.calls = Counter("outpost_calls", "gRPC calls by method and status code", ["method", "code"], registry=r)
        self.latency = Histogram(
            "outpost_call_latency_seconds",
            "gRPC call latency by method and status code",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("outpost_calls_in_flight", "Outpost calls being handled right now", registry=r)
        self.actions = Counter("outpost_actions", "Decisions by channel and action", ["channel", "action"], registry=r)
        self.rule_hits = Counter("outpost_rule_hits", "Rule hits (shadow included)", ["rule", "mode"], registry=r)
        self.model_latency = Histogram(
            "outpost_model_seconds", "Model inference time per scored batch", buckets=_MODEL_BUCKETS, registry=r
        )
        self.state_sync = Histogram(
            "outpost_state_sync_seconds", "Time of each group-commit sync of the state log (write, and fsync)",
            buckets=_SYNC_BUCKETS, registry=r,
        )
        self.batch_rows = Histogram(
            "outpost_batch_rows", "Transactions per pipeline run (a micro-batch of Score calls or a ScoreBatch call)",
            buckets=_BATCH_BUCKETS, registry=r,
        )
        self.degraded = Counter("outpost_degraded", "Degraded answers by reason", ["reason"], registry=r)
        self.shed = Counter("outpost_shed", "Calls refused with RESOURCE_EXHAUSTED", ["method"], registry=r)
        self.rejected = Counter(
            "outpost_rejected_inputs", "Calls refused with INVALID_ARGUMENT", ["method"], registry=r
        )
        self.security = Counter(
            "outpost_security_events", "Authentication and authorisation failures", ["kind"], registry=r
        )
        self.dependency_up = Gauge(
            "outpost_dependency_up", "1 when a dependency is reachable", ["dependency"], registry=r
        )
        self._live = _LiveState()
        r.register(self._live)
        self._http: Any = None
        self._lock = threading.Lock()
        # labels() hashes and locks on every lookup: the hot path keeps the children it has used.
        self._call_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._action_children: dict[tuple[int, int], Any] = {}
        self._hit_children: dict[tuple[str, str], Any] = {}

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """Count one finished call and its latency."""
        children = self._call_children.get((method, code))
        if children is None:
            children = (self.calls.labels(method, code), self.latency.labels(method, code))
            self._call_children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def serve(self, addr: str) -> int:
        """Serve /metrics on ``addr`` (HOST:PORT; port 0 picks a free one); the bound port."""
        host, _, port = addr.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint (if serving)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def track(self, pipeline: _PipelineView, stats: Callable[[], Mapping[str, int]]) -> None:
        """Report the versions of ``pipeline``'s snapshot and the state size from ``stats`` at every scrape."""
        self._live.pipeline, self._live.stats = pipeline, stats

    def record(self, txn_ids: object, txns: np.ndarray, decisions: Decisions) -> None:
        self.batch_rows.observe(len(txns))
        pairs = collections.Counter(zip(txns["channel"].tolist(), decisions.actions.tolist(), strict=True))
        with self._lock:  # counters are thread-safe; this keeps one batch's increments together
            for (channel, action), count in pairs.items():
                child = self._action_children.get((channel, action))
                if child is None:
                    child = self.actions.labels(_CHANNELS.get(channel, "OTHER"), ACTION_NAMES.get(action, "UNKNOWN"))
                    self._action_children[(channel, action)] = child
                child.inc(count)
            if decisions.hits.size and decisions.hits.any():
                counts = decisions.hits.sum(axis=0)
                rules = decisions.snapshot.rules.rules
                for j in np.flatnonzero(counts).tolist():
                    key = (rules[j].id, rules[j].mode)
                    hit = self._hit_children.get(key)
                    if hit is None:
                        hit = self._hit_children[key] = self.rule_hits.labels(*key)
                    hit.inc(int(counts[j]))
            # A row skips the model for lack of time (the call's deadline) when a model is loaded but unused.
            skipped = (
                int((~decisions.used_model).sum()) if decisions.snapshot.model is not None else 0
            )
            if skipped:
                self.degraded.labels("deadline").inc(skipped)
            if decisions.degraded_reason and len(txns) > skipped:
                self.degraded.labels(decisions.degraded_reason).inc(len(txns) - skipped)
            seconds = decisions.extra.get("model_seconds")
            if isinstance(seconds, float):
                self.model_latency.observe(seconds)
