"""Fused bias + activation with gain and optional clamp."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lsap.ops import _build
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
        out = bias_act_cuda(x, b, dim, act, alpha, gain, clamp, _build.get_plugin("bias_act"))
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

# --------------------------------------------------------------------------------------
# Accelerated path (impl="cuda"): one custom kernel fusing bias, activation, gain and
# clamp. The backward pass runs the same kernel in gradient mode from the saved *output*;
# the activations are piecewise linear, so the second-order term is the same mask again
# and double backward works too.

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
ACT_CODES = {"linear": 0, "relu": 1, "lrelu": 2}


class _BiasActGrad(torch.autograd.Function):
    """``dx = dy * act'(y) * gain`` (masked by the clamp) from the forward output ``y``."""

    @staticmethod
    def forward(ctx, dy, y, act, alpha, gain, clamp, plugin):
        dx = plugin.bias_act(dy.contiguous(), _empty(dy), y, 0, act, alpha, gain, clamp, True)
        ctx.save_for_backward(y)
        ctx.params = (act, alpha, gain, clamp, plugin)
        return dx

    @staticmethod
    def backward(ctx, ddx):
        (y,) = ctx.saved_tensors
        # Linear in dy with a piecewise-constant factor: the same mask applies again, and
        # the derivative w.r.t. y is zero almost everywhere.
        return _BiasActGrad.apply(ddx, y, *ctx.params), None, None, None, None, None, None


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp, plugin):
        bias = b.contiguous() if b is not None else _empty(x)
        y = plugin.bias_act(x.contiguous(), bias, _empty(x), dim, act, alpha, gain, clamp, False)
        needs_y = act != ACT_CODES["linear"] or clamp >= 0
        ctx.save_for_backward(y if needs_y else None)
        ctx.params = (dim, act, alpha, gain, clamp, needs_y, plugin)
        return y

    @staticmethod
    def backward(ctx, dy):
        dim, act, alpha, gain, clamp, needs_y, plugin = ctx.params
        (y,) = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            if needs_y:
                dx = _BiasActGrad.apply(dy, y, act, alpha, gain, clamp, plugin)
            else:
                dx = dy * gain if gain != 1 else dy
        if ctx.needs_input_grad[1]:
            db = dx.sum([d for d in range(dx.ndim) if d != dim])
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None, None


def _empty(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty([0])


def bias_act_cuda(x, b, dim, act, alpha, gain, clamp, plugin):
    """The accelerated op with a given compiled ``plugin``; ``None`` when it cannot handle
    the case, so the caller uses the reference path."""
    if plugin is None or x.dtype not in SUPPORTED_DTYPES or act not in ACT_CODES:
        return None
    if x.ndim == 0:
        return None
    dim = dim % x.ndim
    if act != "linear" and not gain > 0:
        return None  # the gradient reads act'(x) off the output's sign
    if clamp is not None and clamp < 0:
        return None
    if b is not None and (b.device != x.device or b.ndim != 1 or b.shape[0] != x.shape[dim]):
        return None
    if b is not None:
        b = b.to(x.dtype)
    return _BiasAct.apply(x, b, dim, ACT_CODES[act], float(alpha), float(gain), -1.0 if clamp is None else float(clamp), plugin)
