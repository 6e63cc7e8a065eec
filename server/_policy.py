"""The per-channel action policy: risk-score thresholds, rule action floors, failure modes and teller guidance."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numba
import numpy as np

from features import ENUMS
from server._errors import PolicyError

__all__ = ["ACTION_NAMES", "ALLOW", "BLOCK", "CHALLENGE", "REVIEW", "ActionPolicy", "ChannelPolicy", "hit_floors"]

# Numbers equal the proto enum outpost.v1.Action.
ALLOW, REVIEW, CHALLENGE, BLOCK = 1, 2, 3, 4
ACTION_NAMES = {ALLOW: "ALLOW", REVIEW: "REVIEW", CHALLENGE: "CHALLENGE", BLOCK: "BLOCK"}
_ACTION_BY_NAME = {name: number for number, name in ACTION_NAMES.items()}
FailMode = Literal["open", "closed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelPolicy:
    """Thresholds on the 0..1000 risk score for one channel."""

    review: int
    challenge: int
    block: int
    fail_mode: FailMode = "open"


@dataclass(frozen=True, kw_only=True)
class ActionPolicy:
    """Thresholds per channel, vectorised as lookup tables indexed by channel number."""

    default: ChannelPolicy
    channels: dict[int, ChannelPolicy]
    teller_guidance: dict[int, dict[str, str]]
    source: str = "<defaults>"

    @classmethod
    def load(cls, path: Path) -> ActionPolicy:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolicyError(f"policy file {path} not found (set OUTPOST_POLICY_PATH)") from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from None
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: dict[str, object], *, source: str = "<mapping>") -> ActionPolicy:
        default = _channel_policy(data.get("default", {}), f"{source} [default]", None)
        channels: dict[int, ChannelPolicy] = {}
        raw_channels = data.get("channels", {})
        if not isinstance(raw_channels, dict):
            raise PolicyError(f"{source}: [channels] must be a table of channel names")
        for name, table in raw_channels.items():
            number = ENUMS["Channel"].get(str(name))
            if number is None:
                raise PolicyError(
                    f"{source}: unknown channel {name!r} in [channels]; use one of {', '.join(ENUMS['Channel'])}"
                )
            channels[number] = _channel_policy(table, f"{source} [channels.{name}]", default)
        guidance: dict[int, dict[str, str]] = {}
        raw_guidance = data.get("teller_guidance", {})
        if not isinstance(raw_guidance, dict):
            raise PolicyError(f"{source}: [teller_guidance] must be a table of action names")
        for name, texts in raw_guidance.items():
            action = _ACTION_BY_NAME.get(str(name))
            if action is None or not isinstance(texts, dict):
                raise PolicyError(f"{source}: [teller_guidance.{name}] must be REVIEW, CHALLENGE or BLOCK with texts")
            guidance[action] = {str(k): str(v) for k, v in texts.items()}
        return cls(default=default, channels=channels, teller_guidance=guidance, source=source)

    def for_channel(self, channel: int) -> ChannelPolicy:
        return self.channels.get(channel, self.default)

    def __post_init__(self) -> None:
        size = max(ENUMS["Channel"].values()) + 1
        table = np.empty((size, 3), dtype=np.int32)
        for channel in range(size):
            p = self.for_channel(channel)
            table[channel] = (p.review, p.challenge, p.block)
        table.setflags(write=False)
        object.__setattr__(self, "_table", table)

    def tables(self) -> np.ndarray:
        """(max_channel+1, 3) int32 thresholds [review, challenge, block] indexed by channel number."""
        table: np.ndarray = object.__getattribute__(self, "_table")
        return table

    def actions(self, risk: np.ndarray, channels: np.ndarray, floors: np.ndarray) -> np.ndarray:
        """Action per row: the highest threshold reached, raised to the largest action floor of the row's hits."""
        out = np.empty(len(risk), dtype=np.int8)
        _actions_kernel(
            np.ascontiguousarray(risk, dtype=np.int32),
            np.ascontiguousarray(channels, dtype=np.float64),
            np.ascontiguousarray(floors, dtype=np.int8),
            self.tables(),
            out,
        )
        return out

    def teller_text(self, action: int, locale: str) -> str:
        texts = self.teller_guidance.get(action, {})
        return texts.get(locale) or texts.get("zh-CN", "")


def _channel_policy(table: object, where: str, fallback: ChannelPolicy | None) -> ChannelPolicy:
    if not isinstance(table, dict):
        raise PolicyError(f"{where} must be a table with review, challenge, block")
    values: dict[str, int] = {}
    for key in ("review", "challenge", "block"):
        raw = table.get(key, getattr(fallback, key) if fallback else None)
        if not isinstance(raw, int) or not 0 <= raw <= 1001:
            raise PolicyError(f"{where}: {key} must be a whole number 0..1001 (1001 disables the action), got {raw!r}")
        values[key] = raw
    if not values["review"] <= values["challenge"] <= values["block"]:
        raise PolicyError(f"{where}: thresholds must satisfy review <= challenge <= block, got {values}")
    fail_mode = table.get("fail_mode", fallback.fail_mode if fallback else "open")
    if fail_mode not in ("open", "closed"):
        raise PolicyError(f'{where}: fail_mode must be "open" or "closed", got {fail_mode!r}')
    return ChannelPolicy(fail_mode=fail_mode, **values)


@numba.njit(nogil=True, cache=True)
def _actions_kernel(
    risk: np.ndarray, channels: np.ndarray, floors: np.ndarray, table: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    for i in range(risk.shape[0]):
        channel = int(channels[i])
        if channel < 0 or channel >= table.shape[0]:
            channel = 0
        action = ALLOW
        # Thresholds are ordered review <= challenge <= block: one step up for each one reached.
        for k in range(3):
            if risk[i] >= table[channel, k]:
                action += 1
        out[i] = max(action, floors[i])


def hit_floors(hits: np.ndarray, active: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """Per row, the largest action floor among the active rules that hit (0 when none)."""
    out = np.zeros(hits.shape[0], dtype=np.int8)
    if hits.shape[1]:
        _floors_kernel(np.ascontiguousarray(hits, dtype=np.uint8), active, floors, out)
    return out


@numba.njit(nogil=True, cache=True)
def _floors_kernel(
    hits: np.ndarray, active: np.ndarray, floors: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    for i in range(hits.shape[0]):
        best = 0
        for j in range(hits.shape[1]):
            if hits[i, j] != 0 and active[j] and floors[j] > best:
                best = floors[j]
        out[i] = best
