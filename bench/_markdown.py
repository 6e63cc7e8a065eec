"""docs/benchmarks.md from the measured figures: machine, targets met or not (and what limits them), details."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from bench._modules import ModuleSection
from bench._suite import (
    BARE,
    FIRST_SECOND_RATE,
    IDLE_SHARE_LIMIT,
    OUTPOST,
    OUTPOST_NONE,
    OUTPOST_VARIANTS,
    OUTPOST_WAIT,
    OUTPOST_WRITE,
    Figures,
    Scenario,
    SuiteResult,
    median_of,
)
from server import Settings

__all__ = ["render"]

TARGET_RATIO_THROUGHPUT = 0.8
TARGET_ADDED_P50_MS = 0.15
TARGET_RATIO_OPEN_P99 = 1.5
TARGET_BATCH_PER_CORE = 50_000.0
TARGET_COLD_START_S = 3.0


def _f(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def _med(scenario: Scenario | None, server: str, attribute: str) -> float:
    if scenario is None:
        return math.nan
    return median_of(scenario.runs.get(server, []), attribute)


def _cores_busy(scenario: Scenario | None, server: str) -> float:
    """The median over runs of the server's CPU cores kept busy (CPU per call times calls per second)."""
    runs = scenario.runs.get(server, []) if scenario is not None else []
    if not runs:
        return math.nan
    return statistics.median(r.server_cpu_us_per_call * r.achieved_rate / 1e6 for r in runs)


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def _check(value: float, target: float, *, at_least: bool) -> bool | None:
    if not math.isfinite(value):
        return None
    return value >= target if at_least else value <= target


