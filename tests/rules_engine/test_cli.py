"""The 'outpost rules' CLI: check and test, their output and exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rules_engine import KernelOptions
from rules_engine.cli import main
from tests.rules_engine.rule_files import PACK, PACK_CASES, rule_yaml


def run(argv: list[str], options: KernelOptions) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--cache-dir", str(options.cache_dir), *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_check_summarises_a_valid_file(kernel_options: KernelOptions) -> None:
    """'rules check' prints version, rule count, typologies and features used, and exits 0."""
    code, out, err = run(["check", str(PACK)], kernel_options)
    assert code == 0, err
    assert "version: 2026.11.1+" in out
    assert "active" in out and "shadow" in out
    assert "typologies: account_takeover (" in out
    assert "features used (" in out and "fan_in_24h" in out


def test_check_reports_errors_with_line_and_column(tmp_path: Path, kernel_options: KernelOptions) -> None:
    """A broken file prints 'file:line:col: rule X: ...' per error on stderr and exits 1."""
    path = tmp_path / "broken.yaml"
    path.write_text(rule_yaml("fan_in_24hr >= 3 and channel == TELER"), encoding="utf-8")
    code, out, err = run(["check", str(path)], kernel_options)
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{path}:9:7: rule R_TEST: in 'when': unknown feature 'fan_in_24hr' (did you mean 'fan_in_24h'?)"
    assert lines[1] == f"{path}:9:39: rule R_TEST: in 'when': 'TELER' is not a Channel name " \
        "(channel is one of MOBILE, ONLINE, TELLER, ATM, POS, API) (did you mean 'TELLER'?)"
    assert lines[-1].endswith("2 errors; nothing was loaded")


def test_test_runs_the_pack_cases(kernel_options: KernelOptions) -> None:
    """'rules test' on the shipped pack passes every case, with full coverage."""
    code, out, _ = run(["test", str(PACK), str(PACK_CASES), "--require-coverage"], kernel_options)
    assert code == 0
    assert "failed" in out and " 0 failed" in out
    assert "without a case" not in out


def test_test_prints_failures_and_exits_1(tmp_path: Path, kernel_options: KernelOptions) -> None:
    """A failing case is printed with its file, line and the rules that differ."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_yaml("amount_cny >= 1000", rule_id="R_BIG"), encoding="utf-8")
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: big\n    features: {amount_cny: 5000}\n    hit: [R_BIG]\n"
        "  - name: small but expected\n    features: {amount_cny: 10}\n    hit: [R_BIG]\n",
        encoding="utf-8",
    )
    code, out, _ = run(["test", str(rules), str(cases)], kernel_options)
    assert code == 1
    assert f"FAIL {cases}:5: case 'small but expected': expected to hit but did not: R_BIG" in out
    assert "rules without a case that misses them (1): R_BIG" in out
    assert "2 cases, 1 passed, 1 failed" in out


def test_coverage_is_enforced_only_on_request(tmp_path: Path, kernel_options: KernelOptions) -> None:
    """Missing hit/miss coverage fails only with --require-coverage."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_yaml("amount_cny >= 1000", rule_id="R_BIG"), encoding="utf-8")
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: big\n    features: {amount_cny: 5000}\n    hit: [R_BIG]\n", encoding="utf-8")
    assert run(["test", str(rules), str(cases)], kernel_options)[0] == 0
    assert run(["test", str(rules), str(cases), "--require-coverage"], kernel_options)[0] == 1


def test_bad_cases_file_is_reported(tmp_path: Path, kernel_options: KernelOptions) -> None:
    """Unknown features, wrong values and unknown rule ids in a cases file are errors with positions."""
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n  - name: typo\n    features: {amount_cnyy: 1, channel: TELER, is_night: 3}\n    hit: [R_NOPE]\n",
        encoding="utf-8",
    )
    code, _, err = run(["test", str(PACK), str(cases)], kernel_options)
    assert code == 1
    assert f"{cases}:3:16: case 'typo': unknown feature 'amount_cnyy' (did you mean 'amount_cny'?)" in err
    assert "channel takes a Channel name (did you mean 'TELLER'?)" in err
    assert "is_night takes true or false" in err
    assert f"{cases}:4:11: case 'typo': no rule 'R_NOPE'" in err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["check"], ["test", "only-one-file"]])
def test_usage_errors_exit_2(
    argv: list[str], kernel_options: KernelOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing or unknown subcommands are usage errors (exit 2) printed by argparse."""
    assert run(argv, kernel_options)[0] == 2
    assert "usage: outpost rules" in capsys.readouterr().err


def test_a_leading_rules_word_is_accepted(kernel_options: KernelOptions) -> None:
    """main(['rules', 'check', FILE]) works like main(['check', FILE])."""
    out, err = io.StringIO(), io.StringIO()
    assert main(["rules", "--cache-dir", str(kernel_options.cache_dir), "check", str(PACK)], out=out, err=err) == 0
