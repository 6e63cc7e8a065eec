"""The picture of a run: latency over time (every call, with per-second p99) and the latency distribution."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loadtest._worker import NOT_SENT

if TYPE_CHECKING:
    from loadtest._report import LoadReport

__all__ = ["plot_report"]

_MAX_POINTS = 40_000  # scatter points drawn; the slowest calls are always among them


def plot_report(report: LoadReport, path: Path) -> Path:
    """Draw ``report`` into a PNG at ``path`` (matplotlib, Agg backend); the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report.summary
    sent = report.status != NOT_SENT
    t, lat, st = report.intended_s[sent], report.latency_ms[sent], report.status[sent]
    if t.size > _MAX_POINTS:
        slowest = np.argsort(lat)[-_MAX_POINTS // 10 :]
        sample = np.random.default_rng(0).choice(t.size, _MAX_POINTS - slowest.size, replace=False)
        keep = np.union1d(slowest, sample)
        t, lat, st = t[keep], lat[keep], st[keep]

    fig, (over_time, distribution) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 2]})
    over_time.scatter(t[st == 0], lat[st == 0], s=2, alpha=0.3, color="tab:blue", label="OK", rasterized=True)
    if (st != 0).any():
        over_time.scatter(t[st != 0], lat[st != 0], s=6, color="tab:red", label="error", rasterized=True)
    timeline = summary["timeline"]
    seconds = [row["t_s"] + 0.5 for row in timeline]
    over_time.plot(seconds, [row["p99_ms"] for row in timeline], color="black", lw=1.2, label="p99 per second")
    if summary["warmup_s"]:
        over_time.axvspan(0, summary["warmup_s"], color="grey", alpha=0.15, label="warm-up (not measured)")
    over_time.set_yscale("log")
    over_time.set_xlabel("intended send time (s)" if summary["mode"] == "open" else "send time (s)")
    over_time.set_ylabel("latency (ms)")
    over_time.legend(loc="upper right", fontsize=8)
    rate = summary["offered_rate"]
    load = f"open loop {rate:g}/s offered" if rate else f"closed loop, {summary['concurrency']} in flight"
    achieved = summary["achieved_rate"]
    over_time.set_title(f"{summary['method']} -> {summary['target']}: {load}, {achieved:.0f}/s achieved")

    histogram = report.latency_histogram
    if histogram.get_total_count():
        # The usual HdrHistogram view: latency against 1/(1-percentile) on a log axis.
        quantiles = np.array([0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999])
        values = [histogram.get_value_at_percentile(q * 100) / 1000.0 for q in quantiles]
        x = 1.0 / (1.0 - quantiles)
        distribution.plot(x, values, marker="o", color="tab:blue")
        distribution.set_xscale("log")
        distribution.set_xticks(x[[1, 3, 5, 7, 9]])
        distribution.set_xticklabels(["50%", "90%", "99%", "99.9%", "99.99%"])
        distribution.minorticks_off()
    distribution.set_xlabel("percentile")
    distribution.set_ylabel("latency (ms)")
    lat_ms = summary["latency_ms"]
    distribution.set_title(
        f"p50 {lat_ms['p50']:.2f}  p99 {lat_ms['p99']:.2f}  p99.9 {lat_ms['p99_9']:.2f}  max {lat_ms['max']:.1f} ms"
    )
    distribution.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
