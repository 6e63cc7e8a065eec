"""The hot metric families (plain counts exported at scrape time) read exactly as prometheus_client's own would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from server._metrics import _LATENCY_BUCKETS, Metrics


def _samples(registry: CollectorRegistry, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        if metric.name == family
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_call_counts_and_latency_buckets_equal_prometheus_client() -> None:
    """Calls by method and code, and their latency histogram, equal a prometheus_client Counter and Histogram."""
    metrics = Metrics()
    reference = CollectorRegistry()
    calls = Counter("outpost_calls", "calls", ["method", "code"], registry=reference)
    latency = Histogram("outpost_call_latency_seconds", "latency", ["method", "code"], buckets=_LATENCY_BUCKETS,
                        registry=reference)
    rng = random.Random(7)
    edges = [*_LATENCY_BUCKETS, 0.0]  # values exactly on a bound count in that bucket (le means <=)
    for _ in range(2_000):
        method, code = rng.choice(["Score", "ScoreBatch"]), rng.choice(["OK", "OK", "INVALID_ARGUMENT"])
        seconds = rng.choice(edges) if rng.random() < 0.2 else rng.expovariate(200.0)
        metrics.observe_call(method, code, seconds)
        calls.labels(method, code).inc()
        latency.labels(method, code).observe(seconds)
    for family in ("outpost_calls", "outpost_call_latency_seconds"):
        ours, theirs = _samples(metrics.registry, family), _samples(reference, family)
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert abs(ours[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_exposition_names_the_families_before_any_call() -> None:
    """A fresh registry already lists the hot families (HELP and TYPE lines, as prometheus_client writes them)."""
    text = generate_latest(Metrics().registry).decode("utf-8")
    for family, kind in [("outpost_calls_total", "counter"), ("outpost_call_latency_seconds", "histogram"),
                         ("outpost_actions_total", "counter"), ("outpost_rule_hits_total", "counter"),
                         ("outpost_model_seconds", "histogram"), ("outpost_batch_rows", "histogram")]:
        assert f"# TYPE {family} {kind}" in text
