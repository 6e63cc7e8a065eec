"""Names a package exports but imports on first use (PEP 562), so that importing the package stays cheap.

The offline parts of Outpost (encoding files, simulation, training, backtests, reports) need pandas and
matplotlib, which a serving process never uses and which cost about a second of every start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(namespace: MutableMapping[str, Any], modules: Mapping[str, Sequence[str]]) -> Callable[[str], object]:
    """A module ``__getattr__`` for the package whose ``globals()`` is ``namespace``: each name listed under a
    module of ``modules`` is imported from it on first use and then kept in the package like any other name."""
    where = {name: module for module, names in modules.items() for name in names}
    package = namespace["__name__"]

    def load(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups find it directly
        return value

    return load
