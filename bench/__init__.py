"""Outpost's benchmark suite (``make bench``): Outpost against the bare Python gRPC limit, side by side.

``python -m bench`` writes docs/benchmarks.md; every ``bench/bench_<area>.py`` module contributes a
section through its ``run(quick: bool = False) -> str``. Never part of the tests.
"""

__all__: list[str] = []
