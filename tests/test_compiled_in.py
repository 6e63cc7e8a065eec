"""Numba caches: a module whose cached kernels compile in another file's code records that file's digest."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from numba.core.registry import CPUDispatcher

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "review", "rules_engine", "server")


def _digest(relative: str) -> str:
    return hashlib.sha256((ROOT / relative).read_bytes()).hexdigest()[:16]


def _cached_modules() -> Iterator[tuple[ModuleType, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            if "cache=True" in path.read_text(encoding="utf-8"):
                yield importlib.import_module(f"{package}.{path.stem}"), path.resolve()


def test_recorded_digests_match_the_files_compiled_in() -> None:
    """Every COMPILED_IN digest equals its file's, so a change there cannot ship without touching the caller."""
    checked = 0
    for module, path in _cached_modules():
        for relative, digest in getattr(module, "COMPILED_IN", {}).items():
            checked += 1
            assert _digest(relative) == digest, (
                f"{relative} changed: set COMPILED_IN[{relative!r}] = {_digest(relative)!r} in "
                f"{path.relative_to(ROOT)} (that edit also makes numba recompile its cached kernels)"
            )
    assert checked >= 2  # server/_wire.py records features/_keys.py and features/_schema.py


def test_kernels_that_call_another_files_kernels_record_it() -> None:
    """A cached module whose own kernels call a numba function defined in another file lists that file."""
    for module, path in _cached_modules():
        own = [v for v in vars(module).values() if isinstance(v, CPUDispatcher)
               and Path(inspect.getfile(v.py_func)).resolve() == path]
        sources = "\n".join(inspect.getsource(v.py_func) for v in own)
        recorded = set(getattr(module, "COMPILED_IN", {}))
        for name, value in vars(module).items():
            if not isinstance(value, CPUDispatcher):
                continue
            origin = Path(inspect.getfile(value.py_func)).resolve()
            if origin != path and f"{name}(" in sources:
                relative = str(origin.relative_to(ROOT))
                assert relative in recorded, (
                    f"{path.relative_to(ROOT)} compiles in {name} from {relative}: add "
                    f"COMPILED_IN[{relative!r}] = {_digest(relative)!r}"
                )
