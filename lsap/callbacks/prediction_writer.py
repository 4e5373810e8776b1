"""Write inversion results to disk, one set of files per input image, resumably.

Every inversion module (``LSAP_O``, ``PTI``, the encoder ``LSAP_E``) returns from
``predict_step`` the dict described in :class:`InversionWriter`; this callback turns it
into files. Output names mirror each input's path relative to the input folder, so
``in/a/001.png`` and ``in/b/001.png`` give ``a/001`` and ``b/001``.

Layout of ``output_dir`` (``<name>`` = relative input path without its extension)::

    codes/<name>.pt       {"ws": [num_ws, w_dim], "noise": [[1, 1, r, r], ...]?, "key", "name", "meta"}
    images/<name>.png     the reconstruction (8-bit RGB, generator resolution)
    pti/<name>.pt         PTI refinement only: the tuned-weights delta (see lsap.modules.pti)
    records/<name>.json   {"name", "key", "losses": {...}, "nscd", "nscd_layers"?, "meta"}
    results.jsonl         every record, one per line, sorted by name (rebuilt at the end)
    summary.json          counts and means (rebuilt at the end)

Kinds of files live in separate folders so no input name can collide with another kind
of output or with the two summary files. All files are written atomically (temporary
file, then rename).

Resuming. An image counts as done when its record *and* its code exist; the record is
written last, so an interrupted write never counts. The module asks before optimising:
``pending_indices(trainer, keys)`` returns the batch positions no attached writer has
finished (``is_done``), and the module returns results for those only, listing the rest
under ``"skipped"``. The data loader stays untouched, which keeps Lightning's distributed
sampler valid; reading an already finished image costs only its decoding.

Distributed runs. Each rank writes the files of its own images (Lightning's predict
sampler gives every image to exactly one rank). Records are one file per image, so
ranks never share a file; at the end all ranks meet at a barrier and rank 0 rebuilds
``results.jsonl`` and ``summary.json`` from every record in the folder, including those
of earlier, interrupted runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor

__all__ = [
    "CODES_DIR",
    "DELTAS_DIR",
    "IMAGES_DIR",
    "RECORDS_DIR",
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "InversionWriter",
    "dataset_root",
    "find_writers",
    "item_keys",
    "load_code",
    "output_name",
    "pending_batch",
    "pending_indices",
]

CODES_DIR = "codes"
IMAGES_DIR = "images"
DELTAS_DIR = "pti"
RECORDS_DIR = "records"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"

# Output keys whose tensors are large; dropped from the returned predictions after writing.
_LARGE_KEYS = ("image", "noise", "pti_delta")


# ----- naming ------------------------------------------------------------------------------
def item_keys(batch: Mapping[str, Any]) -> list[str]:
    """Identifiers of a batch's images: their file paths, or for path-less data (such as
    ``SyntheticDataset``) the item index as a zero-padded number."""
    if "path" in batch:
        return [str(p) for p in batch["path"]]
    if "index" in batch:
        return [f"{int(i):06d}" for i in batch["index"]]
    raise KeyError("a batch needs 'path' (image folders) or 'index' (synthetic data) to name its outputs")


def output_name(key: str, root: str | None = None) -> str:
    """Output name (POSIX, no extension) of an image identified by ``key``.

    Inside ``root`` the name is the relative path; a relative key without ``..`` is used
    as it is; anything else falls back to the file name.
    """
    path = Path(key)
    if root is not None:
        try:
            relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
            return PurePosixPath(*relative.parts).with_suffix("").as_posix()
        except ValueError:
            pass
    if not path.is_absolute() and ".." not in path.parts and path.parts:
        return PurePosixPath(*path.parts).with_suffix("").as_posix()
    return PurePosixPath(path.name).with_suffix("").as_posix()


def dataset_root(trainer: Trainer | None) -> str | None:
    """The folder the predict data set was scanned from (its ``root``), if it has one."""
    loaders = getattr(trainer, "predict_dataloaders", None) if trainer is not None else None
    if loaders is None:
        return None
    loader = loaders[0] if isinstance(loaders, Sequence) and loaders else loaders
    root = getattr(getattr(loader, "dataset", None), "root", None)
    return os.fspath(root) if root is not None else None


def _dataset_keys(trainer: Trainer) -> list[str] | None:
    loaders = trainer.predict_dataloaders
    loader = loaders[0] if isinstance(loaders, Sequence) and loaders else loaders
    paths = getattr(getattr(loader, "dataset", None), "paths", None)
    return [str(p) for p in paths] if paths is not None else None


def find_writers(trainer: Trainer | None) -> list[InversionWriter]:
    """The :class:`InversionWriter` callbacks attached to ``trainer``."""
    if trainer is None:
        return []
    return [cb for cb in trainer.callbacks if isinstance(cb, InversionWriter)]


def pending_indices(trainer: Trainer | None, keys: Sequence[str]) -> list[int]:
    """Positions in ``keys`` that some attached writer has not finished yet (all of them
    when no writer is attached, or when a writer was told not to skip)."""
    writers = find_writers(trainer)
    if not writers:
        return list(range(len(keys)))
    return [i for i, key in enumerate(keys) if not all(w.is_done(key) for w in writers)]


def pending_batch(trainer: Trainer | None, batch: Mapping[str, Any]) -> tuple[list[int], dict[str, Any]]:
    """Split a predict batch into what is still to do and what is finished.

    Returns the batch positions to invert and the start of ``predict_step``'s output:
    ``{"path": keys still to do, "skipped": keys already finished}``.
    """
    keys = item_keys(batch)
    todo = pending_indices(trainer, keys)
    pending = set(todo)
    out: dict[str, Any] = {"path": [keys[i] for i in todo],
                           "skipped": [k for i, k in enumerate(keys) if i not in pending]}
    return todo, out


def load_code(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``codes/<name>.pt`` file written by :class:`InversionWriter` (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"code file not found: '{path}'")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, Mapping) or "ws" not in data:
        raise ValueError(f"'{path}' is not an lsap code file (expected a dict with 'ws')")
    return dict(data)


# ----- atomic file writes ------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_uint8_image(image: Tensor) -> Image.Image:
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(array.permute(1, 2, 0).numpy()), "RGB")


def _scalar(value: Tensor | float, index: int) -> float:
    if isinstance(value, Tensor):
        return float(value.detach().reshape(-1)[index] if value.numel() > 1 else value.detach().reshape(()))
    return float(value)


def _json_safe(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ----- the writer --------------------------------------------------------------------------
class InversionWriter(BasePredictionWriter):
    """Write codes, reconstructions and per-image metrics of an inversion run.

    ``predict_step`` of an inversion module returns, for the B images of a batch that
    still had to be done::

        {
            "path": list[str],                    # identifiers (see item_keys), length B
            "ws": Tensor[B, num_ws, w_dim],       # W+ codes (W codes broadcast over num_ws)
            "image": Tensor[B, 3, R, R],          # reconstructions in [-1, 1]
            "losses": dict[str, Tensor[B]],       # final per-image losses
            "nscd": Tensor[B],                    # per-image NSCD (mean over layers)
            # optional:
            "nscd_layers": Tensor[B, L],          # per-layer NSCD
            "noise": list[Tensor[B, 1, r, r]],    # optimised noise maps, one per conv
            "pti_delta": list[dict],              # PTI weight deltas, one per image
            "meta": dict,                         # JSON-able run facts (method, space, ...)
            "skipped": list[str],                 # identifiers already done (not in "path")
        }

    When every image of a batch was already done, ``path`` is empty and only ``path`` and
    ``skipped`` need to be present. ``path`` may be ``None`` for path-less data if the
    dict carries the batch's ``"index"`` instead. Modules build ``path`` with
    :func:`item_keys` and honour resuming with :func:`pending_indices`.

    Args:
        output_dir: folder for all outputs (created if missing).
        input_root: folder the outputs' relative names are taken from; default: the
            ``root`` of the predict data set (``ImageDataModule``'s ``predict_dir``).
        save_noise: store optimised noise maps in the code files. They make an LSAP_O
            reconstruction exactly reproducible but are large (about 11 MB per 1024 px
            image in float32, against 37 KB for the W+ code); without them the code
            renders with the generator's stored noise (what editing and PTI use).
        save_images: write the reconstruction PNGs.
        skip_done: resume: images with a finished record are not inverted again.
        keep_outputs: keep images, noise and deltas in the predictions ``trainer.predict``
            returns; by default they are dropped after writing so memory stays flat over
            long runs (codes, losses and NSCD are kept).
    """

    def __init__(
        self,
        output_dir: str,
        input_root: str | None = None,
        save_noise: bool = False,
        save_images: bool = True,
        skip_done: bool = True,
        keep_outputs: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.input_root = input_root
        self.save_noise = save_noise
        self.save_images = save_images
        self.skip_done = skip_done
        self.keep_outputs = keep_outputs
        self._root: str | None = input_root
        self.num_written = 0
        self.num_skipped = 0

    # ----- names and state -------------------------------------------------------------
    def name_of(self, key: str) -> str:
        return output_name(key, self._root)

    def code_path(self, key: str) -> Path:
        return self.output_dir / CODES_DIR / f"{self.name_of(key)}.pt"

    def image_path(self, key: str) -> Path:
        return self.output_dir / IMAGES_DIR / f"{self.name_of(key)}.png"

    def delta_path(self, key: str) -> Path:
        return self.output_dir / DELTAS_DIR / f"{self.name_of(key)}.pt"

    def record_path(self, key: str) -> Path:
        return self.output_dir / RECORDS_DIR / f"{self.name_of(key)}.json"

    def is_done(self, key: str) -> bool:
        """Whether the image ``key`` has a finished record and code (and resuming is on)."""
        return self.skip_done and self.record_path(key).is_file() and self.code_path(key).is_file()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._root = self.input_root if self.input_root is not None else dataset_root(trainer)
        self.num_written = self.num_skipped = 0
        keys = _dataset_keys(trainer)
        if keys is not None:
            counts = Counter(self.name_of(k) for k in keys)
            clashes = sorted(name for name, n in counts.items() if n > 1)
            if clashes:
                examples = [k for k in keys if self.name_of(k) in set(clashes[:3])]
                raise ValueError(
                    f"{len(clashes)} output names are shared by several inputs (same name, different extension "
                    f"in one folder), e.g. {examples}: their results would overwrite each other; rename them"
                )
        self.output_dir.mkdir(parents=True, exist_ok=True)

    # ----- writing ---------------------------------------------------------------------
    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, dict) or "path" not in prediction:
            raise TypeError(
                "InversionWriter expects predict_step to return a dict with 'path', 'ws', 'image', 'losses' and "
                f"'nscd' (see its docstring), got {type(prediction).__name__}"
            )
        self.num_skipped += len(prediction.get("skipped", ()))
        keys = prediction["path"]
        if keys is None:  # path-less data: name the images by index, as item_keys does
            keys = item_keys({"index": prediction["index"]})
        for i, key in enumerate(keys):
            self.write_one(prediction, i, key)
            self.num_written += 1
        if not self.keep_outputs:
            for name in _LARGE_KEYS:
                prediction.pop(name, None)

    def write_one(self, prediction: Mapping[str, Any], i: int, key: str) -> None:
        """Write the files of image ``i`` of ``prediction``; the record goes last."""
        name = self.name_of(key)
        meta = dict(prediction.get("meta") or {})
        code: dict[str, Any] = {"ws": prediction["ws"][i].detach().float().cpu().clone(), "key": key,
                                "name": name, "meta": meta}
        if self.save_noise and prediction.get("noise") is not None:
            code["noise"] = [n[i:i + 1].detach().float().cpu().clone() for n in prediction["noise"]]
        _atomic_write(self.code_path(key), lambda f: torch.save(code, f))
        if self.save_images and prediction.get("image") is not None:
            picture = _to_uint8_image(prediction["image"][i])
            _atomic_write(self.image_path(key), lambda f: picture.save(f, format="PNG"))
        if prediction.get("pti_delta") is not None:
            delta = prediction["pti_delta"][i]
            _atomic_write(self.delta_path(key), lambda f: torch.save(delta, f))
        record: dict[str, Any] = {
            "name": name,
            "key": key,
            "losses": {k: _json_safe(_scalar(v, i)) for k, v in (prediction.get("losses") or {}).items()},
            "nscd": _json_safe(_scalar(prediction["nscd"], i)) if prediction.get("nscd") is not None else None,
            "meta": meta,
        }
        if prediction.get("nscd_layers") is not None:
            record["nscd_layers"] = [_json_safe(float(v)) for v in prediction["nscd_layers"][i].detach().cpu()]
        text = json.dumps(record, sort_keys=True)
        _atomic_write(self.record_path(key), lambda f: f.write(text + "\n"), mode="w")

    # ----- end of the run --------------------------------------------------------------
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        counts = torch.tensor([self.num_written, self.num_skipped], dtype=torch.float64, device=pl_module.device)
        if trainer.world_size > 1:
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        trainer.strategy.barrier("InversionWriter.merge")
        if trainer.is_global_zero:
            self.merge(written_this_run=int(counts[0]), skipped_this_run=int(counts[1]))

    def read_records(self) -> list[dict[str, Any]]:
        """Every finished record in ``output_dir``, sorted by name."""
        folder = self.output_dir / RECORDS_DIR
        records = []
        for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
            records.append(json.loads(path.read_text()))
        return sorted(records, key=lambda r: r["name"])

    def merge(self, written_this_run: int | None = None, skipped_this_run: int | None = None) -> dict[str, Any]:
        """Rebuild ``results.jsonl`` and ``summary.json`` from the records; return the summary."""
        records = self.read_records()
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        _atomic_write(self.output_dir / RESULTS_FILE, lambda f: f.write(lines), mode="w")

        def mean(values: list[float | None]) -> float | None:
            finite = [v for v in values if v is not None]
            return sum(finite) / len(finite) if finite else None

        loss_names = sorted({k for r in records for k in r.get("losses", {})})
        layer_rows = [r["nscd_layers"] for r in records if r.get("nscd_layers")]
        summary: dict[str, Any] = {
            "num_images": len(records),
            "written_this_run": written_this_run,
            "skipped_this_run": skipped_this_run,
            "mean_losses": {k: mean([r["losses"].get(k) for r in records]) for k in loss_names},
            "mean_nscd": mean([r.get("nscd") for r in records]),
            "mean_nscd_layers": [mean(list(col)) for col in zip(*layer_rows)] if layer_rows else None,
            "methods": sorted({str(m) for r in records if (m := (r.get("meta") or {}).get("method"))}),
        }
        text = json.dumps(summary, indent=2, sort_keys=True)
        _atomic_write(self.output_dir / SUMMARY_FILE, lambda f: f.write(text + "\n"), mode="w")
        return summary
