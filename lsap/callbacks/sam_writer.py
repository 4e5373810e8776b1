"""Write SAM refinement results: everything :class:`~lsap.callbacks.InversionWriter`
writes, plus each image's ``sam/<name>.pt`` state (refined W+, offsets, masks), and the
pivots or images SAM could not use, counted and named in ``summary.json``.

An image is finished when its record, code *and* state exist; the state is written before
the record, so a run killed between the two redoes the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from lsap.callbacks.prediction_writer import InversionWriter
from lsap.refine.sam import STATE_DIR, save_state

__all__ = ["SAMWriter"]

STATE_KEY = "sam_state"  # lsap.modules.sam.STATE_KEY (kept literal: callbacks do not import modules)
FAILED_KEY = "failed"


class SAMWriter(InversionWriter):
    """:class:`~lsap.callbacks.InversionWriter` for :class:`~lsap.modules.sam.SAM` runs
    (same arguments); also writes ``sam/<name>.pt`` and lists failed inputs."""

    written_state_keys = (STATE_KEY,)

    def state_path(self, name: str):
        return self.output_dir / STATE_DIR / f"{name}.pt"

    def is_done(self, key: str) -> bool:
        return super().is_done(key) and self.state_path(self.name_of(key)).is_file()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self._failed: list[tuple[str, str]] = []

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        if isinstance(prediction, Mapping):
            self._failed.extend((str(k), str(r)) for k, r in prediction.get(FAILED_KEY) or ())
        super().write_on_batch_end(trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx)
        if isinstance(prediction, dict) and not self.keep_outputs:
            prediction.pop(STATE_KEY, None)

    def write_one(self, prediction: Mapping[str, Any], i: int, key: str) -> None:
        states = prediction.get(STATE_KEY)
        if states is None:
            raise TypeError("SAMWriter expects predict_step to return 'sam_state' (lsap.modules.SAM)")
        save_state(states[i], self.state_path(self.name_of(key)))
        super().write_one(prediction, i, key)  # the record goes last

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, list(getattr(self, "_failed", [])))
            self._failed = [tuple(entry) for rank in gathered for entry in rank]
        super().on_predict_end(trainer, pl_module)

    def merge(self, written_this_run: int | None = None, skipped_this_run: int | None = None,
              unreadable: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        summary = super().merge(written_this_run, skipped_this_run, unreadable)
        failed = getattr(self, "_failed", [])
        summary["failed_this_run"] = len(failed)
        summary["failed_inputs"] = [{"path": key, "reason": reason} for key, reason in failed]
        self.results.write_summary(summary)
        return summary
