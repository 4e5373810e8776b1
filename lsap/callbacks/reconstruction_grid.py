"""Input | reconstruction grids during ``lsap fit``, and a PNG of them at the end.

Works with any module whose ``training_step`` / ``validation_step`` return a dict holding
``"recon"`` (the reconstructions of ``batch["image"]``, in [-1, 1]), as
:class:`~lsap.modules.LSAP_E` does. With ``edit``, validation grids gain a third row: the
reconstructions edited along a direction (the module's outputs must also hold ``"ws"``). Grids are drawn with the helpers of
:mod:`lsap.visualize`, as the edit grids of :class:`~lsap.callbacks.EditGridCallback` are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Callback, LightningModule, Trainer
import torch
from torch import Tensor

from lsap.visualize import image_grid, log_image_grid, save_image_grid

__all__ = ["ReconstructionGridCallback"]


def _reconstructions(outputs: Any) -> Optional[Tensor]:
    recon = outputs.get("recon") if isinstance(outputs, dict) else None
    return recon if isinstance(recon, Tensor) else None


class ReconstructionGridCallback(Callback):
    """Log input | reconstruction grids and write one as a PNG when fitting ends.

    Args:
        every_n_steps: log a grid of the training batch every this many steps (0: never).
        num_images: images per grid.
        png_name: file written at the end of fit next to the checkpoints (the checkpoint
            callback's folder, else the trainer's ``default_root_dir``) from the first
            batch of the last validation; ``None`` writes nothing.
        min_png_size: images smaller than this are enlarged (integer factor) in the PNG.
        tag: logger tag prefix (``<tag>`` is followed by ``train/`` or ``val/``).
        edit: a direction spec of :mod:`lsap.editing` (a file or a built-in name such as
            ``sneaker_to_boot``) that adds an edited row to the validation grids and the PNG.
        edit_strength: the strength of that edit.
    """

    def __init__(
        self,
        every_n_steps: int = 1000,
        num_images: int = 8,
        png_name: Optional[str] = "reconstructions.png",
        min_png_size: int = 128,
        tag: str = "",
        edit: Optional[str] = None,
        edit_strength: float = 3.0,
    ) -> None:
        super().__init__()
        self.every_n_steps, self.num_images = every_n_steps, num_images
        self.png_name, self.min_png_size, self.tag = png_name, min_png_size, tag
        self.edit, self.edit_strength = edit, edit_strength
        self._edit: Any = None
        self._val_rows: Optional[list[Tensor]] = None

    def _log(self, trainer: Trainer, name: str, rows: list[Tensor], step: int) -> None:
        if not trainer.is_global_zero:
            return
        grid = image_grid(rows)
        for logger in trainer.loggers:
            log_image_grid(logger, f"{self.tag}{name}", grid, step)

    def _rows(self, batch: Any, recon: Tensor) -> list[Tensor]:
        n = self.num_images
        return [batch["image"][:n].detach(), recon[:n].detach()]

    @torch.no_grad()
    def _edited(self, pl_module: LightningModule, ws: Tensor) -> Tensor:
        generator = pl_module.generator
        if self._edit is None:
            from lsap.editing.edits import resolve_edit

            self._edit = resolve_edit(self.edit, generator)
        edited = self._edit.edited(generator, ws.detach().float(), self.edit_strength)
        return self._edit.render(generator, edited).clamp(-1, 1)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        recon = _reconstructions(outputs)
        # The step the batch was trained at (the counter has already moved on).
        step = trainer.global_step - 1
        if recon is None or not self.every_n_steps or step % self.every_n_steps != 0:
            return
        self._log(trainer, "train/reconstructions", self._rows(batch, recon), step)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_rows = None

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        recon = _reconstructions(outputs)
        if recon is not None and self._val_rows is None:
            self._val_rows = self._rows(batch, recon)
            ws = outputs.get("ws") if self.edit is not None else None
            if isinstance(ws, Tensor):
                self._val_rows.append(self._edited(pl_module, ws[: self.num_images]))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._val_rows is not None:
            self._log(trainer, "val/reconstructions", self._val_rows, trainer.global_step)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.png_name is None or not trainer.is_global_zero or self._val_rows is None:
            return
        ckpt = trainer.checkpoint_callback
        folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir)
        upscale = max(1, self.min_png_size // self._val_rows[0].shape[-1])  # small demo images stay visible
        save_image_grid(image_grid(self._val_rows, upscale=upscale), folder / self.png_name)
