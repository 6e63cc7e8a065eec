"""The running service: settings turned into loaded rules, models, state, pipeline and batcher."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog

from features import FeatureConfig, FeatureEngine, new_batch
from models import ModelRunner, default_model_dir
from rules_engine import RuleSet
from server._batcher import MicroBatcher
from server._durability import GroupCommit
from server._errors import StartupError
from server._metrics import Metrics
from server._pipeline import Decisions, ScoringPipeline, Snapshot
from server._policy import ActionPolicy
from server._reply_wire import warm as warm_reply_encoder
from server._requests import RequestValidator
from server._settings import Settings
from server._wire import warm as warm_wire_decoder

if TYPE_CHECKING:
    from review import ReviewSinks

__all__ = ["OutpostService", "RuleHitCounter", "feature_config"]

log = structlog.get_logger("outpost.service")


def feature_config(settings: Settings) -> FeatureConfig:
    return FeatureConfig(home_country=settings.home_country)


class RuleHitCounter:
    """Hits per rule (shadow included) since the current rule set was installed; one sink for every reload."""

    def __init__(self, n_rules: int, version: str) -> None:
        self.version = version
        self.counts = np.zeros(n_rules, dtype=np.int64)

    def reset(self, n_rules: int, version: str) -> None:
        self.version = version
        self.counts = np.zeros(n_rules, dtype=np.int64)

    def record(self, txn_ids: object, txns: np.ndarray, decisions: Decisions) -> None:
        if decisions.snapshot.rules.version == self.version and np.count_nonzero(decisions.hits):
            self.counts += np.bincount(decisions.hit_cells()[1], minlength=len(self.counts))


class _RecentTransactions:
    """Bounded map transaction_id -> counterparty_key, for outcome reports that do not name the counterparty.

    Two generations of at most ``capacity // 2`` entries each: new entries go to the current one; when it is full
    it becomes the previous one and the oldest generation is dropped. So the last ``capacity // 2`` to
    ``capacity`` applied transactions are known, with no per-entry eviction on the hot path.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self._half = max(capacity // 2, 1)
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}

    def record(self, txn_ids: list[str], txns: np.ndarray, decisions: Decisions) -> None:
        counterparties = txns["counterparty_key"].tolist()
        applied = txns["apply"]
        if len(counterparties) == 1:  # a lone call: no zip, no numpy reduction
            if applied[0]:
                self._current[txn_ids[0]] = counterparties[0]
        elif np.count_nonzero(applied) == len(counterparties):
            self._current.update(zip(txn_ids, counterparties, strict=True))
        else:
            self._current.update(
                (t, c) for t, c, a in zip(txn_ids, counterparties, applied.tolist(), strict=True) if a
            )
        if len(self._current) >= self._half:
            self._previous, self._current = self._current, {}

    def get(self, txn_id: str) -> int | None:
        """The counterparty key of a recently applied transaction (0: it had none), or None when unknown."""
        found = self._current.get(txn_id)
        return found if found is not None else self._previous.get(txn_id)

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


