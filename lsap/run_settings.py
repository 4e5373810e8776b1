"""The settings that decide an inversion run's results, as plain data and a fingerprint.

They are the module's class and hyper-parameters (the generator by its weights'
fingerprint, trained parts such as an encoder by theirs) and the data module's
preprocessing. Paths and options that change no result (input folders, batch sizes,
workers, progress bars, cache folders) are left out, so moving the inputs or changing the
batch size describes the same run. A results folder records them in ``settings.json``
(:class:`lsap.callbacks.InversionWriter`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["NEUTRAL_SETTINGS", "run_settings", "settings_changes", "settings_fingerprint", "state_fingerprint"]

#: Hyper-parameters and data-module fields that change no image's result (or whose effect
#: is covered by a weights fingerprint, as ``encoder_checkpoint`` by the encoder's).
NEUTRAL_SETTINGS = frozenset({
    "progress", "anchor_cache_dir", "input_root", "encoder_checkpoint",
    "train_dir", "val_dir", "test_dir", "predict_dir", "root", "limit",
    "batch_size", "val_batch_size", "num_workers", "pin_memory", "persistent_workers", "drop_last", "verify",
})


def _plain(value: Any) -> Any:
    """JSON-able form of a setting (tuples become lists, anything else its string)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def state_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _data_settings(datamodule: Any) -> dict[str, Any]:
    if datamodule is None:
        return {}
    fields = dict(getattr(datamodule, "hparams", None) or {})
    if not fields:  # a data module without save_hyperparameters: its plain attributes
        fields = {k: v for k, v in vars(datamodule).items()
                  if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str)))}
    return {"class": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
            **{k: _plain(v) for k, v in sorted(fields.items()) if k not in NEUTRAL_SETTINGS}}


def run_settings(module: nn.Module, datamodule: Any = None) -> dict[str, Any]:
    """The settings that decide the results of ``module`` (a LightningModule) on
    ``datamodule``'s images, as plain data. A module may describe itself through a
    ``result_settings()`` method (``FrozenGeneratorModule`` does); otherwise its class and
    hyper-parameters are used."""
    describe = getattr(module, "result_settings", None)
    if callable(describe):
        model = dict(describe())
    else:
        hparams = dict(getattr(module, "hparams", None) or {})
        model = {"class": f"{type(module).__module__}.{type(module).__qualname__}",
                 "hparams": {k: v for k, v in hparams.items() if k not in NEUTRAL_SETTINGS}}
    return {"model": _plain(model), "data": _data_settings(datamodule)}


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_plain(settings), sort_keys=True).encode()).hexdigest()


def settings_changes(old: Any, new: Any, prefix: str = "", limit: int = 4) -> list[str]:
    """Human-readable differences ``key: old -> new`` between two settings trees."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += settings_changes(old.get(key, "(unset)"), new.get(key, "(unset)"),
                                        f"{prefix}{key}." if prefix or key else "", limit)
        return changes[:limit]
    if old != new:
        def short(value: Any) -> str:
            text = json.dumps(value) if not isinstance(value, str) else value
            return text if len(text) <= 40 else text[:16] + "..."
        return [f"{prefix.rstrip('.')}: {short(old)} -> {short(new)}"]
    return []