def _scenario_table(scenario: Scenario | None, *, batch: bool = False) -> list[str]:
    if scenario is None:
        return ["Not measured.", ""]
    lines = [
        f"Load: {scenario.load}. Median of {max((len(r) for r in scenario.runs.values()), default=0)} run(s); "
        "latency from the intended send time (open loop) or the send time (closed loop). Machine load average "
        f"(1 min) {scenario.load_average[0]:.1f} at the start, {scenario.load_average[1]:.1f} at the end.",
        "",
    ]
    if batch:
        lines += [
            "| server | calls/s | transactions/s | transactions per server CPU-second | server CPU µs/transaction "
            "| of which event-loop thread | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        lines += [
            "| server | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server CPU µs/call "
            "| server cores busy | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for name, runs in scenario.runs.items():
        if not runs:
            continue
        if batch:
            lines.append(
                f"| {name} | {_f(median_of(runs, 'achieved_rate'), 1)} "
                f"| {_f(median_of(runs, 'transactions_per_s'), 0)} "
                f"| {_f(median_of(runs, 'transactions_per_cpu_s'), 0)} "
                f"| {_f(median_of(runs, 'server_cpu_us_per_transaction'), 1)} "
                f"| {_f(median_of(runs, 'main_thread_us_per_transaction'), 1)} | {_f(median_of(runs, 'p50_ms'), 2)} "
                f"| {_f(median_of(runs, 'p99_ms'), 2)} | {sum(r.errors for r in runs)} |"
            )
        else:
            cores = _cores_busy(scenario, name)
            lines.append(
                f"| {name} | {_f(median_of(runs, 'achieved_rate'), 1)} | {_f(median_of(runs, 'p50_ms'), 3)} "
                f"| {_f(median_of(runs, 'p90_ms'), 3)} | {_f(median_of(runs, 'p99_ms'), 3)} "
                f"| {_f(median_of(runs, 'p99_9_ms'), 3)} | {_f(median_of(runs, 'max_ms'), 2)} "
                f"| {_f(median_of(runs, 'server_cpu_us_per_call'), 1)} | {_f(cores, 2)} "
                f"| {sum(r.errors for r in runs)} |"
            )
    lines.append("")
    per_run = [
        f"{name}: " + ", ".join(f"{r.achieved_rate:.0f}/s p50 {r.p50_ms:.3f} p99 {r.p99_ms:.3f}" for r in runs)
        for name, runs in scenario.runs.items()
    ]
    lines += ["Every run: " + "; ".join(per_run) + ".", ""]
    for name, runs in scenario.runs.items():
        errors: dict[str, int] = {}
        for r in runs:
            for code, count in r.errors_by_status.items():
                errors[code] = errors.get(code, 0) + count
        if errors:
            lines.append(f"Errors of {name} by status: {errors}.")
        if any(r.payloads_exhausted for r in runs):
            lines.append(f"Note: {name} used up the pre-built payloads in some runs; its rate is a lower bound.")
    for name, failure in scenario.failures.items():
        lines.append(f"{name} failed: `{failure}`")
    if lines[-1] != "":
        lines.append("")
    return lines


def _runs_of(scenario: Scenario | None, name: str) -> Sequence[Figures]:
    return [] if scenario is None else scenario.runs.get(name, [])


def render(result: SuiteResult, machine: list[tuple[str, str]], sections: Sequence[ModuleSection], *,
           generated: str, load_at_end: tuple[float, float, float], seconds: float) -> str:
    """The whole document."""
    cfg = result.config
    sat, one, open_, batch = result.saturation, result.one_in_flight, result.open_loop, result.batch
    few = result.few_in_flight
    few_bare = _med(few, BARE, "achieved_rate")
    few_ratio = _med(few, OUTPOST, "achieved_rate") / few_bare if few_bare else math.nan

    bare_rate, out_rate = _med(sat, BARE, "achieved_rate"), _med(sat, OUTPOST, "achieved_rate")
    ratio_rate = out_rate / bare_rate if bare_rate else math.nan
    bare_p50, out_p50 = _med(one, BARE, "p50_ms"), _med(one, OUTPOST, "p50_ms")
    added_p50 = out_p50 - bare_p50
    bare_p99, out_p99 = _med(open_, BARE, "p99_ms"), _med(open_, OUTPOST, "p99_ms")
    ratio_p99 = out_p99 / bare_p99 if bare_p99 else math.nan
    own = result.open_loop_own
    own_bare_p99, own_out_p99 = _med(own, BARE, "p99_ms"), _med(own, OUTPOST, "p99_ms")
    own_ratio = own_out_p99 / own_bare_p99 if own_bare_p99 else math.nan
    own_title = own.title if own else "Score latency in open loop at half Outpost's saturation rate"
    per_core = _med(batch, OUTPOST, "transactions_per_cpu_s")
    batch_wall = _med(batch, OUTPOST, "transactions_per_s")
    cold = statistics.median(result.cold_start_s) if result.cold_start_s else math.nan

    out: list[str] = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`python -m bench{' --quick' if cfg.quick else ''}`) on {generated}, in "
        f"{seconds / 60:.1f} min. Every load figure is the median of {cfg.runs} run(s) of {cfg.duration_s:g} s "
        f"(after {cfg.warmup_s:g} s of unmeasured warm-up); the servers are measured in turn within each run, so "
        "background load hits them alike, and only the server under test runs (the other Outpost servers are "
        "paused with SIGSTOP, and each run waits until its server is idle). Client and servers share this "
        "machine; all traffic is on 127.0.0.1. "
        "Latency percentiles come from HdrHistograms (loadtest); see docs/loadtest.md for how they are taken.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {label} | {value} |" for label, value in machine],
        f"| load average at end | {load_at_end[0]:.2f} (1 min), {load_at_end[1]:.2f} (5 min) |",
        "",
    ]
    if result.outpost_error:
        out += [f"**Outpost could not be measured**: {result.outpost_error}", ""]
    if result.notes:
        out += ["## Read first", "", *[f"- {n}" for n in result.notes], ""]

    out += [
        "## Targets",
        "",
        "| measure | Outpost | bare gRPC | result | target | met |",
        "|---|---:|---:|---:|---:|---|",
        f"| Score throughput at saturation (calls/s) | {_f(out_rate, 0)} | {_f(bare_rate, 0)} "
        f"| ratio {_f(ratio_rate, 2)} | >= {TARGET_RATIO_THROUGHPUT} "
        f"| {_met(_check(ratio_rate, TARGET_RATIO_THROUGHPUT, at_least=True))} |",
        f"| p50 at one call in flight (ms) | {_f(out_p50, 3)} | {_f(bare_p50, 3)} | +{_f(added_p50, 3)} ms "
        f"| <= {TARGET_ADDED_P50_MS} ms | {_met(_check(added_p50, TARGET_ADDED_P50_MS, at_least=False))} |",
        f"| p99 in open loop at {_f(result.open_loop_rate, 0)} calls/s (ms) | {_f(out_p99, 3)} | {_f(bare_p99, 3)} "
        f"| ratio {_f(ratio_p99, 2)} | <= {TARGET_RATIO_OPEN_P99} "
        f"| {_met(_check(ratio_p99, TARGET_RATIO_OPEN_P99, at_least=False))} |",
        f"| p99 in open loop at {_f(result.open_loop_own_rate, 0)} calls/s, half Outpost's saturation (ms) "
        f"| {_f(own_out_p99, 3)} | {_f(own_bare_p99, 3)} | ratio {_f(own_ratio, 2)} | informative "
        f"| {_met(_check(own_ratio, TARGET_RATIO_OPEN_P99, at_least=False))} (<= {TARGET_RATIO_OPEN_P99}) |",
        f"| Score at {cfg.few_concurrency} calls in flight: calls/s (p50 ms) "
        f"| {_f(_med(few, OUTPOST, 'achieved_rate'), 0)} ({_f(_med(few, OUTPOST, 'p50_ms'), 3)}) "
        f"| {_f(_med(few, BARE, 'achieved_rate'), 0)} "
        f"({_f(_med(few, BARE, 'p50_ms'), 3)}) | ratio {_f(few_ratio, 2)} | informative | |",
        f"| ScoreBatch transactions/s per core (features + rules + model) | {_f(per_core, 0)} | "
        f"{_f(_med(batch, BARE, 'transactions_per_cpu_s'), 0)} | {_f(batch_wall, 0)}/s wall clock "
        f"| >= {TARGET_BATCH_PER_CORE:,.0f} | {_met(_check(per_core, TARGET_BATCH_PER_CORE, at_least=True))} |",
        f"| cold start to SERVING, warm numba cache (s) | {_f(cold, 2)} | | | <= {TARGET_COLD_START_S} s "
        f"| {_met(_check(cold, TARGET_COLD_START_S, at_least=False))} |",
        "",
        "\"Per core\" is transactions answered per second of the server's CPU time (user + system, all its threads, "
        "from /proc), i.e. the rate one fully busy core sustains; the wall-clock rate is shown beside it.",
        "",
        "## What limits Outpost where a target is missed",
        "",
        *_limits(result, ratio_rate, added_p50, ratio_p99, per_core, cold),
        "",
        f"## {sat.title if sat else 'Score throughput at saturation'}",
        "",
        *_scenario_table(sat),
        f"## {one.title if one else 'Score latency at one call in flight'}",
        "",
        *_scenario_table(one),
        f"## {few.title if few else 'Score at a few calls in flight'}",
        "",
        "Not a target: a caller such as a payment gateway keeps a few calls in flight, too few for micro-batches to "
        "pay; Outpost should then answer about as fast as it answers calls one at a time.",
        "",
        *_scenario_table(few),
        f"## {open_.title if open_ else 'Score latency in open loop'}",
        "",
        *_scenario_table(open_),
        *_lag_note(open_),
        f"## {own_title}",
        "",
        "Not a target: the same comparison at a rate Outpost can sustain, i.e. what a deployment sized at 50 % "
        "utilisation sees.",
        "",
        *_scenario_table(own),
        f"## {batch.title if batch else 'ScoreBatch throughput'}",
        "",
        *_scenario_table(batch, batch=True),
        "## Outpost settings: durability and batch wait",
        "",
        *_variants(result),
        "## Start-up",
        "",
        *_startup(result, cold),
        "## Memory",
        "",
        *_memory(result),
    ]
    for section in sections:
        out += [section.markdown.rstrip(), ""]
    out += [
        "## Reproduce",
        "",
        "```sh",
        "make bench                      # this document (python -m bench)",
        "python -m bench --quick         # a short version, one run each",
        "outpost-loadtest --baseline --concurrency 32 --duration 10     # the bare limit alone",
        "```",
        "",
    ]
    return "\n".join(out)


