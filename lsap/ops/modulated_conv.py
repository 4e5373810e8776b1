"""Modulated convolution with optional weight demodulation (StyleGAN2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lsap.ops.impl import resolve_impl
from lsap.ops.upfirdn2d import upfirdn2d


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    impl: str | None = "ref",
) -> torch.Tensor:
    """Convolve ``x [B, I, H, W]`` with ``weight [O, I, k, k]`` modulated per sample by
    ``styles [B, I]``.

    ``weight`` already carries its equalised-learning-rate gain. With ``demodulate`` each
    output channel's modulated kernel is scaled to unit L2 norm, which makes the result
    invariant to a positive rescaling of ``styles``. ``up=2`` doubles the resolution with
    a transposed convolution followed by the FIR ``resample_filter`` (as StyleGAN2 does).
    Padding keeps the size ("same" for odd k).
    """
    batch, in_channels, height, width = x.shape
    out_channels, w_in, kh, kw = weight.shape
    if w_in != in_channels:
        raise ValueError(f"weight expects {w_in} input channels, x has {in_channels}")
    if styles.shape != (batch, in_channels):
        raise ValueError(f"styles must have shape [{batch}, {in_channels}], got {tuple(styles.shape)}")
    if up not in (1, 2):
        raise ValueError(f"up must be 1 or 2, got {up}")
    if up == 2 and resample_filter is None:
        raise ValueError("up=2 needs a resample_filter")
    if resolve_impl(impl, x) == "cuda":
        from lsap.ops import _cuda

        out = _cuda.modulated_conv2d(x, weight, styles, demodulate, up, resample_filter)
        if out is not None:
            return out
    return _modulated_conv2d_ref(x, weight, styles, demodulate, up, resample_filter)


def modulate_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """Per-sample kernels ``[B, O, I, k, k]``."""
    w = weight[None] * styles[:, None, :, None, None].to(weight.dtype)
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
    return w


def _modulated_conv2d_ref(x, weight, styles, demodulate, up, resample_filter):
    batch, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    w = modulate_weight(weight.to(x.dtype), styles.to(x.dtype), demodulate)
    # One grouped convolution runs the B independent per-sample kernels at once.
    x = x.reshape(1, batch * in_channels, height, width)
    if up == 1:
        w = w.reshape(batch * out_channels, in_channels, kh, kw)
        x = F.conv2d(x, w, padding=kh // 2, groups=batch)
    else:
        w = w.transpose(1, 2).reshape(batch * in_channels, out_channels, kh, kw)
        x = F.conv_transpose2d(x, w, stride=2, padding=0, groups=batch)
        # The transposed conv gives 2H + k - 2; the FIR blur (with zero-insertion gain 4)
        # removes the aliasing and trims to 2H.
        fw = resample_filter.shape[-1]
        pad0 = (fw + 2 - 1) // 2 - (kw - 1) + kw // 2
        pad1 = (fw - 2) // 2 - (kw - 2) + kw // 2
        x = upfirdn2d(x, resample_filter, padding=[pad0, pad1, pad0, pad1], gain=4, impl="ref")
    return x.reshape(batch, out_channels, x.shape[2], x.shape[3])
