"""Image batches in [-1, 1]: conversion to and from uint8, resizing, boxes and masks.

lsap's images are float tensors ``[B, C, H, W]`` in [-1, 1]; files and FID features use uint8
in [0, 255]. A *box* restricts a distance to a fixed rectangle of the image (for example the
content area of padded 512x384 car images). A *mask* is a per-pixel weight map given at call
time. Both can be combined: the box crops images and mask, then the mask weights what is left.
Per-sample values ``[B]`` are reduced by a *reduction* (``"mean"`` or ``"none"``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Box",
    "Reduction",
    "apply_box",
    "check_image_pair",
    "check_reduction",
    "from_uint8",
    "masked_spatial_mean",
    "prepare_mask",
    "quantize_uint8",
    "reduce_per_sample",
    "to_resolution",
    "to_uint8",
    "validate_box",
]


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] images -> uint8 in [0, 255] (clamped, rounded to the nearest level; computed in
    float64 for float64 input, else float32)."""
    values = images.detach()
    if values.dtype != torch.float64:
        values = values.float()
    return ((values.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 (or any tensor of values in [0, 255]) -> ``dtype`` in [-1, 1]; the inverse of
    :func:`to_uint8` on its 256 levels."""
    return images.to(dtype) / 127.5 - 1.0


def quantize_uint8(images: Tensor) -> Tensor:
    """Round [-1, 1] images to the 256 levels of an 8-bit file and map them back to [-1, 1]
    (same dtype and device; what a reconstruction becomes once saved as a PNG)."""
    dtype = images.dtype if images.dtype == torch.float64 else torch.float32
    return from_uint8(to_uint8(images), dtype).to(images.dtype)


# (top, bottom, left, right): rows top:bottom and columns left:right, half-open like slices.
Box = tuple[int, int, int, int]

Reduction = Literal["mean", "none"]


def check_image_pair(pred: Tensor, target: Tensor) -> None:
    """Raise a ValueError unless both inputs are image batches [B, C, H, W] of equal shape."""
    if pred.ndim != 4:
        raise ValueError(f"expected images of shape [B, C, H, W], got pred of shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def validate_box(box: Box | None) -> Box | None:
    """Check a box's internal consistency (its fit to an image is checked at call time)."""
    if box is None:
        return None
    if len(box) != 4:
        raise ValueError(f"box must be (top, bottom, left, right), got {box!r}")
    top, bottom, left, right = (int(v) for v in box)
    if not (0 <= top < bottom and 0 <= left < right):
        raise ValueError(
            "box (top, bottom, left, right) must satisfy 0 <= top < bottom and 0 <= left < right, "
            f"got {box!r}"
        )
    return (top, bottom, left, right)


def apply_box(images: Tensor, box: Box | None) -> Tensor:
    """Crop the last two dimensions of ``images`` to ``box``; ``None`` returns the input."""
    if box is None:
        return images
    top, bottom, left, right = box
    height, width = images.shape[-2:]
    if bottom > height or right > width:
        raise ValueError(
            f"box (top, bottom, left, right)={box} does not fit images of size {height}x{width}"
        )
    return images[..., top:bottom, left:right]


def prepare_mask(mask: Tensor | None, images: Tensor, box: Box | None) -> Tensor | None:
    """Bring a mask to shape [B or 1, 1, h, w] matching ``images`` (already cropped to ``box``).

    Accepted mask shapes, all at the *uncropped* image size: [H, W], [1 or B, H, W] and
    [1 or B, 1, H, W]. Values are non-negative weights (typically 0/1).
    """
    if mask is None:
        return None
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    elif mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(
            f"expected mask of shape [H, W], [B, H, W] or [B, 1, H, W], got {tuple(mask.shape)}"
        )
    mask = apply_box(mask, box)
    batch = images.shape[0]
    if mask.shape[0] not in (1, batch) or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} (after the box crop) does not match images of shape "
            f"{tuple(images.shape)}: expected [1 or {batch}, 1, {images.shape[-2]}, {images.shape[-1]}]"
        )
    return mask.to(dtype=images.dtype)


def masked_spatial_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Per-sample mean of ``values`` [B, C, h, w] over C, h, w, weighted by ``mask``.

    The mask is resized to ``values``' resolution by area averaging, so it can come at image
    resolution while ``values`` lives on a coarser feature grid.
    """
    if mask is None:
        return values.mean(dim=(1, 2, 3))
    if mask.shape[-2:] != values.shape[-2:]:
        mask = F.adaptive_avg_pool2d(mask, values.shape[-2:])
    weights = mask.expand(values.shape[0], 1, *values.shape[-2:])
    weighted_sum = (values * weights).sum(dim=(1, 2, 3))
    # An all-zero mask yields a loss of 0 for that sample rather than a division by zero.
    total_weight = (weights.sum(dim=(1, 2, 3)) * values.shape[1]).clamp_min(torch.finfo(values.dtype).tiny)
    return weighted_sum / total_weight


def check_reduction(reduction: str) -> Reduction:
    """``reduction`` if it is one lsap's losses know; a ``ValueError`` otherwise."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def reduce_per_sample(values: Tensor, reduction: Reduction) -> Tensor:
    """Apply ``reduction`` to a vector of per-sample values of shape [B]."""
    return values.mean() if check_reduction(reduction) == "mean" else values



def to_resolution(images: Tensor, resolution: int) -> Tensor:
    """Images (or masks) ``[B, C, H, W]`` resized to ``resolution``: area averaging when
    shrinking (what the losses of generator output use), bilinear when growing."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    if images.shape[-1] > resolution:
        return F.interpolate(images, size=(resolution, resolution), mode="area")
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
