"""Sample grids of a GAN's G_ema during training, for loggers and as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from lsap.visualize import image_grid, log_image_grid, save_image_grid


class GANSampleGrid(Callback):
    """Every ``every_n_steps`` training steps (and at the end of fit), draw ``rows x
    columns`` images of ``pl_module.generator_ema`` from fixed latents, log the grid to the
    logger and write it as ``{dirpath}/samples_{step:07d}.png`` (plus ``samples_last.png``).

    Args:
        every_n_steps: interval in training steps (0: only at the end).
        rows, columns: grid layout.
        seed: seed of the fixed latents, so grids of different steps are comparable.
        truncation_psi: truncation of the samples (1: none).
        dirpath: where PNGs go; default ``{trainer.log_dir or default_root_dir}/samples``.
        upscale: integer enlargement of each image in the PNG (small images stay visible).
    """

    def __init__(self, every_n_steps: int = 500, rows: int = 8, columns: int = 8, seed: int = 0,
                 truncation_psi: float = 1.0, dirpath: Optional[str] = None, upscale: int = 2):
        super().__init__()
        self.every_n_steps, self.rows, self.columns = every_n_steps, rows, columns
        self.seed, self.truncation_psi, self.dirpath, self.upscale = seed, truncation_psi, dirpath, upscale
        self._last_step = -1

    def _folder(self, trainer: Trainer) -> Path:
        if self.dirpath:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "samples"

    @rank_zero_only
    def write(self, trainer: Trainer, pl_module: LightningModule) -> Optional[Path]:
        step = int(trainer.global_step)
        if step == self._last_step:
            return None
        self._last_step = step
        g = pl_module.generator_ema
        z = torch.randn(self.rows * self.columns, g.z_dim, generator=torch.Generator().manual_seed(self.seed))
        with torch.no_grad():
            images = pl_module.sample(z, truncation_psi=self.truncation_psi).float().cpu()
        rows = [images[i * self.columns:(i + 1) * self.columns] for i in range(self.rows)]
        grid = image_grid(rows, upscale=self.upscale)
        for logger in trainer.loggers:
            log_image_grid(logger, "samples", grid, step)
        folder = self._folder(trainer)
        path = save_image_grid(grid, folder / f"samples_{step:07d}.png")
        save_image_grid(grid, folder / "samples_last.png")
        return path

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write(trainer, pl_module)
