"""Accelerated CUDA path of the ops (``impl="cuda"``).

What is custom and what is PyTorch:

* ``upfirdn2d`` -- a custom CUDA kernel (``cuda/upfirdn2d.cu``) doing zero insertion,
  padding / cropping, FIR filtering and down-sampling in one pass. Its gradient is
  another upfirdn2d (same filter flipped, up and down swapped, padding adjusted), so it
  is differentiable to any order. Filters get no gradient (they are fixed buffers).
* ``bias_act`` -- a custom CUDA kernel (``cuda/bias_act.cu``) fusing bias, activation,
  gain and clamp. The backward pass runs the same kernel in gradient mode from the
  saved *output*; the activations are piecewise linear, so the second-order term is the
  same mask again and double backward works too.
* ``modulated_conv2d`` -- no kernel of its own: weight modulation / demodulation is
  PyTorch, the convolution is cuDNN, and the FIR blur after a transposed convolution is
  the custom upfirdn2d. ``MODCONV_STRATEGY`` picks the convolution layout: ``"grouped"``
  (one grouped conv over per-sample kernels, as the reference) or ``"batched"``
  (scale the input by the styles, one ordinary conv with the shared weight, scale the
  output by the demodulation coefficients -- mathematically the same, often faster for
  batches > 1). Gradients come from autograd through these pieces.

Every entry returns ``None`` when it cannot handle a case (not a CUDA tensor, an
unsupported dtype or argument, or the kernel failed to build -- which warns once per op
and process, see ``_build``); the caller then uses the reference implementation.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from lsap.ops import _build
from lsap.ops.modulated_conv import modulate_weight
from lsap.ops.upfirdn2d import _upfirdn2d_ref

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
ACT_CODES = {"linear": 0, "relu": 1, "lrelu": 2}

# "grouped" or "batched"; see the module docstring.
MODCONV_STRATEGY = "grouped"


def _on_cuda(x: torch.Tensor) -> bool:
    return x.is_cuda


def _kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------
# upfirdn2d


class _UpFirDn2d(torch.autograd.Function):
    """``y = upfirdn2d(x)`` with ``g`` the 2-D correlation kernel (flipped and scaled)."""

    @staticmethod
    def forward(ctx, x, g, up, down, padding):
        plugin = _build.get_plugin("upfirdn2d")
        (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
        y = plugin.upfirdn2d(x.contiguous(), g, upx, upy, downx, downy, px0, px1, py0, py1)
        ctx.g = g
        ctx.params = (up, down, padding, x.shape)
        return y

    @staticmethod
    def backward(ctx, dy):
        up, down, padding, in_shape = ctx.params
        dx = _UpFirDn2d.apply(dy, ctx.g.flip([0, 1]), down, up, _grad_padding(up, down, padding, in_shape,
                                                                              dy.shape, ctx.g.shape))
        return dx, None, None, None, None


def _grad_padding(up, down, padding, in_shape, out_shape, filter_shape):
    """Padding of the upfirdn2d that computes the input gradient.

    Forward: ``y[o] = sum_t u[o * down + t - p0] * g[t]`` (u: x up-sampled). Its adjoint
    up-samples ``dy`` by ``down``, correlates with the flipped ``g`` after padding by
    ``f - 1 - p0`` in front, and keeps every ``up``-th sample; the back padding makes the
    result exactly as large as ``x``.
    """
    (upx, upy), (downx, downy), (px0, _, py0, _) = up, down, padding
    ih, iw = in_shape[2], in_shape[3]
    oh, ow = out_shape[2], out_shape[3]
    fh, fw = filter_shape
    return (
        fw - 1 - px0,
        iw * upx - ow * downx + px0 - upx + 1,
        fh - 1 - py0,
        ih * upy - oh * downy + py0 - upy + 1,
    )


def _correlation_kernel(f: torch.Tensor, x: torch.Tensor, flip_filter: bool, gain: float) -> torch.Tensor:
    """The 2-D kernel the CUDA code correlates with, scaled and rounded like the reference."""
    f = f.to(device=x.device, dtype=x.dtype)
    f = f * (gain ** (f.ndim / 2))
    if f.ndim == 1:
        f = f[:, None] * f[None, :]  # separable taps: the same filter along y and x
    if not flip_filter:
        f = f.flip([0, 1])
    return f.to(_kernel_dtype(x.dtype)).contiguous()


# Prepared kernels of live filter tensors (the generator reuses one buffer everywhere),
# keyed by identity and checked against the tensor's version counter.
_kernel_cache: dict[tuple, tuple[weakref.ref, int, torch.Tensor]] = {}


def _cached_correlation_kernel(f: torch.Tensor, x: torch.Tensor, flip_filter: bool, gain: float) -> torch.Tensor:
    if f.is_inference():  # no version counter to validate a cached copy against
        return _correlation_kernel(f, x, flip_filter, gain)
    key = (id(f), x.device, x.dtype, bool(flip_filter), float(gain))
    hit = _kernel_cache.get(key)
    if hit is not None and hit[0]() is f and hit[1] == f._version:
        return hit[2]
    g = _correlation_kernel(f, x, flip_filter, gain)
    if len(_kernel_cache) >= 64:
        _kernel_cache.clear()
    _kernel_cache[key] = (weakref.ref(f), f._version, g)
    return g


def upfirdn2d(x, f, up, down, padding, flip_filter, gain):
    if not _on_cuda(x) or x.ndim != 4 or x.dtype not in SUPPORTED_DTYPES:
        return None
    if f.requires_grad or f.ndim not in (1, 2) or f.numel() == 0:
        return None
    if min(*up, *down) < 1:
        return None
    fh, fw = (f.shape[0], f.shape[-1])
    px0, px1, py0, py1 = padding
    if x.shape[2] * up[1] + py0 + py1 < fh or x.shape[3] * up[0] + px0 + px1 < fw:
        return None  # let the reference raise its error
    if _build.get_plugin("upfirdn2d") is None:
        return None
    g = _cached_correlation_kernel(f, x, flip_filter, gain)
    return _UpFirDn2d.apply(x, g, tuple(up), tuple(down), tuple(padding))


# --------------------------------------------------------------------------------------
# bias_act


class _BiasActGrad(torch.autograd.Function):
    """``dx = dy * act'(y) * gain`` (masked by the clamp) from the forward output ``y``."""

    @staticmethod
    def forward(ctx, dy, y, act, alpha, gain, clamp):
        plugin = _build.get_plugin("bias_act")
        dx = plugin.bias_act(dy.contiguous(), _empty(dy), y, 0, act, alpha, gain, clamp, True)
        ctx.save_for_backward(y)
        ctx.params = (act, alpha, gain, clamp)
        return dx

    @staticmethod
    def backward(ctx, ddx):
        (y,) = ctx.saved_tensors
        # Linear in dy with a piecewise-constant factor: the same mask applies again, and
        # the derivative w.r.t. y is zero almost everywhere.
        return _BiasActGrad.apply(ddx, y, *ctx.params), None, None, None, None, None


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp):
        plugin = _build.get_plugin("bias_act")
        bias = b.contiguous() if b is not None else _empty(x)
        y = plugin.bias_act(x.contiguous(), bias, _empty(x), dim, act, alpha, gain, clamp, False)
        needs_y = act != ACT_CODES["linear"] or clamp >= 0
        ctx.save_for_backward(y if needs_y else None)
        ctx.params = (dim, act, alpha, gain, clamp, needs_y)
        return y

    @staticmethod
    def backward(ctx, dy):
        dim, act, alpha, gain, clamp, needs_y = ctx.params
        (y,) = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            if needs_y:
                dx = _BiasActGrad.apply(dy, y, act, alpha, gain, clamp)
            else:
                dx = dy * gain if gain != 1 else dy
        if ctx.needs_input_grad[1]:
            db = dx.sum([d for d in range(dx.ndim) if d != dim])
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None


