"""The part of NSCD shared by the metric and the loss: anchors plus frozen style affines.

:class:`StyleAlignment` holds, for one layer selection of a generator, the S^N anchors
mu_l and (when built with the generator) a frozen snapshot of the affine transforms
w -> s_l. It turns W / W+ codes or per-layer style lists into the per-layer quantities
both NSCD forms are built from:

* ``unit_dots``: <s_l / ||s_l||, mu_l> (the official loss sums their negatives),
* ``cosines``: cos(s_l, mu_l) = unit_dots / ||mu_l|| (the metric's d_l = 1 - cos).

Tensors of all layers are stacked into padded ``[L, C_max, ...]`` buffers; layer ``l``
uses the first ``channels[l]`` rows. The buffers are non-persistent: they follow
``.to(device)`` but never enter a state dict (anchors are cached on disk and the affines
belong to the generator), so a module owning both the generator and a metric or loss
stores the generator once. The snapshot also keeps styles and anchors tied to the
weights they were built from, even if the generator is fine-tuned later (PTI).

Everything runs with autocast disabled, in the dtype the caller asks for: under mixed
precision NSCD stays in float32 (or float64).
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.style.anchors import Anchors, LayerSelection, compute_anchors, generator_fingerprint
from lsap.model.generator import StyleLayer, check_ws

__all__ = ["StyleAlignment", "check_styles", "resolve_anchors"]


def check_styles(styles: Sequence[Tensor], layers: Sequence[StyleLayer]) -> int:
    """Validate one ``[B, channels]`` style tensor per layer; return the batch size."""
    if isinstance(styles, Tensor) or len(styles) != len(layers):
        got = f"a tensor of shape {tuple(styles.shape)}" if isinstance(styles, Tensor) else f"{len(styles)} tensors"
        raise ValueError(f"expected a list of {len(layers)} style tensors (one per layer), got {got}")
    batch = styles[0].shape[0] if styles[0].ndim == 2 else None
    for style, layer in zip(styles, layers):
        if style.ndim != 2 or style.shape != (batch, layer.channels):
            raise ValueError(
                f"style of layer {layer.name} must have shape [{'B' if batch is None else batch}, "
                f"{layer.channels}], got {tuple(style.shape)}"
            )
    return batch


def resolve_anchors(
    generator: nn.Module | None,
    anchors: Anchors | None,
    num_samples: int,
    seed: int,
    cache_dir: str | os.PathLike[str] | None,
    batch_size: int,
    owner: str,
) -> Anchors:
    """The anchors an NSCD metric or loss uses: given ones, or computed / cached from the
    generator. When both are given, checks that they fit each other."""
    if anchors is None:
        if generator is None:
            raise ValueError(f"{owner} needs a generator (to compute or read the anchors) or precomputed anchors")
        return compute_anchors(generator, num_samples=num_samples, seed=seed, batch_size=batch_size,
                               cache_dir=cache_dir)
    if not isinstance(anchors, Anchors):
        raise TypeError(f"anchors must be an lsap.metrics.Anchors, got {type(anchors).__name__}")
    if generator is not None:
        layers = tuple(generator.style_layers)
        if layers != anchors.layers or int(generator.num_ws) != anchors.num_ws:
            raise ValueError(
                f"the anchors ({len(anchors.layers)} style layers, num_ws={anchors.num_ws}) do not fit the generator "
                f"({len(layers)} style layers, num_ws={generator.num_ws})"
            )
        if generator_fingerprint(generator) != anchors.generator_hash:
            warnings.warn(f"{owner}: the anchors were computed for a generator with other weights",
                          RuntimeWarning, stacklevel=3)
    return anchors


def _padded(rows: Sequence[Tensor], width: int) -> Tensor:
    """Stack tensors of shape ``[c_l, ...]`` into ``[L, width, ...]`` with zero rows after ``c_l``."""
    out = rows[0].new_zeros((len(rows), width, *rows[0].shape[1:]))
    for k, row in enumerate(rows):
        out[k, : row.shape[0]] = row
    return out


class StyleAlignment(nn.Module):
    """Anchors and frozen style affines of one layer selection (see the module docs).

    Args:
        anchors: the generator's :class:`~lsap.metrics.Anchors`.
        layers: ``"lsap"`` (one layer per W+ entry) or ``"full"``.
        generator: the generator the anchors belong to; its affines are snapshotted so that
            codes can be scored. Without it, only per-layer style lists are accepted.
        anchor_dtype: storage dtype of the anchors (the affines keep the generator's).
        owner: name used in error messages (``"NSCD"``, ``"NSCDLoss"``).
    """

    anchors: Tensor  # [L, C_max]
    weight: Tensor | None  # [L, C_max, w_dim], equalised-lr gain folded in
    bias: Tensor | None  # [L, C_max], lr multiplier folded in

    def __init__(
        self,
        anchors: Anchors,
        layers: LayerSelection = "lsap",
        generator: nn.Module | None = None,
        anchor_dtype: torch.dtype = torch.float32,
        owner: str = "NSCD",
    ) -> None:
        super().__init__()
        self.owner = owner
        self.layer_selection: LayerSelection = layers
        self.layers: tuple[StyleLayer, ...] = anchors.layers_for(layers)
        self.num_ws, self.w_dim = anchors.num_ws, anchors.w_dim
        self.channels: tuple[int, ...] = tuple(layer.channels for layer in self.layers)
        self.w_indices: tuple[int, ...] = tuple(layer.w_index for layer in self.layers)
        width = max(self.channels)
        selected = [a.detach().to(anchor_dtype) for a in anchors.select(layers)]
        self.register_buffer("anchors", _padded(selected, width), persistent=False)
        weight = bias = None
        if generator is not None:
            weights, biases = zip(*(self._affine(generator, layer) for layer in self.layers))
            weight, bias = _padded(weights, width), _padded(biases, width)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def _affine(self, generator: nn.Module, layer: StyleLayer) -> tuple[Tensor, Tensor]:
        affine = generator.synthesis_network.get_submodule(layer.name).affine
        if getattr(affine, "activation", None) != "linear" or not hasattr(affine, "weight_gain"):
            raise TypeError(f"style affine of layer {layer.name} is not a linear EqualLinear: {affine!r}")
        with torch.no_grad():
            weight = (affine.weight * affine.weight_gain).detach().clone()
            bias = (affine.bias * affine.lr_mul).detach().clone()
        if weight.shape != (layer.channels, self.w_dim):
            raise ValueError(f"affine of layer {layer.name} has weight shape {tuple(weight.shape)}, "
                             f"expected [{layer.channels}, {self.w_dim}]")
        return weight, bias

    # ----- accessors ----------------------------------------------------------------------
    @property
    def has_affines(self) -> bool:
        return self.weight is not None

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def anchor_list(self) -> list[Tensor]:
        """The anchors mu_l, one ``[channels_l]`` view per layer."""
        return [self.anchors[k, :c] for k, c in enumerate(self.channels)]

    def active_mask(self, active_layers: int | None) -> list[bool]:
        """Which layers count: those fed by W+ entries ``0 .. active_layers - 1`` (all for
        ``None``). For ``layers="lsap"`` that is the first ``active_layers`` layers."""
        if active_layers is None:
            return [True] * len(self.layers)
        if isinstance(active_layers, bool) or not isinstance(active_layers, int):
            raise TypeError(f"active_layers must be an int or None, got {type(active_layers).__name__}")
        if not 1 <= active_layers <= self.num_ws:
            raise ValueError(f"active_layers must be between 1 and num_ws={self.num_ws}, got {active_layers}")
        return [w_index < active_layers for w_index in self.w_indices]

    # ----- styles -------------------------------------------------------------------------
    def styles(self, ws: Tensor, dtype: torch.dtype | None = None,
               active: Sequence[bool] | None = None) -> list[Tensor]:
        """Styles of W ``[B, w_dim]`` or W+ ``[B, num_ws, w_dim]`` codes, one ``[B, channels]``
        tensor per layer (only those where ``active`` is true, when given), computed in
        ``dtype`` (default: the codes' dtype). Differentiable with respect to the codes;
        layers left out are not computed, so their codes get no gradient."""
        if not self.has_affines:
            raise ValueError(
                f"{self.owner} was built from anchors only, so it cannot turn codes into styles: build it with "
                f"{self.owner}(generator=G, ...) or pass style vectors (e.g. G.lsap_styles(ws))"
            )
        ws = check_ws(ws, self.num_ws, self.w_dim)
        active = self._check_active(active)
        dtype = dtype or ws.dtype
        ws = ws.to(device=self.weight.device, dtype=dtype)
        with torch.autocast(device_type=ws.device.type, enabled=False):
            return [F.linear(ws[:, self.w_indices[k]], self.weight[k, :c].to(dtype), self.bias[k, :c].to(dtype))
                    for k, c in enumerate(self.channels) if active[k]]

    def _check_active(self, active: Sequence[bool] | None) -> Sequence[bool]:
        if active is None:
            return [True] * len(self.layers)
        if len(active) != len(self.layers):
            raise ValueError(f"active must hold one flag per layer ({len(self.layers)}), got {len(active)}")
        return active

    def _active_styles(self, inputs: Tensor | Sequence[Tensor], dtype: torch.dtype,
                       active: Sequence[bool]) -> list[Tensor]:
        if isinstance(inputs, Tensor):
            return self.styles(inputs, dtype=dtype, active=active)
        check_styles(inputs, self.layers)
        return [s.to(device=self.anchors.device, dtype=dtype) for s, on in zip(inputs, active) if on]

    # ----- per-layer alignment ------------------------------------------------------------
    def unit_dots(self, inputs: Tensor | Sequence[Tensor], dtype: torch.dtype,
                  active: Sequence[bool] | None = None) -> Tensor:
        """<s_l / ||s_l||, mu_l> per image and active layer, ``[B, L_active]``, in ``dtype``.

        ``inputs``: W / W+ codes (needs the affines) or a list of per-layer styles."""
        active = self._check_active(active)
        eps = torch.finfo(dtype).tiny
        styles = self._active_styles(inputs, dtype, active)
        anchors = [a for a, on in zip(self.anchor_list(), active) if on]
        with torch.autocast(device_type=self.anchors.device.type, enabled=False):
            columns = [(s / s.norm(dim=1, keepdim=True).clamp_min(eps)) @ a.to(dtype) for s, a in zip(styles, anchors)]
            return torch.stack(columns, dim=1)

    def cosines(self, inputs: Tensor | Sequence[Tensor], dtype: torch.dtype,
                active: Sequence[bool] | None = None) -> Tensor:
        """cos(s_l, mu_l) per image and active layer, ``[B, L_active]``, in ``dtype``."""
        active = self._check_active(active)
        eps = torch.finfo(dtype).tiny
        dots = self.unit_dots(inputs, dtype, active)
        with torch.autocast(device_type=dots.device.type, enabled=False):
            norms = self.anchors.to(dtype).norm(dim=1)[torch.tensor(active, device=dots.device)]
            return dots / norms.clamp_min(eps)

    def distances(self, inputs: Tensor | Sequence[Tensor], dtype: torch.dtype = torch.float64) -> Tensor:
        """Per-image, per-layer NSCD ``d_l = 1 - cos(s_l, mu_l)``, ``[B, L]``, in ``dtype``."""
        return 1 - self.cosines(inputs, dtype)

    def extra_repr(self) -> str:
        return (f"layers={self.layer_selection!r} ({len(self.layers)}), num_ws={self.num_ws}, w_dim={self.w_dim}, "
                f"affines={self.has_affines}")
