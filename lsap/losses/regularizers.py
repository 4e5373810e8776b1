"""Latent regularisers: e4e's delta regulariser and the StyleGAN2 projector's noise regulariser.

Both work per sample: with ``reduction="none"`` they return one value per batch element, and the
value of one element never depends on another (LSAP_O optimises B independent images at once).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.losses.reconstruction import Reduction, check_reduction, reduce_per_sample

__all__ = ["DeltaRegularizer", "NoiseRegularizer", "normalize_noise_"]


class DeltaRegularizer(nn.Module):
    """e4e's delta regulariser: sum over active W+ entries i >= 1 of ||w_i - w_0||_2.

    It keeps the per-layer offsets of an encoder's W+ code small, so the code stays close to W.

    Args:
        reduction: ``"mean"`` averages the per-sample sums over the batch (e4e's form);
            ``"none"`` returns them, shape [B].
    """

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction: Reduction = reduction

    def forward(self, ws: Tensor, active: int | None = None) -> Tensor:
        """Compute the regulariser.

        Args:
            ws: W+ codes, shape [B, num_ws, w_dim].
            active: number of W+ entries currently trained, counting w_0 (``None``: all of them).
                Entries ``active..num_ws-1`` are ignored. An e4e progressive stage ``s`` means
                ``active = s + 1``; with ``active = 1`` the regulariser is 0.
        """
        if ws.ndim != 3:
            raise ValueError(f"expected ws of shape [B, num_ws, w_dim], got {tuple(ws.shape)}")
        num_ws = ws.shape[1]
        if active is None:
            active = num_ws
        if not 1 <= active <= num_ws:
            raise ValueError(f"active must be between 1 and num_ws={num_ws}, got {active}")
        deltas = ws[:, 1:active] - ws[:, :1]
        per_sample = torch.linalg.vector_norm(deltas, ord=2, dim=2).sum(dim=1)
        return reduce_per_sample(per_sample, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def _as_batched_map(noise: Tensor) -> Tensor:
    """View a noise map as [B, C, H, W]; an unbatched [H, W] map becomes [1, 1, H, W]."""
    if noise.ndim == 2:
        return noise[None, None]
    if noise.ndim == 4:
        return noise
    raise ValueError(f"expected a noise map of shape [H, W] or [B, C, H, W], got {tuple(noise.shape)}")


class NoiseRegularizer(nn.Module):
    """Multi-scale autocorrelation penalty that keeps optimised noise maps noise-like.

    For each map and each scale (the map, then repeatedly 2x average-pooled until a side is at
    most 8 pixels) it adds the squared mean of the map times itself shifted by one pixel, along
    each spatial axis. White noise has near-zero autocorrelation; structure leaking into the noise
    raises it. Shifts wrap around (circular), as in the StyleGAN2 projector.

    Noise maps may be unbatched [H, W] (treated as a batch of one) or batched [B, C, H, W]; means
    are taken per sample so samples are independent. All maps must share the same batch size.

    Args:
        reduction: ``"mean"`` averages the per-sample sums over the batch; ``"none"`` returns them,
            shape [B].
    """

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction: Reduction = reduction

    def forward(self, noises: Sequence[Tensor]) -> Tensor:
        if len(noises) == 0:
            raise ValueError("NoiseRegularizer needs at least one noise map")
        maps = [_as_batched_map(noise) for noise in noises]
        batch_sizes = {noise.shape[0] for noise in maps}
        if len(batch_sizes) != 1:
            raise ValueError(
                "all noise maps must have the same batch size, got shapes "
                f"{[tuple(noise.shape) for noise in noises]}"
            )
        per_sample = maps[0].new_zeros(maps[0].shape[0])
        for noise in maps:
            while True:
                per_sample = per_sample + (noise * noise.roll(shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
                per_sample = per_sample + (noise * noise.roll(shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
                if min(noise.shape[-2:]) <= 8:
                    break
                noise = F.avg_pool2d(noise, kernel_size=2)
        return reduce_per_sample(per_sample, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@torch.no_grad()
def normalize_noise_(noises: Sequence[Tensor]) -> None:
    """Renormalise noise maps in place to mean 0 and standard deviation 1.

    Batched maps [B, C, H, W] are normalised per sample; unbatched [H, W] maps as a whole. The
    standard deviation is the root mean square after centring (population form).
    """
    for noise in noises:
        batched = _as_batched_map(noise)
        dims = (1, 2, 3)
        batched.sub_(batched.mean(dim=dims, keepdim=True))
        batched.mul_(batched.square().mean(dim=dims, keepdim=True).rsqrt())
