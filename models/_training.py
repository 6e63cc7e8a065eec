"""Training: features by replaying transactions through the service's feature engine, LightGBM, calibration,
ONNX export with a parity check, and a version directory in the registry.

There is no second feature implementation: ``features.FeatureEngine.replay`` computes the
training matrix with the same kernels that score live traffic, and confirmed-fraud outcomes
reach it only ``label_delay_days`` after the transaction, as they would in a bank.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import CATALOGUE, FEATURE_INDEX, OUTCOME_DTYPE, FeatureConfig, FeatureEngine, encode_frame, stable_key
from models._errors import ExportError, TrainingError
from models._evaluation import evaluate_scores, fit_rule_weights, hybrid_report, rule_stats
from models._export import booster_to_onnx, parity
from models._registry import (
    COVERS_FILE,
    LIGHTGBM_FILE,
    MODEL_FILE,
    artifacts_root,
    update_metadata,
    write_metadata,
)
from models._runner import ModelRunner
from models._simulator import SimulationConfig
from models._trees import forest_from_onnx

__all__ = [
    "TimeSplit",
    "TrainingConfig",
    "TrainingResult",
    "default_rules_path",
    "load_rules",
    "model_feature_names",
    "replay_features",
    "train_model",
]

_US_PER_DAY = 86_400 * 1_000_000


def default_rules_path() -> Path:
    """The shipped rule pack, used to evaluate the hybrid score."""
    return Path(__file__).resolve().parents[1] / "rules_engine" / "packs" / "default.yaml"


def model_feature_names() -> tuple[str, ...]:
    """Catalogue features offered to models, in catalogue order: the model's input columns."""
    return tuple(spec.name for spec in CATALOGUE if spec.model_input)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingConfig:
    """How to train. The defaults are the shipped model's; the same data and config give the same model."""

    out_dir: Path = field(default_factory=artifacts_root)
    version: str = ""  # "" = derived from the data fingerprint and this config
    label_delay_days: float = 7.0  # confirmed outcomes reach the feature engine this long after the transaction
    legit_outcome_share: float = 0.01  # share of normal transactions whose (legitimate) outcome is reported
    warmup_days: float = 14.0  # first days replayed but not trained on: 30-day windows are still filling
    train_share: float = 0.6  # of the time span (after warm-up rows are dropped from it)
    valid_share: float = 0.2  # next share of the span: early stopping and calibration; the rest is the test period
    num_trees: int = 150
    learning_rate: float = 0.06
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    seed: int = 7
    num_threads: int = 2  # fixed: LightGBM's deterministic mode is reproducible for a given thread count
    parity_bound: float = 1e-5  # max |p_onnx - p_lightgbm| on the test rows, else ExportError
    alert_rate: float = 0.005
    rules_path: Path | None = field(default_factory=default_rules_path)  # None: no rules/hybrid evaluation
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    simulation: SimulationConfig | None = None  # recorded so `evaluate` can regenerate the data
    command: str = ""  # the command line that trained the model, recorded in metadata
    progress: bool = False  # a tqdm progress bar on stderr

    def __post_init__(self) -> None:
        if not (self.train_share > 0 and self.valid_share > 0 and self.train_share + self.valid_share < 1):
            raise ValueError("train_share and valid_share must be > 0 and leave room for a test period")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must be >= 0, got {self.label_delay_days}")
        if self.num_trees < 1:
            raise ValueError(f"num_trees must be >= 1, got {self.num_trees}")
        if self.num_leaves < 2:
            raise ValueError(f"num_leaves must be >= 2 (a tree needs a split), got {self.num_leaves}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate}")

    def lightgbm_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeSplit:
    """Event-time boundaries (epoch microseconds): warm-up | train | validation | test."""

    start_us: int
    train_from_us: int
    valid_from_us: int
    test_from_us: int
    end_us: int

    @classmethod
    def of(cls, times_us: np.ndarray, config: TrainingConfig) -> TimeSplit:
        start, end = int(times_us.min()), int(times_us.max())
        span = end - start
        warmup = min(int(config.warmup_days * _US_PER_DAY), int(0.15 * span))
        return cls(
            start_us=start,
            train_from_us=start + warmup,
            valid_from_us=start + int(config.train_share * span),
            test_from_us=start + int((config.train_share + config.valid_share) * span),
            end_us=end,
        )

    def masks(self, times_us: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        train = (times_us >= self.train_from_us) & (times_us < self.valid_from_us)
        valid = (times_us >= self.valid_from_us) & (times_us < self.test_from_us)
        return train, valid, times_us >= self.test_from_us

    def describe(self) -> dict[str, str]:
        def iso(us: int) -> str:
            return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).isoformat()

        return {"start": iso(self.start_us), "train_from": iso(self.train_from_us),
                "valid_from": iso(self.valid_from_us), "test_from": iso(self.test_from_us), "end": iso(self.end_us)}


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """Where the new version was written, and its metadata."""

    version_dir: Path
    metadata: dict[str, Any]


