"""Input | reconstruction grids during ``lsap fit``, and a PNG of them at the end.

Works with any module whose ``training_step`` / ``validation_step`` return a dict holding
``"recon"`` (the reconstructions of ``batch["image"]``, in [-1, 1]), as
:class:`~lsap.modules.LSAP_E` does. With ``edit``, validation grids gain a third row: the
reconstructions edited along a direction (the module's outputs must also hold ``"ws"``).

With ``columns="one_per_class"`` the validation grids and the PNG show instead the first
validation image of each class (lowest dataset index; the dataset must give labels, as
:class:`~lsap.data.FashionSamplesDataset` does), encoded with the module's ``encode`` and
drawn with its ``decode``. ``class_edits`` then edits each column along the direction its
class is given in that table (a class missing from it, or mapped to null, gets no edit), and
a strip under the grid names each column's class and edit. Grids are drawn with the helpers
of :mod:`lsap.visualize`, as the edit grids of :class:`~lsap.callbacks.EditGridCallback` are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from lightning.pytorch import Callback, LightningModule, Trainer
import numpy as np
import torch
from torch import Tensor

from lsap.errors import BadValueError
from lsap.visualize import image_grid, log_image_grid, save_image_grid

__all__ = ["ReconstructionGridCallback"]


def _reconstructions(outputs: Any) -> Optional[Tensor]:
    recon = outputs.get("recon") if isinstance(outputs, dict) else None
    return recon if isinstance(recon, Tensor) else None


def first_index_per_class(labels: Sequence[int]) -> list[int]:
    """Dataset indices of the first image of each class present, in class order."""
    first: dict[int, int] = {}
    for index, label in enumerate(int(x) for x in labels):
        first.setdefault(label, index)
    return [first[label] for label in sorted(first)]


def dataset_labels(dataset: Any) -> list[int]:
    """The labels of a validation dataset: its ``labels`` attribute, else each item's ``"label"``."""
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return [int(x) for x in labels]
    found = []
    for i in range(len(dataset)):
        item = dataset[i]
        if not isinstance(item, dict) or "label" not in item:
            raise BadValueError("columns='one_per_class' needs a validation dataset with labels (a 'labels' attribute "
                                f"or a 'label' in each item); item {i} of {type(dataset).__name__} has none")
        found.append(int(item["label"]))
    return found


