"""Stage 6: turn generated kernel source into a compiled numba function, reusing numba's on-disk cache.

numba caches only functions that live in a real file, and invalidates its cache when that
file's timestamp changes. So the source is written once to ``<cache dir>/rules/<hash>.py``
(the hash of the source text; an existing file is never rewritten) and imported from there.
A second process, or a reload of the same rules, finds the file and numba's cache beside it
and skips compilation. Each load marks its kernel used (a ``.used`` file beside it: touching the
source would invalidate numba's cache); beyond ``KernelOptions.keep`` kernels, the least recently
used ones are deleted with their cache. numba errors are translated to RuleKernelError here and
nowhere else.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from rules_engine._codegen import KERNEL_NAME
from rules_engine._errors import RuleKernelError

__all__ = ["CACHE_DIR_ENV", "KernelOptions", "LoadedKernel", "load_kernel"]

CACHE_DIR_ENV = "OUTPOST_CACHE_DIR"
_MODULE_PREFIX = "outpost_rules_kernel_"
# Importing the same kernel module from two threads at once would execute it twice.
_IMPORT_LOCK = threading.Lock()

KernelFunction = Callable[[np.ndarray, np.ndarray], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelOptions:
    """Where compiled rule kernels are kept.

    ``cache_dir``: the Outpost cache directory; kernels go to its ``rules/`` subdirectory.
    None means ``$OUTPOST_CACHE_DIR`` when set, else ``~/.cache/outpost``.
    ``keep``: kernels kept (with numba's cache of each); the least recently loaded beyond it are deleted, so
    backtesting many rule variants does not fill the disk. A deleted kernel is compiled again when needed.
    """

    cache_dir: Path | None = None
    keep: int = 200

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise RuleKernelError(f"KernelOptions.keep must be at least 1, got {self.keep}")

    def rules_dir(self) -> Path:
        """The directory that holds generated kernel files."""
        if self.cache_dir is not None:
            base = Path(self.cache_dir)
        elif os.environ.get(CACHE_DIR_ENV):
            base = Path(os.environ[CACHE_DIR_ENV])
        else:
            base = Path.home() / ".cache" / "outpost"
        return base / "rules"


@dataclass(frozen=True, slots=True)
class LoadedKernel:
    """A compiled kernel and the file it was generated into."""

    function: KernelFunction
    path: Path
    digest: str
    from_cache: bool  # numba loaded the machine code from its disk cache instead of compiling


def _write_once(path: Path, source: str) -> None:
    if path.exists():
        try:
            if path.read_text(encoding="utf-8") == source:
                return
        except OSError:
            pass
    # Write to a temporary file and rename, so a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(source)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _import(path: Path, module_name: str) -> ModuleType:
    with _IMPORT_LOCK:
        existing = sys.modules.get(module_name)
        if existing is not None and getattr(existing, "__file__", None) == str(path):
            return existing
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise RuleKernelError(f"cannot import the generated kernel {path}; check that the file is readable")
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: numba's cache refers to the helper functions by module name.
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module


def _mark_used(path: Path) -> None:
    path.with_suffix(".used").touch()


def _last_used(path: Path) -> float:
    try:
        return path.with_suffix(".used").stat().st_mtime
    except OSError:  # written by a version without marks, or pruned by another process meanwhile
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0


def _prune(directory: Path, keep: int, current: Path) -> None:
    """Delete the least recently used kernels beyond ``keep`` (never ``current``), each with its numba cache."""
    kernels = [k for k in directory.glob("k*.py") if k != current]
    if len(kernels) < keep:
        return
    kernels.sort(key=_last_used)
    for old in kernels[: len(kernels) - keep + 1]:
        for path in (old, old.with_suffix(".used"), *(directory / "__pycache__").glob(f"{old.stem}.*")):
            path.unlink(missing_ok=True)  # another process may have pruned it already


def kernel_is_cached(source: str, options: KernelOptions) -> bool:
    """True when numba's disk cache already holds machine code for ``source`` (loading it will not compile)."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]
    cache = options.rules_dir() / "__pycache__"
    return cache.is_dir() and any(cache.glob(f"k{digest}.*.nbi"))


def load_kernel(source: str, options: KernelOptions) -> LoadedKernel:
    """Compile (or load from numba's cache) the kernel defined by ``source``."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]
    directory = options.rules_dir()
    path = directory / f"k{digest}.py"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_once(path, source)
    except OSError as error:
        raise RuleKernelError(
            f"cannot write the rule kernel to {directory}: {error}; "
            f"set {CACHE_DIR_ENV} (or KernelOptions.cache_dir) to a writable directory"
        ) from error
    try:
        _mark_used(path)
        _prune(directory, options.keep, path)
    except OSError:
        pass  # a read-only cache (e.g. one built into an image) still serves its kernels; it is just not pruned
    try:
        module = _import(path, _MODULE_PREFIX + digest)
        function: KernelFunction = getattr(module, KERNEL_NAME)
        from_cache = sum(function.stats.cache_hits.values()) > 0  # type: ignore[attr-defined]
    except RuleKernelError:
        raise
    except Exception as error:  # numba's typing and lowering errors have no common base class
        raise RuleKernelError(
            f"numba could not compile the rule kernel {path}: {type(error).__name__}: {error}; "
            "this is a bug in the rule compiler, please report it with the rule file"
        ) from error
    return LoadedKernel(function=function, path=path, digest=digest, from_cache=from_cache)