@dataclass
class OutpostService:
    """Everything a servicer needs, built from one Settings object."""

    settings: Settings
    config: FeatureConfig
    policy: ActionPolicy
    validator: RequestValidator
    engine: FeatureEngine | None = None
    pipeline: ScoringPipeline | None = None
    batcher: MicroBatcher | None = None
    commit: GroupCommit | None = None
    hits: RuleHitCounter | None = None
    recent: _RecentTransactions = field(default_factory=_RecentTransactions)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    outcome_sinks: list[Callable[[object], None]] = field(default_factory=list)
    metrics: Metrics | None = None
    review: ReviewSinks | None = None
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def create(cls, settings: Settings) -> OutpostService:
        config = feature_config(settings)
        return cls(
            settings=settings, config=config, policy=ActionPolicy.load(settings.policy_path),
            validator=RequestValidator(config, max_skew_days=settings.max_clock_skew_days),
        )

    # -- loading (runs in a worker thread, off the event loop) ---------------------------------------------
    def load(self) -> None:
        settings = self.settings
        rules = load_rules(settings.rules_path)
        model = load_model(settings.model_dir)
        challenger = ModelRunner.load(settings.challenger_model_dir) if settings.challenger_model_dir else None
        if challenger is not None:
            challenger.warm()
        data_dir = settings.data_dir / "state" if settings.state_backend == "embedded" else None
        if data_dir is not None and settings.durability != "none":
            data_dir.mkdir(parents=True, exist_ok=True)
        engine = FeatureEngine.open(
            self.config,
            backend=settings.state_backend,
            data_dir=data_dir if settings.durability != "none" else None,
            redis_url=settings.redis_url or None,
        )
        pipeline = ScoringPipeline(engine=engine, snapshot=Snapshot(rules, model, challenger), policy=self.policy)
        self.hits = RuleHitCounter(len(rules.rules), rules.version)
        pipeline.add_sink(self.hits)
        pipeline.add_sink(self.recent)  # type: ignore[arg-type]
        # review depends on server (decide, Settings): imported here, when the service loads, to avoid a cycle.
        import review

        self.review = review.open_sinks(settings)
        for sink in self.review.sinks:
            pipeline.add_sink(sink)
        self.outcome_sinks.append(self.review.record_outcome)
        if self.metrics is not None:
            pipeline.add_sink(self.metrics)
            self.metrics.track(pipeline, engine.stats)
        _warm(pipeline)
        self.engine, self.pipeline = engine, pipeline
        self.commit = GroupCommit(
            lambda fsync: engine.sync(fsync=fsync),
            settings.durability,
            observe=self.metrics.state_sync.observe if self.metrics is not None else None,
            in_flight=lambda: self.in_flight,
            stall_s=settings.sync_stall_seconds,
        )
        self.batcher = MicroBatcher(
            pipeline,
            lambda: self.policy,
            self.commit,
            self.validator,
            max_size=settings.batch_max,
            max_wait_us=settings.batch_wait_us,
            busy_share=settings.batch_busy_share,
            idle_share=settings.batch_idle_share,
            in_flight=lambda: self.in_flight,
        )
        log.info(
            "loaded",
            ruleset_version=rules.version,
            rules=len(rules.rules),
            model_version=model.version,
            state_backend=settings.state_backend,
            durability=settings.durability,
            seconds=round(time.monotonic() - self.started_at, 3),
        )

    def install_rules(self, rules: RuleSet) -> str:
        """Swap in a compiled rule set; returns the previous version."""
        assert self.pipeline is not None
        old = self.pipeline.snapshot
        assert self.hits is not None
        self.hits.reset(len(rules.rules), rules.version)
        self.pipeline.swap(Snapshot(rules, old.model, old.challenger))
        return old.rules.version

    def install_model(self, model: ModelRunner) -> str:
        assert self.pipeline is not None
        old = self.pipeline.snapshot
        self.pipeline.swap(Snapshot(old.rules, model, old.challenger))
        return old.model_version

    def close(self) -> None:
        if self.commit is not None:
            self.commit.close()
        if self.review is not None:
            self.review.close()
        if self.engine is not None:
            self.engine.close()

    def audit(self, **entry: object) -> None:
        """Append an admin change to the audit log (JSON lines, fsynced)."""
        path = self.settings.data_dir / "audit.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.info("audit", **entry)


def load_rules(path: Path) -> RuleSet:
    try:
        return RuleSet.load(path)
    except FileNotFoundError:
        raise StartupError(f"rule file {path} not found (set OUTPOST_RULES_PATH)") from None


def load_model(model_dir: Path | None) -> ModelRunner:
    directory = model_dir or default_model_dir()
    model = ModelRunner.load(directory)
    model.warm()
    return model


def _warm(pipeline: ScoringPipeline) -> None:
    """Compile every kernel on the path with dry-run rows, so the first real call is fast and changes nothing."""
    for n in (1, 4):
        batch = new_batch(n)
        batch["event_time_us"] = 1_700_000_000_000_000
        batch["account_key"] = np.arange(1, n + 1, dtype=np.uint64)
        batch["amount_minor"] = batch["amount_fen"] = 10_000
        batch["txn_type"] = 1
        batch["channel"] = 1
        batch["apply"] = 0
        pipeline.run(batch)
    warm_wire_decoder()
    warm_reply_encoder()
