"""PTI's locality regulariser: tuning one image must leave nearby codes rendering as before."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lsap.nets.perceptual import PerceptualDistance
from lsap.losses.reconstruction import L2Loss, to_resolution

if TYPE_CHECKING:
    from lsap.model.generator import Generator

__all__ = ["LocalityRegularizer"]


class LocalityRegularizer:
    """Keep a tuned generator close to the original away from the pivot.

    Codes ``pivot + alpha * (w - pivot) / ||w - pivot||`` for mapped samples ``w`` (drawn
    with ``truncation``) must render as before: ``weight * (lambda_l2 * MSE + lambda_lpips
    * LPIPS)`` between the tuned and the original generator, summed over the samples.

    Args:
        weight: weight of the whole term in the tuning loss.
        alpha: distance of the regularised codes from the pivot.
        num_samples: codes per step.
        interval: applied every this many steps.
        lambda_l2 / lambda_lpips: weights of MSE and LPIPS inside the term (LPIPS only
            when the tuning has an LPIPS component).
        truncation: truncation psi of the sampled codes.
    """

    def __init__(self, weight: float = 1.0, alpha: float = 30.0, num_samples: int = 1, interval: int = 1,
                 lambda_l2: float = 0.1, lambda_lpips: float = 0.1, truncation: float = 0.5) -> None:
        if interval < 1 or num_samples < 1:
            raise ValueError("the locality regulariser's interval and num_samples must be >= 1")
        self.weight, self.alpha, self.num_samples, self.interval = weight, alpha, num_samples, interval
        self.lambda_l2, self.lambda_lpips, self.truncation = lambda_l2, lambda_lpips, truncation
        self.l2 = L2Loss(reduction="none")

    def settings(self) -> dict[str, float | int]:
        """Plain-data form (for hyper-parameters and run records)."""
        return {"weight": self.weight, "alpha": self.alpha, "num_samples": self.num_samples,
                "interval": self.interval, "lambda_l2": self.lambda_l2, "lambda_lpips": self.lambda_lpips,
                "truncation": self.truncation}

    def applies_at(self, step: int) -> bool:
        return step % self.interval == 0

    def __call__(self, original: Generator, tuned: Generator, pivot: Tensor, noise: list[Tensor] | None,
                 rng: torch.Generator, resolution: int, lpips: PerceptualDistance | None = None) -> Tensor:
        """The weighted term for ``pivot`` ``[1, num_ws, w_dim]``; ``rng`` draws the samples,
        images are compared at ``resolution``."""
        z = torch.randn(self.num_samples, original.z_dim, generator=rng).to(pivot.device)
        with torch.no_grad():
            w = original.mapping(z, truncation_psi=self.truncation)[:, None, :].expand(-1, original.num_ws, -1)
            direction = w - pivot
            norms = direction.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None]
            codes = pivot + self.alpha * direction / norms
            reference = original.synthesis(codes, noise=noise)
        rendered = tuned.synthesis(codes, noise=noise)
        rendered, reference = to_resolution(rendered, resolution), to_resolution(reference, resolution)
        loss = self.lambda_l2 * self.l2(rendered, reference).sum()
        if lpips is not None:
            loss = loss + self.lambda_lpips * lpips(rendered, reference).sum()
        return self.weight * loss