def _empty(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty([0])


def bias_act(x, b, dim, act, alpha, gain, clamp):
    if not _on_cuda(x) or x.dtype not in SUPPORTED_DTYPES or act not in ACT_CODES:
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
    if _build.get_plugin("bias_act") is None:
        return None
    if b is not None:
        b = b.to(x.dtype)
    return _BiasAct.apply(x, b, dim, ACT_CODES[act], float(alpha), float(gain), -1.0 if clamp is None else float(clamp))


# --------------------------------------------------------------------------------------
# modulated_conv2d


def modulated_conv2d(x, weight, styles, demodulate, up, resample_filter):
    if not _on_cuda(x) or x.dtype not in SUPPORTED_DTYPES:
        return None
    if up == 2:
        if resample_filter.requires_grad or resample_filter.ndim not in (1, 2):
            return None
        if _build.get_plugin("upfirdn2d") is None:
            return None
    strategy = MODCONV_STRATEGY
    if strategy not in ("grouped", "batched"):
        raise ValueError(f"MODCONV_STRATEGY must be 'grouped' or 'batched', got {strategy!r}")
    if strategy == "batched" and x.dtype == torch.float16:
        strategy = "grouped"  # input scaling by the styles can overflow fp16
    if strategy == "grouped":
        return _modconv_grouped(x, weight, styles, demodulate, up, resample_filter)
    return _modconv_batched(x, weight, styles, demodulate, up, resample_filter)


def _blur_after_transposed_conv(x, resample_filter, kw):
    """FIR blur (gain 4) that turns the stride-2 transposed conv output (2H + k - 2) into
    2H, exactly as the reference does."""
    fw = resample_filter.shape[-1]
    pad0 = (fw + 2 - 1) // 2 - (kw - 1) + kw // 2
    pad1 = (fw - 2) // 2 - (kw - 2) + kw // 2
    padding = (pad0, pad1, pad0, pad1)
    out = upfirdn2d(x, resample_filter, (1, 1), (1, 1), padding, False, 4.0)
    if out is None:
        out = _upfirdn2d_ref(x, resample_filter.to(x.device), (1, 1), (1, 1), padding, False, 4.0)
    return out


def _modconv_grouped(x, weight, styles, demodulate, up, resample_filter):
    batch, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    w = modulate_weight(weight.to(x.dtype), styles.to(x.dtype), demodulate)
    x = x.reshape(1, batch * in_channels, height, width)
    if up == 1:
        x = F.conv2d(x, w.reshape(batch * out_channels, in_channels, kh, kw), padding=kh // 2, groups=batch)
    else:
        w = w.transpose(1, 2).reshape(batch * in_channels, out_channels, kh, kw)
        x = F.conv_transpose2d(x, w, stride=2, padding=0, groups=batch)
        x = _blur_after_transposed_conv(x, resample_filter, kw)
    return x.reshape(batch, out_channels, x.shape[2], x.shape[3])


def _modconv_batched(x, weight, styles, demodulate, up, resample_filter):
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.to(x.dtype)
    s = styles.to(x.dtype)
    x = x * s[:, :, None, None]
    if up == 1:
        x = F.conv2d(x, w, padding=kh // 2)
    else:
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=0)
        x = _blur_after_transposed_conv(x, resample_filter, kw)
    if demodulate:
        # ||w_o * s||^2 over (i, ky, kx) for every sample and output channel: [B, O].
        dcoefs = torch.rsqrt(s.square() @ w.square().sum([2, 3]).t() + 1e-8)
        x = x * dcoefs[:, :, None, None]
    return x
