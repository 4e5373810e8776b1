"""Lightning callbacks: writing inversion results."""

from lsap.callbacks.prediction_writer import (
    InversionWriter,
    dataset_root,
    find_writers,
    item_keys,
    load_code,
    output_name,
    pending_batch,
    pending_indices,
)

__all__ = [
    "InversionWriter",
    "dataset_root",
    "find_writers",
    "item_keys",
    "load_code",
    "output_name",
    "pending_batch",
    "pending_indices",
]
