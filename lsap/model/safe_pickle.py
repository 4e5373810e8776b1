"""Read NVlabs ``.pkl`` network snapshots without running any code from them.

NVlabs snapshots are plain pickles whose networks are "persistent" objects: each one
pickles as a call to ``torch_utils.persistence._reconstruct_persistent_obj`` with a
dict holding the class's *source code* and the object's saved ``__dict__``. Unpickling
them normally imports ``torch_utils`` and executes that source. This unpickler instead
resolves a short allow-list of globals to safe stand-ins: persistent objects become
:class:`PersistentObject` records holding their state (the source is never run), tensors
are rebuilt from their raw bytes with ``torch.load(weights_only=True)``, and any other
global is refused with an error that names it.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import Any, BinaryIO

import torch

from lsap.io import UnsafeCheckpointError


class AttrDict(dict):
    """Stand-in for ``dnnlib.EasyDict``: a dict that also reads keys as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PersistentObject:
    """What a persistent network object saved: its class name and ``__dict__`` state."""

    def __init__(self, meta: dict):
        self.class_name: str = meta.get("class_name", "?")
        self.state: dict = dict(meta.get("state") or {})

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"

    def named_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flatten parameters and buffers of this object and its child modules into a
        state dict, as ``nn.Module.state_dict`` would name them."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if isinstance(value, torch.Tensor):
                    out[prefix + name] = value.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, (PersistentObject, PlainObject)):
                out.update(child.named_tensors(f"{prefix}{name}."))
        return out

    def find(self, dotted: str) -> "PersistentObject | PlainObject | None":
        obj: Any = self
        for part in dotted.split("."):
            obj = (obj.state.get("_modules") or {}).get(part) if obj is not None else None
        return obj


class PlainObject(PersistentObject):
    """Stand-in for an ordinary ``torch.nn`` module inside a snapshot: state only."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.class_name = self.qualname
        self.state = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict state, slot state)
            state = state[0] or {}
        self.state = dict(state or {})


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if meta.get("type") != "class":
        raise UnsafeCheckpointError(f"persistent object of type {meta.get('type')!r} is not supported")
    return PersistentObject(meta)


def _load_storage_from_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _numpy_global(module: str, name: str) -> Any | None:
    # numpy scalars and plain arrays appear as attributes (e.g. weight gains); rebuilding
    # them reads bytes and a dtype, nothing else.
    if module.split(".")[0] != "numpy" or name not in {"scalar", "dtype", "_reconstruct", "ndarray"}:
        return None
    if not module.startswith(("numpy.core.multiarray", "numpy._core.multiarray", "numpy")):
        return None
    import numpy

    if name == "dtype":
        return numpy.dtype
    if name == "ndarray":
        return numpy.ndarray
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray

    return getattr(multiarray, name)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): torch.Size,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): AttrDict,
    ("dnnlib", "EasyDict"): AttrDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed globals (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.startswith("torch.nn.modules."):
            return type(name, (PlainObject,), {"qualname": f"{module}.{name}"})
        np_obj = _numpy_global(module, name)
        if np_obj is not None:
            return np_obj
        raise UnsafeCheckpointError(
            f"refusing to unpickle global '{module}.{name}': loading it could run code. lsap only reads "
            "tensors, plain containers and NVlabs persistent network state from pickles"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"unsupported persistent id {pid!r} in pickle")


def safe_load_pickle(file: BinaryIO) -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(file).load()
