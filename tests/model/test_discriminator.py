"""StyleGAN2 residual discriminator."""

from __future__ import annotations

import math

import pytest
import torch

from lsap.model import Discriminator
from lsap.model.discriminator import EqualConv2d, minibatch_stddev
from lsap.model.generator import channels_for


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64])
def test_output_shape_and_widths_at_every_resolution(resolution: int) -> None:
    d = Discriminator(resolution, channel_base=256, channel_max=16)
    x = torch.randn(6, 3, resolution, resolution)
    out = d(x)
    assert out.shape == (6, 1) and torch.isfinite(out).all()
    widths = channels_for(resolution, 256, 16)
    assert len(d.blocks) == int(math.log2(resolution)) - 2
    assert d.from_rgb.weight.shape[0] == widths[resolution]
    assert d.epilogue_fc.weight.shape[1] == widths[4] * 16
    out.sum().backward()
    assert all(p.grad is not None for p in d.parameters()), "every parameter is used"


def test_rejects_images_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match=r"\[B, 3, 16, 16\]"):
        Discriminator(16, channel_base=256, channel_max=16)(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(24)


@pytest.mark.parametrize("batch", [8, 6, 5])
def test_minibatch_stddev_matches_a_loop(batch: int) -> None:
    x = torch.randn(batch, 4, 3, 3)
    out = minibatch_stddev(x, group_size=4)
    group = max(d for d in range(1, 5) if batch % d == 0)
    m = batch // group
    assert out.shape == (batch, 5, 3, 3) and torch.equal(out[:, :4], x)
    for i in range(batch):
        members = x[i % m::m]  # sample i is grouped with i + m, i + 2m, ...
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[i, 4], expected.expand(3, 3), atol=1e-6)


def test_downsampling_conv_keeps_constants_in_the_interior() -> None:
    torch.manual_seed(0)
    conv = EqualConv2d(2, 3, 3, activation="linear", down=2)
    x = torch.ones(1, 2, 16, 16)
    out = conv(x)
    assert out.shape == (1, 3, 8, 8)
    # The FIR low-pass keeps a constant, so away from the border the strided conv sees ones.
    expected = (conv.weight * conv.weight_gain).sum(dim=[1, 2, 3])
    assert torch.allclose(out[0, :, 2:-2, 2:-2], expected[:, None, None].expand(3, 4, 4), atol=1e-5)
    skip = EqualConv2d(2, 3, 1, bias=False, activation="linear", down=2)
    out = skip(x)
    expected = (skip.weight * skip.weight_gain).sum(dim=[1, 2, 3])
    assert torch.allclose(out[0, :, 1:-1, 1:-1], expected[:, None, None].expand(3, 6, 6), atol=1e-5)

