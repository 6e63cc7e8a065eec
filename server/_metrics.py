"""Prometheus metrics on their own registry and HTTP port."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from server._pipeline import Decisions
from server._policy import ACTION_NAMES

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
_CHANNELS = {1: "MOBILE", 2: "ONLINE", 3: "TELLER", 4: "ATM", 5: "POS", 6: "API"}


class Metrics:
    """Every metric Outpost exports; also a DecisionSink for actions and rule hits."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.calls = Counter("outpost_calls", "gRPC calls by method and status code", ["method", "code"], registry=r)
        self.latency = Histogram(
            "outpost_call_latency_seconds",
            "gRPC call latency by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.actions = Counter("outpost_actions", "Decisions by channel and action", ["channel", "action"], registry=r)
        self.rule_hits = Counter("outpost_rule_hits", "Rule hits (shadow included)", ["rule", "mode"], registry=r)
        self.model_latency = Histogram(
            "outpost_model_batch_seconds", "Pipeline batch time", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.degraded = Counter("outpost_degraded", "Degraded answers by reason", ["reason"], registry=r)
        self.shed = Counter("outpost_shed", "Calls refused with RESOURCE_EXHAUSTED", registry=r)
        self.rejected = Counter(
            "outpost_rejected_inputs", "Calls refused with INVALID_ARGUMENT", ["method"], registry=r
        )
        self.security = Counter(
            "outpost_security_events", "Authentication and authorisation failures", ["kind"], registry=r
        )
        self.dependency_up = Gauge(
            "outpost_dependency_up", "1 when a dependency is reachable", ["dependency"], registry=r
        )
        self.accounts = Gauge("outpost_state_accounts", "Accounts in the feature state", registry=r)
        self.versions = Info("outpost_versions", "Rule set and model versions in use", registry=r)

    def serve(self, addr: str) -> int:
        host, _, port = addr.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        return int(server.server_port)

    def record(self, txn_ids: object, txns: np.ndarray, decisions: Decisions) -> None:
        channels = txns["channel"]
        for channel, action in zip(channels.tolist(), decisions.actions.tolist(), strict=True):
            self.actions.labels(_CHANNELS.get(channel, "OTHER"), ACTION_NAMES.get(action, "UNKNOWN")).inc()
        if decisions.hits.size:
            counts = decisions.hits.sum(axis=0)
            rules = decisions.snapshot.rules.rules
            for j in np.flatnonzero(counts).tolist():
                self.rule_hits.labels(rules[j].id, rules[j].mode).inc(int(counts[j]))

    def set_versions(self, ruleset: str, model: str) -> None:
        self.versions.info({"ruleset_version": ruleset, "model_version": model})