def _lag_note(scenario: Scenario | None) -> list[str]:
    if scenario is None:
        return []
    lags = {name: median_of(runs, "send_lag_p99_ms") for name, runs in scenario.runs.items()}
    text = ", ".join(f"{name} {_f(v, 3)} ms" for name, v in lags.items())
    return [
        f"Client send lag (p99 of actual minus intended send time): {text}. It is part of every open-loop latency "
        "above (the client's timer resolution and its own CPU share), equally for both servers.",
        "",
    ]


_DEFAULTS = Settings()


def _variants(result: SuiteResult) -> list[str]:
    sat, one = result.saturation, result.one_in_flight
    rows = []
    for name, settings in OUTPOST_VARIANTS:
        if not _runs_of(sat, name) and not _runs_of(one, name):
            continue
        shown = ", ".join(f"`OUTPOST_{k}={v}`" for k, v in settings.items()) or (
            f"defaults ({_DEFAULTS.durability}, batch wait up to {_DEFAULTS.batch_wait_us:,} µs)"
        )
        rows.append(
            f"| {name} | {shown} | {_f(_med(sat, name, 'achieved_rate'), 0)} | {_f(_med(sat, name, 'p99_ms'), 2)} "
            f"| {_f(_med(sat, name, 'server_cpu_us_per_call'), 0)} | {_f(_med(one, name, 'p50_ms'), 3)} "
            f"| {_f(_med(one, name, 'p99_ms'), 3)} |"
        )
    if not rows:
        return ["Not measured.", ""]
    fsync_rate, write_rate = _med(sat, OUTPOST, "achieved_rate"), _med(sat, OUTPOST_WRITE, "achieved_rate")
    fsync_p50, write_p50 = _med(one, OUTPOST, "p50_ms"), _med(one, OUTPOST_WRITE, "p50_ms")
    none_rate = _med(sat, OUTPOST_NONE, "achieved_rate")
    wait_rate, wait_cpu = _med(sat, OUTPOST_WAIT, "achieved_rate"), _med(sat, OUTPOST_WAIT, "server_cpu_us_per_call")
    return [
        "Outpost servers identical but for one setting, measured in the same runs as above.",
        "",
        "| server | settings | saturation calls/s | saturation p99 ms | server CPU µs/call at saturation "
        "| one in flight p50 ms | one in flight p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"- **What fsync costs**: fsync reaches {_f(fsync_rate / write_rate if write_rate else math.nan, 2)}x the "
        f"throughput of write at saturation, and {_f(fsync_p50 - write_p50, 3)} ms more at p50 with one call in "
        "flight. With fsync a call is answered only after its state change is on disk (group commit: all calls "
        "committed while one fsync runs share the next); with write it is answered once the change is in the "
        "operating system's page cache (survives a process crash, not a power loss). durability=none (benchmarks "
        f"only) reaches {_f(none_rate, 0)} calls/s.",
        f"- **Waiting for company**: by default a batch that is not full waits up to "
        f"{_DEFAULTS.batch_wait_us / 1000:g} ms while waits gather other calls and the event loop stays busy "
        f"taking calls in (`OUTPOST_BATCH_IDLE_SHARE`): {_f(fsync_rate, 0)} calls/s at "
        f"{_f(_med(sat, OUTPOST, 'server_cpu_us_per_call'), 0)} µs of CPU per "
        f"call, against {_f(wait_rate, 0)} calls/s at {_f(wait_cpu, 0)} µs with `OUTPOST_BATCH_WAIT_US=0` (no "
        "wait: gRPC hands calls over one event-loop round trip apart, so they rarely share a batch and each pays "
        "the pipeline's fixed cost alone).",
        "",
    ]


