"""The other helpers' micro-benchmarks: every ``bench/bench_*.py`` module's ``run(quick)``, each in its own process.

A separate process bounds each module in time and keeps one module's crash (or its numba and
ONNX Runtime threads) from disturbing the others; a failure becomes a section saying what failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModuleSection", "discover", "run_module"]

_BENCH_DIR = Path(__file__).resolve().parent
_RUNNER = "import sys, importlib; m = importlib.import_module(sys.argv[1]); print(m.run(quick=sys.argv[2] == '1'))"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleSection:
    """The Markdown a module returned, or why it returned none."""

    module: str
    markdown: str
    seconds: float
    ok: bool


def discover() -> list[str]:
    """Module names of every ``bench/bench_*.py``, sorted."""
    return sorted(f"bench.{p.stem}" for p in _BENCH_DIR.glob("bench_*.py"))


def run_module(module: str, *, quick: bool, timeout_s: float, log: Callable[[str], None]) -> ModuleSection:
    """Run ``module.run(quick)`` in a fresh interpreter, at most ``timeout_s`` seconds."""
    import time

    env = dict(os.environ)
    root = str(_BENCH_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    started = time.monotonic()
    log(f"{module}: running (at most {timeout_s:.0f} s)")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _RUNNER, module, "1" if quick else "0"],
            cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        seconds = time.monotonic() - started
        return ModuleSection(module=module, seconds=seconds, ok=False,
                             markdown=f"## {module}\n\nDid not finish within {timeout_s:.0f} s; no figures.\n")
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2500:]
        log(f"{module}: failed (exit {done.returncode})")
        return ModuleSection(module=module, seconds=seconds, ok=False,
                             markdown=f"## {module}\n\nFailed (exit code {done.returncode}); no figures:\n\n"
                                      f"```\n{tail.strip()}\n```\n")
    log(f"{module}: done in {seconds:.0f} s")
    return ModuleSection(module=module, markdown=done.stdout.strip() + "\n", seconds=seconds, ok=True)
