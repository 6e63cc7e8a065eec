"""Model inference benchmark: the shipped model through ONNX Runtime (as served) and through LightGBM's own
``predict``, side by side on the same feature rows, single-row and batched (1, 16, 256); plus the cost of
tree-path explanations per row and of the hybrid score.

Rows are real feature rows: a small simulation replayed through the feature engine. Each figure is the
median over repeated calls of the per-call wall time, divided by the batch size for per-row figures.
``run(quick)`` returns a Markdown section; ``python bench/bench_models.py [--quick]`` prints it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import FEATURE_INDEX
from models import ModelRunner, SimulationConfig, combine_scores, default_model_dir, simulate
from models._registry import LIGHTGBM_FILE
from models._training import TrainingConfig, replay_features

BATCHES = (1, 16, 256)


def _median_ns(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``call`` in nanoseconds over ``repeats`` calls (after 3 warm-up calls)."""
    return _measure(call, repeats)[0]


def _measure(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall ns per call, mean process CPU ns per call) over ``repeats`` calls after 3 warm-ups.

    CPU time is reported next to wall time because the machine is shared: a busy neighbour inflates
    wall time but not the CPU time this process spends.
    """
    for _ in range(3):
        call()
    times = []
    cpu_start = time.process_time_ns()
    for _ in range(repeats):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    cpu = (time.process_time_ns() - cpu_start) / repeats
    return float(statistics.median(times)), float(cpu)


def _cycling(call: Callable[[np.ndarray], object], inputs: list[np.ndarray]) -> Callable[[], object]:
    """A no-argument call that feeds ``call`` the next of ``inputs`` each time (different rows, same sizes)."""
    counter = iter(range(10**12))

    def run_once() -> object:
        return call(inputs[next(counter) % len(inputs)])

    return run_once


def _rows(quick: bool) -> np.ndarray:
    sim = SimulationConfig(accounts=400 if quick else 2000, days=30, seed=21)
    frame = simulate(sim)
    x = replay_features(frame, TrainingConfig(simulation=sim))
    # Skip the first week: windows are still empty there and rows are not representative.
    return np.ascontiguousarray(x[len(x) // 4:])


def run(quick: bool = False) -> str:
    """Measure and return the Markdown section."""
    import lightgbm as lgb

    model_dir = default_model_dir()
    runner = ModelRunner.load(model_dir)
    runner.warm()
    booster = lgb.Booster(model_file=str(model_dir / LIGHTGBM_FILE))
    columns = [FEATURE_INDEX[n] for n in runner.feature_names]
    x = _rows(quick)
    rng = np.random.default_rng(0)
    repeats = 200 if quick else 2000
    session = runner._session  # the served graph: the margin regressor of models._margin, as ModelRunner runs it
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    lines = [
        "## Models: inference and explanations",
        "",
        f"Model `{runner.version}` ({booster.num_trees()} trees, {len(columns)} features). "
        f"Rows: {len(x):,} feature rows replayed from a simulation. ONNX Runtime "
        f"session as served (the graph of output `{output_name}`; 1 intra-op thread, sequential, no spinning, float32 "
        "input); LightGBM "
        "`Booster.predict` with `num_threads=1` on float64 input. Median of "
        f"{repeats:,} calls per figure; load average at start {os.getloadavg()[0]:.1f} (2-core machine shared "
        "with other work: absolute figures are noisy, ratios less so).",
        "",
        "Wall = median wall time per call; CPU = this process's CPU time per call (mean).",
        "",
        "| batch | ORT session.run µs/call, wall (CPU) | runner.predict (ORT + column pick + calibration) µs/call "
        "| LightGBM predict µs/call, wall (CPU) | LightGBM / ORT (CPU) | ORT CPU µs/row |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCHES:
        picks = [rng.integers(0, len(x) - batch) for _ in range(16)]
        full = [x[p:p + batch] for p in picks]
        model_in = [np.ascontiguousarray(r[:, columns], dtype=np.float32) for r in full]
        model_in64 = [np.ascontiguousarray(r[:, columns]) for r in full]
        ort_call = _cycling(lambda rows: session.run([output_name], {input_name: rows}), model_in)
        runner_call = _cycling(runner.predict, full)
        lgb_call = _cycling(lambda rows: booster.predict(rows, num_threads=1), model_in64)

        ort_ns, ort_cpu = _measure(ort_call, repeats)
        runner_ns, runner_cpu = _measure(runner_call, repeats)
        lgb_ns, lgb_cpu = _measure(lgb_call, repeats)
        lines.append(f"| {batch} | {ort_ns / 1e3:,.1f} ({ort_cpu / 1e3:,.1f}) | {runner_ns / 1e3:,.1f} "
                     f"({runner_cpu / 1e3:,.1f}) | {lgb_ns / 1e3:,.1f} ({lgb_cpu / 1e3:,.1f}) "
                     f"| {lgb_cpu / ort_cpu:,.1f}x | {ort_cpu / 1e3 / batch:,.2f} |")

    # Same rows, same answers: the comparison is between equal models.
    sample = x[:2000]
    diff = float(np.max(np.abs(runner.raw_probability(sample) - booster.predict(sample[:, columns]))))
    lines += ["", f"Max |p_ORT - p_LightGBM| on 2,000 of these rows: {diff:.2e}.", ""]

    row = x[int(np.argmax(runner.predict(x[:5000])))]
    batch256 = x[:256]
    explain_ns, explain_cpu = _measure(lambda: runner.explain(row), repeats)
    contrib_ns, contrib_cpu = _measure(lambda: runner.contributions(batch256), max(20, repeats // 20))
    hits = (rng.random((256, 71)) < 0.02).astype(np.uint8)
    weights = rng.uniform(100, 600, 71)
    active = np.ones(71, dtype=bool)
    p = runner.predict(batch256)
    combine_ns = _median_ns(lambda: combine_scores(p, hits, weights, active), repeats)
    combine1_ns = _median_ns(lambda: combine_scores(p[:1], hits[:1], weights, active), repeats)
    lines += [
        "| explanation / hybrid | µs wall (CPU) |",
        "|---|---:|",
        f"| `runner.explain(row)` (top 3, tree paths in numba), per call | {explain_ns / 1e3:,.1f} "
        f"({explain_cpu / 1e3:,.1f}) |",
        f"| `runner.contributions` on 256 rows, per row | {contrib_ns / 1e3 / 256:,.2f} "
        f"({contrib_cpu / 1e3 / 256:,.2f}) |",
        f"| `combine_scores`, 1 row x 71 rules, per call | {combine1_ns / 1e3:,.1f} |",
        f"| `combine_scores`, 256 rows x 71 rules, per row | {combine_ns / 1e3 / 256:,.2f} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
