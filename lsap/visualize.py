"""Image grids for loggers and for people without a dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lsap.images import to_uint8

__all__ = ["image_grid", "log_image_grid", "save_image_grid", "to_uint8"]


def image_grid(rows: Sequence[Tensor], padding: int = 2, upscale: int = 1) -> Tensor:
    """Stack rows of [-1, 1] images ``[N, C, H, W]`` into one ``[C, H', W']`` grid in [-1, 1];
    each row is one kind (inputs, reconstructions, edits, ...), each column one image. Rows
    of other sizes are resized to the first row's; ``upscale`` enlarges every image by an
    integer factor (nearest neighbour) so tiny images stay visible."""
    if not rows:
        raise ValueError("image_grid needs at least one row")
    n = min(r.shape[0] for r in rows)
    size = tuple(int(d) * upscale for d in rows[0].shape[-2:])
    fixed = []
    for r in rows:
        r = r[:n].detach().float().cpu()
        if tuple(r.shape[-2:]) != size:
            mode = "nearest" if tuple(d * upscale for d in r.shape[-2:]) == size else "bilinear"
            r = F.interpolate(r, size=size, mode=mode, **({} if mode == "nearest" else
                                                           {"align_corners": False, "antialias": True}))
        fixed.append(r)
    c, h, w = fixed[0].shape[1:]
    grid = torch.ones(c, len(fixed) * (h + padding) + padding, n * (w + padding) + padding)
    for i, row in enumerate(fixed):
        for j in range(n):
            y, x = padding + i * (h + padding), padding + j * (w + padding)
            grid[:, y : y + h, x : x + w] = row[j].clamp(-1, 1)
    return grid


def save_image_grid(grid: Tensor, path: str | Path) -> Path:
    from PIL import Image

    from lsap.io import atomic_write

    path = Path(path)
    picture = Image.fromarray(to_uint8(grid).permute(1, 2, 0).numpy())
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    atomic_write(path, lambda f: picture.save(f, format=image_format))
    return path


def log_image_grid(logger: Any, tag: str, grid: Tensor, step: int) -> None:
    """Send a grid to whichever logger this is (TensorBoard, wandb); others are skipped."""
    experiment = getattr(logger, "experiment", None)
    if experiment is None:
        return
    if hasattr(experiment, "add_image"):  # TensorBoard SummaryWriter
        experiment.add_image(tag, to_uint8(grid), global_step=step)
    elif hasattr(logger, "log_image"):  # WandbLogger
        logger.log_image(key=tag, images=[to_uint8(grid).permute(1, 2, 0).numpy()], step=step)
