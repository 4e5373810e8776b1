"""LSAP_E: encoder-based embedding trained with the NSCD alignment loss.

One training step: encode the batch to W+ offsets, add ``latent_avg``, synthesise with
the frozen generator, resize output and targets to ``loss_resolution`` (the rule all
inversion modules share, :func:`lsap.losses.reconstruction.to_resolution`) and minimise

    l2_weight·L2 + lpips_weight·LPIPS + id_weight·ID (faces) + moco_weight·MoCo (other domains)
    + delta_weight·Σ_i ||w_i - w_0||₂ + nscd_weight·L_NSCD(active layers)

The deltas are unlocked progressively as in e4e: entries ``1..stage`` get a delta, with
``stage = 0`` before ``progressive_start`` and one more entry every ``progressive_every``
steps after it. The stage is a function of the global step and is also saved in the
checkpoint, so a resumed run continues at the right stage.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from lsap.losses import DeltaRegularizer, MoCoLoss
from lsap.nets.perceptual import PerceptualDistance
from lsap.losses.identity import IDLoss
from lsap.metrics import NSCD
from lsap.metrics.fidelity import MSE, PSNR, SSIM, quantize_uint8
from lsap.model import GeneratorSource
from lsap.modules.base import FrozenGeneratorModule
from lsap.optim import Ranger
from lsap.results import InversionPrediction, split_pending


def progressive_stage(step: int, num_ws: int, start: int, every: int) -> int:
    """Number of W+ entries after w0 that receive a delta at ``step`` (e4e schedule)."""
    if step < start:
        return 0
    return min(1 + (step - start) // max(every, 1), num_ws - 1)


class LSAP_E(FrozenGeneratorModule):  # noqa: N801 - the method's name in the paper
    """Train an encoder (e4e by default) to embed images into a frozen generator's W+.

    Args:
        generator: the frozen StyleGAN2 generator (checkpoint path, or a seeded random one).
        encoder: image -> W+ offsets network, e.g. ``lsap.encoders.Encoder4Editing``; its
            ``num_ws`` must match the generator's.
        encoder_checkpoint: optional published e4e / pSp / LSAP file to start from.
        lpips: LPIPS loss (needs its backbone weights file); None leaves it out.
        identity: ID loss for faces (ArcFace / facenet weights file); None leaves it out.
        moco: MoCo feature loss for non-face domains; None leaves it out.
        l2_weight, lpips_weight, id_weight, moco_weight, delta_weight, nscd_weight: loss
            weights; defaults are the official LSAP_E configuration.
        loss_resolution: the generator output and the targets are resized to this size (256
            officially; area averaging when shrinking, as in LSAP_O and PTI).
        progressive_start, progressive_every: the progressive schedule in steps.
        lr, betas: Ranger settings (official: 1e-4, (0.95, 0.999)).
        anchor_samples, anchor_seed, anchor_cache_dir: S^N anchor settings (see
            ``lsap.metrics.compute_anchors``).

    ``training_step`` and ``validation_step`` return the reconstructions (``"recon"``) for
    :class:`~lsap.callbacks.ReconstructionGridCallback`, which logs input | reconstruction
    grids and writes ``reconstructions.png`` next to the checkpoints.

    Checkpoints hold the encoder, ``latent_avg`` and the progressive stage: the frozen
    submodules (generator, LPIPS, ID, MoCo) come from their config sources and are left
    out; on loading they are taken from the module as configured, and loading stays strict
    for everything else.
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "lpips", "identity", "moco", "generator"])
        self.init_frozen_generator(generator, lpips, loss_resolution, anchor_samples, anchor_seed, anchor_cache_dir)
        self.encoder = encoder
        num_ws = getattr(encoder, "num_ws", None)
        if num_ws != self.generator.num_ws:
            raise ValueError(
                f"encoder predicts num_ws={num_ws} W+ entries but the {self.generator.resolution}px generator has "
                f"num_ws={self.generator.num_ws}: set model.init_args.encoder.init_args.num_ws: {self.generator.num_ws}"
            )
        self.register_buffer("latent_avg", self.generator.w_avg.detach().clone())
        if encoder_checkpoint:
            self._load_published_encoder(encoder_checkpoint)

        self.identity = identity
        self.moco = moco
        self.delta = DeltaRegularizer()
        for frozen in (self.identity, self.moco):
            if frozen is not None:
                frozen.eval().requires_grad_(False)
        self.loss_weights = dict(l2=l2_weight, lpips=lpips_weight, id=id_weight, moco=moco_weight,
                                 delta=delta_weight, nscd=nscd_weight)

        # The NSCD metrics need the anchors now (training needs them at once anyway).
        self.nscd_loss  # noqa: B018 - builds the anchors and the loss
        self.val_metrics = self._eval_metrics("val/")
        self.test_metrics = self._eval_metrics("test/")

    # ---------------------------------------------------------------------------------
    def _eval_metrics(self, prefix: str) -> MetricCollection:
        # The fidelity metrics of ``lsap evaluate`` (default convention), so that validation
        # and evaluation of the same images report the same numbers.
        metrics: dict[str, Any] = {
            "mse": MSE(), "psnr": PSNR(), "ssim": SSIM(),
            "nscd": NSCD(generator=self.generator, anchors=self.anchors),
        }
        if self.lpips is not None:
            metrics["lpips"] = MeanMetric()
        if self.identity is not None:
            metrics["id_similarity"] = MeanMetric()
        return MetricCollection(metrics, prefix=prefix, compute_groups=False)

    def _load_published_encoder(self, path: str) -> None:
        from lsap.encoders import load_encoder_checkpoint

        loaded = load_encoder_checkpoint(path)
        missing, unexpected = self.encoder.load_state_dict(loaded.encoder.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(f"encoder checkpoint '{path}' does not fit the configured encoder: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]} — configure the encoder as the file's architecture")
        if loaded.latent_avg is not None:
            self.latent_avg.copy_(loaded.latent_avg.reshape(-1, self.generator.w_dim)[0])

    @property
    def stage(self) -> int:
        return progressive_stage(self.global_step, self.generator.num_ws, self.hparams.progressive_start,
                                 self.hparams.progressive_every)

    def encode(self, images: Tensor) -> Tensor:
        """Images -> W+ codes ``[B, num_ws, w_dim]`` (latent_avg included)."""
        return self.encoder(images) + self.latent_avg

    def decode(self, ws: Tensor) -> Tensor:
        return self.generator.synthesis(ws, noise_mode="const")

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        ws = self.encode(images)
        return ws, self.decode(ws)

    def training_losses(self, batch: dict[str, Tensor], ws: Tensor, recon: Tensor, active: int) -> dict[str, Tensor]:
        target = self.at_loss_resolution(batch["image"])
        mask = batch.get("mask")
        mask = self.at_loss_resolution(mask) if mask is not None else None
        w = self.loss_weights
        per_image = self.image_losses(recon, target, mask, with_lpips=bool(w["lpips"]))
        losses = {"l2": per_image["mse"].mean()}
        if "lpips" in per_image:
            losses["lpips"] = per_image["lpips"].mean()
        pred = self.at_loss_resolution(recon) if self.identity is not None or self.moco is not None else None
        if self.identity is not None and w["id"]:
            losses["id"] = self.identity(pred, target)
        if self.moco is not None and w["moco"]:
            losses["moco"] = self.moco(pred, target)
        if w["delta"]:
            losses["delta"] = self.delta(ws, active=active)
        if w["nscd"]:
            losses["nscd"] = self.nscd_loss(ws, active_layers=active).mean()
        losses["total"] = sum(w[name] * value for name, value in losses.items())
        return losses

    # ---------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if hasattr(self.encoder, "progressive_stage"):
            self.encoder.progressive_stage = self.stage

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        stage = self.stage
        ws, recon = self(batch["image"])
        losses = self.training_losses(batch, ws, recon, active=stage + 1)
        batch_size = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch_size,
                      prog_bar=False, sync_dist=False)
        self.log("train/loss", losses["total"].detach(), prog_bar=True, batch_size=batch_size)
        self.log("train/stage", float(stage), batch_size=batch_size)
        return {"loss": losses["total"], "recon": recon.detach()}

    def _evaluate(self, batch: dict[str, Tensor], metrics: MetricCollection) -> dict[str, Tensor]:
        ws, recon = self(batch["image"])
        # Fidelity is scored as ``lsap evaluate`` scores the written result: the 8-bit
        # reconstruction at the generator's resolution against the input.
        written = quantize_uint8(recon.detach().float())
        for name in ("mse", "psnr", "ssim"):
            metrics[name].update(written, batch["image"].to(written.device, torch.float32))
        metrics["nscd"].update(ws)
        if "lpips" in metrics or "id_similarity" in metrics:
            pred, target = self.at_loss_resolution(recon.clamp(-1, 1)), self.at_loss_resolution(batch["image"])
        if "lpips" in metrics:
            metrics["lpips"].update(self.image_losses(pred, target)["lpips"])
        if "id_similarity" in metrics:
            metrics["id_similarity"].update(self.identity.loss_and_similarity(pred, target)[1])
        return {"recon": recon.detach(), "ws": ws.detach()}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _log_metrics(self, metrics: MetricCollection) -> None:
        values = metrics.compute()
        self.log_dict(values, sync_dist=False)  # torchmetrics already reduced across ranks
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> InversionPrediction:
        """Encoder inversion, in the format ``lsap.callbacks.InversionWriter`` writes;
        images an attached writer already finished are skipped."""
        todo, out = split_pending(batch)
        if not todo:
            return out
        index = torch.tensor(todo, device=batch["image"].device)
        images = batch["image"].index_select(0, index)
        mask = batch.get("mask")
        mask = self.at_loss_resolution(mask.index_select(0, index)) if mask is not None else None
        ws, recon = self(images)
        losses = self.image_losses(recon, self.at_loss_resolution(images), mask)
        return self.build_prediction(out, ws, recon, losses, meta={"method": "lsap_e"})

    # ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return Ranger(self.encoder.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lsap_progressive_stage"] = self.stage

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        stage = checkpoint.get("lsap_progressive_stage")
        if stage is not None and hasattr(self.encoder, "progressive_stage"):
            self.encoder.progressive_stage = int(stage)
