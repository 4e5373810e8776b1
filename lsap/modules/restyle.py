"""ReStyle: LSAP_E's training with the iterative encoder of :mod:`lsap.encoders.restyle`.

Everything LSAP_E does (losses with their official weights, the NSCD loss included; e4e's
progressive schedule; validation with ``lsap evaluate``'s metrics; checkpoints without the
frozen parts; predictions in the results layout) stays; only the forward pass changes:
``N`` residual steps from ``latent_avg`` and its image instead of one encoder call.

Training draws the number of steps of each batch uniformly from ``1..train_max_steps``
(seeded by ``seed`` and the global step, so a resumed run draws the same), runs the earlier
steps without gradients and back-propagates the losses of the last step's code and image.
Validation, test and prediction run ``num_steps`` steps.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from lsap.encoders.restyle import restyle_invert
from lsap.losses import MoCoLoss
from lsap.losses.identity import IDLoss
from lsap.model import GeneratorSource
from lsap.nets import PerceptualDistance
from lsap.modules.lsap_e import LSAP_E
from lsap.results import InversionPrediction

__all__ = ["ReStyle"]


class ReStyle(LSAP_E):
    """Train a ReStyle encoder (an e4e / pSp encoder with ``input_channels: 6``).

    Args (besides :class:`~lsap.modules.LSAP_E`'s, same meaning and defaults):
        num_steps: ReStyle steps at validation and prediction (5, the paper's).
        train_max_steps: training draws 1..this many steps per batch (default ``num_steps``).
        seed: seed of the per-batch step counts.
    """

    def __init__(
        self,
        generator: GeneratorSource,
        encoder: nn.Module,
        encoder_checkpoint: Optional[str] = None,
        lpips: Optional[PerceptualDistance] = None,
        identity: Optional[IDLoss] = None,
        moco: Optional[MoCoLoss] = None,
        l2_weight: float = 1.0,
        lpips_weight: float = 0.8,
        id_weight: float = 0.1,
        moco_weight: float = 0.5,
        delta_weight: float = 2e-4,
        nscd_weight: float = 0.5,
        loss_resolution: int = 256,
        progressive_start: int = 20_000,
        progressive_every: int = 100,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.999),
        anchor_samples: int = 100_000,
        anchor_seed: int = 0,
        anchor_cache_dir: Optional[str] = None,
        num_steps: int = 5,
        train_max_steps: Optional[int] = None,
        seed: int = 0,
    ) -> None:
        if num_steps < 1 or (train_max_steps is not None and train_max_steps < 1):
            raise ValueError(f"num_steps and train_max_steps must be >= 1, got {num_steps} and {train_max_steps}")
        if getattr(encoder, "input_channels", None) != 6:
            raise ValueError("a ReStyle encoder reads cat(image, current reconstruction): set "
                             "model.init_args.encoder.init_args.input_channels: 6")
        super().__init__(generator, encoder, encoder_checkpoint, lpips, identity, moco, l2_weight, lpips_weight,
                         id_weight, moco_weight, delta_weight, nscd_weight, loss_resolution, progressive_start,
                         progressive_every, lr, betas, anchor_samples, anchor_seed, anchor_cache_dir)
        self.num_steps = num_steps
        self.train_max_steps = train_max_steps or num_steps
        self.seed = seed

    def training_step_count(self, step: int | None = None) -> int:
        """Steps of the training batch at global step ``step`` (default: the current one):
        uniform in ``1..train_max_steps``, a function of ``seed`` and the step alone."""
        step = int(self.global_step) if step is None else step
        draw = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        return int(torch.randint(1, self.train_max_steps + 1, (1,), generator=draw))

    def invert(self, images: Tensor, num_steps: int, grad_steps: int | None = None) -> tuple[Tensor, Tensor]:
        result = restyle_invert(self.encoder, self.generator, images.to(self.latent_avg.device, torch.float32),
                                self.latent_avg, num_steps, grad_steps=grad_steps)
        return result.final_ws, result.final_image

    def encode(self, images: Tensor) -> Tensor:
        return self.invert(images, self.num_steps)[0]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:
            return self.invert(images, self.training_step_count(), grad_steps=1)
        return self.invert(images, self.num_steps)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> InversionPrediction:
        out = super().predict_step(batch, batch_idx)
        if "meta" in out:
            out["meta"] = {**out["meta"], "method": "restyle", "restyle_steps": self.num_steps}
        return out
