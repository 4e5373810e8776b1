"""HFGI (Wang et al., CVPR 2022): high-fidelity inversion by distortion consultation.

Given an image ``x`` and its embedding's W+ code ``w`` (any pivot: e4e, LSAP_E, LSAP_O,
ReStyle), the generator alone renders ``x̂ = G(w)``, which misses detail. HFGI adds it back
without changing ``w``:

1. the *distortion* ``d = x − x̂`` (both at the refiner's ``input_size``);
2. ADA (:class:`DistortionAligner`, a small U-Net of IR bottleneck units with bilinear
   up-sampling) maps ``cat(d, guide)`` to an *aligned* distortion, where ``guide`` is the
   image the result should look like: ``x̂`` itself for a reconstruction, the edited image
   ``G(w_edit)`` for an edit (ADA moves the detail to where the edited image has it);
3. the consultation encoder (:class:`ConsultationEncoder`) turns the aligned distortion
   into ``scale`` and ``shift`` maps at the fusion layer's channels and resolution;
4. fusion (:class:`FusionHook`): inside the generator, right after the up-sampling conv of
   the block at ``fusion_resolution``, ``h = h·(1 + scale) + shift``.

The original fuses at 64² in a 1024 px generator (``resolution // 16``); that is the rule
of :func:`default_fusion_resolution` (never below 8, the first block with an up-sampling conv).

Training (in :class:`lsap.modules.HFGI`) freezes the embedding and the generator; only ADA
and the consultation encoder learn. ADA is self-supervised: it is fed a randomly warped
distortion (:func:`random_perspective`) and asked, through an L1 term, to give back the true
one.

Module and tensor names follow the HFGI release (``grid_align.*`` = ADA, ``residue.*`` =
consultation encoder), so its weights load as they are (:mod:`lsap.refine.hfgi_checkpoint`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.errors import BadFileError
from lsap.io import atomic_write, builtin_asset_path, load_weights_file
from lsap.losses.reconstruction import to_resolution
from lsap.model.discriminator import EqualConv2d
from lsap.model.generator import Generator
from lsap.nets.irse import IRBottleneck

__all__ = [
    "BUILTIN_HFGI",
    "ConsultationEncoder",
    "DistortionAligner",
    "FusionHook",
    "HFGIRefiner",
    "default_fusion_resolution",
    "fusion_channels",
    "load_hfgi_refiner",
    "random_perspective",
    "save_hfgi_refiner",
]


def _ir_stage(in_channels: int, widths: Sequence[int], first_stride: int) -> nn.Sequential:
    """IR bottleneck units (no SE, as in HFGI): ``in -> widths[0]`` (with ``first_stride``),
    then ``widths[k-1] -> widths[k]`` at stride 1."""
    units, channels = [], in_channels
    for k, width in enumerate(widths):
        units.append(IRBottleneck(channels, width, stride=first_stride if k == 0 else 1, use_se=False))
        channels = width
    return nn.Sequential(*units)


def _stem(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.PReLU(out_channels))


def _resize_to(features: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(features, size=like.shape[-2:], mode="bilinear", align_corners=False)


class DistortionAligner(nn.Module):
    """ADA: ``cat(distortion, guide)`` ``[B, 6, S, S]`` -> aligned distortion ``[B, 3, S, S]``.

    Encoder: a stride-1 stem (``widths[0]``) and three stride-2 stages of three IR units
    (``widths[1..3]``); decoder: three stages that up-sample bilinearly to the next skip's size
    and merge it by concatenation, ending in 3 channels. ``widths = (16, 32, 48, 64)`` is the
    release's. ``S`` must be divisible by 8.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 48, 64), in_channels: int = 6, out_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be four positive channel counts, got {list(widths)}")
        w0, w1, w2, w3 = (int(w) for w in widths)
        self.widths = (w0, w1, w2, w3)
        self.conv_layer1 = _stem(in_channels, w0)
        self.conv_layer2 = _ir_stage(w0, (w1, w1, w1), 2)
        self.conv_layer3 = _ir_stage(w1, (w2, w2, w2), 2)
        self.conv_layer4 = _ir_stage(w2, (w3, w3, w3), 2)
        self.dconv_layer1 = _ir_stage(w3 + w2, (w3, w1, w1), 1)
        self.dconv_layer2 = _ir_stage(w1 + w1, (w1, w0, w0), 1)
        self.dconv_layer3 = _ir_stage(w0 + w0, (w0, out_channels, out_channels), 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"DistortionAligner needs [B, C, S, S] inputs with S divisible by 8, got {tuple(x.shape)}")
        feat1 = self.conv_layer1(x)
        feat2 = self.conv_layer2(feat1)
        feat3 = self.conv_layer3(feat2)
        feat4 = self.conv_layer4(feat3)
        up1 = self.dconv_layer1(torch.cat((_resize_to(feat4, feat3), feat3), 1))
        up2 = self.dconv_layer2(torch.cat((_resize_to(up1, feat2), feat2), 1))
        return self.dconv_layer3(torch.cat((_resize_to(up2, feat1), feat1), 1))


