"""FIR filtering with up/down-sampling and padding (``upfirdn2d``).

Semantics: upsample by inserting zeros, pad (negative padding crops), convolve with the
FIR filter ``f`` (a true convolution unless ``flip_filter``), then keep every
``down``-th sample. Filters are 2-D ``[fh, fw]`` or separable 1-D ``[fw]``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from lsap.ops import _build
from lsap.ops.impl import resolve_impl


def setup_filter(f: Sequence[float] | torch.Tensor, normalize: bool = True, separable: bool = False) -> torch.Tensor:
    """Turn filter taps into a float32 tensor; 1-D taps become their outer product
    unless ``separable``. Normalised to unit sum by default."""
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and not separable:
        f = f[:, None] * f[None, :]
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    return f


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return int(v[0]), int(v[1])


def _padding4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """Padding as (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return tuple(int(p) for p in padding)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, a pair or four values, got {padding!r}")


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str | None = "ref",
) -> torch.Tensor:
    """Pad, up-sample, FIR-filter and down-sample a batch of images ``[N, C, H, W]``."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    up, down, padding = _pair(up), _pair(down), _padding4(padding)
    if min(*up, *down) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    if resolve_impl(impl, x) == "cuda":
        out = upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain, _build.get_plugin("upfirdn2d"))
        if out is not None:
            return out
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Pure-PyTorch upfirdn2d without materialised zero insertion.

    Up-sampling by ``u`` followed by a convolution with ``f`` is a stride-``u`` transposed
    convolution with ``f``; down-sampling is the stride of an ordinary convolution. A
    separable (1-D) filter runs as two depthwise 1-D passes.
    """
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    c = x.shape[1]
    f = f.to(device=x.device, dtype=x.dtype)
    f = f * (gain ** (f.ndim / 2))
    if f.ndim == 2:
        h, w = x.shape[2] * upy + py0 + py1, x.shape[3] * upx + px0 + px1
        if h < f.shape[0] or w < f.shape[1]:
            raise ValueError(f"upfirdn2d: padded input {h}x{w} is smaller than the filter {tuple(f.shape)}")
        return _fir_pass(x, f, (upy, upx), (downy, downx), (py0, py1), (px0, px1), flip_filter, c)
    h, w = x.shape[2] * upy + py0 + py1, x.shape[3] * upx + px0 + px1
    if h < f.shape[0] or w < f.shape[0]:
        raise ValueError(f"upfirdn2d: padded input {h}x{w} is smaller than the filter {tuple(f.shape)}")
    x = _fir_pass(x, f[None, :], (1, upx), (1, downx), (0, 0), (px0, px1), flip_filter, c)
    return _fir_pass(x, f[:, None], (upy, 1), (downy, 1), (py0, py1), (0, 0), flip_filter, c)


def _fir_pass(x, k, up, down, pad_y, pad_x, flip_filter, c):
    """One depthwise FIR pass with 2-D taps ``k [kh, kw]`` (a 1-D pass has a unit axis)."""
    kh, kw = k.shape
    if up == (1, 1):
        # Correlation with the flipped taps is the convolution ``f`` describes.
        g = k if flip_filter else k.flip([0, 1])
        x = F.pad(x, [pad_x[0], pad_x[1], pad_y[0], pad_y[1]])  # negative padding crops
        return F.conv2d(x, g[None, None].expand(c, 1, kh, kw), stride=down, groups=c)
    # Zero insertion + convolution with w == transposed convolution with w (stride = up).
    wk = k.flip([0, 1]) if flip_filter else k
    x = F.conv_transpose2d(x, wk[None, None].expand(c, 1, kh, kw), stride=up, groups=c)
    # The transposed conv covers the zero-inserted signal fully convolved; move its window
    # to the requested padding (front: p0 - k + 1, back: up + p1 - k; negative crops).
    x = F.pad(x, [pad_x[0] - kw + 1, up[1] + pad_x[1] - kw, pad_y[0] - kh + 1, up[0] + pad_y[1] - kh])
    if down != (1, 1):
        x = x[:, :, :: down[0], :: down[1]]
    return x

