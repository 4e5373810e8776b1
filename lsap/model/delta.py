"""PTI weight deltas: a tuned generator stored as what changed from the original.

A delta file (``pti/<name>.pt`` of a PTI run) holds the synthesis tensors that tuning
changed, as ``tuned - original`` in a compact dtype (float16 by default), tied to the
original generator by its fingerprint::

    {"format": "lsap.pti_delta", "version": 1, "generator_hash": str, "dtype": str,
     "deltas": {state-dict name: Tensor}, "ws": Tensor[num_ws, w_dim]?, "noise": [Tensor]?}

(``ws`` and ``noise``: the pivot code and the noise the image was tuned with.) This module
needs no Lightning: editing applies deltas with :func:`apply_delta` alone::

    tuned = apply_delta(G, load_delta("outputs/pti/pti/a.pt"))
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from lsap.io import CheckpointError, atomic_write, load_weights_file
from lsap.model.fingerprint import generator_fingerprint

if TYPE_CHECKING:
    from lsap.model.generator import Generator

__all__ = ["DELTA_FORMAT", "DELTA_VERSION", "DeltaDtype", "apply_delta", "load_delta", "make_delta", "save_delta"]

DELTA_FORMAT = "lsap.pti_delta"
DELTA_VERSION = 1

DeltaDtype = Literal["float32", "float16", "bfloat16"]
DELTA_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

_TUNED_PREFIX = "synthesis_network."


def make_delta(original: Generator, tuned: Generator, dtype: DeltaDtype = "float16",
               original_hash: str | None = None) -> dict[str, Any]:
    """The changed synthesis tensors of ``tuned`` as ``tuned - original`` in ``dtype``,
    with the original generator's fingerprint (``original_hash`` when already known).
    Unchanged tensors are left out."""
    if dtype not in DELTA_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DELTA_DTYPES)}, got {dtype!r}")
    before = original.state_dict()
    deltas: dict[str, Tensor] = {}
    for name, value in tuned.state_dict().items():
        if not name.startswith(_TUNED_PREFIX) or not value.is_floating_point():
            continue
        delta = (value.detach() - before[name].detach()).to(DELTA_DTYPES[dtype])
        if torch.count_nonzero(delta):
            deltas[name] = delta.cpu().contiguous()
    return {
        "format": DELTA_FORMAT,
        "version": DELTA_VERSION,
        "generator_hash": original_hash or generator_fingerprint(original),
        "dtype": dtype,
        "deltas": deltas,
    }


def save_delta(delta: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a delta (checked first) to ``path`` atomically."""
    data = load_delta(delta)
    atomic_write(path, lambda f: torch.save(data, f))


def load_delta(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read a delta file safely (weights only), or check an in-memory delta.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is damaged, or not an lsap PTI delta of a version this
            lsap reads (the message names the file).
    """
    if isinstance(source, Mapping):
        data, where = source, "PTI delta"
    else:
        data, where = load_weights_file(source, "PTI delta file"), f"PTI delta file '{source}'"
    if not isinstance(data, Mapping) or data.get("format") != DELTA_FORMAT:
        raise CheckpointError(f"{where} is not an lsap PTI delta (format {DELTA_FORMAT!r})")
    if int(data.get("version", 0)) > DELTA_VERSION:
        raise CheckpointError(f"{where} has PTI delta version {data['version']}; this lsap reads up to "
                              f"{DELTA_VERSION}")
    if not isinstance(data.get("deltas"), Mapping) or "generator_hash" not in data:
        raise CheckpointError(f"{where} is incomplete (needs 'deltas' and 'generator_hash')")
    return dict(data)


def apply_delta(generator: Generator, delta: str | os.PathLike[str] | Mapping[str, Any],
                into: Generator | None = None, check_fingerprint: bool = True) -> Generator:
    """The generator with a delta applied; ``generator`` itself is left unchanged.

    Args:
        generator: the original generator (the one the delta was made from).
        delta: a delta file or an in-memory delta.
        into: a generator of the same architecture to overwrite with the result (saves a
            copy when applying many deltas); default: a new copy of ``generator``.
        check_fingerprint: refuse a delta made for a generator with other weights.

    Raises:
        ValueError: the delta was made for another generator, or names tensors this
            generator lacks or has in another shape.
    """
    data = load_delta(delta)
    if check_fingerprint:
        fingerprint = generator_fingerprint(generator)
        if data["generator_hash"] != fingerprint:
            raise ValueError(
                "this PTI delta was made for another generator (fingerprint "
                f"{data['generator_hash'][:12]}..., this generator is {fingerprint[:12]}...): apply it to the "
                "generator the pivots were tuned from"
            )
    if into is None:
        into = copy.deepcopy(generator)
    else:
        into.load_state_dict(generator.state_dict())
    state = into.state_dict()
    with torch.no_grad():
        for name, change in data["deltas"].items():
            if name not in state:
                raise ValueError(f"PTI delta names '{name}', which this generator does not have")
            target = state[name]
            if tuple(target.shape) != tuple(change.shape):
                raise ValueError(f"PTI delta for '{name}' has shape {tuple(change.shape)}, the generator's is "
                                 f"{tuple(target.shape)}")
            target.copy_(target + change.to(device=target.device, dtype=target.dtype))
    return into
