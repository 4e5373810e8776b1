"""Write inversion results to disk, one set of files per input image, resumably.

The folder layout, the names and the per-image records belong to :mod:`lsap.results`; this
callback turns the :class:`~lsap.results.InversionPrediction` an inversion module returns
from ``predict_step`` into those files. Output names mirror each input's path relative to
the input folder, so ``in/a/001.png`` and ``in/b/001.png`` give ``a/001`` and ``b/001``.

Resuming. Before each ``predict_step`` the writer marks the batch's finished images in
``batch["done"]`` (finished = record and code exist); the module inverts only the others
(:func:`lsap.results.split_pending`) and lists the rest under ``"skipped"``. The data
loader stays untouched, which keeps Lightning's distributed sampler valid; reading an
already finished image costs only its decoding.

One run, one set of settings. The folder records the run's settings
(:func:`lsap.run_settings.run_settings`: the module's hyper-parameters and weights'
fingerprints, the data's preprocessing; not paths or batch sizes) in ``settings.json``. A
later run with other settings is refused before anything is computed, unless the writer
has ``overwrite=True`` (``--trainer.callbacks.init_args.overwrite true`` on the command
line), which deletes the folder's earlier results first. While a run writes, the folder
holds a lock file (:class:`~lsap.callbacks.run_folder.RunLock`), so a second run into it
stops with one line; a lock left by a killed run is taken over. The folder is proved
writable, and temporaries a killed run left are removed, before the first batch.

Distributed runs. Each rank writes the files of its own images (Lightning's predict
sampler gives every image to exactly one rank). Records are one file per image, so
ranks never share a file; at the end all ranks meet at a barrier and rank 0 rebuilds
``results.jsonl`` and ``summary.json`` from every record in the folder, including those
of earlier, interrupted runs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_warn

from lsap.callbacks.run_folder import RunLock
from lsap.data.images import LOAD_FAILURES_KEY
from lsap.errors import BadValueError, InputError
from lsap.io import atomic_write, check_writable_folder, remove_stale_temporaries
from lsap.results import (
    CODES_DIR,
    DELTAS_DIR,
    DONE_KEY,
    IMAGES_DIR,
    RECORDS_DIR,
    RESULTS_FILE,
    SUMMARY_FILE,
    InversionResults,
    item_keys,
    json_safe,
    output_name,
    per_image,
)

from lsap.run_settings import run_settings, settings_changes, settings_fingerprint

__all__ = ["InversionWriter", "SETTINGS_FILE"]

SETTINGS_FILE = "settings.json"
# What overwrite=True deletes: the inversion outputs, nothing else in the folder.
_RESULT_PARTS = (CODES_DIR, IMAGES_DIR, RECORDS_DIR, DELTAS_DIR, RESULTS_FILE, SUMMARY_FILE, SETTINGS_FILE)

# Output keys whose tensors are large; dropped from the returned predictions after writing.
_LARGE_KEYS = ("image", "noise", "pti_delta")


def _predict_dataset(trainer: Trainer) -> Any:
    loaders = getattr(trainer, "predict_dataloaders", None)
    loader = loaders[0] if isinstance(loaders, Sequence) and loaders else loaders
    return getattr(loader, "dataset", None)


class InversionWriter(BasePredictionWriter):
    """Write codes, reconstructions and per-image metrics of an inversion run.

    ``predict_step`` returns an :class:`~lsap.results.InversionPrediction`. When every
    image of a batch was already done, ``path`` is empty and only ``path`` and ``skipped``
    need to be present. ``path`` may be ``None`` for path-less data if the dict carries the
    batch's ``"index"`` instead.

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
        overwrite: when the folder holds results made with other settings, delete them
            and start over (otherwise such a run is refused).
    """

    def __init__(
        self,
        output_dir: str,
        input_root: str | None = None,
        save_noise: bool = False,
        save_images: bool = True,
        skip_done: bool = True,
        keep_outputs: bool = False,
        overwrite: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.results = InversionResults(self.output_dir)
        self.input_root = input_root
        self.save_noise = save_noise
        self.save_images = save_images
        self.skip_done = skip_done
        self.keep_outputs = keep_outputs
        self.overwrite = overwrite
        self._lock = RunLock(self.output_dir)
        self._root: str | None = input_root
        self.num_written = 0
        self.num_skipped = 0

    # ----- names and state -------------------------------------------------------------
    def name_of(self, key: str) -> str:
        return output_name(key, self._root)

    def is_done(self, key: str) -> bool:
        """Whether the image ``key`` has a finished record and code (and resuming is on)."""
        return self.skip_done and self.results.is_done(self.name_of(key))

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dataset = _predict_dataset(trainer)
        if self.input_root is not None:
            self._root = self.input_root
        else:
            root = getattr(dataset, "root", None)
            self._root = os.fspath(root) if root is not None else None
        self.num_written = self.num_skipped = 0
        self._load_failures: list[tuple[str, str]] = []  # files that failed while loading, in any process
        paths = getattr(dataset, "paths", None)
        if paths is not None:
            keys = [str(p) for p in paths]
            counts = Counter(self.name_of(k) for k in keys)
            clashes = sorted(name for name, n in counts.items() if n > 1)
            if clashes:
                examples = [k for k in keys if self.name_of(k) in set(clashes[:3])]
                raise ValueError(
                    f"{len(clashes)} output names are shared by several inputs (same name, different extension "
                    f"in one folder), e.g. {examples}: their results would overwrite each other; rename them"
                )
        started = time.time()
        problem: str | None = None
        if trainer.is_global_zero:
            try:
                self.prepare_folder(pl_module, getattr(trainer, "datamodule", None), started)
            except InputError as error:
                problem = str(error)
                if trainer.world_size == 1:
                    raise
        if trainer.world_size > 1:
            problem = trainer.strategy.broadcast(problem, src=0)
            if problem is not None:
                raise BadValueError(problem)
            trainer.strategy.barrier("InversionWriter.prepare")

    # ----- the folder --------------------------------------------------------------------
    @property
    def settings_file(self) -> Path:
        return self.output_dir / SETTINGS_FILE

    def prepare_folder(self, module: Any, datamodule: Any = None, started: float | None = None) -> None:
        """Before the first batch: prove the folder writable, take its lock, check (or
        record) the run's settings and remove temporaries a killed run left. Raises an
        :class:`~lsap.errors.InputError` (releasing the lock) when the folder cannot be used."""
        check_writable_folder(self.output_dir)
        self._lock.acquire()
        try:
            settings = run_settings(module, datamodule)
            fingerprint = settings_fingerprint(settings)
            self._check_settings(settings, fingerprint)
            remove_stale_temporaries(self.output_dir, started if started is not None else time.time())
            text = json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=2, sort_keys=True)
            atomic_write(self.settings_file, lambda f: f.write(text + "\n"), mode="w")
        except BaseException:
            self._lock.release()
            raise

    def _check_settings(self, settings: dict[str, Any], fingerprint: str) -> None:
        finished = len(self.results.names()) if self.skip_done else 0
        if not self.settings_file.is_file():
            if finished:
                rank_zero_warn(f"'{self.output_dir}' holds {finished} results but no {SETTINGS_FILE} (written by an "
                               "older lsap): their settings cannot be checked; they are taken as this run's")
            return
        try:
            recorded = json.loads(self.settings_file.read_text())
            old_fingerprint, old_settings = recorded["fingerprint"], recorded.get("settings", {})
        except (OSError, ValueError, KeyError, TypeError):
            old_fingerprint, old_settings = None, {}
        if old_fingerprint == fingerprint or not finished:
            return
        if self.overwrite:
            self.clear_results()
            return
        changes = "; ".join(settings_changes(old_settings, settings)) or f"damaged {SETTINGS_FILE}"
        raise BadValueError(
            f"'{self.output_dir}' holds {finished} results made with other settings ({changes}): use another output "
            "folder, or pass --trainer.callbacks.init_args.overwrite true (InversionWriter(overwrite=True)) to delete "
            "them and start over"
        )

    def clear_results(self) -> None:
        """Delete the folder's inversion outputs (codes, images, records, deltas, results
        files and settings); other files in it stay."""
        for part in _RESULT_PARTS:
            path = self.output_dir / part
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    def release_folder(self) -> None:
        self._lock.release()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.release_folder()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.release_folder()

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        """Mark the batch's finished images (an image is finished when every writer has it)."""
        if not isinstance(batch, MutableMapping):
            return
        keys = item_keys(batch)
        done = batch.get(DONE_KEY) or [True] * len(keys)
        batch[DONE_KEY] = [bool(d) and self.is_done(key) for d, key in zip(done, keys)]

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
                f"'nscd' (lsap.results.InversionPrediction), got {type(prediction).__name__}"
            )
        self.num_skipped += len(prediction.get("skipped", ()))
        if isinstance(batch, Mapping):
            for failures in batch.get(LOAD_FAILURES_KEY) or ():
                self._load_failures.extend(tuple(entry) for entry in json.loads(failures or "[]"))
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
        self.results.write_code(name, code)
        if self.save_images and prediction.get("image") is not None:
            self.results.write_image(name, prediction["image"][i])
        if prediction.get("pti_delta") is not None:
            self.results.write_delta(name, prediction["pti_delta"][i])
        record: dict[str, Any] = {
            "name": name,
            "key": key,
            "losses": {k: json_safe(per_image(v, i)) for k, v in (prediction.get("losses") or {}).items()},
            "nscd": json_safe(per_image(prediction["nscd"], i)) if prediction.get("nscd") is not None else None,
            "meta": meta,
        }
        if prediction.get("nscd_layers") is not None:
            record["nscd_layers"] = [json_safe(float(v)) for v in prediction["nscd_layers"][i].detach().cpu()]
        self.results.write_record(record)

    # ----- end of the run --------------------------------------------------------------
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        counts = torch.tensor([self.num_written, self.num_skipped], dtype=torch.float64, device=pl_module.device)
        if trainer.world_size > 1:
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        failures = list(self._load_failures)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, failures)
            failures = [tuple(entry) for rank in gathered for entry in rank]
        trainer.strategy.barrier("InversionWriter.merge")
        if trainer.is_global_zero:
            # Inputs the data set could not read: found while scanning or loading in this
            # process (the data set's list), or while loading in a DataLoader worker or on
            # another rank (reported through the batches).
            scanned = getattr(_predict_dataset(trainer), "skipped", None) or ()
            unreadable = list({str(p): (str(p), str(r)) for p, r in [*scanned, *failures]}.values())
            self.merge(written_this_run=int(counts[0]), skipped_this_run=int(counts[1]), unreadable=unreadable)
            self.release_folder()

    def read_records(self) -> list[dict[str, Any]]:
        """Every finished record in ``output_dir``, sorted by name."""
        return [record.as_dict() for record in self.results]

    def merge(self, written_this_run: int | None = None, skipped_this_run: int | None = None,
              unreadable: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        """Rebuild ``results.jsonl`` and ``summary.json`` from the records; return the summary.

        ``unreadable``: ``(path, reason)`` of inputs this run skipped as unreadable, listed in
        the summary so no input goes missing unseen."""
        records = self.results.write_results_file()

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
            "unreadable_inputs": [{"path": str(path), "reason": str(reason)} for path, reason in unreadable or ()],
        }
        self.results.write_summary(summary)
        return summary
