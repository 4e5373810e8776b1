"""Latent Editing Consistency (LEC), as e4e defines it.

For a batch of real images x, an encoder E (returning full W+ codes, ``latent_avg``
included), a generator G, an edit and its inverse:

    codes  = E(x)
    image  = pool_256(G(edit(codes)))          (constant noise)
    codes2 = E(image)
    inv    = inverse_edit(codes2)
    d_i    = || codes_i - inv_i ||_2            over the whole [num_ws, w_dim] code

The batch value is the mean of d_i over the batch. LEC is the mean of the batch values
that lie between their 1st and 99th percentiles (e4e: batch 8, drop_last, age x(+3) and
its inverse x(-3)). Lower is better: an encoder whose codes stay where an edit puts them
inverts edited images consistently.

The edit is any callable ``ws -> ws`` (an InterFaceGAN direction at strength +-3 is the
default of ``lsap evaluate``); this module does not depend on how edits are made.

For optimisation-based results there is no encoder; the *edit-and-reinvert* variant
(``lsap evaluate --reinvert`` reports it as ``lec_reinvert``) starts from the stored codes
and replaces the second E by an inversion run on the edited images
(:meth:`LEC.update_codes`, :func:`lec_distances_from_codes`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["LEC", "lec_distances", "lec_distances_from_codes", "trimmed_mean"]

Codes = Callable[[Tensor], Tensor]
LEC_IMAGE_SIZE = 256


def pool_to(images: Tensor, size: int = LEC_IMAGE_SIZE) -> Tensor:
    """e4e's face pool: adaptive average pooling to ``size`` (identity when already there)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.adaptive_avg_pool2d(images, (size, size))


@torch.no_grad()
def lec_distances(images: Tensor, encode: Codes, decode: Codes, edit: Codes, inverse_edit: Codes,
                  image_size: int | None = LEC_IMAGE_SIZE) -> Tensor:
    """Per-image LEC distances ``[B]`` (float64) of one batch.

    Args:
        images: real images ``[B, 3, H, W]`` in [-1, 1].
        encode: images -> W+ codes ``[B, num_ws, w_dim]`` (``latent_avg`` included).
        decode: W+ codes -> images (constant noise).
        edit, inverse_edit: the edit and its inverse on W+ codes.
        image_size: decoded images are pooled to this size before re-encoding (None: as is).
    """
    return lec_distances_from_codes(encode(images), encode, decode, edit, inverse_edit, image_size)


@torch.no_grad()
def lec_distances_from_codes(codes: Tensor, reinvert: Codes, decode: Codes, edit: Codes, inverse_edit: Codes,
                             image_size: int | None = LEC_IMAGE_SIZE) -> Tensor:
    """Per-image distances ``[B]`` (float64) between ``codes`` and the inverse-edited
    re-inversion of their edited images: ``|| codes - inverse_edit(reinvert(decode(edit(codes)))) ||``.
    ``reinvert`` may optimise (it runs under ``torch.enable_grad`` if it needs to)."""
    decoded = decode(edit(codes))
    if image_size is not None:
        decoded = pool_to(decoded, image_size)
    inverted = inverse_edit(reinvert(decoded))
    return (codes.double() - inverted.double()).flatten(1).norm(dim=1)


def kept_by_trim(values: Tensor, low: float = 0.01, high: float = 0.99) -> Tensor:
    """The values between their ``low`` and ``high`` quantiles (inclusive; numpy's linear
    interpolation, as ``np.percentile``). With two distinct values nothing lies between;
    then all are kept (``summary()`` reports how many were)."""
    values = values.double().reshape(-1)
    if values.numel() == 0:
        return values
    lower, upper = torch.quantile(values, torch.tensor([low, high], dtype=torch.float64, device=values.device))
    kept = values[(values >= lower) & (values <= upper)]
    return kept if kept.numel() else values


def trimmed_mean(values: Tensor, low: float = 0.01, high: float = 0.99) -> Tensor:
    """Mean of :func:`kept_by_trim` (NaN for no values)."""
    kept = kept_by_trim(values, low, high)
    return kept.mean() if kept.numel() else torch.tensor(float("nan"), dtype=torch.float64)


class LEC(Metric):
    """Latent Editing Consistency (lower is better), e4e's definition (see module docstring).

    ``update(images)`` runs one batch; each call is one e4e batch. Batch values are kept
    (``dist_reduce_fx="cat"``) since the percentile trim needs all of them; the trim does
    not depend on their order, so a distributed run equals one process given the same
    batches. Per-image sums are kept too (``per_image_mean``).

    Args:
        encode: images -> W+ codes (``latent_avg`` included), e.g. an lsap encoder.
        decode: W+ codes -> images, e.g. ``generator.synthesis`` with constant noise.
        edit: the edit, ``ws -> ws``.
        inverse_edit: its inverse, ``ws -> ws``.
        image_size: size the decoded images are pooled to before re-encoding (e4e: 256).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    batch_values: list[Tensor]
    image_total: Tensor
    num_images: Tensor

    def __init__(self, encode: Codes, decode: Codes, edit: Codes, inverse_edit: Codes,
                 image_size: int | None = LEC_IMAGE_SIZE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.encode, self.decode, self.edit, self.inverse_edit = encode, decode, edit, inverse_edit
        self.image_size = image_size
        self.add_state("batch_values", [], dist_reduce_fx="cat")
        self.add_state("image_total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def scores(self, images: Tensor) -> Tensor:
        return lec_distances(images, self.encode, self.decode, self.edit, self.inverse_edit, self.image_size)

    def accumulate(self, distances: Tensor) -> None:
        distances = distances.detach().double().to(self.image_total.device).reshape(-1)
        self.batch_values.append(distances.mean().reshape(1))
        self.image_total += distances.sum()
        self.num_images += distances.numel()

    def update(self, images: Tensor) -> None:
        self.accumulate(self.scores(images))

    def update_codes(self, codes: Tensor) -> None:
        """One batch of the edit-and-reinvert variant: ``codes`` are the stored inversions and
        ``encode`` re-inverts the edited images."""
        self.accumulate(lec_distances_from_codes(codes, self.encode, self.decode, self.edit, self.inverse_edit,
                                                 self.image_size))

    def compute(self) -> Tensor:
        return trimmed_mean(dim_zero_cat(self.batch_values))

    def summary(self) -> dict[str, float | int]:
        with self.sync_context(should_sync=self.sync_on_compute):
            values = dim_zero_cat(self.batch_values) if len(self.batch_values) else torch.zeros(0)
            result = {"mean": float(trimmed_mean(values)),
                      "std": float(values.std(unbiased=False)) if values.numel() else float("nan"),
                      "count": int(self.num_images), "num_batches": int(values.numel()),
                      "num_batches_kept": int(kept_by_trim(values).numel()),
                      "per_image_mean": float(self.image_total / self.num_images) if self.num_images else float("nan")}
        return result