def _startup(result: SuiteResult, cold: float) -> list[str]:
    lines = [
        f"- Launch of `outpost serve` to health SERVING, fresh data directory, warm numba cache: "
        f"{', '.join(f'{s:.2f}' for s in result.cold_start_s) or 'n/a'} s (median {_f(cold, 2)} s).",
        "- The first second of calls to each of those servers, from the moment it was SERVING (open loop, "
        f"{FIRST_SECOND_RATE:,.0f} calls/s, one client process, no warm-up), p50 / p99 / max ms: "
        + ("; ".join(f"{p50:.2f} / {p99:.2f} / {top:.2f}" for p50, p99, top in result.first_second_ms) or "n/a")
        + ". Everything the calls need is loaded before SERVING (tests/server/test_lifecycle.py checks that a "
        "serving server imports no module).",
        f"- The same with an empty rules-kernel cache (`OUTPOST_CACHE_DIR` fresh: the rule kernel compiles): "
        f"{_f(result.cold_start_empty_cache_s, 2)} s.",
        f"- Restart on the state left by the load runs ({result.restart_transactions:,} transactions applied): "
        f"{_f(result.restart_with_state_s, 2)} s.",
    ]
    if result.idle_cpu_share:
        shares = ", ".join(f"{name}: {share:.0%}" for name, share in result.idle_cpu_share.items())
        lines.append(f"- CPU used while SERVING with no calls (share of one core, over 2 s): {shares}.")
    if result.exit_codes:
        codes = ", ".join(f"{name}: {code}" for name, code in result.exit_codes.items())
        lines.append(f"- Exit codes after SIGTERM (0 = graceful drain): {codes}.")
    return [*lines, ""]