class _ScaledLeakyReLU(nn.Module):
    """LeakyReLU(0.2) times sqrt(2) (the StyleGAN2 gain; no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


def _condition_head(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(EqualConv2d(in_channels, out_channels, 3, activation="linear"), _ScaledLeakyReLU(),
                         EqualConv2d(out_channels, out_channels, 3, activation="linear"))


class ConsultationEncoder(nn.Module):
    """Aligned distortion ``[B, 3, S, S]`` -> ``(scale, shift)``, each ``[B, channels, r, r]``.

    A stride-1 stem (``widths[0]``), two stride-2 stages of three IR units (``widths[1]``,
    ``widths[2]``), then two heads (EqualConv 3x3, LeakyReLU, EqualConv 3x3) resized
    bilinearly to ``out_resolution`` ``r``. ``widths = (32, 48, 64)`` and 512 channels at 64²
    are the release's.
    """

    def __init__(self, channels: int, out_resolution: int, widths: Sequence[int] = (32, 48, 64),
                 in_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1 or channels < 1 or out_resolution < 1:
            raise ValueError(f"need three positive widths, channels >= 1 and out_resolution >= 1; got "
                             f"widths={list(widths)}, channels={channels}, out_resolution={out_resolution}")
        w0, w1, w2 = (int(w) for w in widths)
        self.widths, self.channels, self.out_resolution = (w0, w1, w2), int(channels), int(out_resolution)
        self.conv_layer1 = _stem(in_channels, w0)
        self.conv_layer2 = _ir_stage(w0, (w1, w1, w1), 2)
        self.conv_layer3 = _ir_stage(w1, (w2, w2, w2), 2)
        self.condition_scale3 = _condition_head(w2, channels)
        self.condition_shift3 = _condition_head(w2, channels)

    def forward(self, aligned_distortion: Tensor) -> tuple[Tensor, Tensor]:
        features = self.conv_layer3(self.conv_layer2(self.conv_layer1(aligned_distortion)))
        size = (self.out_resolution, self.out_resolution)
        scale = F.interpolate(self.condition_scale3(features), size=size, mode="bilinear", align_corners=False)
        shift = F.interpolate(self.condition_shift3(features), size=size, mode="bilinear", align_corners=False)
        return scale, shift


class FusionHook:
    """``Generator.synthesis`` feature hook fusing ``h = h·(1 + scale) + shift`` right after
    the up-sampling conv of the block at ``resolution`` (feature point ``"up"``)."""

    def __init__(self, resolution: int, scale: Tensor, shift: Tensor) -> None:
        if scale.shape != shift.shape or scale.ndim != 4 or scale.shape[-1] != resolution:
            raise ValueError(f"scale and shift must both be [B, C, {resolution}, {resolution}], got "
                             f"{tuple(scale.shape)} and {tuple(shift.shape)}")
        self.resolution, self.scale, self.shift = resolution, scale, shift
        self.calls = 0

    def __call__(self, point: str, resolution: int, features: Tensor) -> Tensor:
        if point != "up" or resolution != self.resolution:
            return features
        if features.shape != self.scale.shape:
            raise ValueError(f"fusion at {resolution}px: the generator's features are {tuple(features.shape)}, the "
                             f"conditions {tuple(self.scale.shape)} (refiner built for another generator?)")
        self.calls += 1
        return features * (1 + self.scale.to(features.dtype)) + self.shift.to(features.dtype)


def default_fusion_resolution(generator_resolution: int) -> int:
    """HFGI's fusion rule: 64² at 1024 px, i.e. ``resolution // 16``, never below 8 (the
    first block that has an up-sampling conv)."""
    return max(8, generator_resolution // 16)


def fusion_channels(generator: Generator, resolution: int) -> int:
    """Channels of the generator's features after the up-sampling conv at ``resolution``."""
    blocks = int(math.log2(resolution)) - 2
    if resolution < 8 or 2 ** (blocks + 2) != resolution or resolution > generator.resolution:
        raise ValueError(f"fusion resolution must be a power of two in [8, {generator.resolution}], got {resolution}")
    return int(generator.synthesis_network.convs[2 * blocks - 1].weight.shape[0])


