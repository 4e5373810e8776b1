"""SeFa (Shen & Zhou 2021): closed-form directions from the modulation weights.

The affine ("modulation") layers map w to styles linearly, ``s_l = A_l w + b_l``. The
directions that change the chosen layers' styles most are the top eigenvectors of
``A^T A`` with ``A`` the chosen layers' effective weights stacked row-wise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from lsap.model.fingerprint import generator_fingerprint
from lsap.editing.directions import Direction, check_finite, check_layers, parse_layers
from lsap.errors import BadFileError, BadValueError
from lsap.io import atomic_write, load_weights_file

__all__ = ["SEFA_FORMAT", "SeFa", "compute_sefa", "is_sefa_state", "load_sefa", "modulation_weights", "save_sefa",
           "sefa_from_state"]

SEFA_FORMAT = "lsap.sefa"


def modulation_weights(generator: nn.Module, layers: Sequence[int]) -> Tensor:
    """Stacked effective affine weights ``[sum of channels, w_dim]`` of the style layers that
    read the W+ entries ``layers`` (LSAP's one-per-entry layers: every conv, the last toRGB)."""
    rows = []
    for index in layers:
        layer = generator.style_layers[int(generator.lsap_style_indices[int(index)])]
        affine = generator.synthesis_network.get_submodule(layer.name).affine
        rows.append(affine.weight.detach().double() * affine.weight_gain)
    return torch.cat(rows)


@dataclass(eq=False)
class SeFa:
    """Unit eigenvectors ``[K, w_dim]`` by decreasing eigenvalue, for W+ entries ``layers``."""

    components: Tensor
    eigenvalues: Tensor
    layers: tuple[int, ...]
    generator_hash: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def direction(self, k: int) -> Direction:
        """Component ``k`` as a direction restricted to the SeFa layers."""
        return Direction(self.components[k].clone(), layers=self.layers or None, name=f"sefa_{k}",
                         generator_hash=self.generator_hash, meta=dict(self.meta, component=k))

    def state(self) -> dict[str, Any]:
        return {"format": SEFA_FORMAT, "comp": self.components.cpu()[:, None, :], "eigenvalues": self.eigenvalues.cpu(),
                "layers": list(self.layers), "generator_hash": self.generator_hash, "meta": self.meta}


@torch.no_grad()
def compute_sefa(generator: nn.Module, layers: str | Sequence[int] = "2:6", num_components: int = 10,
                 normalize: bool = False) -> SeFa:
    """SeFa directions of the W+ entries ``layers`` (e4e's default: entries 2-5).

    ``normalize`` scales every stacked row to unit norm first (SeFa's official variant); by
    default the effective weights are used as the affine layers apply them.
    """
    chosen = parse_layers(layers)
    if not chosen:
        raise BadValueError("SeFa needs at least one layer")
    check_layers(chosen, int(generator.num_ws), layers)
    a = modulation_weights(generator, chosen)
    if normalize:
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(a.T @ a)
    order = values.argsort(descending=True)[:num_components]
    components = vectors[:, order].T
    idx = components.abs().argmax(dim=1, keepdim=True)
    components = components * torch.sign(components.gather(1, idx))
    return SeFa(components.float(), values[order].float(), chosen, generator_fingerprint(generator),
                {"method": "sefa", "normalize": normalize})


def save_sefa(sefa: SeFa, path: str | os.PathLike[str]) -> Path:
    """Write lsap's SeFa file: ``comp [K, 1, w_dim]`` (e4e's component layout, so ``FILE#k``
    reads it), eigenvalues, layers, fingerprint and provenance."""
    state = sefa.state()
    atomic_write(path, lambda f: torch.save(state, f))
    return Path(path)


def is_sefa_state(data: object) -> bool:
    return isinstance(data, Mapping) and data.get("format") == SEFA_FORMAT


def sefa_from_state(data: Mapping[str, Any], source: str | os.PathLike[str]) -> SeFa:
    """The :class:`SeFa` of a state read by :func:`lsap.io.load_weights_file` (``source``
    names the file in errors)."""
    comp, values = data.get("comp"), data.get("eigenvalues")
    if not isinstance(comp, Tensor) or comp.ndim not in (2, 3) or not comp.is_floating_point():
        raise BadFileError(f"SeFa file '{source}': 'comp' must be a [K, 1, w_dim] tensor")
    components = check_finite(comp.float().reshape(comp.shape[0], -1), f"SeFa file '{source}'")
    if not isinstance(values, Tensor) or values.numel() != components.shape[0]:
        values = torch.full((components.shape[0],), float("nan"))
    layers = parse_layers(data.get("layers"))
    return SeFa(components, values.float().reshape(-1), layers or (), data.get("generator_hash"),
                dict(data.get("meta") or {}, source=str(source)))


def load_sefa(path: str | os.PathLike[str]) -> SeFa:
    """Read a file written by :func:`save_sefa`; nothing is executed."""
    data = load_weights_file(path, "SeFa file")
    if not is_sefa_state(data):
        raise BadFileError(f"'{path}' is not an lsap SeFa file (expected a dict with format '{SEFA_FORMAT}')")
    return sefa_from_state(data, path)
