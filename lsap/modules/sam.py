"""SAM refinement (Parmar et al., CVPR 2022) of pivots from any embedding, per image.

Chaining, as for PTI: an embedding pass (LSAP_O, LSAP_E, e4e, ReStyle, ...) whose
:class:`~lsap.callbacks.InversionWriter` wrote ``<pivots_dir>/codes/<name>.pt``; this module
reads the pivot of every image by the same name and refines it:

1. **Segments** of the target (:mod:`lsap.refine.segments`: SLIC superpixels, a face parser run from its weights, or label maps).
2. **Layer selection.** The invertibility net (:mod:`lsap.refine.invertibility`) predicts
   one error map per latent layer (W+, then each block coarse to fine); each segment takes
   the coarsest layer whose mean predicted error is at most ``threshold``, the finest
   otherwise; the masks ``m_k`` are the selections resized to each block.
3. **Optimisation** of the W+ code (from the pivot) and zero-initialised feature offsets
   ``F_k`` injected as ``h_k <- h_k + m_k * F_k`` at each block's output: Adam with the
   projector's schedule (:func:`lsap.modules.lsap_o.learning_rate_at`), loss
   ``lambda_mse * MSE + lambda_lpips * perceptual`` at ``loss_resolution`` plus
   ``lambda_mvg * MVG(w) + lambda_delta * sum_i ||w_i - w_0|| + lambda_features *
   sum_k mean(F_k^2)``.

Batches are B independent problems (per-image losses summed, Adam element-wise, no random
draws), so an image's result does not depend on its batch. The reconstruction is rendered
from the offsets *as stored* (float16 by default), so the state file reproduces it.

Outputs (with :class:`~lsap.callbacks.sam_writer.SAMWriter`): ``codes/`` (the refined W+),
``images/``, ``records/`` and ``sam/<name>.pt`` (W+, offsets, masks; see
:func:`lsap.refine.sam.make_state`). A missing or unusable pivot is a counted skip listed in
``summary.json`` under ``failed_inputs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsap.errors import InputError
from lsap.losses.reconstruction import to_resolution
from lsap.model import GeneratorSource
from lsap.modules.base import FrozenGeneratorModule, require_grad_mode
from lsap.modules.lsap_o import learning_rate_at
from lsap.nets.perceptual import PerceptualDistance
from lsap.refine.invertibility import load_invertibility_net
from lsap.refine.sam import (MVGPrior, OffsetDtype, block_channels, check_blocks, delta_regularizer, make_state,
                             offset_hook, select_layers, selection_masks)
from lsap.refine.segments import Segmenter, SuperpixelSegmenter
from lsap.results import InversionPrediction, InversionResults, batch_names, split_pending

__all__ = ["SAM", "FAILED_KEY", "STATE_KEY"]

#: Prediction entries the SAMWriter reads: per-image state dicts, and (key, reason) skips.
STATE_KEY = "sam_state"
FAILED_KEY = "failed"


class SAM(FrozenGeneratorModule):
    """Spatially-adaptive multi-layer refinement around pivots from an earlier run.

    Use with ``Trainer(inference_mode=False).predict(...)`` on the same image data module as
    the embedding run and a :class:`~lsap.callbacks.sam_writer.SAMWriter` with another
    ``output_dir``.

    Args:
        generator: the generator the pivots were embedded with.
        pivots_dir: ``output_dir`` of the embedding run (holds ``codes/<name>.pt``).
        lpips: perceptual distance (per image, ``per_sample``); ``None`` drops the term.
        invertibility: the invertibility net: a file from
            :func:`lsap.refine.invertibility.train_invertibility` or a built-in name
            (``fashion32``). ``None``: no prediction, every segment takes the finest layer.
        segmenter: the segments (default: SLIC superpixels).
        blocks: generator blocks of the offsets (default
            :func:`lsap.refine.sam.default_blocks`; must match the invertibility net's).
        threshold: tau, the largest mean predicted error a layer may have in a segment.
        input_root: folder the image names are relative to (default: the data set's root).
        num_steps / learning_rate / betas / lr_rampup / lr_rampdown: Adam and its schedule.
        lambda_mse / lambda_lpips: reconstruction weights.
        lambda_mvg / mvg_samples: the W+ MVG prior's weight and its number of sampled w.
        lambda_delta: weight of ``sum_i ||w_i - w_0||``.
        lambda_features: weight of ``sum_k mean((F_k - F_k^0)^2)`` (``F_k^0 = 0``).
        offset_dtype: storage type of the offsets (the reconstruction uses the stored ones).
        loss_resolution: resolution the image losses compare at (``None``: the generator's).
        anchor_samples / anchor_seed / anchor_cache_dir: anchors of the reported NSCD.
        seed: seed of the MVG statistics' samples.
        progress: progress bar over the steps (rank 0 only).
    """

    prediction_state_keys = (STATE_KEY,)
    weights_from_files = ("invertibility",)

    def __init__(
        self,
        generator: GeneratorSource,
        pivots_dir: str,
        lpips: PerceptualDistance | None = None,
        invertibility: str | None = None,
        segmenter: Segmenter | None = None,
        blocks: list[int] | None = None,
        threshold: float = 0.225,
        input_root: str | None = None,
        num_steps: int = 1001,
        learning_rate: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        lr_rampup: float = 0.05,
        lr_rampdown: float = 0.25,
        lambda_mse: float = 1.0,
        lambda_lpips: float = 1.0,
        lambda_mvg: float = 1e-8,
        mvg_samples: int = 5000,
        lambda_delta: float = 1e-3,
        lambda_features: float = 5.0,
        offset_dtype: OffsetDtype = "float16",
        loss_resolution: int | None = 256,
        anchor_samples: int = 100_000,
        anchor_seed: int = 0,
        anchor_cache_dir: str | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        if offset_dtype not in ("float16", "float32"):
            raise ValueError(f"offset_dtype must be 'float16' or 'float32', got {offset_dtype!r}")
        self.save_hyperparameters(ignore=["lpips", "generator", "segmenter"])
        self.init_frozen_generator(generator, lpips, loss_resolution, anchor_samples, anchor_seed, anchor_cache_dir)
        self.segmenter = segmenter if segmenter is not None else SuperpixelSegmenter()
        self.hparams["segmenter"] = {"class": type(self.segmenter).__name__, **{
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.segmenter).items()}}
        self.blocks = check_blocks(self.generator, blocks)
        self.channels = block_channels(self.generator, self.blocks)
        self.invertibility_source = invertibility
        self.invertibility = None
        if invertibility is not None:
            net, _ = load_invertibility_net(invertibility)
            if net.blocks and net.blocks != self.blocks:
                raise ValueError(f"the invertibility net '{invertibility}' predicts blocks {net.blocks}, SAM uses "
                                 f"{self.blocks}: set blocks to {net.blocks}")
            if net.num_layers != len(self.blocks) + 1:
                raise ValueError(f"the invertibility net '{invertibility}' has {net.num_layers} heads, SAM needs "
                                 f"{len(self.blocks) + 1} (W+ and one per block)")
            self.invertibility = net
        self.pivots_dir = Path(pivots_dir)
        self.pivots = InversionResults(self.pivots_dir)
        self.input_root = input_root
        self.threshold = threshold
        self.num_steps, self.learning_rate, self.betas = num_steps, learning_rate, tuple(betas)
        self.lr_rampup, self.lr_rampdown = lr_rampup, lr_rampdown
        self.lambda_mse, self.lambda_lpips = lambda_mse, lambda_lpips if lpips is not None else 0.0
        self.lambda_mvg, self.mvg_samples = lambda_mvg, mvg_samples
        self.lambda_delta, self.lambda_features = lambda_delta, lambda_features
        self.offset_dtype: OffsetDtype = offset_dtype
        self.seed = seed
        self.progress = progress

    # ----- lazily prepared ----------------------------------------------------------------
    @property
    def mvg(self) -> MVGPrior:
        prior = self._modules.get("mvg_prior")
        if prior is None:
            prior = MVGPrior(self.generator, self.mvg_samples, seed=self.seed)
            self.mvg_prior = prior  # buffers non-persistent: nothing enters a checkpoint
        return prior

    def run_meta(self) -> dict[str, Any]:
        return {"method": "sam", "refinement": "sam", "pivots_dir": str(self.pivots_dir), "num_steps": self.num_steps,
                "learning_rate": self.learning_rate, "blocks": list(self.blocks), "threshold": self.threshold,
                "invertibility": self.invertibility_source, "offset_dtype": self.offset_dtype,
                "generator_hash": self.generator_hash}

    # ----- masks --------------------------------------------------------------------------
    def select(self, images: Tensor, names: list[str]) -> tuple[Tensor, dict[int, Tensor]]:
        """The per-pixel layer selection ``[B, R, R]`` and block masks of ``images``."""
        device = self.generator.w_avg.device
        images = to_resolution(images.to(device=device, dtype=torch.float32), self.generator.resolution)
        segments = self.segmenter(images, names).to(device)
        if self.invertibility is not None:
            with torch.no_grad():
                maps = self.invertibility.to(device)(images)
        else:  # no predictor: every layer but the finest looks non-invertible
            maps = torch.full((images.shape[0], len(self.blocks) + 1, *images.shape[-2:]), float("inf"), device=device)
        selection = select_layers(maps, segments, self.threshold)
        return selection, selection_masks(selection, self.blocks)

    # ----- the optimisation ---------------------------------------------------------------
    def losses_of(self, synth: Tensor, target: Tensor, ws: Tensor, offsets: dict[int, Tensor],
                  mask: Tensor | None) -> dict[str, Tensor]:
        """Per-image losses ``[B]`` (image terms at the loss resolution, regularisers)."""
        synth = to_resolution(synth, self.image_loss_resolution).clamp(-1, 1)
        losses = self.image_losses(synth, target, mask, with_lpips=self.lambda_lpips > 0)
        losses["mvg"] = self.mvg(ws) if self.lambda_mvg > 0 else torch.zeros_like(losses["mse"])
        losses["delta"] = delta_regularizer(ws)
        losses["features"] = sum((o.square().flatten(1).mean(1) for o in offsets.values()),
                                 torch.zeros_like(losses["mse"]))
        return losses

    def total(self, losses: dict[str, Tensor]) -> Tensor:
        total = self.lambda_mse * losses["mse"] + self.lambda_mvg * losses["mvg"]
        total = total + self.lambda_delta * losses["delta"] + self.lambda_features * losses["features"]
        if "lpips" in losses:
            total = total + self.lambda_lpips * losses["lpips"]
        return total

    def refine(self, images: Tensor, pivots: Tensor, masks: dict[int, Tensor], mask: Tensor | None = None,
               description: str = "SAM") -> dict[str, Any]:
        """Refine pivots ``[B, num_ws, w_dim]`` for ``images`` ``[B, 3, H, W]`` under block
        ``masks``. Returns ``ws``, ``offsets`` (as stored), ``image`` (rendered from them),
        per-image ``losses`` (final, and at the pivot as ``*_pivot``) and ``loss_curve``."""
        require_grad_mode(type(self).__name__)
        G = self.generator
        device = G.w_avg.device
        batch = images.shape[0]
        target = self.at_loss_resolution(images)
        mask = self.at_loss_resolution(mask) if mask is not None else None
        masks = {r: m.to(device) for r, m in masks.items()}
        with torch.enable_grad():
            ws = pivots.to(device=device, dtype=torch.float32).detach().clone().requires_grad_(True)
            offsets = {r: torch.zeros(batch, c, r, r, device=device, requires_grad=True)
                       for r, c in self.channels.items()}
            with torch.no_grad():
                before = self.losses_of(G.synthesis(ws), target, ws, offsets, mask)
            optimizer = torch.optim.Adam([ws, *offsets.values()], lr=self.learning_rate, betas=self.betas)
            curve = []
            bar = tqdm(range(self.num_steps), desc=description, leave=False, dynamic_ncols=True,
                       disable=not self.progress or self.global_rank != 0)
            for step in bar:
                lr = learning_rate_at(step, self.num_steps, self.learning_rate, self.lr_rampup, self.lr_rampdown)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                synth = G.synthesis(ws, feature_hook=offset_hook(offsets, masks))
                total = self.total(self.losses_of(synth, target, ws, offsets, mask))
                optimizer.zero_grad(set_to_none=True)
                total.sum().backward()  # a sum: each image's gradient is its own loss's
                optimizer.step()
                curve.append(total.detach())
            bar.close()
        dtype = torch.float16 if self.offset_dtype == "float16" else torch.float32
        stored = {r: o.detach().to(dtype).float() for r, o in offsets.items()}
        with torch.no_grad():
            ws = ws.detach()
            image = G.synthesis(ws, feature_hook=offset_hook(stored, masks))
            after = self.losses_of(image, target, ws, stored, mask)
            after["total"] = self.total(after)
        losses = {**after, **{f"{k}_pivot": v for k, v in before.items()}}
        return {"ws": ws, "offsets": stored, "image": image, "losses": losses,
                "loss_curve": torch.stack(curve, 1) if curve else torch.zeros(batch, 0)}

    # ----- Lightning ----------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> InversionPrediction:
        require_grad_mode(type(self).__name__)
        todo, out = split_pending(batch)
        failed: list[tuple[str, str]] = []
        all_names = batch_names(batch, self.input_root)
        keys = list(out["path"] or [])
        usable, pivots = [], []
        for position, i in enumerate(todo):
            try:
                pivots.append(self.load_pivot(all_names[i])["ws"])
                usable.append(i)
            except (InputError, OSError, ValueError, KeyError) as error:
                failed.append((keys[position], str(error)))
        out["path"] = [keys[todo.index(i)] for i in usable]
        out[FAILED_KEY] = failed  # type: ignore[typeddict-unknown-key]
        if not usable:
            return out
        index = torch.tensor(usable, device=batch["image"].device)
        images = batch["image"].index_select(0, index)
        names = [all_names[i] for i in usable]
        mask = batch.get("mask")
        _, masks = self.select(images, names)
        result = self.refine(images, torch.stack(pivots), masks,
                             mask=mask.index_select(0, index) if mask is not None else None,
                             description=f"SAM batch {batch_idx}")
        meta = self.run_meta()
        states = [make_state(result["ws"][b], {r: o[b] for r, o in result["offsets"].items()},
                             {r: m[b] for r, m in masks.items()}, self.generator_hash, self.offset_dtype, meta)
                  for b in range(len(usable))]
        for b, state in enumerate(states):
            state["name"] = names[b]
        losses = {k: v for k, v in result["losses"].items()}
        for r, m in masks.items():
            losses[f"mask_{r}"] = m.flatten(1).mean(1)  # fraction of the block each offset covers
        return self.build_prediction(out, result["ws"], result["image"], losses, meta=meta, **{STATE_KEY: states})

