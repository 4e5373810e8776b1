"""Every path of the ops equals every other: fast upfirdn2d vs the textbook
zero-insertion formulation, fused vs non-fused modulated conv, fp32 vs bf16 autocast."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lsap.ops import modulated_conv2d, setup_filter, upfirdn2d

HAS_CUDA = torch.cuda.is_available()


def upfirdn2d_textbook(x, f, up, down, padding, flip_filter, gain):
    """Materialised zero insertion, pad / crop, depthwise conv, decimation."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1]).reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::downy, ::downx]


UPFIRDN_GRID = list(itertools.product(
    [[1, 3, 3, 1], [1, 2, 5], [2.0]],  # even, odd and single-tap filters
    [True, False],  # 2-D (made asymmetric) or separable 1-D
    [(1, 1), (2, 2), (3, 2)],  # up (x, y)
    [(1, 1), (2, 2), (1, 3)],  # down (x, y)
    [(0, 0, 0, 0), (2, 1, 2, 1), (-1, 2, 3, -2), (3, 0, 1, 4)],  # padding incl. crops
))


@pytest.mark.parametrize("flip", [False, True])
def test_fast_upfirdn2d_equals_textbook_for_all_combinations(flip):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    checked = 0
    for taps, two_d, up, down, pad in UPFIRDN_GRID:
        f = setup_filter(taps, separable=not two_d).double()
        if two_d:
            f = f * torch.linspace(0.5, 1.5, f.shape[0], dtype=torch.float64)[:, None]  # catches flips
        h, w = x.shape[2] * up[1] + pad[2] + pad[3], x.shape[3] * up[0] + pad[0] + pad[1]
        if h < f.shape[0] or w < f.shape[-1]:
            with pytest.raises(ValueError, match="smaller than the filter"):
                upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip)
            continue
        expected = upfirdn2d_textbook(x, f, up, down, pad, flip, 1.7)
        got = upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=1.7)
        assert got.shape == expected.shape, (taps, two_d, up, down, pad)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        checked += 1
    assert checked > 150


@pytest.mark.parametrize("up,down,pad", [((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1)),
                                         ((3, 2), (1, 3), (-1, 2, 3, -2))])
def test_fast_upfirdn2d_gradcheck(up, down, pad):
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1], separable=True).double()
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up=up, down=down, padding=pad), (x,))


def _modconv_inputs(k=3, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(3, 4, 6, 6, dtype=dtype)
    w = torch.randn(5, 4, k, k, dtype=dtype) / (4 * k * k) ** 0.5
    s = torch.randn(3, 4, dtype=dtype) + 1
    return x, w, s


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("separable", [True, False])
def test_fused_and_non_fused_modconv_agree_with_gradients(up, demodulate, separable):
    f = setup_filter([1, 3, 3, 1], separable=separable).double()
    x, w, s = (t.requires_grad_(True) for t in _modconv_inputs())
    outs = [modulated_conv2d(x, w, s, demodulate=demodulate, up=up, resample_filter=f, fused=fused)
            for fused in (True, False)]
    assert outs[0].shape == (3, 5, 6 * up, 6 * up)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    dy = torch.randn_like(outs[0])
    grads = [torch.autograd.grad(o, (x, w, s), dy) for o in outs]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,demodulate,k", [(1, True, 3), (2, True, 3), (1, False, 1)])
def test_modconv_gradcheck_float64(fused, up, demodulate, k):
    f = setup_filter([1, 3, 3, 1], separable=True).double()
    torch.manual_seed(1)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, k, k, dtype=torch.float64, requires_grad=True)
    s = (torch.randn(2, 2, dtype=torch.float64) + 2).requires_grad_(True)
    fn = lambda a, b, c: modulated_conv2d(a, b, c, demodulate=demodulate, up=up, resample_filter=f,  # noqa: E731
                                          fused=fused)
    assert torch.autograd.gradcheck(fn, (x, w, s))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,demodulate", [(1, True), (2, True), (1, False)])
def test_bf16_autocast_is_close_to_fp32(fused, up, demodulate):
    """bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 2e-3 per value); a 36-term
    dot product of unit-scale values accumulates to ~1e-2 relative error, so 5e-2 of the
    output's scale is a safe bound that still catches a wrong path (errors of O(1))."""
    f = setup_filter([1, 3, 3, 1], separable=True)
    x, w, s = _modconv_inputs(dtype=torch.float32)
    ref = modulated_conv2d(x, w, s, demodulate=demodulate, up=up, resample_filter=f, fused=fused)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = modulated_conv2d(x, w, s, demodulate=demodulate, up=up, resample_filter=f, fused=fused)
    assert low.dtype == torch.bfloat16
    err = (low.float() - ref).abs().max() / ref.abs().max()
    assert err < 5e-2


def test_demodulation_coefficients_stay_fp32_under_autocast():
    """Scaling the styles of a demodulated conv by 1e3 changes nothing, even in bf16: the
    coefficients are computed in fp32 (a bf16 sum of squares would round differently)."""
    x, w, s = _modconv_inputs(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for fused in (True, False):
            a = modulated_conv2d(x, w, s, fused=fused).float()
            b = modulated_conv2d(x, w, s * 1e3, fused=fused).float()
            torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * a.abs().max().item())


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("impl", ["ref", "cuda"])
@pytest.mark.parametrize("up,demodulate", [(1, True), (2, True), (1, False)])
def test_every_path_on_gpu_matches_cpu_float64(fused, impl, up, demodulate):
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    f = setup_filter([1, 3, 3, 1], separable=True)
    x, w, s = _modconv_inputs(dtype=torch.float64)
    ref = modulated_conv2d(x, w, s, demodulate=demodulate, up=up, resample_filter=f.double(), fused=True)
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = modulated_conv2d(x.float().to(device), w.float().to(device), s.float().to(device),
                                   demodulate=demodulate, up=up, resample_filter=f.to(device), fused=fused, impl=impl)
        err = (out.double().cpu() - ref).abs().max() / ref.abs().max()
        assert err < tol, (dtype, err)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up", [1, 2])
def test_fp16_autocast_with_large_styles_stays_finite_and_close(fused, up):
    """Styles of magnitude ~1e4 would push x * s past float16's range (65504) in the
    non-fused layout; demodulated convs first divide the styles by their largest magnitude
    (demodulation cancels that scale). float16 keeps 11 mantissa bits: 1e-2 relative."""
    f = setup_filter([1, 3, 3, 1], separable=True)
    x, w, s = _modconv_inputs(dtype=torch.float32)
    x, s = x * 30, s * 1e4
    ref = modulated_conv2d(x, w, s, up=up, resample_filter=f, fused=fused)
    with torch.autocast("cpu", dtype=torch.float16):
        low = modulated_conv2d(x, w, s, up=up, resample_filter=f, fused=fused)
    assert low.dtype == torch.float16 and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() / ref.abs().max() < 1e-2
