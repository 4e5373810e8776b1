"""LSAP_O: optimisation-based embedding with the NSCD loss.

Each image gets its own W or W+ code (and its own noise maps), found by Adam from the
generator's ``w_avg`` with the StyleGAN2 projector's schedule:

* learning rate ``lr * ramp``, where the ramp rises over the first ``lr_rampup`` of the
  run (linearly) and falls over the last ``lr_rampdown`` (half cosine);
* latent noise ``latent_noise * std(w) * max(0, 1 - t / latent_noise_ramp)^2`` added to
  the code each step (``t`` = fraction of the run), std(w) measured on ``w_std_samples``
  mapped samples;
* noise maps start as seeded N(0, 1) draws, are penalised by the multi-scale
  autocorrelation regulariser and renormalised to mean 0 / std 1 after every step.

Loss per image: ``lambda_lpips * LPIPS + lambda_mse * MSE + lambda_nscd * L_NSCD +
lambda_noise * noise_reg``, images compared at ``loss_resolution`` (256 by default, the
generator output and the target area-downsampled to it).

Batches are B independent problems: per-image losses are *summed*, so an image's gradient
never depends on its batch-mates, Adam is element-wise, and every random draw comes from a
per-image ``torch.Generator`` seeded by ``(seed, image name)`` (its path relative to the
input folder, or its index). An image's result therefore does not depend, mathematically, on
the batch it lands in, on its position, or on the number of devices; in floating point
another batch size rounds differently and the optimisation amplifies it (measured in the
README, ``bench/batch_independence.py``), while the same batch is bit-identical.

The optimisation runs inside ``predict_step``: the Trainer must be built with
``inference_mode=False`` (gradients cannot be enabled inside ``torch.inference_mode``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsap.losses import NoiseRegularizer, normalize_noise_
from lsap.nets.perceptual import PerceptualDistance
from lsap.losses.reconstruction import to_resolution
from lsap.model import GeneratorSource
from lsap.modules.base import FrozenGeneratorModule, require_grad_mode
from lsap.model.sampling import derive_seed
from lsap.results import InversionPrediction, batch_names, split_pending

__all__ = ["LSAP_O", "InversionResult", "latent_noise_at", "learning_rate_at", "require_grad_mode", "to_resolution"]

LatentSpace = Literal["w", "w+"]

# lambda_nscd default: see bench/README.md ("LSAP_O: choosing lambda_nscd").
DEFAULT_LAMBDA_NSCD = 0.05


def learning_rate_at(step: int, num_steps: int, base: float, rampup: float, rampdown: float) -> float:
    """Projector learning rate at ``step``: linear ramp-up over the first ``rampup`` of the
    run, half-cosine ramp-down over the last ``rampdown``."""
    t = step / num_steps
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return base * ramp


def latent_noise_at(step: int, num_steps: int, w_std: float, factor: float, ramp: float) -> float:
    """Std of the latent noise at ``step``: ``factor * std(w)``, decaying quadratically to
    0 at ``ramp`` of the run."""
    if ramp <= 0:
        return 0.0
    t = step / num_steps
    return w_std * factor * max(0.0, 1.0 - t / ramp) ** 2


@dataclass
class InversionResult:
    """Per-image outputs of one batch of inversions (all tensors have batch size B)."""

    ws: Tensor  # [B, num_ws, w_dim]
    noise: list[Tensor] | None  # optimised noise, one [B, 1, r, r] map per conv (None: stored noise)
    image: Tensor  # [B, 3, R, R], generator output (not clamped)
    losses: dict[str, Tensor]  # final per-image losses, [B] each
    nscd: Tensor  # [B] mean NSCD over the LSAP layers
    nscd_layers: Tensor  # [B, num_ws]


class LSAP_O(FrozenGeneratorModule):
    """Per-image optimisation of W / W+ codes and noise maps, with the NSCD loss.

    Use with ``Trainer(inference_mode=False).predict(...)`` on an image data module and
    an :class:`~lsap.callbacks.InversionWriter`, or call :meth:`invert` directly.

    Args:
        generator: the StyleGAN2 generator (checkpoint path or a seeded random one).
        lpips: perceptual distance (``lsap.nets.LPIPSLoss``, ``lsap.nets.FeatureDistance``), used
            per image whatever its ``reduction``; ``None`` drops the LPIPS term.
        space: optimise one w for all layers (``"w"``) or one per layer (``"w+"``).
        num_steps: optimisation steps per image.
        learning_rate: Adam's peak learning rate.
        lr_rampup / lr_rampdown: fractions of the run for the learning-rate ramps.
        betas: Adam's betas.
        latent_noise: initial latent-noise std as a fraction of std(w).
        latent_noise_ramp: fraction of the run over which the latent noise decays to 0.
        lambda_lpips / lambda_mse / lambda_nscd / lambda_noise: loss weights.
        optimize_noise: optimise per-image noise maps; otherwise the generator's stored
            noise is used and the noise regulariser is off.
        w_std_samples: samples for std(w).
        anchor_samples / anchor_seed / anchor_cache_dir: S^N anchors of the NSCD loss and
            metric (see ``lsap.metrics.compute_anchors``).
        loss_resolution: resolution the image losses compare at (``None``: the
            generator's). Targets of another size are resized to it as well.
        seed: seed of the per-image random draws.
        progress: show a progress bar over the optimisation steps (rank 0 only).
    """

    def __init__(
        self,
        generator: GeneratorSource,
        lpips: PerceptualDistance | None = None,
        space: LatentSpace = "w+",
        num_steps: int = 1000,
        learning_rate: float = 0.1,
        lr_rampup: float = 0.05,
        lr_rampdown: float = 0.25,
        betas: tuple[float, float] = (0.9, 0.999),
        latent_noise: float = 0.05,
        latent_noise_ramp: float = 0.75,
        lambda_lpips: float = 1.0,
        lambda_mse: float = 0.0,
        lambda_nscd: float = DEFAULT_LAMBDA_NSCD,
        lambda_noise: float = 1e5,
        optimize_noise: bool = True,
        w_std_samples: int = 10_000,
        anchor_samples: int = 100_000,
        anchor_seed: int = 0,
        anchor_cache_dir: str | None = None,
        loss_resolution: int | None = 256,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if space not in ("w", "w+"):
            raise ValueError(f"space must be 'w' or 'w+', got {space!r}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if lpips is None and lambda_lpips != 0:
            # No perceptual network configured: only the other terms remain.
            lambda_lpips = 0.0
        self.save_hyperparameters(ignore=["lpips", "generator"])
        self.init_frozen_generator(generator, lpips, loss_resolution, anchor_samples, anchor_seed, anchor_cache_dir)
        self.noise_regularizer = NoiseRegularizer(reduction="none")
        self.space: LatentSpace = space
        self.num_steps = num_steps
        self.learning_rate, self.lr_rampup, self.lr_rampdown = learning_rate, lr_rampup, lr_rampdown
        self.betas = tuple(betas)
        self.latent_noise, self.latent_noise_ramp = latent_noise, latent_noise_ramp
        self.lambda_lpips, self.lambda_mse = lambda_lpips, lambda_mse
        self.lambda_nscd, self.lambda_noise = lambda_nscd, lambda_noise
        self.optimize_noise = optimize_noise
        self.w_std_samples = w_std_samples
        self.seed = seed
        self.progress = progress
        self._w_std: float | None = None

    # ----- lazily prepared statistics ---------------------------------------------------
    @property
    def w_std(self) -> float:
        """std(w) of the generator (the projector's definition), measured once."""
        if self._w_std is None:
            self._w_std = float(self.generator.w_stats(self.w_std_samples, seed=self.seed)[1])
        return self._w_std

    def run_meta(self) -> dict[str, Any]:
        """JSON-able facts about the run, stored with every result."""
        return {
            "method": "lsap_o", "space": self.space, "num_steps": self.num_steps,
            "lambda_lpips": self.lambda_lpips, "lambda_mse": self.lambda_mse, "lambda_nscd": self.lambda_nscd,
            "lambda_noise": self.lambda_noise, "seed": self.seed, "generator_hash": self.generator_hash,
        }

    # ----- Lightning --------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> InversionPrediction:
        require_grad_mode(type(self).__name__)
        todo, out = split_pending(batch)
        if not todo:
            return out
        index = torch.tensor(todo, device=batch["image"].device)
        mask = batch.get("mask")
        # Seeded by the name relative to the input folder: unique per image, and unchanged
        # when the folder moves or other images join it.
        all_names = batch_names(batch)
        names = [all_names[i] for i in todo]
        result = self.invert(batch["image"].index_select(0, index), names,
                             mask=mask.index_select(0, index) if mask is not None else None,
                             description=f"LSAP_O batch {batch_idx}")
        return self.build_prediction(out, result.ws, result.image, result.losses, meta=self.run_meta(),
                                     noise=result.noise)

    # ----- the optimisation -------------------------------------------------------------
    def _generators(self, names: list[str]) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(derive_seed(self.seed, "lsap_o", name)) for name in names]

    def _total(self, losses: dict[str, Tensor]) -> Tensor:
        total = self.lambda_mse * losses["mse"] + self.lambda_nscd * losses["nscd_loss"]
        if "lpips" in losses:
            total = total + self.lambda_lpips * losses["lpips"]
        if "noise_reg" in losses:
            total = total + self.lambda_noise * losses["noise_reg"]
        return total

    def invert(self, images: Tensor, names: list[str], mask: Tensor | None = None,
               description: str = "LSAP_O") -> InversionResult:
        """Optimise codes for ``images`` ``[B, 3, H, W]`` in [-1, 1].

        ``names`` identify the images (in a prediction run: the output names, see
        ``lsap.results.output_name``) and seed each image's random draws; ``mask``
        (``[B, 1, H, W]``) restricts the image losses to content pixels.
        """
        require_grad_mode(type(self).__name__)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [B, 3, H, W], got {tuple(images.shape)}")
        if len(names) != images.shape[0]:
            raise ValueError(f"got {len(names)} names for {images.shape[0]} images")
        G = self.generator
        device = G.w_avg.device
        batch = images.shape[0]
        target = self.at_loss_resolution(images)
        mask = self.at_loss_resolution(mask) if mask is not None else None
        rngs = self._generators(names)
        nscd_loss, w_std = self.nscd_loss, self.w_std

        with torch.enable_grad():
            rows = 1 if self.space == "w" else G.num_ws
            w_opt = G.w_avg.detach().clone()[None, None].repeat(batch, rows, 1).requires_grad_(True)
            if self.optimize_noise:
                noise = [torch.cat([torch.randn(shape, generator=g) for g in rngs]).to(device)
                         for shape in G.noise_shapes()]
                normalize_noise_(noise)
                for n in noise:
                    n.requires_grad_(True)
            else:
                noise = [n.detach() for n in G.const_noise()]
            params = [w_opt] + (noise if self.optimize_noise else [])
            optimizer = torch.optim.Adam(params, lr=self.learning_rate, betas=self.betas)

            bar = tqdm(range(self.num_steps), desc=description, leave=False, dynamic_ncols=True,
                       disable=not self.progress or self.global_rank != 0)
            for step in bar:
                lr = learning_rate_at(step, self.num_steps, self.learning_rate, self.lr_rampup, self.lr_rampdown)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                scale = latent_noise_at(step, self.num_steps, w_std, self.latent_noise, self.latent_noise_ramp)
                codes = w_opt
                if scale > 0:
                    draws = torch.stack([torch.randn(w_opt.shape[1:], generator=g) for g in rngs]).to(device)
                    codes = w_opt + draws * scale
                synth = G.synthesis(codes.expand(-1, G.num_ws, -1), noise=noise)
                losses = self.image_losses(synth, target, mask)
                losses["nscd_loss"] = nscd_loss(w_opt.expand(-1, G.num_ws, -1))
                if self.optimize_noise:
                    losses["noise_reg"] = self.noise_regularizer(noise)
                total = self._total(losses)
                optimizer.zero_grad(set_to_none=True)
                # A sum, not a mean: each image's gradient is its own loss's gradient.
                total.sum().backward()
                optimizer.step()
                if self.optimize_noise:
                    normalize_noise_(noise)
                if not bar.disable and (step % 25 == 0 or step == self.num_steps - 1):
                    bar.set_postfix(loss=f"{total.detach().mean().item():.4f}")
            bar.close()

        with torch.no_grad():
            ws = w_opt.detach().expand(-1, G.num_ws, -1).contiguous()
            noise = [n.detach() for n in noise]
            image = G.synthesis(ws, noise=noise)
            losses = self.image_losses(image, target, mask)
            losses["nscd_loss"] = nscd_loss(ws)
            if self.optimize_noise:
                losses["noise_reg"] = self.noise_regularizer(noise)
            losses["total"] = self._total(losses)
        nscd, layers = self.nscd_per_image(ws)
        return InversionResult(ws=ws, noise=noise if self.optimize_noise else None, image=image,
                               losses={k: v.detach() for k, v in losses.items()}, nscd=nscd, nscd_layers=layers)
