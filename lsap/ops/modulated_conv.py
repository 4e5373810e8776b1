"""Modulated convolution with optional weight demodulation (StyleGAN2).

Written once for both implementations: ``impl`` only reaches ``upfirdn2d`` (the FIR blur
after an up-sampling transposed convolution); the convolutions are PyTorch's (cuDNN on a
GPU) either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lsap.ops.upfirdn2d import upfirdn2d


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    fused: bool = True,
    impl: str | None = "ref",
) -> torch.Tensor:
    """Convolve ``x [B, I, H, W]`` with ``weight [O, I, k, k]`` modulated per sample by
    ``styles [B, I]``.

    ``weight`` already carries its equalised-learning-rate gain. With ``demodulate`` each
    output channel's modulated kernel is scaled to unit L2 norm, which makes the result
    invariant to a positive rescaling of ``styles``. ``up=2`` doubles the resolution with
    a transposed convolution followed by the FIR ``resample_filter`` (as StyleGAN2 does).
    Padding keeps the size ("same" for odd k).

    ``fused=True`` builds per-sample kernels and runs one grouped convolution;
    ``fused=False`` scales the activations by the styles, runs one convolution with the
    shared weight for the whole batch and scales the result by the demodulation
    coefficients. Both compute the same function; which is faster depends on batch size
    and device. Demodulation coefficients are always computed in float32 (or float64).
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

    # Demodulation maths in at least float32, outside any autocast region.
    acc = torch.float64 if torch.float64 in (x.dtype, weight.dtype, styles.dtype) else torch.float32
    w32, s32 = weight.to(acc), styles.to(acc)
    if demodulate and _low_precision(x):
        # Demodulation cancels any positive per-sample scale of the styles; dividing by
        # their largest magnitude keeps the float16 activations x * s from overflowing.
        s32 = s32 / s32.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    dcoefs = None
    if demodulate:
        # ||w_o * s_b||^2 over (i, ky, kx) for every sample b and output channel o: [B, O].
        # Elementwise product + sum (not a matmul) so autocast cannot lower it.
        wsq = w32.square().sum(dim=[2, 3])
        dcoefs = torch.rsqrt((s32.square()[:, None, :] * wsq[None]).sum(-1) + 1e-8)

    if fused:
        w = w32[None] * s32[:, None, :, None, None]
        if dcoefs is not None:
            w = w * dcoefs[:, :, None, None, None]
        w = w.to(x.dtype)
        # One grouped convolution runs the B independent per-sample kernels at once.
        x = x.reshape(1, batch * in_channels, height, width)
        if up == 1:
            x = F.conv2d(x, w.reshape(batch * out_channels, in_channels, kh, kw), padding=kh // 2, groups=batch)
        else:
            w = w.transpose(1, 2).reshape(batch * in_channels, out_channels, kh, kw)
            x = F.conv_transpose2d(x, w, stride=2, groups=batch)
        x = x.reshape(batch, out_channels, x.shape[2], x.shape[3])
    else:
        x = x * s32.to(x.dtype)[:, :, None, None]
        w = weight.to(x.dtype)
        if up == 1:
            x = F.conv2d(x, w, padding=kh // 2)
        else:
            x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
    if up == 2:
        # The transposed conv gives 2H + k - 2; the FIR blur (with zero-insertion gain 4)
        # removes the aliasing and trims to 2H.
        fw = resample_filter.shape[-1]
        pad0 = (fw + 2 - 1) // 2 - (kw - 1) + kw // 2
        pad1 = (fw - 2) // 2 - (kw - 2) + kw // 2
        x = upfirdn2d(x, resample_filter, padding=[pad0, pad1, pad0, pad1], gain=4, impl=impl)
    if not fused and dcoefs is not None:
        x = x * dcoefs.to(x.dtype)[:, :, None, None]
    return x


def _low_precision(x: torch.Tensor) -> bool:
    """True when the convolutions will run in float16 (tensor dtype or autocast)."""
    if x.dtype == torch.float16:
        return True
    device = x.device.type
    return torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
