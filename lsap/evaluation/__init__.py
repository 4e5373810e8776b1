"""``lsap evaluate`` / ``lsap fid`` / ``lsap compare``: the evaluation table of inversion results.

Imports are lazy so that ``lsap --help`` does not load torch through this package.
"""

from __future__ import annotations

from lsap._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".pipeline": ("evaluate",), ".fid": ("folder_fid",), ".report": ("compare_table",),
})
