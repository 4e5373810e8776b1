"""Lazy package exports: a package lists each public name once, beside the submodule that
defines it, and the name is imported on first access (PEP 562). Packages whose
``lsap --help`` path must not load torch use it (``lsap``, ``lsap.align``, ``lsap.editing``,
``lsap.evaluation``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, table: Mapping[str, Iterable[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` from ``{submodule: names}``.

    Submodules are absolute (``"lsap.model"``) or relative to the package (``".run"``). A
    name resolved once is stored in the package's namespace, so later accesses are plain
    attribute lookups. Use as ``__all__, __getattr__, __dir__ = lazy_exports(__name__, {...})``.
    """
    exports: dict[str, str] = {}
    for module, names in table.items():
        target = f"{package}{module}" if module.startswith(".") else module
        for name in names:
            if name in exports:
                raise ValueError(f"{package}: {name!r} is exported from both {exports[name]} and {target}")
            exports[name] = target

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return sorted(exports), __getattr__, __dir__
