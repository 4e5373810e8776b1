"""PTI refinement: fine-tune the generator around a frozen pivot code, per image.

Chaining. PTI runs as its own prediction pass after an embedding pass (LSAP_O or the
encoder LSAP_E) whose :class:`~lsap.callbacks.InversionWriter` wrote
``<pivots_dir>/codes/<name>.pt``; this module reads the pivot of every image by the same
name, keeps it fixed, and tunes the synthesis network with ``lambda_l2 * MSE +
lambda_lpips * LPIPS`` (Adam, 350 steps, lr 3e-4, stopping early once LPIPS falls below
0.06). An optional :class:`~lsap.losses.LocalityRegularizer` keeps the tuned generator close
to the original away from the pivot.

Saving. A tuned generator is not written whole: each image's ``pti/<name>.pt`` holds only
the synthesis tensors that changed, as ``tuned - original`` (float16 by default), plus
the original generator's fingerprint, the pivot code and the noise used. The module
renders its reported reconstruction with exactly the weights the file reproduces
(``original + delta``), so :func:`lsap.model.delta.apply_delta` on the original generator
gives the reported image bit for bit, and refuses a delta made for another generator. The
file format lives in :mod:`lsap.model.delta`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsap.losses import LocalityRegularizer
from lsap.nets.perceptual import PerceptualDistance
from lsap.model import Generator, GeneratorSource
from lsap.model.sampling import derive_seed
from lsap.model.delta import DELTA_DTYPES, DeltaDtype, apply_delta, make_delta
from lsap.modules.base import FrozenGeneratorModule, require_grad_mode
from lsap.results import InversionPrediction, InversionResults, batch_names, split_pending

__all__ = ["PTI"]

# ----- the module ------------------------------------------------------------------------------
class PTI(FrozenGeneratorModule):
    """Pivotal tuning of the generator per image, around pivots from an earlier run.

    Use with ``Trainer(inference_mode=False).predict(...)`` on the same image data module
    as the embedding run and an :class:`~lsap.callbacks.InversionWriter` with another
    ``output_dir``: it writes ``codes/`` (the pivots), ``images/`` (tuned
    reconstructions), ``records/`` and ``pti/`` (the weight deltas). Images of a batch are
    tuned one after the other (each has its own generator).

    Args:
        generator: the generator the pivots were embedded with.
        pivots_dir: ``output_dir`` of the embedding run (holds ``codes/<name>.pt``).
        lpips: LPIPS component (per image whatever its ``reduction``); ``None`` drops the
            LPIPS terms and the early stop.
        input_root: folder the image names are relative to; default: the predict data
            set's ``root`` (as for the writer).
        num_steps / learning_rate / betas: Adam on the synthesis weights.
        lambda_l2 / lambda_lpips: reconstruction loss weights.
        early_stop_lpips: stop once the LPIPS to the target is at most this (``None``: never).
        locality: the locality regulariser (``None``: off, as in PTI's defaults).
        use_pivot_noise: render with the pivot's optimised noise maps when its code file has
            them (an LSAP_O run whose writer had ``save_noise: true``); otherwise, as in
            PTI, the generator's stored noise.
        delta_dtype: storage type of the weight deltas.
        loss_resolution: resolution the image losses compare at (``None``: the generator's).
        anchor_samples / anchor_seed / anchor_cache_dir: anchors of the reported NSCD.
        seed: seed of the locality samples.
        progress: progress bar over the tuning steps (rank 0 only).
    """

    def __init__(
        self,
        generator: GeneratorSource,
        pivots_dir: str,
        lpips: PerceptualDistance | None = None,
        input_root: str | None = None,
        num_steps: int = 350,
        learning_rate: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        lambda_l2: float = 1.0,
        lambda_lpips: float = 1.0,
        early_stop_lpips: float | None = 0.06,
        locality: LocalityRegularizer | None = None,
        use_pivot_noise: bool = False,
        delta_dtype: DeltaDtype = "float16",
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
        if delta_dtype not in DELTA_DTYPES:
            raise ValueError(f"delta_dtype must be one of {sorted(DELTA_DTYPES)}, got {delta_dtype!r}")
        self.save_hyperparameters(ignore=["lpips", "generator", "locality"])
        self.init_frozen_generator(generator, lpips, loss_resolution, anchor_samples, anchor_seed, anchor_cache_dir)
        # Plain data: checkpoints load with weights_only.
        self.hparams["locality"] = locality.settings() if locality is not None else None
        self.pivots_dir = Path(pivots_dir)
        self.pivots = InversionResults(self.pivots_dir)
        self.input_root = input_root
        self.num_steps, self.learning_rate, self.betas = num_steps, learning_rate, tuple(betas)
        self.lambda_l2, self.lambda_lpips = lambda_l2, lambda_lpips if lpips is not None else 0.0
        self.early_stop_lpips = early_stop_lpips if lpips is not None else None
        self.locality = locality
        self.use_pivot_noise = use_pivot_noise
        self.delta_dtype: DeltaDtype = delta_dtype
        self.seed = seed
        self.progress = progress

    # ----- helpers ------------------------------------------------------------------------
    def _working_copy(self) -> Generator:
        """A fresh copy of the generator to tune (one per image, never a submodule)."""
        tuned = copy.deepcopy(self.generator)
        tuned.synthesis_network.requires_grad_(True)
        return tuned

    # ----- tuning -------------------------------------------------------------------------
    def tune(self, image: Tensor, pivot_ws: Tensor, name: str, noise: list[Tensor] | None = None,
             mask: Tensor | None = None, description: str = "PTI") -> dict[str, Any]:
        """Tune the synthesis network for one image ``[1, 3, H, W]`` around ``pivot_ws``
        ``[1, num_ws, w_dim]``; ``name`` seeds the locality samples. Returns the
        reconstruction (``image``, unclamped), per-image ``losses`` (after tuning, at the
        pivot before tuning as ``*_pivot``, and ``steps``) and the ``delta`` file's dict."""
        require_grad_mode(type(self).__name__)
        G = self.generator
        device = G.w_avg.device
        resolution = self.image_loss_resolution
        target = self.at_loss_resolution(image)
        mask = self.at_loss_resolution(mask) if mask is not None else None
        pivot = pivot_ws.to(device=device, dtype=torch.float32)
        noise = [n.to(device) for n in noise] if noise is not None else None
        rng = torch.Generator().manual_seed(derive_seed(self.seed, "pti", name))
        tuned = self._working_copy()
        with torch.no_grad():
            before = self.image_losses(G.synthesis(pivot, noise=noise), target, mask)

        steps = 0
        with torch.enable_grad():
            optimizer = torch.optim.Adam(tuned.synthesis_network.parameters(), lr=self.learning_rate,
                                         betas=self.betas)
            bar = tqdm(range(self.num_steps), desc=description, leave=False, dynamic_ncols=True,
                       disable=not self.progress or self.global_rank != 0)
            for step in bar:
                losses = self.image_losses(tuned.synthesis(pivot, noise=noise), target, mask)
                if self.early_stop_lpips is not None and float(losses["lpips"].detach()) <= self.early_stop_lpips:
                    break
                loss = self.lambda_l2 * losses["mse"].sum()
                if "lpips" in losses:
                    loss = loss + self.lambda_lpips * losses["lpips"].sum()
                if self.locality is not None and self.locality.applies_at(step):
                    loss = loss + self.locality(G, tuned, pivot, noise, rng, resolution, self.lpips)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
            bar.close()

        delta = make_delta(G, tuned, self.delta_dtype, original_hash=self.generator_hash)
        # Render with exactly the weights the delta reproduces: original + stored delta.
        apply_delta(G, delta, into=tuned, check_fingerprint=False)
        with torch.no_grad():
            reconstruction = tuned.synthesis(pivot, noise=noise)
            after = self.image_losses(reconstruction, target, mask)
        delta["ws"] = pivot[0].detach().cpu().clone()
        delta["noise"] = [n.detach().cpu().clone() for n in noise] if noise is not None else None
        losses_out = {**after, **{f"{k}_pivot": v for k, v in before.items()},
                      "steps": torch.tensor([float(steps)], device=device)}
        return {"image": reconstruction, "losses": losses_out, "delta": delta}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> InversionPrediction:
        require_grad_mode(type(self).__name__)
        todo, out = split_pending(batch)
        if not todo:
            return out
        # Named as the writers of both runs name them (relative to input_root, or to the data set's folder).
        all_names = batch_names(batch, self.input_root)
        names = [all_names[i] for i in todo]
        pivots = [self.load_pivot(name) for name in names]
        use_noise = self.use_pivot_noise and all(p.get("noise") is not None for p in pivots)
        images, losses, deltas, codes = [], [], [], []
        mask = batch.get("mask")
        for position, (i, pivot) in enumerate(zip(todo, pivots)):
            ws = pivot["ws"][None].to(self.generator.w_avg.device)
            noise = pivot["noise"] if use_noise else None
            result = self.tune(batch["image"][i:i + 1], ws, names[position], noise=noise,
                               mask=mask[i:i + 1] if mask is not None else None,
                               description=f"PTI {position + 1}/{len(todo)} (batch {batch_idx})")
            images.append(result["image"])
            losses.append(result["losses"])
            deltas.append(result["delta"])
            codes.append(ws)
        meta = {"method": "pti", "refinement": "pti", "pivots_dir": str(self.pivots_dir), "num_steps": self.num_steps,
                "learning_rate": self.learning_rate, "generator_hash": self.generator_hash, "delta_dtype": self.delta_dtype,
                "pivot_method": (pivots[0].get("meta") or {}).get("method")}
        extra: dict[str, Any] = {"pti_delta": deltas}
        if use_noise:
            extra["noise"] = [torch.cat([p["noise"][j] for p in pivots]) for j in range(len(pivots[0]["noise"]))]
        return self.build_prediction(out, torch.cat(codes), torch.cat(images),
                                     {k: torch.cat([entry[k].reshape(1) for entry in losses]) for k in losses[0]},
                                     meta=meta, **extra)
