"""HFGI as a LightningModule: train ADA + the consultation encoder over a frozen embedding,
and refine images from any pivot.

fit — one step on a batch of images ``x``:

    w = E(x) (frozen embedding encoder: an e4e / LSAP_E / ReStyle file), x̂ = G(w) (frozen)
    d = x − x̂,  d̃ = random_perspective(d)            (self-supervision for ADA)
    a = ADA(cat(d̃, x̂)),  (scale, shift) = C(a),  y = G(w; h ← h·(1 + scale) + shift)
    loss = l2_weight·L2(y, x) + lpips_weight·LPIPS(y, x) + id_weight·ID(y, x) + distortion_weight·L1(a, d)

(HFGI's weights 1.0 / 0.8 / 0.1 / 0.1, Ranger lr 1e-4; only ADA and C have gradients.)

predict — refine a folder: the code of every image comes from the embedding encoder
(``embedding``) or from an earlier run's ``codes/`` (``pivots_dir``, any method). Outputs use
the usual results layout (:class:`~lsap.callbacks.InversionWriter`); the conditions are not
stored: they are a function of the input image, its code and the refiner, and each record's
``meta`` says what ``lsap edit`` needs to recompute them (``refinement: "hfgi"``, the refiner
file or built-in name, the input root). See :func:`lsap.refine.hfgi_editing.render_hfgi_edit`.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from lsap.encoders.restyle import restyle_invert
from lsap.errors import BadValueError
from lsap.images import from_uint8, to_uint8
from lsap.losses.identity import IDLoss
from lsap.losses.reconstruction import to_resolution
from lsap.metrics.fidelity import MSE, PSNR, SSIM, quantize_uint8
from lsap.model import GeneratorSource
from lsap.nets import PerceptualDistance
from lsap.modules.base import FrozenGeneratorModule
from lsap.optim import Ranger
from lsap.refine.hfgi import HFGIRefiner, fusion_channels, load_hfgi_refiner, random_perspective
from lsap.results import InversionPrediction, InversionResults, batch_names, split_pending

__all__ = ["HFGI", "INPUT_KEY", "load_embedding"]

#: Prediction entry with the inputs as refined (8-bit exact), which HFGIWriter stores for editing.
INPUT_KEY = "hfgi_input"


def load_embedding(spec: str) -> tuple[nn.Module, Tensor, int]:
    """An embedding encoder by file or built-in name: ``(encoder, latent_avg [num_ws, w_dim],
    restyle_steps)``; ``restyle_steps`` is 0 for a one-shot e4e / pSp encoder."""
    from lsap.encoders.checkpoints import load_encoder_checkpoint
    from lsap.encoders.restyle import BUILTIN_RESTYLE_ENCODERS, load_restyle_encoder

    if spec in BUILTIN_RESTYLE_ENCODERS:
        restyle = load_restyle_encoder(spec)
        return restyle.encoder, restyle.latent_avg, restyle.num_steps
    loaded = load_encoder_checkpoint(spec)
    if loaded.latent_avg is None:
        raise ValueError(f"embedding '{spec}' stores no latent_avg (its codes are offsets from it)")
    steps = int(loaded.opts.get("restyle_steps", 5)) if loaded.encoder.input_channels == 6 else 0
    return loaded.encoder.float().eval(), loaded.latent_avg.float(), steps


def batch_images(batch: Any) -> Tensor:
    """The images of a batch: ``batch["image"]``, or the first element of an ``(image, label)`` batch."""
    if isinstance(batch, dict):
        return batch["image"]
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"HFGI expects batches with an 'image' entry or (image, label) pairs, got {type(batch).__name__}")


class HFGI(FrozenGeneratorModule):
    """HFGI refinement (Wang et al., CVPR 2022) over a frozen embedding and a frozen generator.

    Args:
        generator: the frozen generator.
        embedding: encoder file or built-in name (``fashion32_e4e``, ``fashion32_lsap``, a
            ReStyle encoder such as ``fashion32_restyle_lsap``); needed for fit, and for
            predict unless ``pivots_dir`` is given.
        pivots_dir: predict only: an earlier run's results folder; its codes are the pivots.
        refiner: the ADA + consultation networks (default: :meth:`HFGIRefiner.for_generator`
            with ``fusion_resolution`` / ``input_size``).
        refiner_checkpoint: an HFGI refiner file or built-in name (``fashion32_hfgi_lsap``) to
            start from (fit) or to refine with (predict). Recorded in the results for editing.
        fusion_resolution / input_size: used when ``refiner`` is not given; with a
            ``refiner_checkpoint`` they must match the file (or stay unset).
        lpips: perceptual distance; None leaves the term out.
        identity: ID loss (faces); None leaves it out.
        l2_weight / lpips_weight / id_weight / distortion_weight: loss weights (HFGI's).
        warp_distortion / warp_probability: random perspective of the distortion fed to ADA.
        lr / betas: Ranger.
        restyle_steps: steps of a ReStyle embedding (default: the file's).
        input_root: folder image names are relative to (default: the predict data set's root).
        loss_resolution / anchor_*: see :class:`~lsap.modules.base.FrozenGeneratorModule`.
    """

    prediction_state_keys = (INPUT_KEY,)
    weights_from_files = ("embedding_encoder",)

    def __init__(
        self,
        generator: GeneratorSource,
        embedding: Optional[str] = None,
        pivots_dir: Optional[str] = None,
        refiner: Optional[HFGIRefiner] = None,
        refiner_checkpoint: Optional[str] = None,
        fusion_resolution: Optional[int] = None,
        input_size: Optional[int] = None,
        lpips: Optional[PerceptualDistance] = None,
        identity: Optional[IDLoss] = None,
        l2_weight: float = 1.0,
        lpips_weight: float = 0.8,
        id_weight: float = 0.1,
        distortion_weight: float = 0.1,
        warp_distortion: float = 0.15,
        warp_probability: float = 0.9,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.999),
        restyle_steps: Optional[int] = None,
        input_root: Optional[str] = None,
        loss_resolution: Optional[int] = 256,
        anchor_samples: int = 100_000,
        anchor_seed: int = 0,
        anchor_cache_dir: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "lpips", "identity", "refiner"])
        self.init_frozen_generator(generator, lpips, loss_resolution, anchor_samples, anchor_seed, anchor_cache_dir)
        self.embedding_spec, self.refiner_checkpoint = embedding, refiner_checkpoint
        self.refiner_meta: dict[str, Any] = {}
        if refiner_checkpoint:
            loaded, self.refiner_meta = load_hfgi_refiner(refiner_checkpoint)
            for name, asked in (("fusion_resolution", fusion_resolution), ("input_size", input_size)):
                if asked is not None and asked != loaded.config[name]:
                    raise BadValueError(f"{name}={asked} does not match the HFGI refiner '{refiner_checkpoint}', "
                                        f"which was trained with {name}={loaded.config[name]}; leave {name} unset "
                                        "or train a refiner for it (refiner_checkpoint null)")
            if refiner is not None:
                refiner.load_state_dict(loaded.state_dict())
            else:
                refiner = loaded
            made_for = self.refiner_meta.get("generator_hash")
            if made_for is not None and made_for != self.generator_hash:
                raise ValueError(f"HFGI refiner '{refiner_checkpoint}' was trained for another generator "
                                 "(fingerprints differ)")
        if refiner is None:
            refiner = HFGIRefiner.for_generator(self.generator, fusion_resolution, input_size)
        self.refiner = refiner.train()
        self.hparams["refiner"] = dict(refiner.config)  # plain data
        self._check_refiner()
        self.embedding_encoder: nn.Module | None = None
        self.embedding_steps = 0
        if embedding:
            encoder, latent_avg, steps = load_embedding(embedding)
            if encoder.num_ws != self.generator.num_ws:
                raise ValueError(f"embedding '{embedding}' predicts {encoder.num_ws} W+ entries, the generator has "
                                 f"{self.generator.num_ws}")
            self.embedding_encoder = encoder.eval().requires_grad_(False)
            self.register_buffer("embedding_latent_avg", latent_avg, persistent=False)
            self.embedding_steps = restyle_steps or steps
        self.pivots = InversionResults(pivots_dir) if pivots_dir else None
        self.input_root = input_root
        self.identity = identity.eval().requires_grad_(False) if identity is not None else None
        self.loss_weights = dict(l2=l2_weight, lpips=lpips_weight, id=id_weight, distortion=distortion_weight)
        self.val_metrics = MetricCollection({"mse": MSE(), "psnr": PSNR(), "ssim": SSIM(), "mse_pivot": MSE()},
                                            prefix="val/", compute_groups=False)

    def train(self, mode: bool = True) -> "HFGI":
        """The embedding encoder stays in eval mode (its batch norms must not follow the batches)."""
        super().train(mode)
        if self.embedding_encoder is not None:
            self.embedding_encoder.eval()
        return self

    def _check_refiner(self) -> None:
        resolution = self.refiner.fusion_resolution
        channels = fusion_channels(self.generator, resolution)
        if channels != self.refiner.residue.channels:
            raise ValueError(f"the refiner's conditions have {self.refiner.residue.channels} channels, the generator "
                             f"has {channels} at its {resolution}px fusion layer")

    # ----- the frozen first stage ----------------------------------------------------------
    def embed(self, images: Tensor) -> Tensor:
        """W+ codes of ``images`` from the frozen embedding encoder (no gradients)."""
        if self.embedding_encoder is None:
            raise ValueError("HFGI needs an embedding encoder here: set model.init_args.embedding (e.g. fashion32_lsap)")
        encoder = self.embedding_encoder
        images = images.to(self.embedding_latent_avg.device, torch.float32)
        with torch.no_grad():
            if self.embedding_steps:
                return restyle_invert(encoder, self.generator, images, self.embedding_latent_avg,
                                      self.embedding_steps).final_ws
            return encoder(to_resolution(images, encoder.input_size)) + self.embedding_latent_avg

    def render(self, ws: Tensor) -> Tensor:
        with torch.no_grad():
            return self.generator.synthesis(ws, noise_mode="const")

    # ----- fit -----------------------------------------------------------------------------
    def training_losses(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        images = images.to(self.generator.w_avg.device, torch.float32)
        ws = self.embed(images)
        reconstruction = self.render(ws)
        refiner = self.refiner
        distortion = refiner.distortion(images, reconstruction)
        warped = random_perspective(distortion, self.hparams.warp_distortion, self.hparams.warp_probability)
        aligned = refiner.align(warped, reconstruction)
        refined = self.generator.synthesis(ws, noise_mode="const", feature_hook=refiner.hook(aligned))
        target = self.at_loss_resolution(images)
        w = self.loss_weights
        per_image = self.image_losses(refined, target, with_lpips=bool(w["lpips"]))
        losses = {"l2": per_image["mse"].mean()}
        if "lpips" in per_image:
            losses["lpips"] = per_image["lpips"].mean()
        if self.identity is not None and w["id"]:
            losses["id"] = self.identity(self.at_loss_resolution(refined), target)
        if w["distortion"]:
            losses["distortion"] = (aligned - distortion).abs().mean()
        losses["total"] = sum(w[name] * value for name, value in losses.items())
        return losses, refined

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        images = batch_images(batch)
        losses, refined = self.training_losses(images)
        size = images.shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=size)
        self.log("train/loss", losses["total"].detach(), prog_bar=True, batch_size=size)
        return {"loss": losses["total"], "recon": refined.detach()}

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        images = batch_images(batch).to(self.generator.w_avg.device, torch.float32)
        ws = self.embed(images)
        result = self.refiner.refine(self.generator, ws, images, reconstruction=self.render(ws))
        written = quantize_uint8(result["image"].float())
        for name in ("mse", "psnr", "ssim"):
            self.val_metrics[name].update(written, images)
        self.val_metrics["mse_pivot"].update(quantize_uint8(result["reconstruction"].float()), images)
        return {"recon": result["image"].detach(), "ws": ws}

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), sync_dist=False)
        self.val_metrics.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return Ranger(self.refiner.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))

    # Checkpoints hold the refiner only: the frozen parts come from their config sources.
    def _frozen_prefix(self, key: str) -> bool:
        return not key.startswith("refiner.")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not self._frozen_prefix(k)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for key, value in self.state_dict().items():
            if self._frozen_prefix(key):
                checkpoint["state_dict"].setdefault(key, value)

    # ----- predict -------------------------------------------------------------------------
    def refinement_meta(self) -> dict[str, Any]:
        """What editing needs to recompute the conditions of a written result."""
        return {"refinement": "hfgi", "hfgi_refiner": self.refiner_checkpoint, "embedding": self.embedding_spec,
                "input_root": self.input_root, "fusion_resolution": self.refiner.fusion_resolution}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> InversionPrediction:
        todo, out = split_pending(batch)
        if not todo:
            return out
        device = self.generator.w_avg.device
        index = torch.tensor(todo, device=batch["image"].device)
        # Refine the 8-bit input: the stored copy (HFGIWriter) then reproduces it exactly for editing.
        images = from_uint8(to_uint8(batch["image"].index_select(0, index))).to(device)
        pivot_method = "embedding"
        if self.pivots is not None:
            names = [batch_names(batch, self.input_root)[i] for i in todo]
            pivots = [self.load_pivot(name) for name in names]
            ws = torch.stack([p["ws"] for p in pivots]).to(device, torch.float32)
            pivot_method = (pivots[0].get("meta") or {}).get("method")
        else:
            ws = self.embed(images)
        with torch.no_grad():
            result = self.refiner.refine(self.generator, ws, images, reconstruction=self.render(ws))
        target = self.at_loss_resolution(images)
        losses = self.image_losses(result["image"], target)
        losses.update({f"{k}_pivot": v for k, v in self.image_losses(result["reconstruction"], target).items()})
        meta = {"method": "hfgi", "pivots_dir": str(self.pivots.root) if self.pivots is not None else None,
                "pivot_method": pivot_method, **self.refinement_meta()}
        return self.build_prediction(out, ws, result["image"], losses, meta=meta, **{INPUT_KEY: images})
