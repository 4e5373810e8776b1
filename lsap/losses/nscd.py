"""NSCD loss: pulls codes towards the generator's synthetic distribution in S^N.

Official form (the LSAP paper's):

    L = sum_{l active} ( - mean_batch <s_l / ||s_l||, mu_l> )

summed over layers without weights. Since mu_l is not unit length this equals
``- sum_l ||mu_l|| cos(s_l, mu_l)``: the cosine distance with each layer scaled by how
concentrated the synthetic distribution is on it. ``form="cosine"`` gives the plain
``sum_l mean_batch (1 - cos(s_l, mu_l))`` instead. Both need only the style affines, never
the synthesis network.
"""

from __future__ import annotations

import os
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from lsap.losses.reconstruction import Reduction, check_reduction, reduce_per_sample
from lsap.style.anchors import DEFAULT_BATCH_SIZE, DEFAULT_NUM_SAMPLES, Anchors, LayerSelection
from lsap.style.alignment import StyleAlignment, check_styles, resolve_anchors
from lsap.model.generator import StyleLayer
from lsap.torch_utils import module_device

__all__ = ["NSCDForm", "NSCDLoss"]

NSCDForm = Literal["official", "cosine"]


class NSCDLoss(nn.Module):
    """NSCD loss for encoder training (LSAP_E) and per-image optimisation (LSAP_O).

    Args:
        generator: the generator the codes belong to: needed to take W / W+ codes, and to
            compute (or read from the cache) the anchors when ``anchors`` is not given. Only a
            frozen snapshot of its style affines is kept, as non-persistent buffers, so a
            module owning both the generator and this loss stores the generator once. The
            loss starts on the generator's device and follows ``.to()`` afterwards.
        anchors: precomputed :class:`~lsap.style.Anchors`; with anchors only, the loss
            takes style vectors.
        form: ``"official"`` (``-sum_l mean_batch <s_hat_l, mu_l>``) or ``"cosine"``
            (``sum_l mean_batch (1 - cos(s_l, mu_l))``).
        reduction: ``"mean"`` over the batch, or ``"none"`` for one value per sample
            (``[B]``; each sample's value depends on that sample only, as LSAP_O needs).
        layers: ``"lsap"`` (one layer per W+ entry, the paper's S space) or ``"full"``.
        num_samples, seed, cache_dir, batch_size: anchor settings, see
            :func:`~lsap.style.compute_anchors` (ignored when ``anchors`` is given).

    Anchors and the affine snapshot live in a
    :class:`~lsap.style.StyleAlignment` (shared with the NSCD metric) as
    **non-persistent** buffers: they follow
    ``.to(device)`` but are not written into checkpoints, because they are a deterministic
    function of the generator and the anchor settings (and cached on disk); a checkpoint
    therefore never carries stale anchors. Anchors are stored in float32 and the affines in
    the generator's dtype; the loss is computed in the wider of the input dtype and float32.

    Under DDP the buffers are identical on every rank (the anchors are deterministic) and
    are part of what ``broadcast_buffers`` sends (about 12 MB of affines at 1024 px).
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        anchors: Anchors | None = None,
        form: NSCDForm = "official",
        reduction: Reduction = "mean",
        layers: LayerSelection = "lsap",
        num_samples: int = DEFAULT_NUM_SAMPLES,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        super().__init__()
        if form not in ("official", "cosine"):
            raise ValueError(f"form must be 'official' or 'cosine', got {form!r}")
        check_reduction(reduction)
        anchors = resolve_anchors(generator, anchors, num_samples, seed, cache_dir, batch_size, "NSCDLoss")
        self.form: NSCDForm = form
        self.reduction: Reduction = reduction
        self.alignment = StyleAlignment(anchors, layers, generator, anchor_dtype=torch.float32, owner="NSCDLoss")
        if generator is not None:
            self.to(module_device(generator))

    @property
    def layers(self) -> tuple[StyleLayer, ...]:
        return self.alignment.layers

    def forward(self, inputs: Tensor | Sequence[Tensor], active_layers: int | None = None) -> Tensor:
        """Loss of W ``[B, w_dim]`` / W+ ``[B, num_ws, w_dim]`` codes (needs the generator) or
        of a list of per-layer styles ``[B, channels_l]`` (the selected layers, in order).

        ``active_layers``: only layers fed by W+ entries ``0 .. active_layers - 1`` count (e4e
        progressive stage ``s`` means ``active_layers = s + 1``); ``None`` means all.
        Returns a scalar (``reduction="mean"``) or ``[B]`` (``"none"``).
        """
        mask = self.alignment.active_mask(active_layers)
        if not isinstance(inputs, Tensor):
            check_styles(inputs, self.layers)
        first = inputs if isinstance(inputs, Tensor) else inputs[0]
        dtype = torch.promote_types(first.dtype, torch.float32)
        if self.form == "official":
            per_sample = -self.alignment.unit_dots(inputs, dtype, active=mask).sum(dim=1)
        else:
            per_sample = (1 - self.alignment.cosines(inputs, dtype, active=mask)).sum(dim=1)
        return reduce_per_sample(per_sample, self.reduction)

    def extra_repr(self) -> str:
        return (f"form={self.form!r}, reduction={self.reduction!r}, layers={self.alignment.layer_selection!r} "
                f"({len(self.layers)}), num_ws={self.alignment.num_ws}")
