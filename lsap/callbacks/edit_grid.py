"""Edit grids in the logger during ``lsap fit`` and ``lsap predict``.

Users judge an inversion by how its codes edit, so this callback renders, for a few images,
a grid per image (rows: the configured edits; columns: strengths, the reconstruction in
the middle) and sends it to the trainer's logger (TensorBoard, wandb); with ``save_dir``
the grids are also written as PNGs (for runs without a logger).

* fit / validate: on the first validation batch of every ``every_n_epochs``-th epoch the
  module's ``encode(images)`` gives the codes (modules without ``encode`` are skipped);
* predict: the codes come from the first batches' predictions (``"ws"``), up to
  ``num_images`` images per run; PTI predictions render with their tuned weights when
  their ``"pti_delta"`` is still in the outputs (list this callback before the
  ``InversionWriter``, which drops large outputs after writing them).

The edit specs are those of ``lsap edit --direction`` (see :mod:`lsap.editing.edits`);
they are resolved against the module's ``generator`` when first needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from lsap.visualize import image_grid, log_image_grid, save_image_grid

__all__ = ["EditGridCallback"]


class EditGridCallback(Callback):
    """Log edit grids of a few inverted images.

    Args:
        directions: edit specs, one grid row each (a direction file, ``FILE#k``,
            ``ganspace:NAME``, ``stylespace:NAME``, or a built-in name).
        strengths: strengths, one column each.
        num_images: images per logging event.
        every_n_epochs: validation epochs between grids during fit.
        layers: restrict direction edits to W+ entries ``a:b``.
        ganspace: GANSpace file for ``ganspace:`` specs.
        ganspace_mode: ``"target"`` (e4e) or ``"shift"``.
        style_std_samples: samples of the style std for ``stylespace:`` specs (cached).
        tag: logger tag prefix.
        upscale: integer enlargement of small images.
        save_dir: also write the grids as PNGs here.
    """

    def __init__(
        self,
        directions: list[str],
        strengths: list[float] = [-3.0, 0.0, 3.0],  # noqa: B006 - jsonargparse needs a plain default
        num_images: int = 4,
        every_n_epochs: int = 1,
        layers: Optional[str] = None,
        ganspace: Optional[str] = None,
        ganspace_mode: Literal["target", "shift"] = "target",
        style_std_samples: int = 100_000,
        tag: str = "edits",
        upscale: int = 1,
        save_dir: Optional[str] = None,
    ) -> None:
        super().__init__()
        if not directions:
            raise ValueError("EditGridCallback needs at least one direction")
        self.directions = list(directions)
        self.strengths = [float(s) for s in strengths]
        self.num_images, self.every_n_epochs = num_images, max(1, every_n_epochs)
        self.layers, self.ganspace, self.ganspace_mode = layers, ganspace, ganspace_mode
        self.style_std_samples = style_std_samples
        self.tag, self.upscale, self.save_dir = tag, upscale, save_dir
        self._edits: list[Any] | None = None
        self._predict_logged = 0

    def edits(self, generator: torch.nn.Module) -> list[Any]:
        if self._edits is None:
            from lsap.editing.edits import resolve_edit

            self._edits = [resolve_edit(spec, generator, layers=self.layers, ganspace=self.ganspace,
                                        ganspace_mode=self.ganspace_mode, style_std_samples=self.style_std_samples)
                           for spec in self.directions]
        return self._edits

    @torch.no_grad()
    def log_grids(self, trainer: Trainer, pl_module: LightningModule, ws: Tensor, step: int,
                  first_index: int = 0, deltas: Optional[list[dict[str, Any]]] = None) -> list[Tensor]:
        """Render and log one grid per code of ``ws`` (with PTI ``deltas``, one per code, each
        image renders with its tuned weights); returns the grids."""
        from lsap.editing.run import render_grid

        generator = pl_module.generator
        edits = self.edits(generator)
        if deltas is None:
            images, _ = render_grid(generator, ws.detach().float(), edits, self.strengths)
        else:  # PTI: every image renders with its own tuned weights
            from lsap.model.delta import apply_delta

            images = [render_grid(apply_delta(generator, delta), ws[i:i + 1].detach().float(), edits,
                                  self.strengths)[0][0] for i, delta in enumerate(deltas)]
        grids = []
        for i, rows in enumerate(images):
            grid = image_grid(list(rows), upscale=self.upscale)
            index = first_index + i
            for logger in trainer.loggers:
                log_image_grid(logger, f"{self.tag}/{index}", grid, step)
            if self.save_dir is not None:
                save_image_grid(grid, Path(self.save_dir) / f"{self.tag}-step{step:07d}-{index:03d}.png")
            grids.append(grid)
        return grids

    # ----- fit / validate -----------------------------------------------------------------
    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or not trainer.is_global_zero or trainer.sanity_checking:
            return
        if trainer.current_epoch % self.every_n_epochs != 0 or not hasattr(pl_module, "encode"):
            return
        images = batch["image"][: self.num_images]
        was_training = pl_module.training
        pl_module.eval()
        try:
            ws = pl_module.encode(images)
        finally:
            pl_module.train(was_training)
        self.log_grids(trainer, pl_module, ws, trainer.global_step)

    # ----- predict --------------------------------------------------------------------------
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._predict_logged = 0

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        left = self.num_images - self._predict_logged
        if left <= 0 or not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        ws = outputs.get("ws")
        if not isinstance(ws, Tensor) or ws.shape[0] == 0:
            return
        deltas = outputs.get("pti_delta")
        self.log_grids(trainer, pl_module, ws[:left], self._predict_logged, first_index=self._predict_logged,
                       deltas=list(deltas[:left]) if deltas is not None else None)
        self._predict_logged += min(left, ws.shape[0])
