"""The ``outpost`` command: serve, and the analysts' and operators' tools of every package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]

_USAGE = """usage: outpost COMMAND [ARGS]

commands:
  serve                     run the scoring service (settings from OUTPOST_* variables or OUTPOST_CONFIG)
  rules check FILE          compile a rule file and report its errors
  rules test FILE CASES     run expected-hit cases against a rule file
  simulate ...              write simulated bank transactions (CSV or Parquet)
  train ...                 train a model and export it to ONNX in the registry
  evaluate ...              compare rules, model and hybrid on held-out simulated data
  backtest ...              replay a transaction file through features, rules and model
  alerts ...                list, assign and close alerts
  report ... / investigate ...   HTML reports with charts

Run `outpost COMMAND --help` for a command's options."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "serve":
        parser = argparse.ArgumentParser(prog="outpost serve", description="Run the Outpost scoring service.")
        parser.add_argument("--config", help="TOML settings file (same keys as the OUTPOST_* variables)")
        ns = parser.parse_args(rest)
        from pathlib import Path

        from server._errors import ServerError
        from server._settings import load_settings

        try:
            settings = load_settings(config_file=Path(ns.config) if ns.config else None)
        except ServerError as exc:
            print(f"outpost serve: {exc}", file=sys.stderr)
            return 2
        from server._app import serve

        try:
            return serve(settings)
        except ServerError as exc:
            print(f"outpost serve: {exc}", file=sys.stderr)
            return 2
    if command == "rules":
        from rules_engine import cli as rules_cli

        return rules_cli.main(rest)
    if command in {"simulate", "train", "evaluate"}:
        from models import cli as models_cli

        return models_cli.main([command, *rest])
    if command in {"backtest", "alerts", "report", "investigate"}:
        try:
            from review import cli as review_cli  # type: ignore[attr-defined,unused-ignore]
        except ImportError:
            print(f"outpost {command}: the review package is not installed", file=sys.stderr)
            return 2
        return int(review_cli.main([command, *rest]))
    print(f"outpost: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
