"""Prometheus metrics on their own registry and HTTP port: calls, latency, decisions, rule hits, faults, versions.

Every name is listed in ``METRIC_NAMES`` (the Grafana dashboard in ``ops/grafana`` uses exactly these); the
operations guide (docs/operations.md) says what each one means.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
    "outpost_state_snapshot_failures",
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
                yield GaugeMetricFamily(
                    "outpost_state_snapshot_failures",
                    "Snapshots of the feature state that could not be written since start (the log keeps every record)",
                    value=float(stats.get("snapshot_failures", 0)),
                )
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


_SMALL_BATCH = 16


class _Histogram:
    """Bucket counts of one histogram by label values: plain lists, exported by ``_HotFamilies``."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.buckets = name, doc, labels, buckets
        # The bounds written as prometheus_client writes its own ("0.0002", "1.0", "+Inf").
        self.edges = [*(str(floatToGoString(b)) for b in buckets), "+Inf"]  # type: ignore[no-untyped-call]
        self.children: dict[tuple[str, ...], list[float]] = {}  # per bucket (not cumulative), +Inf, then the sum

    def observe(self, key: tuple[str, ...], value: float) -> None:
        """Count one ``value`` (callers hold the Metrics lock)."""
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = [0.0] * (len(self.buckets) + 2)
        child[bisect.bisect_left(self.buckets, value)] += 1
        child[-1] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, child in sorted(self.children.items()):
            running, cumulative = 0.0, []
            for edge, count in zip(self.edges, child[:-1], strict=True):
                running += count
                cumulative.append((edge, running))
            family.add_metric(list(key), cumulative, sum_value=child[-1])
        return family


class _HotFamilies(Collector):
    """The metrics every call or batch updates, kept as plain numbers under one lock and exported at scrape time.

    prometheus_client's own counters take a lock and check their arguments on every increment: about 2.4 µs per
    call and 8.5 µs per batch of one (hot loop), several times that between real calls. Here a call costs one
    dictionary update and a bisect.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.calls: dict[tuple[str, str], int] = {}
        self.latency = _Histogram("outpost_call_latency_seconds", "gRPC call latency by method and status code",
                                  ("method", "code"), _LATENCY_BUCKETS)
        self.actions: dict[tuple[str, str], int] = {}
        self.rule_hits: dict[tuple[str, str], int] = {}
        self.model_latency = _Histogram("outpost_model_seconds", "Model inference time per scored batch", (),
                                        _MODEL_BUCKETS)
        self.batch_rows = _Histogram(
            "outpost_batch_rows", "Transactions per pipeline run (a micro-batch of Score calls or a ScoreBatch call)",
            (), _BATCH_BUCKETS,
        )

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            counters = [
                ("outpost_calls", "gRPC calls by method and status code", ("method", "code"), dict(self.calls)),
                ("outpost_actions", "Decisions by channel and action", ("channel", "action"), dict(self.actions)),
                ("outpost_rule_hits", "Rule hits (shadow included)", ("rule", "mode"), dict(self.rule_hits)),
            ]
            histograms = [h.family() for h in (self.latency, self.model_latency, self.batch_rows)]
        for name, doc, labels, values in counters:
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, value in sorted(values.items()):
                family.add_metric(list(key), value)
            yield family
        yield from histograms


class Metrics:
    """Every metric Outpost exports; also a DecisionSink for actions, rule hits, degraded answers and model time."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._hot = _HotFamilies(self._lock)
        r.register(self._hot)
        self.in_flight = Gauge("outpost_calls_in_flight", "Outpost calls being handled right now", registry=r)
        self.state_sync = Histogram(
            "outpost_state_sync_seconds", "Time of each group-commit sync of the state log (write, and fsync)",
            buckets=_SYNC_BUCKETS, registry=r,
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
        self._channel_names: dict[tuple[int, int], tuple[str, str]] = {}

    def count_in_flight(self, calls: Callable[[], int]) -> None:
        """Report ``calls()`` as outpost_calls_in_flight at every scrape (the interceptor's own count)."""
        self.in_flight.set_function(lambda: float(calls()))

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """Count one finished call and its latency."""
        hot = self._hot
        key = (method, code)
        with self._lock:
            hot.calls[key] = hot.calls.get(key, 0) + 1
            hot.latency.observe(key, seconds)

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
        hot = self._hot
        n = len(txns)
        pairs: dict[tuple[int, int], int]
        if n <= _SMALL_BATCH:  # counting a few rows by hand costs less than numpy's fixed costs
            pairs = {}
            for pair in zip(txns["channel"].tolist(), decisions.actions.tolist(), strict=True):
                pairs[pair] = pairs.get(pair, 0) + 1
        else:  # one bincount of channel * 8 + action (actions are 0..4): 500 rows 45-60 -> 9 µs against a Counter
            counts = np.bincount(txns["channel"].astype(np.int64) * 8 + decisions.actions)
            present = np.flatnonzero(counts)
            pairs = {
                (code >> 3, code & 7): count
                for code, count in zip(present.tolist(), counts[present].tolist(), strict=True)
            }
        hit_counts: list[tuple[tuple[str, str], int]] = []
        if np.count_nonzero(decisions.hits):  # a quarter of .any()'s cost on a batch of one
            counts = np.bincount(decisions.hit_cells()[1], minlength=decisions.hits.shape[1])
            rules = decisions.snapshot.rules.rules
            hit_counts = [((rules[j].id, rules[j].mode), int(counts[j])) for j in np.flatnonzero(counts).tolist()]
        seconds = decisions.extra.get("model_seconds")
        with self._lock:  # one batch's updates together
            hot.batch_rows.observe((), float(n))
            for pair, count in pairs.items():
                key = self._channel_names.get(pair)
                if key is None:
                    key = self._channel_names[pair] = (
                        _CHANNELS.get(pair[0], "OTHER"), ACTION_NAMES.get(pair[1], "UNKNOWN")
                    )
                hot.actions[key] = hot.actions.get(key, 0) + count
            for key, count in hit_counts:
                hot.rule_hits[key] = hot.rule_hits.get(key, 0) + count
            if isinstance(seconds, float):
                hot.model_latency.observe((), seconds)
        # A row skips the model for lack of time (the call's deadline) when a model is loaded but unused.
        skipped = n - int(np.count_nonzero(decisions.used_model)) if decisions.snapshot.model is not None else 0
        if skipped:
            self.degraded.labels("deadline").inc(skipped)
        if decisions.degraded_reason and n > skipped:
            self.degraded.labels(decisions.degraded_reason).inc(n - skipped)
