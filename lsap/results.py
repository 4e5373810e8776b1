"""Inversion results on disk: the folder layout, image names and typed per-image records.

Every inversion run (``LSAP_O``, ``PTI``, the encoder ``LSAP_E``) writes one set of files
per input image through :class:`~lsap.callbacks.InversionWriter`; editing and evaluation
read them back through :class:`InversionResults` alone. Layout of a results folder
(``<name>`` = the input's path relative to the input folder, without its extension)::

    codes/<name>.pt       {"ws": [num_ws, w_dim], "noise": [[1, 1, r, r], ...]?, "key", "name", "meta"}
    images/<name>.png     the reconstruction (8-bit RGB, generator resolution)
    pti/<name>.pt         PTI refinement only: the tuned-weights delta (see lsap.model.delta)
    records/<name>.json   {"name", "key", "losses": {...}, "nscd", "nscd_layers"?, "meta"}
    results.jsonl         every record, one per line, sorted by name (rebuilt at the end)
    summary.json          counts, means, and the inputs skipped as unreadable (rebuilt at the end)

A record's ``meta["refinement"]`` names the refinement that made the result (``"pti"``,
``"hfgi"``, ``"sam"``; absent for a plain inversion), and a refinement keeps whatever else
it needs to render edits (its own files, or settings in ``meta``); see
:attr:`InversionRecord.refinement` and the refinement-state protocol in
:mod:`lsap.editing.refinement`. PTI results written before the field are recognised by
their delta file.

``lsap edit`` writes its own folder (:class:`EditResults`, by default ``<results>/edits``)::

    codes/<name>.pt       {"name", "edits": {edit: {"columns", "strengths", "codes"}}}: this image's codes only
    grids/<name>.png      rows: edits; columns: strengths, the reconstruction in the middle
    records/<name>.json   what was done (written last: it marks the image finished)
    edits.jsonl           every record, one per line, sorted by name (rebuilt at the end)

Kinds of files live in separate folders so no input name can collide with another kind
of output or with the two summary files. Every file is written atomically
(:func:`lsap.io.atomic_write`). An image counts as finished when its record *and* its code
exist; the record is written last, so an interrupted write never counts.

Usage::

    results = InversionResults("out/").checked()   # refuses a missing or non-results folder
    for record in results:                  # InversionRecord, sorted by name
        code = record.load_code()           # {"ws": Tensor[num_ws, w_dim], ...}
    ws = load_code("out/", "a/001")["ws"]

Code files are checked when read: ``ws`` must be a finite floating-point ``[num_ws, w_dim]``
tensor (``shape=(num_ws, w_dim)`` also checks it against a generator), else
:class:`lsap.errors.BadFileError` naming the file.

Batches and resuming. Within a prediction run the writer marks, before ``predict_step``,
which images of a batch are already finished (``batch["done"]``); a module calls
:func:`split_pending` to get the positions still to invert. Modules therefore never look
at the trainer or its callbacks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lsap.errors import BadValueError, MissingInputError
from lsap.images import to_uint8
from lsap.io import CheckpointError, atomic_write, load_weights_file
from lsap.model.delta import load_delta, save_delta

__all__ = [
    "CODES_DIR",
    "DELTAS_DIR",
    "DONE_KEY",
    "EDITS_FILE",
    "GRIDS_DIR",
    "IMAGES_DIR",
    "RECORDS_DIR",
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "EditResults",
    "InversionPrediction",
    "InversionRecord",
    "InversionResults",
    "batch_names",
    "item_keys",
    "load_code",
    "load_results",
    "output_name",
    "split_pending",
]

CODES_DIR = "codes"
IMAGES_DIR = "images"
DELTAS_DIR = "pti"
RECORDS_DIR = "records"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
GRIDS_DIR = "grids"
EDITS_FILE = "edits.jsonl"

# Batch entry a writer fills before predict_step: one bool per image, True when finished.
DONE_KEY = "done"


class InversionPrediction(TypedDict, total=False):
    """What an inversion module's ``predict_step`` returns for the B images of a batch that
    still had to be done (``path`` may be empty when every image was finished)."""

    path: list[str] | None            # identifiers (see item_keys), length B
    index: Tensor                     # path-less data only (``path`` is None): item indices
    skipped: list[str]                # identifiers already finished (not in ``path``)
    ws: Tensor                        # [B, num_ws, w_dim] W+ codes
    image: Tensor                     # [B, 3, R, R] reconstructions in [-1, 1]
    losses: dict[str, Tensor]         # final per-image losses, each [B]
    nscd: Tensor                      # [B] per-image NSCD (mean over layers)
    nscd_layers: Tensor               # [B, L] per-layer NSCD
    noise: list[Tensor]               # optimised noise maps, one [B, 1, r, r] per conv
    pti_delta: list[dict[str, Any]]   # PTI weight deltas, one per image
    meta: dict[str, Any]              # JSON-able run facts (method, generator_hash, ...)


# ----- naming ------------------------------------------------------------------------------
def item_keys(batch: Mapping[str, Any]) -> list[str]:
    """Identifiers of a batch's images: their file paths, or for path-less data (such as
    ``SyntheticDataset``) the item index as a zero-padded number."""
    if batch.get("path") is not None:
        return [str(p) for p in batch["path"]]
    if "index" in batch:
        return [f"{int(i):06d}" for i in batch["index"]]
    raise KeyError("a batch needs 'path' (image folders) or 'index' (synthetic data) to name its outputs")


def output_name(key: str, root: str | os.PathLike[str] | None = None) -> str:
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


def batch_names(batch: Mapping[str, Any], root: str | os.PathLike[str] | None = None) -> list[str]:
    """Output names of a batch's images: relative to ``root`` when given, otherwise the
    names the data set gave its items (``"name"``, relative to its folder), otherwise
    derived from the keys alone."""
    if root is None and batch.get("name") is not None:
        return [str(n) for n in batch["name"]]
    return [output_name(key, root) for key in item_keys(batch)]


def split_pending(batch: Mapping[str, Any]) -> tuple[list[int], InversionPrediction]:
    """Split a predict batch into what is still to do and what is finished.

    Returns the batch positions to invert and the start of ``predict_step``'s output:
    ``{"path": keys still to do, "skipped": keys already finished}``. Without a writer's
    ``batch["done"]`` marks every image is to do.
    """
    keys = item_keys(batch)
    done = batch.get(DONE_KEY)
    done = [bool(d) for d in done] if done is not None else [False] * len(keys)
    todo = [i for i, finished in enumerate(done) if not finished]
    out: InversionPrediction = {"path": [keys[i] for i in todo],
                                "skipped": [k for k, finished in zip(keys, done) if finished]}
    return todo, out


# ----- records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class InversionRecord:
    """One finished image of a results folder.

    ``image_path`` and ``delta_path`` are ``None`` when the run wrote no such file (images
    off, or not a PTI run).
    """

    name: str
    key: str
    code_path: Path
    record_path: Path
    image_path: Path | None
    delta_path: Path | None
    losses: dict[str, float | None] = field(default_factory=dict)
    nscd: float | None = None
    nscd_layers: list[float | None] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    results_root: Path | None = None

    @property
    def method(self) -> str | None:
        return self.meta.get("method")

    @property
    def refinement(self) -> str | None:
        """The refinement that made this result (``meta["refinement"]``), or None for a plain
        inversion; a PTI result written before the field says so by its delta file."""
        value = self.meta.get("refinement")
        if value:
            return str(value)
        return "pti" if self.delta_path is not None else None

    def state_path(self, folder: str, suffix: str = ".pt") -> Path:
        """``<results folder>/<folder>/<name><suffix>``: where a refinement keeps this image's
        own state (PTI's delta is ``state_path("pti")``)."""
        if self.results_root is None:
            raise ValueError(f"record '{self.name}' was not read from a results folder")
        return self.results_root / folder / f"{self.name}{suffix}"

    def load_code(self, shape: tuple[int, int] | None = None) -> dict[str, Any]:
        """The code file: ``{"ws": Tensor[num_ws, w_dim], "noise"?, "key", "name", "meta"}``
        (checked; ``shape`` = the generator's ``(num_ws, w_dim)``)."""
        return _read_code(self.code_path, shape)

    def load_delta(self) -> dict[str, Any]:
        """The PTI delta of this image (see :func:`lsap.model.delta.load_delta`)."""
        if self.delta_path is None:
            raise FileNotFoundError(f"'{self.name}' has no PTI delta (not a PTI run): expected '{self.code_path}'")
        return load_delta(self.delta_path)

    def as_dict(self) -> dict[str, Any]:
        """The JSON record as written in ``records/<name>.json``."""
        record: dict[str, Any] = {"name": self.name, "key": self.key, "losses": dict(self.losses),
                                  "nscd": self.nscd, "meta": dict(self.meta)}
        if self.nscd_layers is not None:
            record["nscd_layers"] = list(self.nscd_layers)
        return record


class _PerImageFolder:
    """A folder of per-image files in kind folders, where ``records/<name>.json`` (written
    last) marks an image finished and one JSON-lines file gathers every record."""

    kind = "results folder"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.root}')"

    def record_path(self, name: str) -> Path:
        return self.root / RECORDS_DIR / f"{name}.json"

    def code_path(self, name: str) -> Path:
        return self.root / CODES_DIR / f"{name}.pt"

    def _record_names(self) -> list[str]:
        folder = self.root / RECORDS_DIR
        if not folder.is_dir():
            return []
        return sorted(PurePosixPath(*p.relative_to(folder).with_suffix("").parts).as_posix()
                      for p in folder.rglob("*.json"))

    def _read_record(self, name: str) -> dict[str, Any]:
        path = self.record_path(name)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"record '{path}' is damaged: {error}") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"record '{path}' is damaged: expected a JSON object, got {type(data).__name__}")
        return data

    def write_record(self, record: InversionRecord | Mapping[str, Any]) -> None:
        data = record.as_dict() if isinstance(record, InversionRecord) else dict(record)
        text = json.dumps(data, sort_keys=True)
        atomic_write(self.record_path(str(data["name"])), lambda f: f.write(text + "\n"), mode="w")

    def _write_lines(self, path: Path, records: Sequence[Mapping[str, Any]]) -> None:
        lines = "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in records)
        atomic_write(path, lambda f: f.write(lines), mode="w")

    def _missing_name(self, name: str, names: Sequence[str]) -> MissingInputError:
        if not self.root.is_dir():
            return MissingInputError(f"{self.kind} not found: '{self.root}' (no such folder)")
        if not names:
            return MissingInputError(f"no finished result named '{name}' in '{self.root}': it has none yet")
        shown = ", ".join(f"'{n}'" for n in names[:5]) + (", ..." if len(names) > 5 else "")
        return MissingInputError(f"no finished result named '{name}' in '{self.root}'; its {len(names)} finished "
                                 f"image{'s' if len(names) != 1 else ''}: {shown}")