def random_perspective(images: Tensor, distortion: float = 0.15, p: float = 0.9,
                       generator: torch.Generator | None = None) -> Tensor:
    """Warp each image by its own random perspective (with probability ``p``): every corner
    moves inwards by up to ``distortion`` of half the side, as torchvision's
    ``RandomPerspective``; pixels from outside the image are 0 (no distortion there)."""
    batch, _, height, width = images.shape
    device = images.device
    apply = torch.rand(batch, generator=generator) < p
    if not bool(apply.any()) or distortion <= 0:
        return images
    # Corners in normalised coordinates (x, y) in [-1, 1]: tl, tr, br, bl.
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    inwards = -corners  # direction towards the centre per corner
    shift = torch.rand(batch, 4, 2, generator=generator) * distortion * inwards
    moved = corners + shift * apply[:, None, None]
    # Homography H mapping output coordinates (corners) to input coordinates (moved).
    rows = []
    for (x, y), index in zip(corners.tolist(), range(4)):
        u, v = moved[:, index, 0], moved[:, index, 1]
        one, zero = torch.ones(batch), torch.zeros(batch)
        rows.append(torch.stack([torch.full((batch,), x), torch.full((batch,), y), one, zero, zero, zero,
                                 -u * x, -u * y], 1))
        rows.append(torch.stack([zero, zero, zero, torch.full((batch,), x), torch.full((batch,), y), one,
                                 -v * x, -v * y], 1))
    system = torch.stack(rows, 1)
    targets = moved.reshape(batch, 8)
    coefficients = torch.linalg.solve(system.double(), targets.double()).float()
    homography = torch.cat([coefficients, torch.ones(batch, 1)], 1).reshape(batch, 3, 3).to(device)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, device=device), torch.linspace(-1, 1, width, device=device),
                            indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)
    mapped = points @ homography.transpose(1, 2)
    grid = (mapped[..., :2] / mapped[..., 2:]).reshape(batch, height, width, 2)
    warped = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    return torch.where(apply.to(device)[:, None, None, None], warped, images)


class HFGIRefiner(nn.Module):
    """ADA (``grid_align``) + consultation encoder (``residue``) for one generator.

    Args:
        fusion_channels: generator channels at the fusion layer (:func:`fusion_channels`).
        fusion_resolution: where the conditions are fused (:func:`default_fusion_resolution`).
        input_size: side at which distortions are computed (256 in the release; the
            generator's resolution for small generators). Divisible by 8.
        aligner_widths / consultation_widths: the two networks' widths (the release's by default).
        zero_init: start the last conv of both condition heads at zero, so that an untrained
            refiner renders the pivot exactly (scale = shift = 0) and short trainings start
            from it; the release initialises them randomly (its weights replace either).
    """

    def __init__(self, fusion_channels: int = 512, fusion_resolution: int = 64, input_size: int = 256,
                 aligner_widths: Sequence[int] = (16, 32, 48, 64),
                 consultation_widths: Sequence[int] = (32, 48, 64), zero_init: bool = True) -> None:
        super().__init__()
        if input_size % 8:
            raise ValueError(f"input_size must be divisible by 8 (ADA halves it three times), got {input_size}")
        self.config = {"fusion_channels": int(fusion_channels), "fusion_resolution": int(fusion_resolution),
                       "input_size": int(input_size), "aligner_widths": [int(w) for w in aligner_widths],
                       "consultation_widths": [int(w) for w in consultation_widths], "zero_init": bool(zero_init)}
        self.fusion_resolution, self.input_size = int(fusion_resolution), int(input_size)
        self.grid_align = DistortionAligner(aligner_widths)
        self.residue = ConsultationEncoder(fusion_channels, fusion_resolution, consultation_widths)
        if zero_init:
            with torch.no_grad():
                for head in (self.residue.condition_scale3, self.residue.condition_shift3):
                    head[2].weight.zero_()
                    head[2].bias.zero_()

    @classmethod
    def for_generator(cls, generator: Generator, fusion_resolution: int | None = None, input_size: int | None = None,
                      aligner_widths: Sequence[int] = (16, 32, 48, 64),
                      consultation_widths: Sequence[int] = (32, 48, 64), zero_init: bool = True) -> "HFGIRefiner":
        """A refiner whose conditions fit ``generator`` (fusion at the default rule unless given;
        distortions at ``min(256, resolution)`` unless given)."""
        resolution = fusion_resolution or default_fusion_resolution(generator.resolution)
        return cls(fusion_channels(generator, resolution), resolution, input_size or min(256, generator.resolution),
                   aligner_widths, consultation_widths, zero_init)

    # ----- the three stages ----------------------------------------------------------------
    def to_input_size(self, images: Tensor) -> Tensor:
        return to_resolution(images.float(), self.input_size)

    def distortion(self, images: Tensor, reconstruction: Tensor) -> Tensor:
        """``x − x̂`` at the input size (the reconstruction clamped to [-1, 1], as rendered)."""
        return self.to_input_size(images) - self.to_input_size(reconstruction.clamp(-1, 1))

    def align(self, distortion: Tensor, guide: Tensor) -> Tensor:
        """ADA: the distortion aligned to ``guide`` (a rendered image, resized to the input size)."""
        return self.grid_align(torch.cat((distortion, self.to_input_size(guide.clamp(-1, 1))), 1))

    def conditions(self, aligned_distortion: Tensor) -> tuple[Tensor, Tensor]:
        return self.residue(aligned_distortion)

    def hook(self, aligned_distortion: Tensor) -> FusionHook:
        scale, shift = self.conditions(aligned_distortion)
        return FusionHook(self.fusion_resolution, scale, shift)

    # ----- reconstruction and editing ------------------------------------------------------
    def refine(self, generator: Generator, ws: Tensor, images: Tensor,
               reconstruction: Tensor | None = None, noise_mode: str = "const") -> dict[str, Tensor]:
        """Refined reconstruction of ``images`` from their codes ``ws``: returns ``image``
        (refined), ``reconstruction`` (``G(ws)``), ``distortion`` and ``aligned``."""
        if reconstruction is None:
            reconstruction = generator.synthesis(ws, noise_mode=noise_mode)
        distortion = self.distortion(images, reconstruction)
        aligned = self.align(distortion, reconstruction)
        refined = generator.synthesis(ws, noise_mode=noise_mode, feature_hook=self.hook(aligned))
        return {"image": refined, "reconstruction": reconstruction, "distortion": distortion, "aligned": aligned}

    def edit(self, generator: Generator, ws: Tensor, edited_ws: Tensor, images: Tensor,
             reconstruction: Tensor | None = None, noise_mode: str = "const") -> dict[str, Tensor]:
        """HFGI's editing rule: the distortion against the *unedited* reconstruction ``G(ws)``,
        aligned by ADA to the *edited* image ``G(edited_ws)``, fused into ``G(edited_ws)``.
        Returns ``image`` (the refined edit), ``edited`` (``G(edited_ws)``) and ``aligned``."""
        if reconstruction is None:
            reconstruction = generator.synthesis(ws, noise_mode=noise_mode)
        distortion = self.distortion(images, reconstruction)
        edited = generator.synthesis(edited_ws, noise_mode=noise_mode)
        aligned = self.align(distortion, edited)
        image = generator.synthesis(edited_ws, noise_mode=noise_mode, feature_hook=self.hook(aligned))
        return {"image": image, "edited": edited, "aligned": aligned}


