"""FIR filtering with up/down-sampling and padding (``upfirdn2d``).

Semantics: upsample by inserting zeros, pad (negative padding crops), convolve with the
FIR filter ``f`` (a true convolution unless ``flip_filter``), then keep every
``down``-th sample. Filters are 2-D ``[fh, fw]`` or separable 1-D ``[fw]``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

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
    if resolve_impl(impl, x) == "cuda":
        from lsap.ops import _cuda

        out = _cuda.upfirdn2d(x, f, _pair(up), _pair(down), _padding4(padding), flip_filter, gain)
        if out is not None:
            return out
    return _upfirdn2d_ref(x, f, _pair(up), _pair(down), _padding4(padding), flip_filter, gain)


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape

    # Zero insertion.
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)

    # Pad, then crop for negative padding.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # conv2d correlates; flipping turns it into the convolution the filter describes.
    f = f.to(device=x.device, dtype=x.dtype)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::downy, ::downx]


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


def upsample2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 2, padding: int | Sequence[int] = 0, flip_filter: bool = False,
    gain: float = 1.0, impl: str | None = "ref",
) -> torch.Tensor:
    """Up-sample by ``up`` with the FIR filter ``f``; the gain keeps the mean intensity."""
    fw = f.shape[-1]
    fh = f.shape[0]
    px0, px1, py0, py1 = _padding4(padding)
    pad = [
        px0 + (fw + up - 1) // 2,
        px1 + (fw - up) // 2,
        py0 + (fh + up - 1) // 2,
        py1 + (fh - up) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * up * up, impl=impl)


def downsample2d(
    x: torch.Tensor, f: torch.Tensor, down: int = 2, padding: int | Sequence[int] = 0, flip_filter: bool = False,
    gain: float = 1.0, impl: str | None = "ref",
) -> torch.Tensor:
    """Down-sample by ``down`` after low-passing with the FIR filter ``f``."""
    fw = f.shape[-1]
    fh = f.shape[0]
    px0, px1, py0, py1 = _padding4(padding)
    pad = [
        px0 + (fw - down + 1) // 2,
        px1 + (fw - down) // 2,
        py0 + (fh - down + 1) // 2,
        py1 + (fh - down) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