class InversionResults(_PerImageFolder):
    """A results folder: paths of every kind of file, reading records and codes, writing.

    Iterating yields the finished images as :class:`InversionRecord`, sorted by name.
    """

    def checked(self) -> InversionResults:
        """This folder, after checking that it exists and is a results folder (one line
        otherwise: :class:`~lsap.errors.MissingInputError` / :class:`~lsap.errors.BadValueError`)."""
        if not self.root.exists():
            raise MissingInputError(f"results folder not found: '{self.root}' (no such folder; give the "
                                    "output_dir of an lsap predict run)")
        if not self.root.is_dir():
            raise BadValueError(f"'{self.root}' is a file, not a results folder (the output_dir of lsap predict)")
        if not (self.root / RECORDS_DIR).is_dir() or not (self.root / CODES_DIR).is_dir():
            raise BadValueError(f"'{self.root}' is not a results folder: it has no '{RECORDS_DIR}/' and "
                                f"'{CODES_DIR}/' (the output_dir of lsap predict writes them)")
        return self

    # ----- paths ---------------------------------------------------------------------------
    def image_path(self, name: str) -> Path:
        return self.root / IMAGES_DIR / f"{name}.png"

    def delta_path(self, name: str) -> Path:
        return self.root / DELTAS_DIR / f"{name}.pt"

    @property
    def results_file(self) -> Path:
        return self.root / RESULTS_FILE

    @property
    def summary_file(self) -> Path:
        return self.root / SUMMARY_FILE

    # ----- reading -------------------------------------------------------------------------
    def is_done(self, name: str) -> bool:
        """Whether image ``name`` has a finished record and code."""
        return self.record_path(name).is_file() and self.code_path(name).is_file()

    def names(self) -> list[str]:
        """Names of the finished images, sorted."""
        return [name for name in self._record_names() if self.code_path(name).is_file()]

    def record(self, name: str) -> InversionRecord:
        """The record of image ``name``."""
        path = self.record_path(name)
        if not path.is_file():
            raise self._missing_name(name, self.names())
        data = self._read_record(name)
        image, delta = self.image_path(name), self.delta_path(name)
        return InversionRecord(
            name=str(data.get("name", name)), key=str(data.get("key", name)), code_path=self.code_path(name),
            record_path=path, image_path=image if image.is_file() else None,
            delta_path=delta if delta.is_file() else None, losses=dict(data.get("losses") or {}),
            nscd=data.get("nscd"), nscd_layers=data.get("nscd_layers"), meta=dict(data.get("meta") or {}),
            results_root=self.root,
        )

    def __iter__(self) -> Iterator[InversionRecord]:
        return (self.record(name) for name in self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.is_done(name)

    def __getitem__(self, name: str) -> InversionRecord:
        return self.record(name)

    def load_code(self, name: str, shape: tuple[int, int] | None = None) -> dict[str, Any]:
        """The code file of image ``name`` (see :meth:`InversionRecord.load_code`); a name with
        no code file is an error that lists the names there are."""
        path = self.code_path(name)
        if not path.is_file():
            raise self._missing_name(name, self.names())
        return _read_code(path, shape)

    # ----- writing (atomic; the record goes last) ------------------------------------------
    def write_code(self, name: str, code: Mapping[str, Any]) -> None:
        atomic_write(self.code_path(name), lambda f: torch.save(dict(code), f))

    def write_image(self, name: str, image: Tensor) -> None:
        """Write a ``[3, H, W]`` image in [-1, 1] as an 8-bit RGB PNG."""
        _write_png(self.image_path(name), image)

    def write_delta(self, name: str, delta: Mapping[str, Any]) -> None:
        save_delta(delta, self.delta_path(name))

    def write_results_file(self) -> list[dict[str, Any]]:
        """Rebuild ``results.jsonl`` from every record; returns the records as dicts."""
        records = [r.as_dict() for r in self]
        self._write_lines(self.results_file, records)
        return records

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        text = json.dumps(dict(summary), indent=2, sort_keys=True)
        atomic_write(self.summary_file, lambda f: f.write(text + "\n"), mode="w")


class EditResults(_PerImageFolder):
    """An ``lsap edit`` output folder (layout in the module documentation)."""

    kind = "edit folder"

    def grid_path(self, name: str) -> Path:
        return self.root / GRIDS_DIR / f"{name}.png"

    @property
    def edits_file(self) -> Path:
        return self.root / EDITS_FILE

    def is_done(self, name: str) -> bool:
        return self.record_path(name).is_file()

    def names(self) -> list[str]:
        """Names of the edited images, sorted."""
        return self._record_names()

    def records(self) -> list[dict[str, Any]]:
        """Every record, sorted by name."""
        return [self._read_record(name) for name in self.names()]

    def load_codes(self, name: str) -> dict[str, Any]:
        """``{"name", "edits": {edit: {"columns", "strengths", "codes"}}}`` of image ``name``."""
        path = self.code_path(name)
        if not path.is_file():
            raise self._missing_name(name, self.names())
        data = load_weights_file(path, "lsap edit codes file")
        if not isinstance(data, Mapping) or "edits" not in data:
            raise CheckpointError(f"'{path}' is not an lsap edit codes file (expected a dict with 'edits')")
        return dict(data)

    def write(self, name: str, grid: Tensor, codes: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        """Write image ``name``'s edited codes, grid and (last) record."""
        own = {"name": name, "edits": _own_storage(dict(codes))}
        atomic_write(self.code_path(name), lambda f: torch.save(own, f))
        _write_png(self.grid_path(name), grid)
        self.write_record(dict(record, name=name))

    def write_edits_file(self) -> list[dict[str, Any]]:
        """Rebuild ``edits.jsonl`` from every record; returns the records."""
        records = self.records()
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_lines(self.edits_file, records)
        return records


def _own_storage(value: Any) -> Any:
    """``value`` with every tensor copied out of the batch it is a view of: ``torch.save``
    writes a view's whole storage, so a file would hold (and its bytes depend on) its batch."""
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, Mapping):
        return {k: _own_storage(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_own_storage(v) for v in value)
    return value


def load_code(root: str | os.PathLike[str], name: str | None = None,
              shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """Read a code file: ``load_code(results_folder, name)`` or ``load_code(code_file)``.

    Returns ``{"ws": Tensor[num_ws, w_dim], "noise"?, "key", "name", "meta"}``, checked (see
    the module documentation); a missing name lists the names the folder has.
    """
    if name is not None:
        return InversionResults(root).load_code(name, shape)
    return _read_code(Path(root), shape)


def load_results(root: str | os.PathLike[str]) -> list[InversionRecord]:
    """Every finished image of a results folder, sorted by name."""
    results = InversionResults(root)
    if not results.root.is_dir():
        raise FileNotFoundError(f"results folder not found: '{results.root}' (the output_dir of an inversion run)")
    return list(results)


def _read_code(path: Path, shape: tuple[int, int] | None = None) -> dict[str, Any]:
    data = load_weights_file(path, "lsap code file")
    if not isinstance(data, Mapping) or "ws" not in data:
        raise CheckpointError(f"'{path}' is not an lsap code file (expected a dict with 'ws')")
    ws = data["ws"]
    if not isinstance(ws, Tensor) or not ws.is_floating_point() or ws.ndim != 2:
        got = f"{ws.dtype} of shape {list(ws.shape)}" if isinstance(ws, Tensor) else type(ws).__name__
        raise CheckpointError(f"code file '{path}': 'ws' must be a floating-point [num_ws, w_dim] tensor, got {got}")
    if shape is not None and tuple(ws.shape) != tuple(int(d) for d in shape):
        raise CheckpointError(f"code file '{path}': 'ws' has shape {list(ws.shape)} but the generator takes "
                              f"[num_ws, w_dim] = {[int(d) for d in shape]}")
    noise = data.get("noise")
    tensors = [ws] + ([n for n in noise if isinstance(n, Tensor)] if isinstance(noise, (list, tuple)) else [])
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise CheckpointError(f"code file '{path}': {'ws' if not torch.isfinite(ws).all() else 'noise'} holds NaN "
                              "or infinite values")
    return dict(data)


def _write_png(path: Path, image: Tensor) -> None:
    """A ``[C, H, W]`` image in [-1, 1] (C = 1 or 3) as an 8-bit PNG."""
    array = np.ascontiguousarray(to_uint8(image.cpu()).permute(1, 2, 0).numpy())
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array, "L" if array.shape[-1] == 1 else "RGB")
    atomic_write(path, lambda f: picture.save(f, format="PNG"))


def json_safe(value: float) -> float | None:
    """``value``, or ``None`` when it is not finite (JSON has no NaN)."""
    return value if math.isfinite(value) else None


def per_image(value: Tensor | float, index: int) -> float:
    """Entry ``index`` of a per-image tensor (a scalar applies to every image)."""
    if isinstance(value, Tensor):
        return float(value.detach().reshape(-1)[index] if value.numel() > 1 else value.detach().reshape(()))
    return float(value)

