"""Choice of implementation for the ops (``impl`` argument)."""

from __future__ import annotations

import torch

IMPLS = ("ref", "cuda")


def resolve_impl(impl: str | None, x: torch.Tensor) -> str:
    """Return the implementation to use for tensor ``x``.

    ``None`` or ``"auto"`` means ``"ref"`` on every device: the accelerated CUDA path has
    not yet been validated and benchmarked on a GPU, so it is only used when asked for.
    ``"cuda"`` on a tensor that is not on a CUDA device quietly means ``"ref"`` (there is
    nothing to accelerate), so CPU runs never try to build anything.
    """
    if impl in (None, "auto"):
        return "ref"
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or 'auto', got {impl!r}")
    if impl == "cuda" and not x.is_cuda:
        return "ref"
    return impl
