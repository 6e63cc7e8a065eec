"""Backtest and review-loop benchmark: end-to-end backtest throughput on one core (features replay, rules, model,
hybrid score, policy, metrics) with its stage breakdown, and the hot-path cost of the decision-log and alert sinks.

``run(quick)`` returns a Markdown section; ``python bench/bench_backtest.py [--quick]`` prints it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from features import FeatureConfig, FeatureEngine, encode_frame
from models import ModelRunner, SimulationConfig, default_model_dir, load_transactions, simulate
from review import AlertSink, BacktestResult, DecisionLog, backtest_report, read_scores, run_backtest
from rules_engine import RuleSet
from server import ActionPolicy, ScoringPipeline, Settings, Snapshot

TARGET_TXN_PER_S = 100_000


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _backtest_rows(frame: pd.DataFrame, rules: RuleSet, model: ModelRunner | None, policy: ActionPolicy,
                   repeats: int, draft: RuleSet | None = None) -> dict[str, Any]:
    walls, cpus, stages = [], [], []
    result: BacktestResult | None = None
    for _ in range(repeats):
        wall, cpu, result = _timed(lambda: run_backtest(frame, rules=rules, model=model, policy=policy,
                                                        draft_rules=draft))
        walls.append(wall)
        cpus.append(cpu)
        stages.append(result.report["throughput"]["stages_seconds"])
    assert result is not None
    median_stage = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "stages": median_stage,
            "result": result}


def _sink_costs(rules: RuleSet, policy: ActionPolicy, frame: pd.DataFrame, directory: Path) -> list[tuple[str, float]]:
    """Median microseconds per record() call on the scoring thread, for batches of 1 and 64 rows."""
    txns = encode_frame(frame, FeatureConfig())
    pipeline = ScoringPipeline(engine=FeatureEngine.open(FeatureConfig()), snapshot=Snapshot(rules, None),
                               policy=policy)
    log = DecisionLog(directory / "decisions")
    alerts = AlertSink(directory / "alerts.sqlite3")
    out: list[tuple[str, float]] = []
    ids = frame["transaction_id"].astype(str).tolist()
    for size in (1, 64):
        batches = [(txns[i:i + size], ids[i:i + size]) for i in range(0, min(len(txns), 400 * size), size)]
        decided = [(batch, batch_ids, pipeline.run(batch)) for batch, batch_ids in batches]
        for name, sink in (("decision log", log), ("alert queue", alerts)):
            samples = []
            for batch, batch_ids, decisions in decided:
                started = time.perf_counter()
                sink.record(batch_ids, batch, decisions)
                samples.append(time.perf_counter() - started)
            sink.flush()
            out.append((f"{name}: us per record(), batch of {size}", statistics.median(samples) * 1e6))
    log.close()
    alerts.close()
    # Writer throughput: every row of the frame recorded in batches of 64, until it is written and fsynced.
    log = DecisionLog(directory / "throughput")
    batches = [(txns[i:i + 64], ids[i:i + 64]) for i in range(0, len(txns), 64)]
    decided = [(batch, batch_ids, pipeline.run(batch)) for batch, batch_ids in batches]

    def write_all() -> None:
        for batch, batch_ids, decisions in decided:
            log.record(batch_ids, batch, decisions)
        log.flush()

    wall, _, _ = _timed(write_all)
    log.close()
    out.append((f"decision log writer: {len(txns):,} rows recorded and fsynced, rows/s", len(txns) / wall))
    return out


def run(quick: bool = False) -> str:
    """Measure and return the Markdown section."""
    accounts, days, repeats = (6_000, 30, 2) if quick else (20_000, 60, 3)
    settings = Settings()
    rules = RuleSet.load(settings.rules_path)
    policy = ActionPolicy.load(settings.policy_path)
    model = ModelRunner.load(default_model_dir())
    model.warm()
    frame = simulate(SimulationConfig(accounts=accounts, days=days, seed=7))
    n = len(frame)
    run_backtest(frame.iloc[:2_000], rules=rules, model=model, policy=policy)  # compile every kernel first

    full = _backtest_rows(frame, rules, model, policy, repeats)
    rules_only = _backtest_rows(frame, rules, None, policy, repeats)
    draft = RuleSet.compile(settings.rules_path.read_text(encoding="utf-8").replace('version: "', 'version: "d', 1),
                            source="draft")
    compare = _backtest_rows(frame, rules, model, policy, max(1, repeats - 1), draft=draft)

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        csv = directory / "transactions.csv"
        frame.to_csv(csv, index=False)
        load_wall, _, loaded = _timed(lambda: load_transactions(csv))
        scores = directory / "scores.csv"
        write_wall, _, _ = _timed(lambda: full["result"].write_scores(scores))
        report_wall, _, _ = _timed(lambda: backtest_report(read_scores(scores), full["result"].report))
        sink_rows = _sink_costs(rules, policy, frame.iloc[:30_000], directory)
        assert len(loaded) == n

    def rate(rows: int, seconds: float) -> str:
        return f"{rows / seconds:,.0f}"

    lines = [
        "## Backtest and review loop",
        "",
        f"Simulated bank: {accounts:,} accounts x {days} days = **{n:,} transactions** "
        f"(`models.simulate`, seed 7); shipped rule pack ({len(rules.rules)} rules) and default model "
        f"`{model.version}`; medians of {repeats} runs, one process (ONNX Runtime and numba on one thread).",
        "",
        "| backtest (in-memory frame -> decisions + metrics) | wall s | txn/s (wall) | txn/s per CPU-second "
        f"| target {TARGET_TXN_PER_S:,} txn/s on one core |",
        "|---|---:|---:|---:|---|",
    ]
    for name, m in (("rules + model (the live pipeline)", full), ("rules only (--no-model)", rules_only),
                    ("live vs draft rule file (--compare-rules)", compare)):
        # One core: judged on this process's CPU time, which other load on a shared machine does not inflate.
        met = "met" if n / m["cpu"] >= TARGET_TXN_PER_S else "not met"
        lines.append(f"| {name} | {m['wall']:.2f} | {rate(n, m['wall'])} | {rate(n, m['cpu'])} | {met} |")
    stages = full["stages"]
    total = sum(stages.values())
    lines += [
        "",
        "Where the time goes (rules + model, median seconds per stage; `report.throughput.stages_seconds`):",
        "",
        "| stage | what runs | seconds | us per txn | share |",
        "|---|---|---:|---:|---:|",
    ]
    what = {"encode": "`features.encode_frame` (strings -> TXN_DTYPE), label outcomes",
            "replay": "`FeatureEngine.replay` (online kernels, labels fed at reported_at)",
            "decide": "`server.decide`: rules kernel, ONNX model, `combine_scores`, policy",
            "collect": "assemble the scored rows", "metrics": "per-rule, overlap, AUC/AP, typologies"}
    for stage, seconds in stages.items():
        lines.append(f"| {stage} | {what.get(stage, '')} | {seconds:.3f} | {seconds / n * 1e6:.2f} | "
                     f"{seconds / total:.0%} |")
    lines += [
        "",
        "Around the backtest (same data): "
        f"reading the CSV with `load_transactions` {load_wall:.2f} s ({rate(n, load_wall)} txn/s); "
        f"writing scores.csv {write_wall:.2f} s ({rate(n, write_wall)} rows/s); "
        f"rendering the HTML report {report_wall:.2f} s.",
        "",
        "Hot-path cost of the review sinks (median microseconds per `record()` on the scoring thread; "
        "serialisation and I/O happen in their writer threads):",
        "",
        "| measure | value |",
        "|---|---:|",
        *(f"| {name} | {us:,.1f} |" for name, us in sink_rows),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