def label_strip(lines_per_column: Sequence[Sequence[str]], column_width: int, padding: int, channels: int,
                line_height: int = 12) -> Tensor:
    """A ``[channels, H, W]`` strip in [-1, 1] (black on white) to put under an
    :func:`~lsap.visualize.image_grid` whose columns are ``column_width`` px wide: each
    column's lines written centred under it in PIL's built-in font."""
    from PIL import Image, ImageDraw, ImageFont

    rows = max((len(lines) for lines in lines_per_column), default=0)
    width = len(lines_per_column) * (column_width + padding) + padding
    picture = Image.new("L", (width, rows * line_height + padding), 255)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    for j, lines in enumerate(lines_per_column):
        left = padding + j * (column_width + padding)
        for k, line in enumerate(lines):
            line = line.replace(" ", "  ")  # the built-in bitmap font's space is 1-2 px wide
            text_width = draw.textlength(line, font=font)
            draw.text((left + max(0.0, (column_width - text_width) / 2), k * line_height + 1), line, fill=0, font=font)
    strip = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 127.5 - 1.0)
    return strip[None].expand(channels, -1, -1).clone()


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
        edit_strength: the strength of that edit (and of the ``class_edits``).
        edit_unit: ``"raw"`` (the strength as given) or ``"std"`` (standard deviations of
            sampled w along the direction, :meth:`lsap.editing.Direction.std_strength`).
        columns: ``"first_batch"`` (the first ``num_images`` images of the first validation
            batch) or ``"one_per_class"`` (the first validation image of each class).
        class_edits: with ``"one_per_class"``: class index -> direction spec (null: no edit);
            adds the edit row, each column edited along its class's direction.
        class_names: names of the classes for the label strip (default: the class index).
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
        edit_unit: Literal["raw", "std"] = "raw",
        columns: Literal["first_batch", "one_per_class"] = "first_batch",
        class_edits: Optional[dict[int, Optional[str]]] = None,
        class_names: Optional[list[str]] = None,
    ) -> None:
        super().__init__()
        if edit_unit not in ("raw", "std"):
            raise BadValueError(f"edit_unit must be 'raw' or 'std', got {edit_unit!r}")
        if columns not in ("first_batch", "one_per_class"):
            raise BadValueError(f"columns must be 'first_batch' or 'one_per_class', got {columns!r}")
        if class_edits is not None and columns != "one_per_class":
            raise BadValueError("class_edits needs columns: one_per_class (each column's class chooses its edit)")
        if class_edits is not None and edit is not None:
            raise BadValueError("give either edit (one direction for every column) or class_edits, not both")
        self.every_n_steps, self.num_images = every_n_steps, num_images
        self.png_name, self.min_png_size, self.tag = png_name, min_png_size, tag
        self.edit, self.edit_strength, self.edit_unit = edit, edit_strength, edit_unit
        self.columns = columns
        self.class_edits = {int(k): v for k, v in (class_edits or {}).items()} if class_edits is not None else None
        self.class_names = list(class_names) if class_names is not None else None
        self._edit: Any = None
        self._edits: dict[str, tuple[Any, float]] = {}
        self._val_rows: Optional[list[Tensor]] = None
        self._val_labels: Optional[list[list[str]]] = None

    def _log(self, trainer: Trainer, name: str, rows: list[Tensor], step: int,
             labels: Optional[list[list[str]]] = None) -> None:
        if not trainer.is_global_zero:
            return
        grid = self._grid(rows, labels)
        for logger in trainer.loggers:
            log_image_grid(logger, f"{self.tag}{name}", grid, step)

    def _rows(self, batch: Any, recon: Tensor) -> list[Tensor]:
        n = self.num_images
        return [batch["image"][:n].detach(), recon[:n].detach()]

    def _resolved(self, spec: str, generator: torch.nn.Module) -> tuple[Any, float]:
        """The edit of ``spec`` and its raw strength (cached: the std unit samples w)."""
        if spec not in self._edits:
            from lsap.editing.edits import resolve_edit

            edit = resolve_edit(spec, generator)
            strength = float(self.edit_strength)
            if self.edit_unit == "std":
                direction = getattr(edit, "direction", None)
                if direction is None:
                    raise BadValueError(f"edit '{spec}' is not a W direction: edit_unit 'std' needs one")
                strength = direction.std_strength(generator, strength)
            self._edits[spec] = (edit, strength)
        return self._edits[spec]

    @torch.no_grad()
    def _edited(self, pl_module: LightningModule, ws: Tensor, spec: Optional[str] = None) -> Tensor:
        generator = pl_module.generator
        edit, strength = self._resolved(spec or self.edit, generator)
        edited = edit.edited(generator, ws.detach().float(), strength)
        return edit.render(generator, edited).clamp(-1, 1)

    def class_name(self, label: int) -> str:
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return f"class {label}"

    def edit_for_class(self, label: int) -> Optional[str]:
        """The direction spec the table gives class ``label`` (None: no edit)."""
        return (self.class_edits or {}).get(int(label))

    @torch.no_grad()
    def class_rows(self, trainer: Trainer, pl_module: LightningModule) -> tuple[list[Tensor], list[list[str]]]:
        """Rows (inputs, reconstructions[, class edits]) of the first validation image of each
        class, and the label-strip lines of each column."""
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        dataset = loader.dataset
        labels = dataset_labels(dataset)
        chosen = first_index_per_class(labels)
        device = pl_module.device
        images = torch.stack([dataset[i]["image"] for i in chosen]).to(device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            ws = pl_module.encode(images)
            recon = pl_module.decode(ws).clamp(-1, 1)
        finally:
            pl_module.train(was_training)
        rows, lines = [images.cpu(), recon.float().cpu()], []
        column_labels = [labels[i] for i in chosen]
        if self.class_edits is None:
            return rows, [[self.class_name(label)] for label in column_labels]
        edited = torch.full_like(rows[1], -1.0)
        for j, label in enumerate(column_labels):
            spec = self.edit_for_class(label)
            if spec is None:
                lines.append([self.class_name(label), "no edit:", "no direction"])
                continue
            edited[j] = self._edited(pl_module, ws[j : j + 1], spec)[0].float().cpu()
            unit = " std" if self.edit_unit == "std" else ""
            lines.append([self.class_name(label), spec, f"{self.edit_strength:+g}{unit}"])
        rows.append(edited)
        return rows, lines

    def _grid(self, rows: list[Tensor], labels: Optional[list[list[str]]], upscale: int = 1) -> Tensor:
        grid = image_grid(rows, upscale=upscale)
        if labels:
            width = rows[0].shape[-1] * upscale
            grid = torch.cat([grid, label_strip(labels, width, padding=2, channels=grid.shape[0]).to(grid)], dim=1)
        return grid

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        recon = _reconstructions(outputs)
        # The step the batch was trained at (the counter has already moved on).
        step = trainer.global_step - 1
        if recon is None or not self.every_n_steps or step % self.every_n_steps != 0:
            return
        self._log(trainer, "train/reconstructions", self._rows(batch, recon), step)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_rows, self._val_labels = None, None

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.columns == "one_per_class":
            return
        recon = _reconstructions(outputs)
        if recon is not None and self._val_rows is None:
            self._val_rows = self._rows(batch, recon)
            ws = outputs.get("ws") if self.edit is not None else None
            if isinstance(ws, Tensor):
                self._val_rows.append(self._edited(pl_module, ws[: self.num_images]))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.columns == "one_per_class" and not trainer.sanity_checking and trainer.is_global_zero:
            self._val_rows, self._val_labels = self.class_rows(trainer, pl_module)
        if self._val_rows is not None:
            self._log(trainer, "val/reconstructions", self._val_rows, trainer.global_step, self._val_labels)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.png_name is None or not trainer.is_global_zero or self._val_rows is None:
            return
        ckpt = trainer.checkpoint_callback
        folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir)
        upscale = max(1, self.min_png_size // self._val_rows[0].shape[-1])  # small demo images stay visible
        save_image_grid(self._grid(self._val_rows, self._val_labels, upscale=upscale), folder / self.png_name)
