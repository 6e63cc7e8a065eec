"""bench/bench_models.py runs on the model as it is served (no timing is asserted: figures belong to make bench)."""

from __future__ import annotations

from bench import bench_models


def test_models_section_runs_on_the_served_graph() -> None:
    """The quick section measures every batch size and compares ORT with LightGBM (it failed once the served graph's
    output was renamed, and only `make bench` showed it)."""
    section = bench_models.run(quick=True)
    rows = [line for line in section.splitlines() if line.startswith(("| 1 |", "| 16 |", "| 256 |"))]
    assert len(rows) == 3
    assert "Max |p_ORT - p_LightGBM|" in section
    diff = float(section.split("Max |p_ORT - p_LightGBM| on 2,000 of these rows: ")[1].split(".\n")[0].rstrip("."))
    assert diff < 1e-5
