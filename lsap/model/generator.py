"""StyleGAN2 generator (config-f architecture) with access to its style space.

Layout, for resolution R = 2^k and ``num_ws = 2k - 2`` W+ entries:

* ``mapping``: pixel-norm of z, then FC layers with equalised learning rate and a
  learning-rate multiplier; tracks ``w_avg`` for truncation.
* ``synthesis``: a learned 4x4 constant, then ``num_ws - 1`` styled convolutions in a
  flat list ``convs`` (``convs[i]`` reads ``w[i]``; the first at 4x4, then an up-sampling
  and a plain conv per resolution) and one toRGB per resolution in ``to_rgbs``
  (``to_rgbs[j]`` reads ``w[2j + 1]``), summed through up-sampled skips.

The style space S holds the affine output of every styled layer: ``styles(ws)`` returns
them in the order the layers run (conv, conv, toRGB per block) and
``synthesis_from_styles`` is G_S. LSAP's S space keeps one style per W+ index: every conv
and only the last toRGB (``lsap_style_indices``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Sequence

import torch
from torch import nn

from lsap.model.sampling import sample_z
from lsap.ops import bias_act, modulated_conv2d, setup_filter, upsample2d

NoiseMode = Literal["const", "random", "none"]

#: ``hook(point, resolution, features) -> features``, called inside the synthesis network so
#: that refinements (HFGI's fusion, SAM's feature offsets) can read or change the features:
#: ``point`` is ``"up"`` right after a block's up-sampling conv (not called at 4x4) and
#: ``"block"`` for a block's output, before its toRGB. Return the features unchanged to only
#: read them.
FeatureHook = Callable[[Literal["up", "block"], int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StyleLayer:
    """Metadata of one layer of the style space."""

    name: str  # module name inside the synthesis network, e.g. "convs.3" or "to_rgbs.1"
    kind: Literal["conv", "torgb"]
    w_index: int  # the W+ entry whose affine transform gives this style
    channels: int  # style dimension (the layer's input channels)
    resolution: int  # output resolution of the layer
    demodulated: bool


def check_ws(ws: torch.Tensor, num_ws: int, w_dim: int) -> torch.Tensor:
    """Return W+ ``[B, num_ws, w_dim]`` for W ``[B, w_dim]`` (broadcast) or W+ codes; raise a
    ``ValueError`` naming the expected and actual shapes otherwise."""
    if ws.ndim == 2 and ws.shape[1] == w_dim:
        return ws[:, None, :].expand(-1, num_ws, -1)
    if ws.ndim == 3 and ws.shape[1:] == (num_ws, w_dim):
        return ws
    expected = f"expected W [B, {w_dim}] or W+ [B, {num_ws}, {w_dim}], got {tuple(ws.shape)}"
    if ws.ndim == 3 and ws.shape[2] == w_dim:
        raise ValueError(f"codes have num_ws={ws.shape[1]} but the generator has num_ws={num_ws}: {expected}")
    raise ValueError(f"codes must be W [B, {w_dim}] or W+ [B, {num_ws}, {w_dim}], got {tuple(ws.shape)}")


def channels_for(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """Feature channels at every resolution 4..R: ``min(channel_base // res, channel_max)``.

    ``channel_base=32768, channel_max=512`` is config-f (rosinality's channel multiplier 2);
    rosinality's multiplier ``m`` equals ``channel_base = 16384 * m``.
    """
    log2 = int(math.log2(resolution))
    return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, log2 + 1)}


def choose_fused_modconv(fused_modconv: bool | None, batch: int, device: torch.device) -> bool:
    """Resolve ``fused_modconv=None`` for one call.

    On CPU the shared-weight (non-fused) convolution was faster in every case measured
    (bench/bench_generator.py, 2 threads: batch 1 and 4, with and without gradients), so
    it is always chosen there. On GPUs, per-sample grouped kernels only pay off for a
    single sample (as in NVlabs' implementation); bench/gpu_suite.py measures both to
    confirm. Grad mode did not change the CPU ranking, so the rule ignores it.
    """
    if fused_modconv is not None:
        return bool(fused_modconv)
    return device.type != "cpu" and batch == 1


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate (weights scaled at run time)."""

    def __init__(
        self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
        activation: Literal["linear", "lrelu"] = "linear",
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.linear(x, self.weight * self.weight_gain)
        return bias_act(x, self.bias * self.lr_mul, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lr_mul={self.lr_mul}, act={self.activation}"


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then ``num_layers`` leaky-ReLU FC layers."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, num_layers: int = 8, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.w_avg_beta = z_dim, w_dim, w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation="lrelu") for i in range(num_layers)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [B, {self.z_dim}], got {tuple(z.shape)}")
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        if self.training and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally up-sampling) + noise + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 kernel_size: int = 3, conv_clamp: float | None = None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, resample_filter: torch.Tensor, noise_mode: NoiseMode,
                noise: torch.Tensor | None, impl: str | None, fused: bool = True) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight * self.weight_gain, style, demodulate=True, up=2 if self.up else 1,
                             resample_filter=resample_filter, fused=fused, impl=impl)
        if noise is None:
            if noise_mode == "const":
                noise = self.noise_const
            elif noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            elif noise_mode != "none":
                raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength
        return bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp, impl=impl)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation."""

    def __init__(self, in_channels: int, w_dim: int, resolution: int, img_channels: int = 3,
                 conv_clamp: float | None = None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.resolution, self.conv_clamp = resolution, conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, impl: str | None, fused: bool = True) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight * self.weight_gain, style, demodulate=False, fused=fused, impl=impl)
        return bias_act(x, self.bias, clamp=self.conv_clamp, impl=impl)


class SynthesisNetwork(nn.Module):
    """W+ (or styles) -> image, skip architecture."""

    def __init__(self, resolution: int, channels: Mapping[int, int], w_dim: int = 512, img_channels: int = 3,
                 conv_clamp: float | None = None):
        super().__init__()
        log2 = int(math.log2(resolution))
        self.resolution, self.w_dim, self.num_ws = resolution, w_dim, 2 * log2 - 2
        self.const = nn.Parameter(torch.randn(channels[4], 4, 4))
        self.convs = nn.ModuleList([StyledConv(channels[4], channels[4], w_dim, 4, conv_clamp=conv_clamp)])
        self.to_rgbs = nn.ModuleList([ToRGB(channels[4], w_dim, 4, img_channels, conv_clamp)])
        for i in range(3, log2 + 1):
            res = 2**i
            self.convs.append(StyledConv(channels[res // 2], channels[res], w_dim, res, up=True, conv_clamp=conv_clamp))
            self.convs.append(StyledConv(channels[res], channels[res], w_dim, res, conv_clamp=conv_clamp))
            self.to_rgbs.append(ToRGB(channels[res], w_dim, res, img_channels, conv_clamp))
        # Separable taps: the reference upfirdn2d then filters in two cheap 1-D passes.
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1], separable=True), persistent=False)

        # Style layers in execution order: conv (4x4), toRGB, then per block conv, conv, toRGB.
        layers = [("convs", 0), ("to_rgbs", 0)]
        for j in range(1, log2 - 1):
            layers += [("convs", 2 * j - 1), ("convs", 2 * j), ("to_rgbs", j)]
        self.style_layers: list[StyleLayer] = []
        for kind, idx in layers:
            module = getattr(self, kind)[idx]
            is_conv = kind == "convs"
            self.style_layers.append(StyleLayer(
                name=f"{kind}.{idx}", kind="conv" if is_conv else "torgb", w_index=idx if is_conv else 2 * idx + 1,
                channels=module.weight.shape[1], resolution=module.resolution, demodulated=is_conv,
            ))
        last_rgb = len(self.style_layers) - 1
        self.lsap_style_indices: list[int] = [i for i, l in enumerate(self.style_layers) if l.kind == "conv"] + [last_rgb]

    def check_ws(self, ws: torch.Tensor) -> torch.Tensor:
        """Accept W ``[B, w_dim]`` (broadcast) or W+ ``[B, num_ws, w_dim]``; return W+."""
        return check_ws(ws, self.num_ws, self.w_dim)

    def styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        ws = self.check_ws(ws)
        out = []
        for layer in self.style_layers:
            module = self.get_submodule(layer.name)
            out.append(module.affine(ws[:, layer.w_index]))
        return out

    def forward_styles(self, styles: Sequence[torch.Tensor], noise_mode: NoiseMode = "const",
                       noise: Sequence[torch.Tensor | None] | None = None, impl: str | None = "ref",
                       fused_modconv: bool | None = None, feature_hook: FeatureHook | None = None) -> torch.Tensor:
        if len(styles) != len(self.style_layers):
            raise ValueError(f"expected {len(self.style_layers)} style tensors (full S space), got {len(styles)}")
        batch = styles[0].shape[0]
        for s, layer in zip(styles, self.style_layers):
            if s.ndim != 2 or s.shape != (batch, layer.channels):
                raise ValueError(f"style of layer {layer.name} must have shape [{batch}, {layer.channels}], "
                                 f"got {tuple(s.shape)}")
        if noise is not None and len(noise) != len(self.convs):
            raise ValueError(f"noise must hold one map per conv ({len(self.convs)}), got {len(noise)}")
        by_name = {layer.name: s for layer, s in zip(self.style_layers, styles)}
        noise = noise if noise is not None else [None] * len(self.convs)
        dtype = styles[0].dtype
        f = self.resample_filter
        fused = choose_fused_modconv(fused_modconv, batch, styles[0].device)

        x = self.const.to(dtype)[None].expand(batch, -1, -1, -1)
        x = self.convs[0](x, by_name["convs.0"], f, noise_mode, noise[0], impl, fused)
        if feature_hook is not None:
            x = feature_hook("block", 4, x)
        img = self.to_rgbs[0](x, by_name["to_rgbs.0"], impl, fused)
        for j in range(1, len(self.to_rgbs)):
            resolution = 4 * 2**j
            x = self.convs[2 * j - 1](x, by_name[f"convs.{2 * j - 1}"], f, noise_mode, noise[2 * j - 1], impl, fused)
            if feature_hook is not None:
                x = feature_hook("up", resolution, x)
            x = self.convs[2 * j](x, by_name[f"convs.{2 * j}"], f, noise_mode, noise[2 * j], impl, fused)
            if feature_hook is not None:
                x = feature_hook("block", resolution, x)
            img = upsample2d(img, f, impl=impl) + self.to_rgbs[j](x, by_name[f"to_rgbs.{j}"], impl, fused)
        return img

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                noise: Sequence[torch.Tensor | None] | None = None, impl: str | None = "ref",
                fused_modconv: bool | None = None, feature_hook: FeatureHook | None = None) -> torch.Tensor:
        return self.forward_styles(self.styles(ws), noise_mode, noise, impl, fused_modconv, feature_hook)


class Generator(nn.Module):
    """StyleGAN2 generator: ``G(z) = synthesis(mapping(z))``.

    Architecture arguments describe the network; weights come from ``load_generator`` or
    training. Widths are ``min(channel_base // res, channel_max)``; ``channel_multiplier``
    (rosinality's convention, 2 for config-f) sets ``channel_base = 16384 * multiplier``;
    ``channels`` (resolution -> channels) overrides both where a checkpoint's widths follow
    no formula.
    """

    def __init__(
        self,
        resolution: int = 1024,
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        mapping_lr_mul: float = 0.01,
        channel_base: int = 32768,
        channel_max: int = 512,
        channels: Mapping[int, int] | None = None,
        channel_multiplier: int | None = None,
        img_channels: int = 3,
        conv_clamp: float | None = None,
        impl: str = "ref",
        fused_modconv: bool | None = None,
    ):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        if channel_multiplier is not None:
            channel_base = 16384 * channel_multiplier
        channels = {int(k): int(v) for k, v in (channels or channels_for(resolution, channel_base, channel_max)).items()}
        missing = [2**i for i in range(2, int(math.log2(resolution)) + 1) if 2**i not in channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing}")
        self.config = dict(
            resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers,
            mapping_lr_mul=mapping_lr_mul, channels={r: channels[r] for r in sorted(channels) if r <= resolution},
            img_channels=img_channels, conv_clamp=conv_clamp,
        )
        self.resolution, self.z_dim, self.w_dim, self.img_channels = resolution, z_dim, w_dim, img_channels
        # Execution choices, not architecture: ``impl`` ("ref", "cuda" or "auto", which is
        # "ref" everywhere for now) and ``fused_modconv`` (None: per call, see
        # ``choose_fused_modconv``).
        self.impl = impl
        self.fused_modconv = fused_modconv
        self.mapping_network = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.synthesis_network = SynthesisNetwork(resolution, channels, w_dim, img_channels, conv_clamp)
        self.num_ws = self.synthesis_network.num_ws

    # ----- style space ---------------------------------------------------------------
    @property
    def style_layers(self) -> list[StyleLayer]:
        """Metadata of every layer of the full S space, in ``styles()`` order."""
        return self.synthesis_network.style_layers

    @property
    def lsap_style_indices(self) -> list[int]:
        """Indices into ``style_layers`` of LSAP's S space (one per W+ entry, by W+ index)."""
        return self.synthesis_network.lsap_style_indices

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping_network.w_avg

    def styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer style vectors of the full S space for W or W+ codes."""
        return self.synthesis_network.styles(ws)

    def lsap_styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """The LSAP S-space styles only (one per W+ entry), computed without the rest."""
        ws = self.synthesis_network.check_ws(ws)
        out = []
        for i in self.lsap_style_indices:
            layer = self.style_layers[i]
            out.append(self.synthesis_network.get_submodule(layer.name).affine(ws[:, layer.w_index]))
        return out

    def synthesis_from_styles(self, styles: Sequence[torch.Tensor], noise_mode: NoiseMode = "const",
                              noise: Sequence[torch.Tensor | None] | None = None,
                              feature_hook: FeatureHook | None = None) -> torch.Tensor:
        """G_S: image from the full list of style vectors."""
        return self.synthesis_network.forward_styles(styles, noise_mode, noise, self.impl, self.fused_modconv,
                                                     feature_hook)

    # ----- latent spaces -------------------------------------------------------------
    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
        """z -> w ``[B, w_dim]``; with ``truncation_cutoff`` only the first entries of W+ are
        truncated, so the result is W+ ``[B, num_ws, w_dim]``."""
        w = self.mapping_network(z)
        if truncation_cutoff is None:
            return w if truncation_psi == 1 else self.w_avg.lerp(w, truncation_psi)
        ws = w[:, None, :].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            ws[:, :truncation_cutoff] = self.w_avg.lerp(ws[:, :truncation_cutoff], truncation_psi)
        return ws

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                  noise: Sequence[torch.Tensor | None] | None = None,
                  feature_hook: FeatureHook | None = None) -> torch.Tensor:
        """Image ``[B, img_channels, R, R]`` (about [-1, 1]) from W ``[B, w_dim]`` or W+
        ``[B, num_ws, w_dim]``. ``noise`` (one map per conv, ``[B or 1, 1, r, r]``)
        overrides ``noise_mode``; ``feature_hook`` (see :data:`FeatureHook`) reads or changes
        the features on the way."""
        return self.synthesis_network(ws, noise_mode, noise, self.impl, self.fused_modconv, feature_hook)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: NoiseMode = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode)

    @torch.no_grad()
    def w_stats(self, num_samples: int = 10_000, seed: int = 0, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[w_dim]`` and scalar std of w over ``num_samples`` seeded z draws (lsap's z
        stream: the same z for any ``batch_size``).

        The std is the projector's: sqrt of the mean squared distance to the mean.
        """
        device = self.w_avg.device
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=device)
        total_sq = torch.zeros((), dtype=torch.float64, device=device)
        for z in sample_z(num_samples, self.z_dim, seed, batch_size):
            z = z.to(device)
            w = self.mapping_network(z).double()
            total += w.sum(0)
            total_sq += w.square().sum()
        mean = total / num_samples
        var = total_sq / num_samples - mean.square().sum()
        return mean.float(), var.clamp_min(0).sqrt().float()

    def mean_latent(self, num_samples: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean w over ``num_samples`` seeded draws ``[w_dim]``."""
        return self.w_stats(num_samples, seed)[0]

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shapes ``[1, 1, r, r]`` of the per-conv noise maps, in ``noise`` order."""
        return [(1, 1, c.resolution, c.resolution) for c in self.synthesis_network.convs]

    def const_noise(self) -> list[torch.Tensor]:
        """The stored noise maps as ``[1, 1, r, r]`` tensors (what ``noise_mode="const"`` uses)."""
        return [c.noise_const[None, None] for c in self.synthesis_network.convs]

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, num_ws={self.num_ws}, w_dim={self.w_dim}"
