"""Command line of the models package: ``simulate``, ``train`` and ``evaluate``.

The top-level ``outpost`` command calls ``main([subcommand, *args])``; ``python -m models.cli``
works too. Every command prints what it did and returns 0, or prints the error and returns 1
(2 for bad usage).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from models._errors import ModelError
from models._registry import artifacts_root, update_metadata
from models._simulator import SimulationConfig, simulate

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outpost", description="Outpost model tools")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write simulated labelled transactions (CSV or Parquet)")
    sim.add_argument("--accounts", type=int, default=20_000)
    sim.add_argument("--days", type=int, default=120)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--out", type=Path, required=True, help="FILE.csv or FILE.parquet")

    train = sub.add_parser("train", help="train, export and register a model")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--simulate", action="store_true", help="train on freshly simulated transactions")
    source.add_argument("--data", type=Path, help="labelled transactions (CSV or Parquet)")
    train.add_argument("--mapping", type=Path, help="column mapping (YAML or JSON, canonical -> file column)")
    train.add_argument("--accounts", type=int, default=20_000)
    train.add_argument("--days", type=int, default=120)
    train.add_argument("--seed", type=int, default=7)
    train.add_argument("--out", type=Path, default=artifacts_root(), help="registry directory")
    train.add_argument("--version", default="", help="version name (default: derived from data and config)")
    train.add_argument("--label-delay-days", type=float, default=7.0)
    train.add_argument("--trees", type=int, default=150)
    train.add_argument("--leaves", type=int, default=31, help="leaves per tree (fewer: a cheaper model to run)")
    train.add_argument("--learning-rate", type=float, default=0.06)
    train.add_argument("--rules", type=Path, help="rule pack for the hybrid evaluation (default: the shipped pack)")
    train.add_argument("--no-progress", action="store_true")

    ev = sub.add_parser("evaluate", help="rules vs model vs hybrid on a held-out period of simulated data")
    ev.add_argument("--model", type=Path, help="model version directory (default: the shipped default)")
    ev.add_argument("--rules", type=Path, help="rule pack (default: the shipped pack)")
    ev.add_argument("--alert-rate", type=float, default=0.005)
    ev.add_argument("--accounts", type=int, help="simulation size (default: the model's training simulation)")
    ev.add_argument("--days", type=int)
    ev.add_argument("--seed", type=int)
    ev.add_argument("--write-fitted-pack", type=Path, metavar="FILE",
                    help="write a copy of the rule pack whose scores are the weights fitted (given the model) on the "
                         "training and validation periods (rules with at least 20 hits there), for analysts to review")
    return parser


def _simulate(args: argparse.Namespace) -> int:
    frame = simulate(SimulationConfig(accounts=args.accounts, days=args.days, seed=args.seed))
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        csv = frame.copy()
        for col in ("event_time", "account_opened"):
            csv[col] = csv[col].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        csv.to_csv(out, index=False)
    fraud = int(frame["is_fraud"].sum())
    print(f"wrote {len(frame):,} transactions ({fraud:,} fraud, {fraud / max(1, len(frame)):.2%}) to {out}")
    return 0


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from models._evaluation import format_report
    from models._loading import load_transactions
    from models._training import TrainingConfig, default_rules_path, train_model

    simulation = SimulationConfig(accounts=args.accounts, days=args.days, seed=args.seed) if args.simulate else None
    config = TrainingConfig(
        out_dir=args.out,
        version=args.version,
        label_delay_days=args.label_delay_days,
        num_trees=args.trees,
        num_leaves=args.leaves,
        learning_rate=args.learning_rate,
        rules_path=args.rules or default_rules_path(),
        simulation=simulation,
        command=shlex.join(["outpost", *argv]),
        progress=not args.no_progress,
    )  # checked before any data is simulated or read
    frame = simulate(simulation) if simulation is not None else load_transactions(args.data, args.mapping)
    result = train_model(frame, config)
    meta = result.metadata
    print(f"model {meta['version']} written to {result.version_dir}")
    print(f"ONNX parity on {meta['parity']['rows']:,} test rows: max |p_onnx - p_lightgbm| = "
          f"{meta['parity']['max_abs_diff']:.3g} (bound {meta['parity']['bound']:g})")
    print(format_report(meta["evaluation"]))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from models._evaluation import format_report
    from models._runner import ModelRunner, default_model_dir
    from models._training import (
        TimeSplit,
        TrainingConfig,
        default_rules_path,
        encode_times,
        evaluation_report,
        load_rules,
        replay_features,
    )

    model_dir: Path = args.model or default_model_dir()
    runner = ModelRunner.load(model_dir)
    record = runner.metadata.get("training", {}).get("config", {})
    sim = record.get("simulation") or {}
    simulation = SimulationConfig(
        accounts=args.accounts or int(sim.get("accounts", 20_000)),
        days=args.days or int(sim.get("days", 120)),
        seed=int(sim.get("seed", 7)) if args.seed is None else args.seed,
    )
    config = TrainingConfig(
        out_dir=model_dir.parent,
        label_delay_days=float(record.get("label_delay_days", 7.0)),
        legit_outcome_share=float(record.get("legit_outcome_share", 0.01)),
        warmup_days=float(record.get("warmup_days", 14.0)),
        train_share=float(record.get("train_share", 0.6)),
        valid_share=float(record.get("valid_share", 0.2)),
        seed=int(record.get("seed", 7)),
        alert_rate=args.alert_rate,
    )
    print(f"simulating {simulation.accounts:,} accounts x {simulation.days} days (seed {simulation.seed}) ...",
          file=sys.stderr)
    frame = simulate(simulation)
    x = replay_features(frame, config)
    times = encode_times(frame)
    split = TimeSplit.of(times, config)
    rules, why = load_rules(args.rules or default_rules_path())
    y = frame["is_fraud"].to_numpy().astype(np.int64)
    typology = frame["typology"].astype(str).to_numpy()
    report = evaluation_report(runner, rules, why, x, y, typology, times, args.alert_rate, split)
    print(format_report(report))
    update_metadata(model_dir, evaluation=report)
    print(f"report saved into {model_dir / 'metadata.json'} (key 'evaluation')")
    if args.write_fitted_pack:
        source = Path(args.rules or default_rules_path())
        # A rule that hardly ever hit in the fit period gives no evidence either way: it keeps the analyst's weight.
        fitted = {
            stat["id"]: float(stat["fitted_weight"])
            for stat in report.get("rule_stats", [])
            if int(stat.get("hits", 0)) >= MIN_HITS_TO_FIT
        }
        text = with_scores(source.read_text(encoding="utf-8"), fitted)
        args.write_fitted_pack.write_text(text, encoding="utf-8")
        print(f"rule pack with fitted weights written to {args.write_fitted_pack}")
    return 0


MIN_HITS_TO_FIT = 20


def with_scores(pack_text: str, scores: dict[str, float]) -> str:
    """The rule file text with each named rule's ``score:`` replaced (comments and layout kept)."""
    out: list[str] = []
    current = ""
    for line in pack_text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("- id:"):
            current = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("score:") and current in scores:
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}score: {round(scores[current])}\n"
            current = ""
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    """Run one models subcommand; returns the process exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "train":
            return _train(args, list(argv))
        return _evaluate(args)
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
