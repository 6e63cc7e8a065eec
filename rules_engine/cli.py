"""The ``outpost rules`` command: check a rule file, and run an analyst's test cases against it.

``outpost rules check FILE`` compiles the file (kernel included) and prints every error with
its line and column, or a summary of the rule set. ``outpost rules test FILE CASES`` runs the
cases and prints each failure. Exit status: 0 success, 1 errors or failed cases, 2 usage.
``server/cli.py`` calls :func:`main` with the arguments after ``rules``.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import TextIO

from rules_engine._cases import case_coverage, load_cases, run_cases
from rules_engine._errors import RuleCasesError, RuleCompileError, RuleError
from rules_engine._kernel import KernelOptions
from rules_engine._ruleset import RuleSet

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outpost rules", description="Check and test Outpost rule files.")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="Outpost cache directory for compiled kernels (default: $OUTPOST_CACHE_DIR or "
                             "~/.cache/outpost)")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="compile a rule file and report every error")
    check.add_argument("file", type=Path, help="the rule file (YAML)")
    test = commands.add_parser("test", help="run test cases against a rule file")
    test.add_argument("file", type=Path, help="the rule file (YAML)")
    test.add_argument("cases", type=Path, help="the cases file (YAML)")
    test.add_argument("--require-coverage", action="store_true",
                      help="also fail when a rule has no case that hits it or none that misses it")
    return parser


def _print_errors(error: RuleCompileError | RuleCasesError, what: str, err: TextIO) -> None:
    for diagnostic in error.errors:
        print(str(diagnostic), file=err)
    count = len(error.errors)
    print(f"{what}: {count} error{'s' if count != 1 else ''}; nothing was loaded", file=err)


def _summary(rules: RuleSet, out: TextIO) -> None:
    shadow = sum(1 for rule in rules.rules if not rule.active)
    typologies = collections.Counter(rule.typology for rule in rules.rules)
    print(f"{rules.source}: OK", file=out)
    print(f"version: {rules.version}", file=out)
    print(f"rules: {len(rules.rules)} ({len(rules.rules) - shadow} active, {shadow} shadow)", file=out)
    print("typologies: " + ", ".join(f"{name} ({n})" for name, n in sorted(typologies.items())), file=out)
    used = sorted(rules.feature_names_used)
    print(f"features used ({len(used)}): " + ", ".join(used), file=out)


def _check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        rules = RuleSet.load(args.file, options=KernelOptions(cache_dir=args.cache_dir))
    except RuleCompileError as error:
        _print_errors(error, str(args.file), err)
        return 1
    _summary(rules, out)
    return 0


def _test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        rules = RuleSet.load(args.file, options=KernelOptions(cache_dir=args.cache_dir))
    except RuleCompileError as error:
        _print_errors(error, str(args.file), err)
        return 1
    try:
        cases = load_cases(args.cases, rules)
    except RuleCasesError as error:
        _print_errors(error, str(args.cases), err)
        return 1
    failures = run_cases(rules, cases)
    for failure in failures:
        print(f"FAIL {failure}", file=out)
    no_hit, no_miss = case_coverage(rules, cases)
    if no_hit:
        print(f"rules without a case that hits them ({len(no_hit)}): " + ", ".join(no_hit), file=out)
    if no_miss:
        print(f"rules without a case that misses them ({len(no_miss)}): " + ", ".join(no_miss), file=out)
    passed = len(cases) - len(failures)
    print(f"{rules.version}: {len(cases)} cases, {passed} passed, {len(failures)} failed", file=out)
    if failures:
        return 1
    if args.require_coverage and (no_hit or no_miss):
        return 1
    return 0


def main(argv: list[str], *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``rules check FILE`` or ``rules test FILE CASES`` (a leading 'rules' is accepted); the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    arguments = list(argv)
    if arguments[:1] == ["rules"]:
        arguments = arguments[1:]
    parser = _parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_request:
        return exit_request.code if isinstance(exit_request.code, int) else 2
    try:
        if args.command == "check":
            return _check(args, out, err)
        return _test(args, out, err)
    except RuleError as error:
        print(f"error: {error}", file=err)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
