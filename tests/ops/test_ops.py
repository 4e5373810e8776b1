"""Reference ops: gradients, and equivalence with direct formulations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lsap.ops import bias_act, downsample2d, filter2d, modulated_conv2d, setup_filter, upfirdn2d, upsample2d


def upfirdn2d_direct(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Textbook definition with explicit loops: zero-stuff, pad, true convolution, decimate."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pad
    xu = np.zeros((n, c, h * up, w * up))
    xu[:, :, ::up, ::up] = x
    hp, wp = h * up + py0 + py1, w * up + px0 + px1
    xp = np.zeros((n, c, hp, wp))
    for yy in range(hp):
        for xx in range(wp):
            sy, sx = yy - py0, xx - px0
            if 0 <= sy < h * up and 0 <= sx < w * up:
                xp[:, :, yy, xx] = xu[:, :, sy, sx]
    fh, fw = f.shape
    out = np.zeros((n, c, hp - fh + 1, wp - fw + 1))
    for oy in range(out.shape[2]):
        for ox in range(out.shape[3]):
            acc = 0
            for ky in range(fh):
                for kx in range(fw):
                    # convolution: output at o sums x[o + k] * f[K - 1 - k]
                    acc = acc + xp[:, :, oy + ky, ox + kx] * f[fh - 1 - ky, fw - 1 - kx]
            out[:, :, oy, ox] = acc
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (2, 2, (0, 3, 1, 2)), (1, 1, (-1, 2, 0, -1))])
def test_upfirdn2d_matches_direct_definition(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6))
    f = rng.standard_normal((4, 3))  # asymmetric, so a flip error shows
    ours = upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, padding=pad).numpy()
    np.testing.assert_allclose(ours, upfirdn2d_direct(x, f, up, down, pad), atol=1e-10)


def test_separable_filter_equals_its_outer_product():
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    f1 = setup_filter([1, 3, 3, 1], separable=True).double()
    f2 = setup_filter([1, 3, 3, 1]).double()
    assert torch.allclose(f2.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(upsample2d(x, f1), upsample2d(x, f2))
    torch.testing.assert_close(filter2d(x, f1), filter2d(x, f2))


def test_upsample2d_keeps_constant_images_constant_and_doubles_size():
    x = torch.full((1, 1, 6, 6), 3.0, dtype=torch.float64)
    y = upsample2d(x, setup_filter([1, 3, 3, 1]).double())
    assert y.shape == (1, 1, 12, 12)
    # Away from the zero-padded border the gain keeps the mean intensity exactly.
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 3.0))


@pytest.mark.parametrize("up,down,pad", [(1, 1, 1), (2, 1, (2, 1, 2, 1)), (1, 2, 1)])
def test_upfirdn2d_gradcheck(up, down, pad):
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up=up, down=down, padding=pad), (x,))


def test_bias_act_matches_hand_computation():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    y = bias_act(x, b, act="lrelu", alpha=0.2, clamp=0.5)
    z = x + b[None, :, None, None]
    expected = torch.where(z >= 0, z, 0.2 * z) * np.sqrt(2)
    torch.testing.assert_close(y, expected.clamp(-0.5, 0.5))
    torch.testing.assert_close(bias_act(x, b, dim=1), z)


def test_bias_act_gradcheck():
    # Keep values off the kink at 0 and off the clamp so finite differences are valid.
    x = (torch.rand(2, 3, 4, dtype=torch.float64) + 0.1) * torch.sign(torch.randn(2, 3, 4, dtype=torch.float64))
    x.requires_grad_(True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, c: bias_act(t, c, act="lrelu", gain=1.3), (x, b))


def test_bias_act_rejects_wrong_bias_shape():
    with pytest.raises(ValueError, match=r"bias must have shape \[4\]"):
        bias_act(torch.zeros(1, 4, 2, 2), torch.zeros(3))


def modulated_conv_per_sample(x, weight, styles, demodulate, up, f):
    """Loop over samples with an explicit modulated kernel: a second path to compare with."""
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]
        if demodulate:
            w = w / torch.sqrt((w**2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xi = x[i : i + 1]
        if up == 1:
            outs.append(F.conv2d(xi, w, padding=weight.shape[-1] // 2))
        else:
            # Transposed conv written out: zero-stuff, pad fully, true convolution with the
            # kernel (correlation with its flip), then the FIR blur with gain 4.
            k = weight.shape[-1]
            xu = upfirdn2d(xi, torch.ones(1, 1, dtype=x.dtype), up=2, padding=[k - 1, k - 2] * 2)
            y = F.conv2d(xu, w.flip([2, 3]))
            outs.append(upfirdn2d(y, f, padding=1, gain=4))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv_matches_per_sample_loop(demodulate, up):
    torch.manual_seed(1)
    f = setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 4, dtype=torch.float64)
    ours = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, resample_filter=f)
    ref = modulated_conv_per_sample(x, weight, styles, demodulate, up, f)
    assert ours.shape == (3, 5, 6 * up, 6 * up)
    torch.testing.assert_close(ours, ref)


def test_modulated_conv_gradcheck():
    f = setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    for up in (1, 2):
        assert torch.autograd.gradcheck(
            lambda a, b, c: modulated_conv2d(a, b, c, demodulate=True, up=up, resample_filter=f), (x, weight, styles)
        )


def test_modulated_conv_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"styles must have shape \[2, 3\]"):
        modulated_conv2d(torch.zeros(2, 3, 4, 4), torch.zeros(1, 3, 3, 3), torch.zeros(2, 4))


def test_downsample2d_with_a_box_filter_is_average_pooling():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = downsample2d(x, setup_filter([1, 1]).double())
    torch.testing.assert_close(y, torch.nn.functional.avg_pool2d(x, 2))


def test_downsample2d_keeps_constant_images_constant_and_halves_size():
    x = torch.full((1, 2, 8, 8), 3.0, dtype=torch.float64)
    y = downsample2d(x, setup_filter([1, 3, 3, 1]).double())
    assert y.shape == (1, 2, 4, 4)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.full_like(y[..., 1:-1, 1:-1], 3.0))
