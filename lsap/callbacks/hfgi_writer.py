"""Write HFGI refinement results: everything :class:`~lsap.callbacks.InversionWriter` writes,
plus each image's input as the module refined it (``hfgi_inputs/<name>.png``), from which
editing recomputes the HFGI conditions (:mod:`lsap.refine.hfgi_editing`).

An image is finished when its record, code *and* input file exist; the input is written
before the record, so a run killed between the two redoes the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch import LightningModule, Trainer

from lsap.callbacks.prediction_writer import InversionWriter
from lsap.refine.hfgi_editing import INPUTS_DIR, write_input

__all__ = ["HFGIWriter"]

INPUT_KEY = "hfgi_input"  # lsap.modules.hfgi.INPUT_KEY (kept literal: callbacks do not import modules)


class HFGIWriter(InversionWriter):
    """:class:`~lsap.callbacks.InversionWriter` for :class:`~lsap.modules.HFGI` runs (same
    arguments); also writes ``hfgi_inputs/<name>.png``."""

    written_state_keys = (INPUT_KEY,)

    def input_path(self, name: str):
        return self.output_dir / INPUTS_DIR / f"{name}.png"

    def is_done(self, key: str) -> bool:
        return super().is_done(key) and self.input_path(self.name_of(key)).is_file()

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        super().write_on_batch_end(trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx)
        if isinstance(prediction, dict) and not self.keep_outputs:
            prediction.pop(INPUT_KEY, None)

    def write_one(self, prediction: Mapping[str, Any], i: int, key: str) -> None:
        inputs = prediction.get(INPUT_KEY)
        if inputs is None:
            raise TypeError("HFGIWriter expects predict_step to return 'hfgi_input' (lsap.modules.HFGI)")
        write_input(self.input_path(self.name_of(key)), inputs[i])
        super().write_one(prediction, i, key)  # the record goes last
