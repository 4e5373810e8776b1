"""``lsap evaluate`` / ``lsap fid`` / ``lsap compare``: the evaluation table of inversion results.

Imports are lazy so that ``lsap --help`` does not load torch through this package.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"evaluate": "lsap.evaluation.pipeline", "folder_fid": "lsap.evaluation.fid",
            "compare_table": "lsap.evaluation.report"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lsap.evaluation' has no attribute {name!r}")