def data_fingerprint(txns: np.ndarray, frame: pd.DataFrame) -> str:
    """sha256 of what training sees: the encoded transaction records, the labels and the typologies."""
    digest = hashlib.sha256(np.ascontiguousarray(txns).tobytes())
    digest.update(frame["is_fraud"].to_numpy().astype(np.int8).tobytes())
    if "typology" in frame:
        codes, names = pd.factorize(frame["typology"].fillna("").astype(str), sort=True)
        digest.update(np.asarray(codes, dtype=np.int32).tobytes())
        digest.update("\0".join(map(str, names)).encode())
    return digest.hexdigest()


def _outcomes(frame: pd.DataFrame, times_us: np.ndarray, config: TrainingConfig) -> np.ndarray:
    """Outcomes as a bank learns them: every fraud, and a sample of normal transactions, after the label delay."""
    cp_ids = frame["counterparty_id"].fillna("").astype(str).to_numpy() if "counterparty_id" in frame else None
    if cp_ids is None:
        return np.zeros(0, dtype=OUTCOME_DTYPE)
    fraud = frame["is_fraud"].to_numpy().astype(bool)
    rng = np.random.default_rng(config.seed)
    reported = fraud | (rng.random(fraud.size) < config.legit_outcome_share)
    reported &= cp_ids != ""
    rows = np.flatnonzero(reported)
    keys = {cp: stable_key(cp) for cp in set(cp_ids[rows].tolist())}
    out = np.zeros(rows.size, dtype=OUTCOME_DTYPE)
    out["reported_at_us"] = times_us[rows] + int(config.label_delay_days * _US_PER_DAY)
    out["counterparty_key"] = np.array([keys[c] for c in cp_ids[rows]], dtype=np.uint64)
    out["is_fraud"] = fraud[rows]
    return out[np.argsort(out["reported_at_us"], kind="stable")]


def replay_features(
    frame: pd.DataFrame,
    config: TrainingConfig,
    tick: Callable[[int], None] | None = None,
    slices: int = 10,
    txns: np.ndarray | None = None,
) -> np.ndarray:
    """The (n, F) catalogue feature matrix of ``frame`` (sorted by event time), by replay through the engine.

    ``txns`` is ``encode_frame(frame)`` when the caller has it already.
    """
    if txns is None:
        txns = encode_frame(frame, config.feature_config)
    times = txns["event_time_us"]
    outcomes = _outcomes(frame, times, config)
    # Replay in time slices on one engine so a progress bar can move; outcomes go to the slice holding the
    # first transaction at or after their reported time, exactly as one replay() call would feed them.
    running_max = np.maximum.accumulate(times) if times.size else times
    positions = np.searchsorted(running_max, outcomes["reported_at_us"], side="left")
    cuts = np.linspace(0, times.size, slices + 1).astype(np.int64)
    x = np.empty((times.size, len(CATALOGUE)), dtype=np.float64)
    with FeatureEngine.open(config.feature_config) as engine:
        for i, (a, b) in enumerate(itertools.pairwise(cuts)):
            last = i == slices - 1
            take = (positions >= a) & ((positions < b) | last)
            x[a:b] = engine.replay(txns[a:b], outcomes[take])
            if tick:
                tick(1)
    return x


