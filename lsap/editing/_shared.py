"""The few things lsap.editing takes from elsewhere, each behind one function.

Reading inversion outputs and PTI deltas, the seeded z sampler, the generator
fingerprint and atomic saving live in other packages; routing every use through this
module keeps the switch to a shared API (``lsap.results``, ``lsap.model.delta``) a
one-line change per function.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

from lsap.io import load_weights_file
from lsap.metrics.anchors import _atomic_torch_save, _z_batches, default_cache_dir, generator_fingerprint

__all__ = ["apply_delta", "atomic_save", "cache_root", "check_fingerprint", "fingerprint", "read_code",
           "z_batches"]

CODES_DIR, IMAGES_DIR, DELTAS_DIR = "codes", "images", "pti"
PTI_DELTA_FORMAT = "lsap.pti_delta"


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
    """Seeded CPU z batches, the same sequence for any batch size (the anchors' sampler)."""
    return _z_batches(num_samples, z_dim, seed, batch_size)


def cache_root() -> Path:
    """Root of lsap's on-disk caches (``$LSAP_CACHE_DIR`` or ``~/.cache/lsap``)."""
    return default_cache_dir().parent


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through a temporary file and a rename."""
    _atomic_torch_save(obj, Path(path))


def read_code(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One ``codes/<name>.pt`` file of an inversion run: ``{"ws": [num_ws, w_dim], "noise"?, "meta"?}``."""
    data = load_weights_file(path, "inversion code file")
    if not isinstance(data, Mapping) or not isinstance(data.get("ws"), Tensor):
        raise ValueError(f"'{path}' is not an lsap code file (expected a dict with a 'ws' tensor)")
    return dict(data)


def apply_delta(generator: nn.Module, path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``generator`` with the PTI weight delta in ``path`` added, and the delta file.

    Refuses a delta made for a generator with other weights.
    """
    data = load_weights_file(path, "PTI delta file")
    if not isinstance(data, Mapping) or data.get("format") != PTI_DELTA_FORMAT:
        raise ValueError(f"'{path}' is not an lsap PTI delta (format {PTI_DELTA_FORMAT!r})")
    actual = fingerprint(generator)
    if data.get("generator_hash") != actual:
        raise ValueError(f"PTI delta '{path}' was made for another generator (fingerprint "
                         f"{str(data.get('generator_hash'))[:12]}..., this one is {actual[:12]}...)")
    tuned = copy.deepcopy(generator)
    state = tuned.state_dict()
    with torch.no_grad():
        for name, delta in data["deltas"].items():
            if name not in state or tuple(state[name].shape) != tuple(delta.shape):
                raise ValueError(f"PTI delta '{path}' does not fit this generator at '{name}'")
            state[name].add_(delta.to(device=state[name].device, dtype=state[name].dtype))
    return tuned, dict(data)


def list_results(results_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the finished images of an inversion run (a code file and a record), sorted."""
    root = Path(results_dir)
    codes = root / CODES_DIR
    if not codes.is_dir():
        raise FileNotFoundError(f"'{root}' is not an inversion output folder: it has no '{CODES_DIR}/' "
                                "(run lsap predict with an InversionWriter first)")
    names = []
    for file in sorted(codes.rglob("*.pt")):
        name = file.relative_to(codes).with_suffix("").as_posix()
        if (root / "records" / f"{name}.json").is_file():
            names.append(name)
    return names


def result_files(results_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path | None]:
    """The code file of image ``name`` and its PTI delta file (None when the run was not PTI)."""
    root = Path(results_dir)
    delta = root / DELTAS_DIR / f"{name}.pt"
    return root / CODES_DIR / f"{name}.pt", delta if delta.is_file() else None
