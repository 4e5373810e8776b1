"""Fused bias + activation with gain and optional clamp."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lsap.ops.impl import resolve_impl

ACTIVATIONS = {
    # name: (default gain, reference function)
    "linear": (1.0, lambda x, alpha: x),
    "relu": (math.sqrt(2), lambda x, alpha: F.relu(x)),
    "lrelu": (math.sqrt(2), lambda x, alpha: F.leaky_relu(x, alpha)),
}


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float = 0.2,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = "ref",
) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` with ``b`` broadcast along ``dim``.

    ``gain=None`` uses the activation's default (sqrt(2) for (leaky) ReLU, which keeps
    the signal's second moment).
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be non-negative, got {clamp}")
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias must have shape [{x.shape[dim]}] (x dim {dim}), got {tuple(b.shape)}")
    default_gain, _ = ACTIVATIONS[act]
    gain = default_gain if gain is None else float(gain)
    if resolve_impl(impl, x) == "cuda":
        from lsap.ops import _cuda

        out = _cuda.bias_act(x, b, dim, act, alpha, gain, clamp)
        if out is not None:
            return out
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)


def _bias_act_ref(x, b, dim, act, alpha, gain, clamp):
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    x = ACTIVATIONS[act][1](x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
