"""The few things lsap.editing takes from elsewhere, each behind one function.

Inversion outputs (:mod:`lsap.results`), PTI deltas (:mod:`lsap.model.delta`), the
generator fingerprint, atomic writes and the seeded z sampler live in other
packages; every use in lsap.editing goes through this module.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from lsap.io import atomic_write
from lsap.metrics.anchors import default_cache_dir
from lsap.model.delta import apply_delta as _apply_delta
from lsap.model.delta import load_delta
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.sampling import sample_z
from lsap.results import CODES_DIR, InversionResults, load_code

__all__ = ["apply_delta", "atomic_save", "cache_root", "check_fingerprint", "fingerprint", "list_results",
           "read_code", "result_files", "z_batches"]


def fingerprint(generator: nn.Module) -> str:
    """The generator's identity, as anchors and NSCD record it."""
    return generator_fingerprint(generator)


def check_fingerprint(stored: str | None, generator: nn.Module, what: str, actual: str | None = None) -> None:
    """Warn when ``what`` was computed for another generator (nothing stored: no check)."""
    if not stored:
        return
    actual = actual or fingerprint(generator)
    if stored != actual:
        warnings.warn(f"{what} was computed for another generator (fingerprint {stored[:12]}..., this generator is "
                      f"{actual[:12]}...); edits may not mean what they meant there", RuntimeWarning, stacklevel=3)


def z_batches(num_samples: int, z_dim: int, seed: int, batch_size: int) -> Iterator[Tensor]:
    """Seeded CPU z batches, the same sequence for any batch size (lsap's one z sampler)."""
    return sample_z(num_samples, z_dim, seed, batch_size)


def cache_root() -> Path:
    """Root of lsap's on-disk caches (``$LSAP_CACHE_DIR`` or ``~/.cache/lsap``)."""
    return default_cache_dir().parent


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through a temporary file and a rename."""
    atomic_write(path, lambda f: torch.save(obj, f))


def read_code(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One ``codes/<name>.pt`` file of an inversion run: ``{"ws": [num_ws, w_dim], "noise"?, "meta"?}``."""
    return load_code(path)


def apply_delta(generator: nn.Module, path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``generator`` with the PTI weight delta in ``path`` added, and the delta file.

    Refuses a delta made for a generator with other weights.
    """
    delta = load_delta(path)
    return _apply_delta(generator, delta), delta


def list_results(results_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the finished images of an inversion run (a code file and a record), sorted."""
    root = Path(results_dir)
    if not (root / CODES_DIR).is_dir():
        raise FileNotFoundError(f"'{root}' is not an inversion output folder: it has no '{CODES_DIR}/' "
                                "(run lsap predict with an InversionWriter first)")
    return InversionResults(root).names()


def result_files(results_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path | None]:
    """The code file of image ``name`` and its PTI delta file (None when the run was not PTI)."""
    results = InversionResults(results_dir)
    delta = results.delta_path(name)
    return results.code_path(name), delta if delta.is_file() else None
