"""Bearer-token authentication with roles. Tokens are stored as SHA-256 hashes; the token itself is never logged."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import tomllib
from dataclasses import dataclass
from pathlib import Path

from server._errors import SettingsError

__all__ = ["ROLES", "Principal", "TokenTable", "current_principal", "hash_token"]

# Which role may call which service. Health and reflection need no token.
ROLES: dict[str, frozenset[str]] = {
    "scorer": frozenset({"outpost.v1.RiskScoring"}),
    "admin": frozenset({"outpost.v1.RiskAdmin", "outpost.v1.RiskScoring"}),
}
# Name of the authenticated caller of the current call (for the audit log).
current_principal: contextvars.ContextVar[str] = contextvars.ContextVar("outpost_principal", default="anonymous")

OPEN_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in the token file (``outpost`` never stores tokens in clear)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str


class TokenTable:
    """Token hashes -> principals, loaded from a TOML file of ``[[tokens]] name, role, sha256``."""

    def __init__(self, entries: dict[str, Principal]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"OUTPOST_AUTH_TOKENS_PATH={path}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"OUTPOST_AUTH_TOKENS_PATH={path}: not valid TOML ({exc})") from None
        entries: dict[str, Principal] = {}
        for i, item in enumerate(data.get("tokens", [])):
            name, role, digest = item.get("name"), item.get("role"), str(item.get("sha256", "")).lower()
            if not name or role not in ROLES or len(digest) != 64:
                raise SettingsError(
                    f"{path}: tokens[{i}] needs name, role (one of {', '.join(ROLES)}) and sha256 (64 hex digits; "
                    'make one with: python -c "import hashlib,sys;print(hashlib.sha256(sys.argv[1].encode())'
                    '.hexdigest())" TOKEN)'
                )
            entries[digest] = Principal(name=str(name), role=str(role))
        if not entries:
            raise SettingsError(f"{path}: no [[tokens]] entries; add at least one or unset OUTPOST_AUTH_TOKENS_PATH")
        return cls(entries)

    def authenticate(self, authorization: str) -> Principal | None:
        """The principal for an ``authorization`` metadata value ``Bearer <token>``, or None."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        digest = hash_token(token.strip())
        for known, principal in self._entries.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    @staticmethod
    def allowed(principal: Principal, service: str) -> bool:
        return service in ROLES.get(principal.role, frozenset())