def _platt(margins: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit p = sigmoid(a * margin + b) on validation rows (one feature, almost no regularisation)."""
    from sklearn.linear_model import LogisticRegression

    if y.sum() == 0 or y.sum() == y.size:
        raise TrainingError("the validation period has only one class; simulate or load a longer period")
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(margins.reshape(-1, 1), y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 0:
        raise TrainingError(f"calibration slope {a:.3g} <= 0: the model ranks validation rows backwards; "
                            "check the labels and the time split")
    return a, b


def _reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted vs observed fraud rate in bins of equal count over the top of the score range."""
    order = np.argsort(p)
    table = []
    # Most rows sit near 0: bin the top 5% finely and the rest as one bin.
    top = max(1, int(0.05 * p.size))
    edges = [0, p.size - top, *np.linspace(p.size - top, p.size, bins + 1).astype(int)[1:]]
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        rows = order[a:b]
        table.append({"rows": int(rows.size), "mean_p": round(float(p[rows].mean()), 6),
                      "fraud_rate": round(float(y[rows].mean()), 6)})
    return table


def load_rules(path: Path | None) -> tuple[Any | None, str]:
    """The rule set for hybrid evaluation, or None and the reason it is unavailable."""
    if path is None:
        return None, "no rule set requested"
    try:
        from rules_engine import RuleSet
    except ImportError as exc:
        return None, f"rules_engine unavailable: {exc}"
    if not path.is_file():
        return None, f"rule file {path} not found"
    return RuleSet.load(path), ""


def _config_record(config: TrainingConfig) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in ("out_dir", "progress", "command", "version"):
            continue
        if f.name == "feature_config":
            value = {g.name: (dict(getattr(value, g.name)) if g.name == "currency_rates" else getattr(value, g.name))
                     for g in dataclasses.fields(value)}
        elif f.name == "simulation" and value is not None:
            value = {"accounts": value.accounts, "days": value.days, "seed": value.seed,
                     "start": value.start.isoformat(), "fraud_scale": value.fraud_scale,
                     "prevalence": dict(value.prevalence)}
        elif isinstance(value, Path):
            repo = Path(__file__).resolve().parents[1]
            value = str(value.relative_to(repo)) if value.is_relative_to(repo) else str(value)
        record[f.name] = value
    return record


def train_model(transactions: pd.DataFrame, config: TrainingConfig) -> TrainingResult:
    """Train, calibrate, export, check and register a model on labelled canonical transactions."""
    import lightgbm as lgb
    from tqdm import tqdm

    if "is_fraud" not in transactions.columns:
        raise TrainingError("the transactions have no is_fraud column; map the label column with --mapping")
    frame = transactions.sort_values("event_time", kind="stable").reset_index(drop=True)
    y_all = frame["is_fraud"].to_numpy().astype(np.int64)
    typology = (frame["typology"].fillna("").astype(str).to_numpy() if "typology" in frame
                else np.where(y_all == 1, "fraud", ""))
    names = model_feature_names()
    slices = 10
    bar = tqdm(total=slices + config.num_trees + 3, disable=not config.progress, unit="step", desc="train")
    try:
        bar.set_postfix_str("encoding")
        txns = encode_frame(frame, config.feature_config)
        fingerprint = data_fingerprint(txns, frame)
        bar.set_postfix_str("replaying features")
        x_all = replay_features(frame, config, bar.update, slices, txns)
        times = encode_times(frame)
        split = TimeSplit.of(times, config)
        train, valid, test = split.masks(times)
        for label, mask in (("train", train), ("validation", valid), ("test", test)):
            if y_all[mask].sum() == 0:
                raise TrainingError(f"the {label} period has no fraud rows; use more accounts or days")
        x_model = x_all[:, [FEATURE_INDEX[n] for n in names]].astype(np.float32).astype(np.float64)

        bar.set_postfix_str("boosting")
        params = config.lightgbm_params()
        dtrain = lgb.Dataset(x_model[train], y_all[train], feature_name=list(names), free_raw_data=False)
        booster = lgb.train(params, dtrain, num_boost_round=config.num_trees,
                            callbacks=[lambda env: bar.update(1)])
        a, b = _platt(np.asarray(booster.predict(x_model[valid], raw_score=True)), y_all[valid])

        bar.set_postfix_str("exporting")
        model = booster_to_onnx(booster, names)
        model_bytes = model.SerializeToString()
        max_diff = parity(model_bytes, booster, x_model[test])
        if max_diff > config.parity_bound:
            raise ExportError(f"ONNX and LightGBM disagree by {max_diff:.3g} on the test rows "
                              f"(bound {config.parity_bound:g}); the export is not faithful")
        covers = forest_from_onnx(model).route_counts(x_model[train].astype(np.float32))
        bar.update(1)

        version = config.version or _derive_version(fingerprint, config, split)
        version_dir = config.out_dir / version
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / MODEL_FILE).write_bytes(model_bytes)
        np.save(version_dir / COVERS_FILE, covers)
        booster.save_model(str(version_dir / LIGHTGBM_FILE))
        gain = booster.feature_importance(importance_type="gain")
        metadata: dict[str, Any] = {
            "version": version,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "features": [{"name": n, "kind": CATALOGUE[FEATURE_INDEX[n]].kind.value} for n in names],
            "onnx": {"input": "input", "input_dtype": "float32", "output": "probabilities", "output_column": 1,
                     "trees": booster.num_trees(), "bytes": len(model_bytes), "opset": 15},
            "calibration": {"method": "platt_on_logit", "a": a, "b": b,
                            "formula": "p = 1 / (1 + exp(-(a * logit(p_onnx) + b)))"},
            "parity": {"rows": int(test.sum()), "max_abs_diff": max_diff, "bound": config.parity_bound},
            "training": {
                "data_fingerprint": fingerprint,
                "rows": len(frame),
                "fraud_rows": int(y_all.sum()),
                "split": split.describe(),
                "split_rows": {"train": int(train.sum()), "valid": int(valid.sum()), "test": int(test.sum())},
                "config": _config_record(config),
                "lightgbm_params": params,
                "command": config.command,
                "lightgbm_version": lgb.__version__,
            },
            "feature_importance_gain": {n: round(float(g), 3) for n, g in
                                        sorted(zip(names, gain, strict=True), key=lambda kv: -kv[1]) if g > 0},
        }
        write_metadata(version_dir, metadata)

        bar.set_postfix_str("evaluating")
        runner = ModelRunner.load(version_dir)
        p_valid = runner.predict(x_all[valid])
        p_test = runner.predict(x_all[test])
        metrics = {
            "test": evaluate_scores(p_test, y_all[test], typology[test], config.alert_rate),
            "valid": evaluate_scores(p_valid, y_all[valid], typology[valid], config.alert_rate),
            "test_log_loss": round(_log_loss(p_test, y_all[test]), 6),
            "test_brier": round(float(np.mean((p_test - y_all[test]) ** 2)), 8),
            "test_reliability": _reliability(p_test, y_all[test]),
        }
        thresholds = _thresholds(p_valid)
        rules, why = load_rules(config.rules_path)
        report = evaluation_report(runner, rules, why, x_all, y_all, typology, times, config.alert_rate, split)
        metadata = update_metadata(version_dir, metrics=metrics, thresholds=thresholds, evaluation=report)
        bar.update(1)
    finally:
        bar.close()
    return TrainingResult(version_dir=version_dir, metadata=metadata)


