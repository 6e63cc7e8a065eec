"""``python -m bench``: measure Outpost and the bare gRPC server side by side and write docs/benchmarks.md.

Imports stay inside ``main``: load-test client processes are spawned and re-import this module.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; 0 when docs/benchmarks.md was written (whether or not targets are met)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run per measurement (about 3 minutes)")
    parser.add_argument("--runs", type=int, help="repetitions per measurement (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=_ROOT / "docs" / "benchmarks.md", help="Markdown file to write")
    parser.add_argument("--no-modules", action="store_true", help="skip the bench/bench_*.py micro-benchmarks")
    parser.add_argument("--module-timeout", type=float, help="seconds each bench_*.py module may take "
                        "(default 900; 300 with --quick)")
    ns = parser.parse_args(argv)

    from bench._machine import describe_machine, load_average
    from bench._markdown import render
    from bench._modules import ModuleSection, discover, run_module
    from bench._suite import SuiteConfig, run_suite
    from loadtest import frame_to_requests, simulated_transactions

    started = time.monotonic()
    generated = time.strftime("%Y-%m-%d %H:%M %Z")
    config = SuiteConfig.for_mode(quick=ns.quick, runs=ns.runs)
    machine = describe_machine(_ROOT)
    _log(f"simulating {config.pool_rows:,} transactions")
    requests = frame_to_requests(simulated_transactions(config.pool_rows, seed=11))
    result = run_suite(config, requests, _log)
    sections: list[ModuleSection] = []
    if not ns.no_modules:
        timeout = ns.module_timeout or (300.0 if ns.quick else 900.0)
        sections = [run_module(m, quick=ns.quick, timeout_s=timeout, log=_log) for m in discover()]
    text = render(result, machine, sections, generated=generated, load_at_end=load_average(),
                  seconds=time.monotonic() - started)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(text, encoding="utf-8")
    _log(f"wrote {ns.out} in {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