# ----- lsap's own refiner files -------------------------------------------------------------
#: HFGI refiners shipped with lsap (fashion32, trained over each shipped encoder).
BUILTIN_HFGI = {"fashion32_hfgi_e4e": "refine/hfgi_fashion32_e4e.pt",
                "fashion32_hfgi_lsap": "refine/hfgi_fashion32_lsap.pt"}

_REFINER_DESCRIPTION = "an lsap HFGI refiner file (dict with 'format': 'lsap-hfgi', 'config', 'state_dict')"


def save_hfgi_refiner(path: str | os.PathLike[str], refiner: HFGIRefiner, meta: dict[str, Any] | None = None,
                      half: bool = True) -> Path:
    """Write only the trained parts (ADA and consultation encoder), in float16 by default."""
    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
             for k, v in refiner.state_dict().items()}
    payload = {"format": "lsap-hfgi", "config": dict(refiner.config), "state_dict": state, "meta": dict(meta or {})}
    atomic_write(path, lambda file: torch.save(payload, file))
    return Path(path)


def load_hfgi_refiner(path: str | os.PathLike[str]) -> tuple[HFGIRefiner, dict[str, Any]]:
    """Read an lsap HFGI refiner file (or a built-in name, ``BUILTIN_HFGI``) with lsap's safe
    reader; returns the refiner (float32, eval mode) and the file's ``meta``."""
    file = builtin_asset_path(path, BUILTIN_HFGI, "HFGI refiner",
                              "train it (configs/hfgi_fashion32.yaml with --model.init_args.refiner_checkpoint null, "
                              "then bench/export_fashion32_hfgi.py)")
    data = load_weights_file(file, _REFINER_DESCRIPTION)
    if not isinstance(data, dict) or data.get("format") != "lsap-hfgi" or not isinstance(data.get("state_dict"), dict):
        raise BadFileError(f"'{file}' is not {_REFINER_DESCRIPTION}")
    config = data.get("config") or {}
    try:
        refiner = HFGIRefiner(**config)
    except TypeError as error:
        raise BadFileError(f"'{file}': unexpected refiner config {config}: {error}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    missing, unexpected = refiner.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadFileError(f"'{file}' does not fit its own config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return refiner.eval(), dict(data.get("meta") or {})