def _memory(result: SuiteResult) -> list[str]:
    m = result.memory
    if not m:
        return ["Not measured.", ""]
    return [
        f"Resident memory of the default Outpost server: {_f(m.get('rss_at_start_mib', math.nan), 0)} MiB when "
        f"SERVING, {_f(m.get('rss_after_mib', math.nan), 0)} MiB after the load runs, which applied "
        f"{_f(m.get('transactions_applied', math.nan), 0)} transactions to {_f(m.get('accounts', math.nan), 0)} "
        f"accounts: about {_f(m.get('bytes_per_account', math.nan) / 1024, 1)} KiB per account (growth of the "
        "whole process divided by accounts, so an upper bound: it includes allocator slack and buffers). "
        "The features benchmark below measures the state itself.",
        "",
    ]


def _limits(result: SuiteResult, ratio_rate: float, added_p50: float, ratio_p99: float, per_core: float,
            cold: float) -> list[str]:
    sat, one, open_, batch = result.saturation, result.one_in_flight, result.open_loop, result.batch
    lines: list[str] = []
    idle = result.idle_cpu_share.get(OUTPOST, 0.0)
    if idle > IDLE_SHARE_LIMIT:
        lines.append(
            f"- **Idle CPU** (first): the server burns {idle:.0%} of a core with no calls to answer (see \"Read "
            "first\"); every figure below includes that competition for the CPU and the GIL."
        )
    cpu_bare_sat, cpu_out_sat = _med(sat, BARE, "server_cpu_us_per_call"), _med(sat, OUTPOST, "server_cpu_us_per_call")
    if _check(ratio_rate, TARGET_RATIO_THROUGHPUT, at_least=True) is False:
        none_rate, fsync_rate = _med(sat, OUTPOST_NONE, "achieved_rate"), _med(sat, OUTPOST, "achieved_rate")
        cores_bare, cores_out = _cores_busy(sat, BARE), _cores_busy(sat, OUTPOST)
        lines.append(
            f"- **Throughput** ({_f(ratio_rate, 2)} of bare): at saturation the Outpost server spends "
            f"{_f(cpu_out_sat, 0)} µs of CPU per call against {_f(cpu_bare_sat, 0)} µs for the bare server. A single "
            f"server process runs one event loop, so its ceiling is about 1e6 / {_f(cpu_out_sat, 0)} = "
            f"{_f(1e6 / cpu_out_sat if cpu_out_sat else math.nan, 0)} calls/s per core, less the share of the "
            "machine's cores the client processes need. The Python work around each call (request decoding into "
            "the transaction record, features, rules, model, response and reasons, decision log) is what costs "
            f"the extra {_f(cpu_out_sat - cpu_bare_sat, 0)} µs; with durability=none it reaches "
            f"{_f(none_rate, 0)} calls/s vs {_f(fsync_rate, 0)} with fsync. The server also stays below that "
            f"ceiling: it kept {_f(cores_out, 2)} cores busy against {_f(cores_bare, 2)} for the bare server. "
            "In this closed loop the replies of a micro-batch leave together, and the callers turn them around one "
            "by one, so the event loop idles while it waits for them; smaller batches cost more CPU per call."
        )
    if _check(added_p50, TARGET_ADDED_P50_MS, at_least=False) is False:
        write_p50, none_p50 = _med(one, OUTPOST_WRITE, "p50_ms"), _med(one, OUTPOST_NONE, "p50_ms")
        bare_p50, cpu_one = _med(one, BARE, "p50_ms"), _med(one, OUTPOST, "server_cpu_us_per_call")
        cpu_one_bare = _med(one, BARE, "server_cpu_us_per_call")
        lines.append(
            f"- **Latency at one call in flight** (+{_f(added_p50, 3)} ms): with one call in flight nothing is "
            f"batched, so each call pays the whole pipeline alone: {_f(cpu_one, 0)} µs of server CPU per call "
            f"vs {_f(cpu_one_bare, 0)} µs bare. Durability "
            f"adds its wait: p50 is +{_f(write_p50 - bare_p50, 3)} ms over bare with write and "
            f"+{_f(none_p50 - bare_p50, 3)} ms with none, against +{_f(added_p50, 3)} ms with fsync. Between a lone "
            "caller's calls the server's thread sleeps, and the next call finds the CPU's caches cold: the section "
            "\"A lone call, back to back and after a pause\" below measures what that costs the same work."
        )
    out_sat_rate = _med(sat, OUTPOST, "achieved_rate")
    if _check(ratio_p99, TARGET_RATIO_OPEN_P99, at_least=False) is False and result.open_loop_rate >= out_sat_rate:
        lines.append(
            f"- **Open-loop p99** ({_f(ratio_p99, 2)}x bare): the offered {_f(result.open_loop_rate, 0)} calls/s is "
            f"more than Outpost's own saturation rate ({_f(out_sat_rate, 0)} calls/s above), so calls queue without "
            "bound and latency is limited only by the deadline; this target cannot be met before the throughput "
            "ratio exceeds 0.5."
        )
    elif _check(ratio_p99, TARGET_RATIO_OPEN_P99, at_least=False) is False:
        lines.append(
            f"- **Open-loop p99** ({_f(ratio_p99, 2)}x bare): at {_f(result.open_loop_rate, 0)} calls/s Outpost "
            f"runs at about {_f(_med(open_, OUTPOST, 'server_cpu_us_per_call') * result.open_loop_rate / 1e6, 2)} "
            "of a core, against "
            f"{_f(_med(open_, BARE, 'server_cpu_us_per_call') * result.open_loop_rate / 1e6, 2)} for the bare "
            "server; the closer a single-threaded server runs to a full core, the longer calls queue behind each "
            "other when arrivals bunch up, and the p99 grows faster than the p50."
        )
    if _check(per_core, TARGET_BATCH_PER_CORE, at_least=True) is False:
        on_loop = _med(batch, OUTPOST, "main_thread_us_per_transaction")
        elsewhere = _med(batch, OUTPOST, "server_cpu_us_per_transaction") - on_loop
        lines.append(
            f"- **ScoreBatch per core** ({_f(per_core, 0)}/s): {_f(1e6 / per_core if per_core else math.nan, 1)} µs "
            "of server CPU per transaction, of which the bare server's protobuf decoding and encoding alone take "
            f"{_f(_med(batch, BARE, 'server_cpu_us_per_transaction'), 1)} µs. "
            f"{_f(on_loop, 1)} µs are spent on the event loop's "
            "thread: requests decoded in compiled code (a few µs per transaction: see the per-row section below), "
            "the ONNX model (about 4 µs a row by itself, the largest part: see the models section below; it runs "
            "once per wave of a batch whose accounts repeat, and each extra wave pays a pipeline run's fixed cost "
            "again), the feature state's score, commit and fsync, and each response built. The other "
            f"{_f(elsewhere, 1)} µs are the server's other threads: gRPC's own and, for most of it, the two "
            "review writers, which turn every decision into the decision log's Arrow and Parquet files and every "
            "alert (explained, with reasons in both languages) into SQLite, off the hot path."
        )
    if _check(cold, TARGET_COLD_START_S, at_least=False) is False:
        lines.append(
            f"- **Cold start** ({_f(cold, 2)} s): process start, imports (numpy, numba, onnxruntime, grpc), loading "
            "the numba kernels from cache, the ONNX session and the state."
        )
    if not lines:
        lines.append("Every target measured is met on this machine.")
    return lines
