"""One frozen settings object, read once from ``OUTPOST_*`` environment variables and an optional TOML file."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from server._errors import SettingsError

__all__ = ["PACKAGE_ROOT", "Settings", "load_settings"]

PACKAGE_ROOT = Path(__file__).resolve().parent.parent

StateBackendName = Literal["embedded", "redis"]
DurabilityName = Literal["fsync", "write", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything Outpost can be configured with. Field ``x`` is set by ``OUTPOST_X`` or key ``x`` in the TOML file."""

    addr: str = "127.0.0.1:50051"
    workers: int = 1
    log_level: str = "info"
    rules_path: Path = PACKAGE_ROOT / "rules_engine" / "packs" / "default.yaml"
    model_dir: Path | None = None  # None: the shipped default version
    challenger_model_dir: Path | None = None
    model_registry: Path | None = None  # the only place ReloadModel loads versions from; None: the shipped registry
    policy_path: Path = PACKAGE_ROOT / "server" / "default_policy.toml"
    data_dir: Path = PACKAGE_ROOT / "var"
    state_backend: StateBackendName = "embedded"
    redis_url: str = ""
    durability: DurabilityName = "fsync"
    batch_max: int = 64
    batch_wait_us: int = 10_000  # only under load, while waiting gathers company and the loop stays busy (_batcher)
    batch_busy_share: float = 0.6  # the event loop's busy share of wall time above which batches wait; 0: always
    batch_idle_share: float = 0.5  # a wait ends early when the loop was busy less than this share lately; 0: never
    score_batch_max: int = 1000
    max_in_flight: int = 64  # ~ throughput x tolerable queueing: see ops/checks/overload.py, docs/operations.md
    grace_seconds: float = 10.0
    sync_stall_seconds: float = 2.0  # a state-log sync running longer: NOT_SERVING, new calls UNAVAILABLE (_durability)
    model_min_budget_ms: float = 2.0
    allow_plaintext_remote: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_tokens_path: Path | None = None
    metrics_addr: str = ""
    decision_log: bool = True
    max_clock_skew_days: int = 3650
    home_country: str = "CN"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.workers >= 1, "workers", self.workers, "a whole number >= 1")
        _check(self.batch_max >= 1, "batch_max", self.batch_max, "a whole number >= 1")
        _check(self.batch_wait_us >= 0, "batch_wait_us", self.batch_wait_us, "microseconds >= 0")
        _check(0.0 <= self.batch_busy_share <= 1.0, "batch_busy_share", self.batch_busy_share, "a share 0..1")
        _check(0.0 <= self.batch_idle_share <= 1.0, "batch_idle_share", self.batch_idle_share, "a share 0..1")
        _check(1 <= self.score_batch_max <= 100_000, "score_batch_max", self.score_batch_max, "1..100000")
        _check(self.max_in_flight >= 1, "max_in_flight", self.max_in_flight, "a whole number >= 1")
        _check(self.grace_seconds >= 0, "grace_seconds", self.grace_seconds, "seconds >= 0")
        _check(self.sync_stall_seconds > 0, "sync_stall_seconds", self.sync_stall_seconds, "seconds > 0")
        _check(":" in self.addr, "addr", self.addr, "HOST:PORT, e.g. 127.0.0.1:50051")
        _check(
            self.log_level in {"debug", "info", "warning", "error"},
            "log_level",
            self.log_level,
            "one of debug, info, warning, error",
        )
        if self.state_backend == "redis":
            _check(
                bool(self.redis_url),
                "redis_url",
                self.redis_url,
                "redis://HOST:PORT/DB (required when OUTPOST_STATE_BACKEND=redis)",
            )
        if self.workers > 1:
            _check(
                self.state_backend == "redis",
                "workers",
                self.workers,
                "1 with the embedded state; more than one worker needs OUTPOST_STATE_BACKEND=redis because the "
                "embedded state lives in one process",
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("OUTPOST_TLS_CERT and OUTPOST_TLS_KEY must be set together (PEM files)")

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # any other host name may resolve to a public address
            return False

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise SettingsError(f"OUTPOST_{name.upper()}={value!r} is invalid: expected {expected}")


def _coerce(name: str, raw: object, annotation: Any) -> Any:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        if raw not in args:
            raise SettingsError(
                f"OUTPOST_{name.upper()}={raw!r} is invalid: expected one of {', '.join(map(str, args))}"
            )
        return raw
    if type(None) in args:  # Optional[X]
        if raw in ("", None):
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(name, raw, inner)
    try:
        if annotation is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(text)
        if annotation is int:
            return int(raw)  # type: ignore[call-overload]
        if annotation is float:
            return float(raw)  # type: ignore[arg-type]
        if annotation is Path:
            return Path(str(raw)).expanduser()
        if annotation is str:
            return str(raw)
    except (TypeError, ValueError):
        kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(annotation, str(annotation))
        raise SettingsError(f"OUTPOST_{name.upper()}={raw!r} is invalid: expected {kind}") from None
    return raw


def load_settings(environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Read settings once: TOML file (``OUTPOST_CONFIG`` or ``config_file``) first, environment variables over it."""
    env = os.environ if environ is None else environ
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    path = config_file or (Path(env["OUTPOST_CONFIG"]) if env.get("OUTPOST_CONFIG") else None)
    known = {f.name for f in fields(Settings) if f.name != "extra"}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"OUTPOST_CONFIG={path}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"OUTPOST_CONFIG={path}: not valid TOML ({exc})") from None
        section = data.get("outpost", data)
        unknown = sorted(set(section) - known)
        if unknown:
            raise SettingsError(
                f"{path}: unknown settings {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
            )
        for key, raw in section.items():
            values[key] = _coerce(key, raw, hints[key])
    for name in known:
        env_name = f"OUTPOST_{name.upper()}"
        if env_name in env:
            values[name] = _coerce(name, env[env_name], hints[name])
    return Settings(**values)