def evaluation_report(runner: ModelRunner, rules: Any | None, why: str, x: np.ndarray, y: np.ndarray,
                      typology: np.ndarray, times: np.ndarray, rate: float, split: TimeSplit) -> dict[str, Any]:
    """Rules alone, model alone and hybrid on the test period of a full catalogue feature matrix.

    Rule weights are also fitted (given the model) on the training and validation periods, and
    the hybrid with those weights is reported as ``hybrid_fitted`` with per-rule statistics.
    """
    test = times >= split.test_from_us
    fit_rows = ~test
    p = runner.predict(x)
    if rules is None:
        report = hybrid_report(p[test], None, None, None, y[test], typology[test], rate)
        report["rules_unavailable"] = why
    else:
        hits = rules.evaluate(np.ascontiguousarray(x))
        fitted = fit_rule_weights(p[fit_rows], hits[fit_rows], y[fit_rows], rules.active)
        report = hybrid_report(p[test], hits[test], rules.weights, rules.active, y[test], typology[test], rate,
                               fitted)
        report["ruleset_version"] = rules.version
        report["rule_stats"] = rule_stats(hits[fit_rows], y[fit_rows], rules, fitted)
    described = split.describe()
    report["period"] = f"{described['test_from']} .. {described['end']}"
    report["model_version"] = runner.version
    return report


def encode_times(frame: pd.DataFrame) -> np.ndarray:
    """Event times of a canonical frame as int64 epoch microseconds."""
    times = pd.to_datetime(frame["event_time"], utc=True)
    return np.asarray(times.astype("datetime64[us, UTC]").astype(np.int64).to_numpy())


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def _thresholds(p_valid: np.ndarray) -> dict[str, Any]:
    """Calibrated probabilities (and model-alone risk points) at which a share of validation traffic alerts."""
    out: dict[str, Any] = {}
    for rate in (0.001, 0.005, 0.01, 0.02):
        cut = float(np.quantile(p_valid, 1 - rate)) if p_valid.size else 1.0
        out[f"alert_rate_{rate:g}"] = {"probability": round(cut, 6), "model_risk_points": round(1000 * cut, 1)}
    return out


def _derive_version(fingerprint: str, config: TrainingConfig, split: TimeSplit) -> str:
    record = json.dumps(_config_record(config), sort_keys=True, default=str)
    digest = hashlib.sha256((fingerprint + record).encode()).hexdigest()[:10]
    end = dt.datetime.fromtimestamp(split.end_us / 1e6, tz=dt.UTC)
    return f"gbm-{end:%Y%m%d}-{digest}"

