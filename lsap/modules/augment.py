"""Differentiable augmentation for GAN training on small data sets.

Every transform is differentiable with respect to the image, so the same augmentation can
be applied to real and generated images in front of the discriminator without leaking into
the generator (DiffAugment, Zhao et al. 2020). Each sample is augmented with probability
``p``; ``AdaptiveProbability`` tunes ``p`` from the sign of D on real images as in
StyleGAN2-ADA (Karras et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

AugmentKind = Literal["translation", "cutout", "color"]


@dataclass
class AugmentConfig:
    """Differentiable augmentation of the discriminator's inputs.

    Args:
        policy: transforms applied in this order.
        probability: chance that a sample is augmented (the start value when adaptive).
        adaptive: tune the probability towards ``target`` sign agreement of D on reals.
        target: ADA's r_t target (0.6).
        adjust_interval: adjust every this many training steps.
        speed_images: images over which p may move by 1 (ADA: 500k).
        translation_ratio: maximal shift as a fraction of the size.
        cutout_ratio: side of the cut-out square as a fraction of the size.
    """

    policy: list[AugmentKind] = field(default_factory=lambda: ["translation", "cutout", "color"])
    probability: float = 1.0
    adaptive: bool = False
    target: float = 0.6
    adjust_interval: int = 4
    speed_images: int = 500_000
    translation_ratio: float = 0.125
    cutout_ratio: float = 0.5


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy[None] + ty + 1).clamp(0, h + 1)
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    # Pixels shifted in from outside are zero (grey in [-1, 1]); gathering keeps gradients.
    padded = F.pad(x, [1, 1, 1, 1])
    index = (gy * (w + 2) + gx).reshape(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, index).reshape_as(x)


def _cutout(x: torch.Tensor, ratio: float) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    y0 = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    x0 = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = (gy[None] >= y0) & (gy[None] < y0 + ch) & (gx[None] >= x0) & (gx[None] < x0 + cw)
    return x * (~inside)[:, None].to(x.dtype)


class DiffAugment(torch.nn.Module):
    """Apply ``config.policy`` to each sample with probability ``p`` (a buffer, so it is
    saved in checkpoints and identical on every process)."""

    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config
        self.register_buffer("p", torch.tensor(float(config.probability)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = float(self.p)
        if p <= 0:
            return x
        out = x
        for kind in self.config.policy:
            if kind == "color":
                out = _color(out)
            elif kind == "translation":
                out = _translation(out, self.config.translation_ratio)
            elif kind == "cutout":
                out = _cutout(out, self.config.cutout_ratio)
            else:
                raise ValueError(f"unknown augmentation {kind!r}")
        if p >= 1:
            return out
        keep = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)
        return x + (out - x) * keep

    @torch.no_grad()
    def adjust(self, sign_real_mean: float, images: int) -> None:
        """ADA update: move p by ``images / speed_images`` towards more augmentation when
        D is over-confident on reals (mean sign above target), else towards less."""
        step = images / self.config.speed_images
        direction = 1.0 if sign_real_mean > self.config.target else -1.0
        self.p.copy_((self.p + direction * step).clamp(0.0, 1.0))
