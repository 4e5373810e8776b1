"""StyleGAN2 residual discriminator (config-e/f "resnet" architecture).

Layout for resolution R = 2^k: FromRGB (1x1 conv) at R, one residual block per
resolution R..8 (3x3 conv, 3x3 conv with FIR down-sampling, and a 1x1 down-sampling skip,
summed with gain sqrt(1/2)), then the 4x4 epilogue: minibatch standard deviation, a 3x3
conv, a fully connected layer and the scalar output. Every layer has an equalised learning
rate (weights drawn from N(0, 1) and scaled by 1/sqrt(fan_in) at run time).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lsap.model.generator import EqualLinear, channels_for
from lsap.ops import bias_act, downsample2d, setup_filter, upfirdn2d


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate; ``down=2`` low-passes with the FIR filter first."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "lrelu", down: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0, impl: str | None = "ref") -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        k = w.shape[-1]
        if self.down == 1:
            x = torch.nn.functional.conv2d(x, w, padding=k // 2)
        elif k == 1:
            x = torch.nn.functional.conv2d(downsample2d(x, self.resample_filter, self.down, impl=impl), w)
        else:
            # Blur with the conv's padding folded in, then a strided conv: the output is R / down.
            fw = self.resample_filter.shape[-1]
            pad = k // 2 + (fw - self.down + 1) // 2, k // 2 + (fw - self.down) // 2
            x = upfirdn2d(x, self.resample_filter, padding=[pad[0], pad[1], pad[0], pad[1]], impl=impl)
            x = torch.nn.functional.conv2d(x, w, stride=self.down)
        act_gain = math.sqrt(2) if self.activation == "lrelu" else 1.0
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=act_gain * gain, clamp=clamp, impl=impl)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel={k}, down={self.down}, act={self.activation}"


class DiscriminatorBlock(nn.Module):
    """Residual block at ``resolution``: two 3x3 convs (the second halves the size) plus a
    1x1 down-sampling skip; both paths carry gain sqrt(1/2) so the sum keeps its scale."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, conv_clamp: float | None = None):
        super().__init__()
        self.resolution = resolution
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=2, conv_clamp=conv_clamp)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activation="linear", down=2)

    def forward(self, x: torch.Tensor, impl: str | None = "ref") -> torch.Tensor:
        gain = math.sqrt(0.5)
        y = self.skip(x, gain=gain, impl=impl)
        x = self.conv1(self.conv0(x, impl=impl), gain=gain, impl=impl)
        return x + y


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append ``num_channels`` feature maps holding the standard deviation over groups of
    ``group_size`` samples (averaged over features and pixels). The group is the largest
    divisor of the batch not above ``group_size``, so any batch size works."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    f = num_channels
    if c % f:
        raise ValueError(f"mbstd channels ({f}) must divide the feature channels ({c})")
    y = x.reshape(g, -1, f, c // f, h, w).float()  # sample i is in group i % (n // g)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [n/g, f, c/f, h, w]
    y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).to(x.dtype)  # [n/g, f, 1, 1]
    y = y.repeat(g, 1, h, w)  # [n, f, h, w]
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: image ``[B, img_channels, R, R]`` in [-1, 1] -> logit ``[B, 1]``.

    Args:
        resolution: input size R, a power of two >= 4.
        img_channels: input channels.
        channel_base, channel_max: widths ``min(channel_base // res, channel_max)`` per
            resolution (``channel_base=32768, channel_max=512`` is config-f).
        mbstd_group_size, mbstd_channels: minibatch standard deviation layer.
        conv_clamp: clamp of conv outputs (NVlabs uses 256 for reduced precision); None: off.
        impl: implementation of the ops (see ``lsap.ops``).
    """

    def __init__(
        self,
        resolution: int = 1024,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        mbstd_channels: int = 1,
        conv_clamp: float | None = None,
        impl: str = "ref",
    ):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        channels = channels_for(resolution, channel_base, channel_max)
        self.config = dict(resolution=resolution, img_channels=img_channels, channel_base=channel_base,
                           channel_max=channel_max, mbstd_group_size=mbstd_group_size,
                           mbstd_channels=mbstd_channels, conv_clamp=conv_clamp)
        self.resolution, self.img_channels, self.impl = resolution, img_channels, impl
        self.mbstd_group_size, self.mbstd_channels = mbstd_group_size, mbstd_channels
        self.from_rgb = EqualConv2d(img_channels, channels[resolution], 1, conv_clamp=conv_clamp)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(channels[res], channels[res // 2], res, conv_clamp)
            for res in (2**i for i in range(int(math.log2(resolution)), 2, -1))
        )
        c4 = channels[4]
        self.epilogue_conv = EqualConv2d(c4 + mbstd_channels, c4, 3, conv_clamp=conv_clamp)
        self.epilogue_fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, self.resolution, self.resolution):
            raise ValueError(f"discriminator expects [B, {self.img_channels}, {self.resolution}, {self.resolution}] "
                             f"images, got {tuple(img.shape)}")
        x = self.from_rgb(img, impl=self.impl)
        for block in self.blocks:
            x = block(x, impl=self.impl)
        x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_channels)
        x = self.epilogue_conv(x, impl=self.impl)
        x = self.epilogue_fc(x.flatten(1))
        return self.out(x)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}"
