"""SeFa (Shen & Zhou 2021): closed-form directions from the modulation weights.

The affine ("modulation") layers map w to styles linearly, ``s_l = A_l w + b_l``. The
directions that change the chosen layers' styles most are the top eigenvectors of
``A^T A`` with ``A`` the chosen layers' effective weights stacked row-wise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from lsap.editing._shared import fingerprint
from lsap.editing.directions import Direction, parse_layers

__all__ = ["SeFa", "compute_sefa", "modulation_weights"]


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
        return Direction(self.components[k].clone(), layers=self.layers, name=f"sefa_{k}",
                         generator_hash=self.generator_hash, meta=dict(self.meta, component=k))

    def state(self) -> dict[str, Any]:
        return {"format": "lsap.sefa", "comp": self.components.cpu()[:, None, :], "eigenvalues": self.eigenvalues.cpu(),
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
        raise ValueError("SeFa needs at least one layer")
    a = modulation_weights(generator, chosen)
    if normalize:
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(a.T @ a)
    order = values.argsort(descending=True)[:num_components]
    components = vectors[:, order].T
    idx = components.abs().argmax(dim=1, keepdim=True)
    components = components * torch.sign(components.gather(1, idx))
    return SeFa(components.float(), values[order].float(), chosen, fingerprint(generator),
                {"method": "sefa", "normalize": normalize})
