"""The package's public surface is exactly the intended names."""

from __future__ import annotations

import rules_engine


def test_exported_names() -> None:
    """__all__ lists the public API, sorted, and every name exists."""
    assert rules_engine.__all__ == [
        "ACTION_FLOORS",
        "CACHE_DIR_ENV",
        "ORDINARY_TRANSACTION",
        "TYPOLOGIES",
        "CaseFailure",
        "KernelOptions",
        "Rule",
        "RuleCase",
        "RuleCasesError",
        "RuleCompileError",
        "RuleDiagnostic",
        "RuleError",
        "RuleEvaluationError",
        "RuleKernelError",
        "RuleSet",
        "case_coverage",
        "hit_cells",
        "hits_by_row",
        "load_cases",
        "parse_cases",
        "run_cases",
    ]
    for name in rules_engine.__all__:
        assert hasattr(rules_engine, name)


def test_errors_share_one_root() -> None:
    """Every rule-engine error is a RuleError."""
    for error in (
        rules_engine.RuleCompileError,
        rules_engine.RuleCasesError,
        rules_engine.RuleKernelError,
        rules_engine.RuleEvaluationError,
    ):
        assert issubclass(error, rules_engine.RuleError)


def test_kernel_options_default_to_the_environment(monkeypatch: object) -> None:
    """Without cache_dir, kernels go to $OUTPOST_CACHE_DIR/rules."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("OUTPOST_CACHE_DIR", "/srv/outpost-cache")
    assert str(rules_engine.KernelOptions().rules_dir()) == "/srv/outpost-cache/rules"
    monkeypatch.delenv("OUTPOST_CACHE_DIR")
    assert rules_engine.KernelOptions().rules_dir().parts[-3:] == (".cache", "outpost", "rules")
