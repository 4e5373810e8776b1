"""Pixel reconstruction loss. The box/mask helpers it shares with the perceptual distances
live in :mod:`lsap.images` (re-exported here for existing imports)."""

from __future__ import annotations

from torch import Tensor, nn

from lsap.images import (
    Box,
    Reduction,
    apply_box,
    check_image_pair,
    check_reduction,
    masked_spatial_mean,
    prepare_mask,
    reduce_per_sample,
    to_resolution,
    validate_box,
)

__all__ = [
    "Box",
    "L2Loss",
    "Reduction",
    "apply_box",
    "check_image_pair",
    "check_reduction",
    "masked_spatial_mean",
    "prepare_mask",
    "reduce_per_sample",
    "to_resolution",
    "validate_box",
]


class L2Loss(nn.Module):
    """Mean squared error between two image batches.

    Args:
        reduction: ``"mean"`` returns a scalar (mean over the batch of the per-sample MSE);
            ``"none"`` returns the per-sample MSE, shape [B].
        box: optional (top, bottom, left, right) pixel rectangle the loss is restricted to,
            e.g. ``(32, 224, 0, 256)`` for the content rows of 256x256 padded car images.
    """

    def __init__(self, reduction: Reduction = "mean", box: Box | None = None) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction: Reduction = reduction
        self.box = validate_box(box)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return the (masked) MSE; ``mask`` is a per-pixel weight map, see :func:`prepare_mask`."""
        check_image_pair(pred, target)
        pred, target = apply_box(pred, self.box), apply_box(target, self.box)
        weights = prepare_mask(mask, pred, self.box)
        per_sample = masked_spatial_mean((pred - target).square(), weights)
        return reduce_per_sample(per_sample, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, box={self.box}"
