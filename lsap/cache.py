"""lsap's on-disk caches: one root, one key recipe, one policy for damaged files.

* Root: ``$LSAP_CACHE_DIR`` when set, else ``~/.cache/lsap``; each kind of cached thing has
  a folder under it (``anchors/``, ``style_std/``, ``torch_extensions/``).
* Key: a SHA-256 of everything the cached value depends on (a format name and version, the
  generator's fingerprint, the sampling settings, ...), so a changed input never reuses a
  stale file.
* Policy (:func:`cached`): a file that cannot be read, or that was made for other inputs, is
  recomputed and replaced with a warning; a cache that cannot be written only warns. Writes
  are atomic (temporary file + rename), so concurrent writers of the same file are safe.

This module imports nothing else of lsap except :mod:`lsap.io`, so any subpackage (the
compiled ops included) can use it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from lsap.io import atomic_write

__all__ = ["CACHE_ENV", "cache_dir", "cache_file", "cache_key", "cache_root", "cached", "save_torch"]

CACHE_ENV = "LSAP_CACHE_DIR"

T = TypeVar("T")


def cache_root() -> Path:
    """``$LSAP_CACHE_DIR`` when that variable is set, else ``~/.cache/lsap``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lsap"


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached thing, ``<root>/<kind>``."""
    return cache_root() / kind


def cache_key(*parts: object) -> str:
    """Hex SHA-256 of ``parts`` joined by ``|`` (the same parts give the same key)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def cache_file(directory: str | os.PathLike[str], stem: str, *key_parts: object, suffix: str = ".pt") -> Path:
    """``<directory>/<stem>-<first 32 hex digits of cache_key(*key_parts)><suffix>``."""
    return Path(directory) / f"{stem}-{cache_key(*key_parts)[:32]}{suffix}"


def cached(
    path: str | os.PathLike[str] | None,
    compute: Callable[[], T],
    load: Callable[[Path], T],
    save: Callable[[T, Path], None],
    matches: Callable[[T], bool],
    what: str,
) -> T:
    """The value cached in ``path``, or ``compute()`` (then written to ``path``).

    Args:
        path: the cache file; ``None`` computes without reading or writing any cache.
        compute: makes the value.
        load: reads a file written by ``save``; any exception means the file is damaged.
        save: writes the value to a path (use :func:`save_torch` or an atomic writer of your own).
        matches: whether a loaded value belongs to the current inputs (fingerprint,
            settings); a mismatch is recomputed like damage.
        what: what the file holds, for the warnings ("S^N anchors", "style std").
    """
    if path is None:
        return compute()
    path = Path(path)
    if path.is_file():
        try:
            value = load(path)
        except Exception as err:  # noqa: BLE001 - any damage (truncation, garbage, old format) means recompute
            warnings.warn(f"ignoring unreadable {what} cache file '{path}' ({type(err).__name__}: {err}); "
                          "recomputing it", RuntimeWarning, stacklevel=3)
        else:
            if matches(value):
                return value
            warnings.warn(f"{what} cache file '{path}' belongs to other settings; recomputing it",
                          RuntimeWarning, stacklevel=3)
    value = compute()
    try:
        save(value, path)
    except OSError as err:  # lsap.errors.OutputError is one
        warnings.warn(f"could not write the {what} cache '{path}' ({err}); continuing without it",
                      RuntimeWarning, stacklevel=3)
    return value


def save_torch(state: object, path: str | os.PathLike[str]) -> None:
    """``torch.save(state)`` to ``path`` atomically (temporary file + rename)."""
    atomic_write(path, lambda file: torch.save(state, file))