# --------------------------------------------------------------------------------------
# Accelerated path (impl="cuda"): a custom kernel doing zero insertion, padding, FIR
# filtering and down-sampling in one pass. Its gradient is another upfirdn2d (filter
# flipped, up and down swapped, padding adjusted), so it is differentiable to any order.
# Filters get no gradient (they are fixed buffers).

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class _UpFirDn2dCuda(torch.autograd.Function):
    """``y = upfirdn2d(x)`` with ``g`` the 2-D correlation kernel (flipped and scaled)."""

    @staticmethod
    def forward(ctx, x, g, up, down, padding, plugin):
        (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
        y = plugin.upfirdn2d(x.contiguous(), g, upx, upy, downx, downy, px0, px1, py0, py1)
        ctx.g, ctx.plugin = g, plugin
        ctx.params = (up, down, padding, x.shape)
        return y

    @staticmethod
    def backward(ctx, dy):
        up, down, padding, in_shape = ctx.params
        grad_padding = _grad_padding(up, down, padding, in_shape, dy.shape, ctx.g.shape)
        dx = _UpFirDn2dCuda.apply(dy, ctx.g.flip([0, 1]), down, up, grad_padding, ctx.plugin)
        return dx, None, None, None, None, None


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
    """The 2-D kernel the CUDA code correlates with, scaled like the reference."""
    f = f.to(device=x.device, dtype=x.dtype)
    f = f * (gain ** (f.ndim / 2))
    if f.ndim == 1:
        f = f[:, None] * f[None, :]  # separable taps: the same filter along y and x
    if not flip_filter:
        f = f.flip([0, 1])
    kernel_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return f.to(kernel_dtype).contiguous()


def upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain, plugin):
    """The accelerated op with a given compiled ``plugin``; ``None`` when it cannot handle
    the case (no plugin, CPU tensor, unsupported dtype or argument), so the caller uses
    the reference path."""
    if plugin is None or x.ndim != 4 or x.dtype not in SUPPORTED_DTYPES:
        return None
    if f.requires_grad or f.ndim not in (1, 2) or f.numel() == 0 or f.device != x.device:
        return None
    fh, fw = (f.shape[0], f.shape[-1])
    px0, px1, py0, py1 = padding
    if x.shape[2] * up[1] + py0 + py1 < fh or x.shape[3] * up[0] + px0 + px1 < fw:
        return None  # let the reference raise its error
    g = _correlation_kernel(f, x, flip_filter, gain)
    return _UpFirDn2dCuda.apply(x, g, tuple(up), tuple(down), tuple(padding), plugin)


def filter2d(
    x: torch.Tensor, f: torch.Tensor, padding: int | Sequence[int] = 0, flip_filter: bool = False,
    gain: float = 1.0, impl: str | None = "ref",
) -> torch.Tensor:
    """Filter without resampling; the output keeps the input size plus ``padding``."""
    fw = f.shape[-1]
    fh = f.shape[0]
    px0, px1, py0, py1 = _padding4(padding)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def _resampling_padding(f: torch.Tensor, factor: int, padding: int | Sequence[int], rounding: int) -> list[int]:
    """Padding (x0, x1, y0, y1) that centres a ``factor``-times resampling with filter ``f``
    on the input grid, plus the caller's extra ``padding``. The leading side gets
    ``(taps + rounding) // 2`` (``factor - 1`` when up-sampling, ``1 - factor`` when
    down-sampling), the trailing side ``(taps - factor) // 2``."""
    fw, fh = f.shape[-1], f.shape[0]
    px0, px1, py0, py1 = _padding4(padding)
    return [px0 + (fw + rounding) // 2,
            px1 + (fw - factor) // 2, py0 + (fh + rounding) // 2, py1 + (fh - factor) // 2]


def upsample2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 2, padding: int | Sequence[int] = 0, flip_filter: bool = False,
    gain: float = 1.0, impl: str | None = "ref",
) -> torch.Tensor:
    """Up-sample by ``up`` with the FIR filter ``f``; the gain keeps the mean intensity."""
    pad = _resampling_padding(f, up, padding, rounding=up - 1)
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * up * up, impl=impl)


def downsample2d(
    x: torch.Tensor, f: torch.Tensor, down: int = 2, padding: int | Sequence[int] = 0, flip_filter: bool = False,
    gain: float = 1.0, impl: str | None = "ref",
) -> torch.Tensor:
    """Down-sample by ``down`` after low-passing with the FIR filter ``f``."""
    pad = _resampling_padding(f, down, padding, rounding=1 - down)
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
