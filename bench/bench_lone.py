"""A lone call's work, back to back and after the thread has slept: why one call in flight costs what it costs.

With one call in flight, the server's thread sleeps while the caller turns each reply around, and on this kind
of machine (a shared virtual machine) everything the next call touches is then cold. This measures the same work
(a batch of one through ``ScoringPipeline.run`` and ``build_responses``, as ``MicroBatcher._decide`` does it)
with calls back to back and with the thread asleep between calls, in alternating
blocks so that the machine's drift hits both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from features import FeatureConfig, FeatureEngine
from loadtest import frame_to_requests, simulated_transactions
from models import ModelRunner, default_model_dir
from rules_engine import RuleSet
from server import ActionPolicy, ScoringPipeline, Settings, Snapshot
from server._requests import encode_requests
from server._responses import build_responses

__all__ = ["run"]

TRAFFIC = 4000
PAUSE_S = 0.0007  # about a lone caller's turnaround on this machine (one call in flight: ~0.7 ms bare)
BLOCK = 100


def _timer(label: str, stages: dict[str, list[int]], function: Callable[..., object]) -> Callable[..., object]:
    def timed(*args: object, **kwargs: object) -> object:
        started = time.perf_counter_ns()
        try:
            return function(*args, **kwargs)
        finally:
            stages[label][-1] += time.perf_counter_ns() - started

    return timed


def run(quick: bool = False) -> str:
    """Median µs of a lone call's stages, back to back and after a pause, as a Markdown section."""
    blocks = 6 if quick else 20
    settings = Settings()
    config = FeatureConfig()
    model = ModelRunner.load(default_model_dir())
    model.warm()
    policy = ActionPolicy.load(settings.policy_path)
    pipeline = ScoringPipeline(
        engine=FeatureEngine.open(config), snapshot=Snapshot(RuleSet.load(settings.rules_path), model), policy=policy
    )
    frame = simulated_transactions(TRAFFIC, seed=11).head(TRAFFIC).reset_index(drop=True)
    requests = frame_to_requests(frame)
    records = encode_requests(requests, config)
    names = ("pipeline", "model", "features", "replies")
    figures: dict[str, dict[str, list[int]]] = {mode: {name: [] for name in names} for mode in ("hot", "paused")}
    engine = pipeline.engine
    row = 0
    for block in range(2 * blocks):
        mode = "hot" if block % 2 == 0 else "paused"
        stages = figures[mode]
        model.predict = _timer("model", stages, ModelRunner.predict.__get__(model))  # type: ignore[method-assign,assignment]
        engine.score = _timer("features", stages, FeatureEngine.score.__get__(engine))  # type: ignore[method-assign,assignment]
        for _ in range(BLOCK):
            one = records[row % TRAFFIC : row % TRAFFIC + 1].copy()
            request = requests[row % TRAFFIC]
            row += 1
            for name in names:
                stages[name].append(0)
            if mode == "paused":
                time.sleep(PAUSE_S)
            started = time.perf_counter_ns()
            ids = [request.transaction.transaction_id]
            decisions = pipeline.run(one, use_model=np.ones(1, dtype=bool), txn_ids=ids)
            ran = time.perf_counter_ns()
            build_responses(decisions, [request], policy=policy, transaction_ids=ids)
            stages["pipeline"][-1] = ran - started
            stages["replies"][-1] = time.perf_counter_ns() - ran
    del model.predict, engine.score

    def median_us(mode: str, name: str) -> float:
        return statistics.median(figures[mode][name]) / 1e3

    lines = [
        "## A lone call, back to back and after a pause (bench/bench_lone.py)",
        "",
        f"In process, one core: {blocks} blocks of {BLOCK} lone calls (a batch of one through "
        "`ScoringPipeline.run` and `build_responses`, without durability or decision sinks) with calls back to "
        f"back, alternating with {blocks} blocks in which the thread sleeps {PAUSE_S * 1e3:.1f} ms before each call, "
        "as a server's thread does while a lone caller turns its reply around. Medians in **µs per call**; the "
        "features and model are inside the pipeline figure.",
        "",
        "| stage | back to back | after a pause | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (("pipeline", "pipeline (features, rules, model, policy, commit)"),
                        ("features", "of which features (`FeatureEngine.score`)"),
                        ("model", "of which the model (`ModelRunner.predict`, ONNX Runtime)"),
                        ("replies", "replies (`build_responses`)")):
        hot, paused = median_us("hot", name), median_us("paused", name)
        lines.append(f"| {label} | {hot:,.1f} | {paused:,.1f} | {paused / hot if hot else float('nan'):.1f}x |")
    hot = median_us("hot", "pipeline") + median_us("hot", "replies")
    paused = median_us("paused", "pipeline") + median_us("paused", "replies")
    lines += [
        "",
        f"A lone call's scoring and reply take {hot:,.0f} µs back to back and {paused:,.0f} µs after a pause "
        f"({paused / hot if hot else float('nan'):.1f}x): after the thread has slept, the code and data a call "
        "touches are no longer in the CPU's caches. A server with one call in flight pays the second figure on "
        "every call, which is why the remedy there is touching less per call (fewer, fused steps), more than making "
        "each step faster when measured hot.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))
