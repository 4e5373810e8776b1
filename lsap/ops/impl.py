"""Choice of implementation for the ops (``impl`` argument)."""

from __future__ import annotations

import torch

IMPLS = ("ref", "cuda")

# The accelerated path becomes the default on CUDA only once its equality tests and
# benchmark have run on a GPU; until then both devices use the reference path.
DEFAULT_IMPL = {"cpu": "ref", "cuda": "ref"}


def resolve_impl(impl: str | None, x: torch.Tensor) -> str:
    """Return the implementation to use for tensor ``x``.

    ``None`` or ``"auto"`` picks the default for the tensor's device; ``"cuda"`` on a
    tensor that is not on a CUDA device quietly means ``"ref"`` (there is nothing to
    accelerate), so CPU runs never try to build anything.
    """
    if impl in (None, "auto"):
        impl = DEFAULT_IMPL.get(x.device.type, "ref")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or 'auto', got {impl!r}")
    if impl == "cuda" and not x.is_cuda:
        return "ref"
    return impl
