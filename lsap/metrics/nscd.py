"""NSCD: normalised style-space cosine distance to the S^N anchors.

For a code with style vectors s_l (one per layer of the chosen selection) and the anchors
mu_l of the generator (:mod:`lsap.metrics.anchors`), the per-layer distance is

    d_l = 1 - cos(s_l, mu_l),

and NSCD is the mean of d_l over layers, averaged over images. Lower is better aligned
with the generator's synthetic distribution. Scaling any s_l by a > 0 leaves it unchanged.

Holding the generator. The metric needs only the affine (modulation) transforms w -> s_l
of the selected layers. It keeps a frozen *snapshot* of them (:class:`StyleAffines`) as
non-persistent buffers, never the generator module itself, so that

* a user's LightningModule that owns the generator does not register it twice, and its
  checkpoints gain no entries from the metric (anchors are non-persistent buffers too;
  they are cheap to recompute and normally come from the on-disk cache);
* ``metric.to(device)`` moves everything the metric uses;
* the styles and the anchors always come from the same weights, even if the generator is
  fine-tuned later (PTI): NSCD measures codes against the generator it was built from.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from lsap.metrics.anchors import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_NUM_SAMPLES,
    Anchors,
    LayerSelection,
    compute_anchors,
    generator_fingerprint,
)
from lsap.model.generator import StyleLayer
from lsap.torch_utils import module_device

__all__ = ["NSCD", "StyleAffines", "check_styles", "check_ws", "nscd_distances", "style_cosines"]


def check_ws(ws: Tensor, num_ws: int, w_dim: int) -> Tensor:
    """Return W+ ``[B, num_ws, w_dim]`` for W ``[B, w_dim]`` (broadcast) or W+ codes; raise a
    ``ValueError`` naming the expected and actual shapes otherwise."""
    if ws.ndim == 2 and ws.shape[1] == w_dim:
        return ws[:, None, :].expand(-1, num_ws, -1)
    if ws.ndim == 3 and ws.shape[1:] == (num_ws, w_dim):
        return ws
    if ws.ndim == 3 and ws.shape[2] == w_dim:
        raise ValueError(
            f"codes have num_ws={ws.shape[1]} but the anchors belong to a generator with num_ws={num_ws}: "
            f"expected W [B, {w_dim}] or W+ [B, {num_ws}, {w_dim}], got {tuple(ws.shape)}"
        )
    raise ValueError(f"codes must be W [B, {w_dim}] or W+ [B, {num_ws}, {w_dim}], got {tuple(ws.shape)}")


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


def style_cosines(styles: Sequence[Tensor], anchors: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    """cos(s_l, mu_l) per image and layer, shape ``[B, L]``, computed in ``dtype``."""
    eps = torch.finfo(dtype).tiny
    columns = []
    for style, anchor in zip(styles, anchors):
        style, anchor = style.to(dtype), anchor.to(device=style.device, dtype=dtype)
        dots = style @ anchor
        columns.append(dots / (style.norm(dim=1).clamp_min(eps) * anchor.norm().clamp_min(eps)))
    return torch.stack(columns, dim=1)


def nscd_distances(styles: Sequence[Tensor], anchors: Sequence[Tensor], dtype: torch.dtype = torch.float64) -> Tensor:
    """Per-image, per-layer NSCD ``d_l = 1 - cos(s_l, mu_l)``, shape ``[B, L]``, in ``dtype``."""
    if len(styles) != len(anchors):
        raise ValueError(f"expected {len(anchors)} style tensors (one per anchor), got {len(styles)}")
    return 1 - style_cosines(styles, anchors, dtype)


class StyleAffines(nn.Module):
    """Frozen snapshot of a generator's affine transforms w -> s_l for some style layers.

    Weights and biases (with the equalised-learning-rate gains folded in) are
    non-persistent buffers: they follow ``.to(device)`` but never appear in a state dict.
    ``forward`` is differentiable with respect to the codes.

    Args:
        generator: the :class:`~lsap.model.Generator` to read the affines from.
        layer_indices: indices into ``generator.style_layers`` to keep, in output order.
    """

    def __init__(self, generator: nn.Module, layer_indices: Sequence[int]) -> None:
        super().__init__()
        all_layers: Sequence[StyleLayer] = generator.style_layers
        self.layers: tuple[StyleLayer, ...] = tuple(all_layers[i] for i in layer_indices)
        self.num_ws, self.w_dim = int(generator.num_ws), int(generator.w_dim)
        for k, layer in enumerate(self.layers):
            affine = generator.synthesis_network.get_submodule(layer.name).affine
            if getattr(affine, "activation", None) != "linear" or not hasattr(affine, "weight_gain"):
                raise TypeError(f"style affine of layer {layer.name} is not a linear EqualLinear: {affine!r}")
            with torch.no_grad():
                weight = (affine.weight * affine.weight_gain).detach().clone()
                bias = (affine.bias * affine.lr_mul).detach().clone()
            if weight.shape != (layer.channels, self.w_dim):
                raise ValueError(
                    f"affine of layer {layer.name} has weight shape {tuple(weight.shape)}, "
                    f"expected [{layer.channels}, {self.w_dim}]"
                )
            self.register_buffer(f"weight_{k}", weight, persistent=False)
            self.register_buffer(f"bias_{k}", bias, persistent=False)

    def forward(self, ws: Tensor, dtype: torch.dtype | None = None,
                active: Sequence[bool] | None = None) -> list[Tensor]:
        """Styles of W ``[B, w_dim]`` or W+ ``[B, num_ws, w_dim]`` codes, one ``[B, channels]``
        tensor per kept layer (only those where ``active`` is true, when given); computed in
        ``dtype`` (default: the codes' dtype)."""
        ws = check_ws(ws, self.num_ws, self.w_dim)
        if active is not None and len(active) != len(self.layers):
            raise ValueError(f"active must hold one flag per layer ({len(self.layers)}), got {len(active)}")
        dtype = dtype or ws.dtype
        ws = ws.to(dtype)
        out = []
        # Mixed precision would silently run these in half precision; NSCD asks for `dtype`.
        with torch.autocast(device_type=ws.device.type, enabled=False):
            for k, layer in enumerate(self.layers):
                if active is not None and not active[k]:
                    continue
                weight, bias = getattr(self, f"weight_{k}"), getattr(self, f"bias_{k}")
                out.append(F.linear(ws[:, layer.w_index], weight.to(dtype), bias.to(dtype)))
        return out

    def extra_repr(self) -> str:
        return f"layers={len(self.layers)}, num_ws={self.num_ws}, w_dim={self.w_dim}"


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


class NSCD(Metric):
    """Normalised style-space cosine distance (lower is better).

    ``compute()`` returns the mean NSCD: the mean over layers of ``d_l = 1 - cos(s_l, mu_l)``,
    averaged over every image seen. ``per_layer()`` returns the per-layer vector
    ``[num_layers]`` (each entry averaged over images; its mean is ``compute()``), in the
    order of ``layer_names``: W+ order for ``layers="lsap"``, execution order for
    ``"full"``.

    Args:
        generator: the generator the codes belong to. Needed to score W / W+ codes, and to
            compute (or read from the cache) the anchors when ``anchors`` is not given.
            Only a frozen snapshot of its style affines is kept (see the module docs); the
            metric starts on the generator's device and follows ``.to()`` afterwards.
        anchors: precomputed :class:`Anchors`. With anchors only, ``update`` accepts style
            vectors but not codes.
        num_samples, seed, cache_dir, batch_size: anchor settings, see
            :func:`~lsap.metrics.compute_anchors` (ignored when ``anchors`` is given).
        layers: ``"lsap"`` (one layer per W+ entry, the paper's S space) or ``"full"``.
        kwargs: :class:`torchmetrics.Metric` options (``sync_on_compute``, ...).

    ``update(inputs)`` takes codes W ``[B, w_dim]`` / W+ ``[B, num_ws, w_dim]`` or a list of
    style tensors ``[B, channels_l]``, one per selected layer. Inputs of any floating dtype
    and device are accepted; distances are computed and summed in the dtype of the
    states (float64; call ``metric.set_dtype(torch.float32)`` on devices without float64,
    such as Apple MPS). States are a per-layer sum of distances and an image count, both
    reduced by sum, so under DDP the result equals the single-process value on the whole
    data set. Calling the metric (``forward``) returns the batch value, differentiable
    with respect to the inputs.
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    distance_sum: Tensor
    num_images: Tensor

    def __init__(
        self,
        generator: nn.Module | None = None,
        anchors: Anchors | None = None,
        num_samples: int = DEFAULT_NUM_SAMPLES,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        layers: LayerSelection = "lsap",
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        anchors = resolve_anchors(generator, anchors, num_samples, seed, cache_dir, batch_size, "NSCD")
        indices = anchors.indices(layers)
        self.layer_selection: LayerSelection = layers
        self.layers: tuple[StyleLayer, ...] = anchors.layers_for(layers)
        self.num_ws, self.w_dim = anchors.num_ws, anchors.w_dim
        self.anchor_settings = {"num_samples": anchors.num_samples, "seed": anchors.seed,
                                "generator_hash": anchors.generator_hash}
        for k, anchor in enumerate(anchors.select(layers)):
            self.register_buffer(f"anchor_{k}", anchor.detach().clone().to(torch.float64), persistent=False)
        self.affines = StyleAffines(generator, indices) if generator is not None else None
        num_layers = len(indices)
        self.add_state("distance_sum", default=torch.zeros(num_layers, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        if generator is not None:
            self.to(module_device(generator))

    @property
    def layer_names(self) -> list[str]:
        """Names of the scored layers, in ``per_layer()`` order."""
        return [layer.name for layer in self.layers]

    @property
    def anchor_tensors(self) -> list[Tensor]:
        """The anchors mu_l of the scored layers (buffers, on the metric's device)."""
        return [getattr(self, f"anchor_{k}") for k in range(len(self.layers))]

    def _compute_dtype(self) -> torch.dtype:
        return torch.float64 if self.distance_sum.dtype == torch.float64 else torch.float32

    def update(self, inputs: Tensor | Sequence[Tensor]) -> None:
        """Add a batch: W / W+ codes (needs the generator) or a list of per-layer styles."""
        dtype = self._compute_dtype()
        if isinstance(inputs, Tensor):
            if self.affines is None:
                raise ValueError(
                    "NSCD was built from anchors only, so it cannot turn codes into styles: build it with "
                    "NSCD(generator=G, ...) or pass style vectors (e.g. G.lsap_styles(ws))"
                )
            styles = self.affines(inputs.to(self.distance_sum.device), dtype=dtype)
        else:
            check_styles(inputs, self.layers)
            styles = [s.to(self.distance_sum.device) for s in inputs]
        distances = nscd_distances(styles, self.anchor_tensors, dtype)
        self.distance_sum = self.distance_sum + distances.sum(dim=0).to(self.distance_sum.dtype)
        self.num_images = self.num_images + distances.shape[0]

    def compute(self) -> Tensor:
        """Mean NSCD over layers and images (NaN before any update)."""
        return (self.distance_sum / self.num_images).mean()

    def per_layer(self) -> Tensor:
        """Per-layer NSCD ``[num_layers]`` averaged over images, synchronised across
        processes like ``compute()``; order as in ``layer_names``."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync,
                               should_unsync=self._should_unsync):
            return (self.distance_sum / self.num_images).clone()

    def extra_repr(self) -> str:
        return (f"layers={self.layer_selection!r} ({len(self.layers)}), num_ws={self.num_ws}, "
                f"num_samples={self.anchor_settings['num_samples']}, seed={self.anchor_settings['seed']}")
