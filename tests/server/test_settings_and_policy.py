"""Settings from environment and TOML, and the per-channel action policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features import ENUMS
from server import ActionPolicy, PolicyError, Settings, SettingsError, load_settings
from server._policy import ALLOW, BLOCK, CHALLENGE, REVIEW
from server._settings import PACKAGE_ROOT


def test_defaults_bind_loopback() -> None:
    """With no configuration Outpost listens on 127.0.0.1:50051 with the embedded state."""
    settings = load_settings(environ={})
    assert settings.addr == "127.0.0.1:50051"
    assert settings.state_backend == "embedded"


def test_environment_overrides_toml(tmp_path: Path) -> None:
    """OUTPOST_* variables win over the TOML file, and values are typed."""
    cfg = tmp_path / "outpost.toml"
    cfg.write_text('[outpost]\nbatch_max = 16\naddr = "127.0.0.1:6000"\n')
    settings = load_settings(environ={"OUTPOST_BATCH_MAX": "32"}, config_file=cfg)
    assert settings.batch_max == 32
    assert settings.addr == "127.0.0.1:6000"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"OUTPOST_BATCH_MAX": "many"}, "OUTPOST_BATCH_MAX"),
        ({"OUTPOST_STATE_BACKEND": "postgres"}, "embedded, redis"),
        ({"OUTPOST_WORKERS": "4"}, "OUTPOST_STATE_BACKEND=redis"),
        ({"OUTPOST_STATE_BACKEND": "redis"}, "OUTPOST_REDIS_URL"),
        ({"OUTPOST_SYNC_STALL_SECONDS": "0"}, "OUTPOST_SYNC_STALL_SECONDS.*seconds > 0"),
    ],
)
def test_bad_settings_say_how_to_fix(env: dict[str, str], needle: str) -> None:
    """An invalid value is rejected with a message naming the variable and the fix."""
    with pytest.raises(SettingsError, match=needle):
        load_settings(environ=env)


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    """A typo in the TOML file is an error that lists the valid keys."""
    cfg = tmp_path / "outpost.toml"
    cfg.write_text("batchmax = 3\n")
    with pytest.raises(SettingsError, match="unknown settings batchmax"):
        load_settings(environ={}, config_file=cfg)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading; replace() validates a copy."""
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.batch_max = 3  # type: ignore[misc]
    with pytest.raises(SettingsError):
        settings.replace(batch_max=0)


def test_shipped_policy_thresholds_by_channel() -> None:
    """The shipped policy maps scores to actions per channel, and a rule floor raises the action."""
    policy = ActionPolicy.load(PACKAGE_ROOT / "server" / "default_policy.toml")
    teller, pos = ENUMS["Channel"]["TELLER"], ENUMS["Channel"]["POS"]
    risk = np.array([100, 520, 520, 990], dtype=np.int32)
    channels = np.array([teller, teller, pos, pos])
    floors = np.zeros(4, dtype=np.int8)
    assert policy.actions(risk, channels, floors).tolist() == [ALLOW, CHALLENGE, REVIEW, BLOCK]
    floors[0] = BLOCK
    assert policy.actions(risk, channels, floors)[0] == BLOCK
    assert policy.teller_text(CHALLENGE, "en") and policy.teller_text(CHALLENGE, "zh-CN")


def test_policy_rejects_unordered_thresholds() -> None:
    """review <= challenge <= block is enforced with a message naming the table."""
    with pytest.raises(PolicyError, match=r"\[default\]"):
        ActionPolicy.from_mapping({"default": {"review": 800, "challenge": 500, "block": 900}})
    with pytest.raises(PolicyError, match="unknown channel"):
        ActionPolicy.from_mapping({"default": {"review": 1, "challenge": 2, "block": 3}, "channels": {"FAX": {}}})
