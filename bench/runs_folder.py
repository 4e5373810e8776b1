"""Where the bench scripts keep long runs (encoder trainings, the validation images): the
folder named by ``$LSAP_RUNS_DIR``, else ``runs/`` in the repository root, which git ignores
like ``outputs/``."""

from __future__ import annotations

import os
from pathlib import Path


def runs_folder() -> Path:
    return Path(os.environ.get("LSAP_RUNS_DIR") or Path(__file__).resolve().parent.parent / "runs")


def validation_folder() -> Path:
    """The held-out real training images (``fashion32_encoder_runs.py valset`` writes them)."""
    return runs_folder() / "fashion_val_train"
