"""The outcome of a run: merged histograms, rates, errors and actions, as JSON and as a plot.

Accounting (checked by the tests): ``scheduled = sent + not_sent`` and ``sent = ok + errors`` over the
calls whose intended send time falls in the measured window; ``achieved_rate`` counts only the OK calls
that also completed inside the window, so it never exceeds the offered rate. Latency percentiles cover
every sent call of the window, errors included (a deadline error took that long too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from hdrh.histogram import HdrHistogram
from outpost.v1 import outpost_pb2 as pb

from loadtest._config import LoadTestConfig
from loadtest._errors import LoadTestError
from loadtest._worker import NOT_SENT, WorkerResult, new_histogram

__all__ = ["PERCENTILES", "LoadReport", "build_report"]

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))
_STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_STATUS_NAMES[NOT_SENT] = "CLIENT_BACKLOG"


def _percentiles_ms(histogram: HdrHistogram) -> dict[str, float]:
    if histogram.get_total_count() == 0:
        return {name: math.nan for name, _ in PERCENTILES} | {"max": math.nan, "mean": math.nan, "min": math.nan}
    out = {name: histogram.get_value_at_percentile(q) / 1000.0 for name, q in PERCENTILES}
    out["max"] = histogram.get_max_value() / 1000.0
    out["mean"] = histogram.get_mean_value() / 1000.0
    out["min"] = histogram.get_min_value() / 1000.0
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    """A finished run: ``summary`` is the JSON document; the arrays (every call, all processes) feed the plot."""

    config: LoadTestConfig
    summary: dict[str, Any]
    intended_s: np.ndarray  # seconds from the start of the run (warm-up included)
    latency_ms: np.ndarray  # from the intended send time; NaN for calls not sent
    status: np.ndarray
    latency_histogram: HdrHistogram

    @property
    def achieved_rate(self) -> float:
        """OK calls per second completed inside the measured window."""
        return float(self.summary["achieved_rate"])

    @property
    def achieved_transactions_per_s(self) -> float:
        """Transactions per second answered OK inside the measured window (calls x batch size)."""
        return float(self.summary["achieved_transactions_per_s"])

    def latency(self, name: str) -> float:
        """A latency figure in ms: p50, p90, p99, p99_9, max, mean or min (from the intended send time)."""
        return float(self.summary["latency_ms"][name])

    @property
    def errors(self) -> int:
        """Calls of the measured window that failed or were not sent."""
        calls = self.summary["calls"]
        return int(calls["errors"]) + int(calls["not_sent"])

    def to_json(self) -> str:
        """The summary as indented JSON (NaN written as null)."""
        return json.dumps(_jsonable(self.summary), indent=2, ensure_ascii=False, sort_keys=False)

    def write(self, out_dir: Path, *, plot: bool = True) -> list[Path]:
        """Write ``report.json`` (and ``latency.png``) into ``out_dir``; the paths written."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [out_dir / "report.json"]
        written[0].write_text(self.to_json() + "\n", encoding="utf-8")
        if plot:
            from loadtest._plot import plot_report

            written.append(plot_report(self, out_dir / "latency.png"))
        return written


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def _timeline(intended: np.ndarray, latency_ms: np.ndarray, status: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    """Per second of intended send time: calls, errors and latency percentiles."""
    rows: list[dict[str, Any]] = []
    for second in range(math.ceil(seconds)):
        mask = (intended >= second) & (intended < second + 1)
        lat = latency_ms[mask & (status != NOT_SENT)]
        rows.append(
            {
                "t_s": second,
                "calls": int(mask.sum()),
                "errors": int((status[mask] != 0).sum()),
                "p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
                "p99_ms": float(np.percentile(lat, 99)) if lat.size else math.nan,
                "max_ms": float(lat.max()) if lat.size else math.nan,
            }
        )
    return rows


def build_report(
    config: LoadTestConfig, results: Sequence[WorkerResult], *, baseline: bool = False, label: str = ""
) -> LoadReport:
    """Merge the client processes' records and histograms into one report."""
    failed = [r.error for r in results if r.error]
    if failed:
        raise LoadTestError(f"{len(failed)} client process(es) failed: {failed[0]}")
    intended = np.concatenate([r.intended_s for r in results])
    sent = np.concatenate([r.sent_s for r in results])
    done = np.concatenate([r.done_s for r in results])
    status = np.concatenate([r.status for r in results])
    order = np.argsort(intended, kind="stable")
    intended, sent, done, status = intended[order], sent[order], done[order], status[order]
    latency_ms = (done - intended) * 1000.0

    start, end = config.warmup_s, config.warmup_s + config.duration_s
    window = (intended >= start) & (intended < end)
    was_sent = window & (status != NOT_SENT)
    ok = was_sent & (status == 0)
    ok_in_time = ok & (done <= end)
    errors: dict[str, int] = {}
    for code in status[window & (status != 0)].tolist():
        name = _STATUS_NAMES.get(int(code), str(code))
        errors[name] = errors.get(name, 0) + 1

    latency, service = new_histogram(), new_histogram()
    for r in results:
        latency.decode_and_add(r.latency_hdr)
        service.decode_and_add(r.service_hdr)
    actions: dict[str, int] = {}
    for r in results:
        for number, count in r.actions.items():
            name = pb.Action.Name(number) if number in pb.Action.values() else str(number)
            actions[name] = actions.get(name, 0) + count
    per_call = config.transactions_per_call
    achieved = float(ok_in_time.sum()) / config.duration_s
    summary: dict[str, Any] = {
        "label": label,
        "target": config.target,
        "baseline": baseline,
        "method": config.method,
        "mode": "open" if config.open_loop else "closed",
        "offered_rate": config.rate,
        "concurrency": config.concurrency,
        "processes": config.processes,
        "transactions_per_call": per_call,
        "duration_s": config.duration_s,
        "warmup_s": config.warmup_s,
        "deadline_ms": config.deadline_ms,
        "calls": {
            "scheduled": int(window.sum()),
            "sent": int(was_sent.sum()),
            "not_sent": int((window & (status == NOT_SENT)).sum()),
            "ok": int(ok.sum()),
            "errors": int((was_sent & (status != 0)).sum()),
            "ok_within_window": int(ok_in_time.sum()),
        },
        # Every call of the run, warm-up and drain included (e.g. to divide the server's CPU time by).
        "calls_total": {"sent": int((status != NOT_SENT).sum()), "ok": int((status == 0).sum())},
        "achieved_rate": achieved,
        "achieved_transactions_per_s": achieved * per_call,
        "latency_ms": _percentiles_ms(latency),
        "service_time_ms": _percentiles_ms(service),
        "send_lag_ms": _lag(intended[was_sent], sent[was_sent]) if config.open_loop else None,
        "errors_by_status": dict(sorted(errors.items())),
        "actions": dict(sorted(actions.items())),
        "degraded": sum(r.degraded for r in results),
        "payloads_exhausted": any(r.payloads_exhausted for r in results),
        "timeline": _timeline(intended, latency_ms, status, end),
        "latency_histogram_hdr": latency.encode().decode("ascii"),
    }
    return LoadReport(
        config=config, summary=summary, intended_s=intended, latency_ms=latency_ms, status=status,
        latency_histogram=latency,
    )


def _lag(intended: np.ndarray, sent: np.ndarray) -> dict[str, float]:
    """How late the client actually sent calls relative to their intended time (client-side scheduling)."""
    if intended.size == 0:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    lag = (sent - intended) * 1000.0
    return {"p50": float(np.percentile(lag, 50)), "p99": float(np.percentile(lag, 99)), "max": float(lag.max())}
