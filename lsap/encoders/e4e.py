"""e4e encoder (Encoder4Editing) and the feature-pyramid machinery it shares with pSp.

Structure (names follow the public e4e / pSp weights so their files load as they are):

* backbone: IR-SE body (``input_layer``, ``body``) or a torchvision ResNet (``backbone``);
  three feature maps are tapped, c1 / c2 / c3 at strides 4 / 8 / 16 (64², 32², 16² for
  a 256 input);
* FPN: ``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) + latlayer2(c1)`` (bilinear,
  align_corners=True);
* one ``GradualStyleBlock`` per W+ entry (``styles.{i}``): stride-2 3x3 convs down to
  1x1, then an equalised linear layer. Entries ``[0, coarse_end)`` read c3, entries
  ``[coarse_end, middle_end)`` read p2, the rest read p1.

The coarse / middle split is tied to generator resolutions, not to the number of
entries: W+ index j always drives the same resolution in every StyleGAN2 (0-2: 4²-8²,
3-6: 16²-32², 7+: 64² and up). So the split stays at 3 / 7 for 18, 16 and 14 entries (as
in the released e4e models for 1024, 512 and 256 generators) and is clipped to
``num_ws`` for smaller generators (e.g. 6 entries: 3 coarse, 3 middle, no fine).

Encoders return W+ codes *relative to* ``latent_avg``; the caller adds ``latent_avg``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lsap.model.generator import EqualLinear
from lsap.nets.irse import (
    ARCFACE_WEIGHTS_DESCRIPTION,
    STANDARD_BLOCKS,
    WeightsMismatchError,
    resolve_ir_layout,
    adapt_input_conv,
    build_input_layer,
    build_ir_body,
    load_state_dict_checked,
    load_weights_file,
    run_ir_stages,
    strip_module_prefix,
)
from lsap.nets.resnet import ResNetBackbone

__all__ = [
    "EqualLinear",
    "Encoder4Editing",
    "GradualStyleBlock",
    "IRPyramidEncoder",
    "ProgressiveStyleEncoder",
    "PyramidStyleEncoder",
    "ResNetEncoder4Editing",
    "ResNetPyramidEncoder",
    "upsample_add",
]

COARSE_LEVEL, MIDDLE_LEVEL, FINE_LEVEL = 0, 1, 2


def upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``top`` to ``lateral``'s size and add (FPN merge)."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


def _halvings_to_one(size: int) -> int:
    """Number of stride-2, pad-1, 3x3 convs that bring ``size`` down to 1."""
    count = 0
    while size > 1:
        size = math.ceil(size / 2)
        count += 1
    return count


class GradualStyleBlock(nn.Module):
    """Map a feature map to one style vector: ``num_downsamples`` stride-2 convs -> linear."""

    def __init__(self, in_channels: int, out_channels: int, num_downsamples: int) -> None:
        super().__init__()
        if num_downsamples < 1:
            raise ValueError(f"num_downsamples must be >= 1, got {num_downsamples}")
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_downsamples):
            layers += [nn.Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
            channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        reduced = self.convs(features)
        if reduced.shape[-2:] != (1, 1):
            raise ValueError(
                f"style head reduced a {tuple(features.shape[-2:])} map to "
                f"{tuple(reduced.shape[-2:])} instead of 1x1: the input image size does not "
                "match the size the encoder was built for"
            )
        return self.linear(reduced.flatten(1))


class PyramidStyleEncoder(nn.Module):
    """Common base of the e4e and pSp encoders (backbone + FPN + per-entry style heads).

    A named encoder is one backbone class (:class:`IRPyramidEncoder`,
    :class:`ResNetPyramidEncoder`: their ``__init__`` attaches the backbone and builds the
    heads) and one prediction class (:class:`ProgressiveStyleEncoder` for e4e, pSp's
    ``AllEntriesStyleEncoder``: ``forward``).
    """

    num_ws: int
    w_dim: int
    input_size: int
    input_channels: int
    coarse_end: int
    middle_end: int
    backbone_kind: str

    # ---- construction ----------------------------------------------------------------
    def _attach_ir_backbone(
        self,
        input_channels: int,
        num_layers: int,
        use_se: bool,
        blocks_per_stage: Sequence[int] | None,
        stage_channels: Sequence[int] | None,
        stem_channels: int | None,
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        blocks, channels, stem = resolve_ir_layout(num_layers, blocks_per_stage, stage_channels, stem_channels)
        if len(blocks) < 3:
            raise ValueError(f"the encoder taps the last three stages; got only {len(blocks)} stages")
        self.input_layer = build_input_layer(input_channels, stem)
        self.body, stage_ends = build_ir_body(blocks, channels, stem, use_se)
        self._stage_ends = tuple(stage_ends[-3:])
        self._ir_layout = (blocks, channels, stem, use_se)
        self.backbone_kind = "ir_se" if use_se else "ir"
        count = len(blocks)
        strides = tuple(2 ** (k + 1) for k in range(count - 3, count))
        return tuple(channels[-3:]), strides  # type: ignore[return-value]

    def _attach_resnet_backbone(
        self, input_channels: int, resnet_depth: int, backbone_weights: str | None
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        # layer1..layer3 give strides 4 / 8 / 16, the same pyramid as the IR-SE body.
        self.backbone = ResNetBackbone(
            depth=resnet_depth, input_channels=input_channels, num_stages=3, weights_path=backbone_weights
        )
        self.backbone_kind = f"resnet{resnet_depth}"
        return tuple(self.backbone.stage_channels), (4, 8, 16)  # type: ignore[return-value]

    def _build_heads(
        self,
        num_ws: int,
        w_dim: int,
        input_size: int,
        input_channels: int,
        pyramid_channels: tuple[int, int, int],
        pyramid_strides: tuple[int, int, int],
        coarse_end: int,
        middle_end: int,
    ) -> None:
        if num_ws < 1 or w_dim < 1:
            raise ValueError(f"num_ws and w_dim must be positive, got num_ws={num_ws}, w_dim={w_dim}")
        if not 0 <= coarse_end <= middle_end:
            raise ValueError(f"need 0 <= coarse_end <= middle_end, got {coarse_end} and {middle_end}")
        if input_size < pyramid_strides[-1] * 2:
            raise ValueError(
                f"input_size {input_size} is too small: the deepest tap has stride "
                f"{pyramid_strides[-1]}, so inputs must be at least {pyramid_strides[-1] * 2} px"
            )
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.input_size = input_size
        self.input_channels = input_channels
        self.coarse_end = min(coarse_end, num_ws)
        self.middle_end = min(middle_end, num_ws)
        c1_channels, c2_channels, c3_channels = pyramid_channels
        # Tap sizes (strided convs round up), deepest first to match the level order.
        sizes = [math.ceil(input_size / stride) for stride in reversed(pyramid_strides)]
        self.styles = nn.ModuleList(
            GradualStyleBlock(c3_channels, w_dim, max(1, _halvings_to_one(sizes[self.level_of(i)])))
            for i in range(num_ws)
        )
        # Lateral 1x1 convs bring c2 / c1 to c3's width; built only when some entry reads them.
        if num_ws > self.coarse_end:
            self.latlayer1 = nn.Conv2d(c2_channels, c3_channels, kernel_size=1)
        if num_ws > self.middle_end:
            self.latlayer2 = nn.Conv2d(c1_channels, c3_channels, kernel_size=1)

    # ---- helpers ---------------------------------------------------------------------
    def level_of(self, entry: int) -> int:
        """Pyramid level read by W+ entry ``entry``: 0 = c3 (coarse), 1 = p2, 2 = p1 (fine)."""
        if entry < self.coarse_end:
            return COARSE_LEVEL
        if entry < self.middle_end:
            return MIDDLE_LEVEL
        return FINE_LEVEL

    def _check_input(self, images: torch.Tensor) -> None:
        expected = (self.input_channels, self.input_size, self.input_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__} expects images of shape [B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}], got {tuple(images.shape)}"
            )

    def feature_pyramid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone taps (c1, c2, c3), finest first."""
        if self.backbone_kind.startswith("resnet"):
            c1, c2, c3 = self.backbone(images)
        else:
            c1, c2, c3 = run_ir_stages(self.input_layer, self.body, self._stage_ends, images)
        return c1, c2, c3

    def pyramid_levels(
        self, taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor], deepest_level: int
    ) -> list[torch.Tensor]:
        """FPN features [c3, p2, p1] up to ``deepest_level`` (later levels are not computed)."""
        c1, c2, c3 = taps
        levels = [c3]
        if deepest_level >= MIDDLE_LEVEL:
            levels.append(upsample_add(c3, self.latlayer1(c2)))
        if deepest_level >= FINE_LEVEL:
            levels.append(upsample_add(levels[-1], self.latlayer2(c1)))
        return levels

    def load_backbone_weights(self, path: str | os.PathLike[str]) -> None:
        """Initialise the IR / IR-SE backbone from a face-recognition file (``model_ir_se50.pth``).

        Only ``input_layer.*`` and ``body.*`` are used; the recognition head
        (``output_layer.*``) is skipped. With ``input_channels != 3`` the RGB stem kernel
        is adapted. ResNet encoders take their weights through ``backbone_weights``.
        """
        if self.backbone_kind.startswith("resnet"):
            self.backbone.load_weights(path)
            return
        blocks, channels, stem, use_se = self._ir_layout
        standard = use_se and blocks == STANDARD_BLOCKS[50] and tuple(channels) == (64, 128, 256, 512) and stem == 64
        description = ARCFACE_WEIGHTS_DESCRIPTION if standard else "IR/IR-SE backbone weights (input_layer.*, body.*)"
        raw = load_weights_file(path, description)
        if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
            raw = raw["state_dict"]
        if not isinstance(raw, Mapping):
            raise WeightsMismatchError(f"'{path}' should hold a state dict ({description}), found {type(raw).__name__}")
        state = strip_module_prefix(raw)
        stem_weight = state.get("input_layer.0.weight")
        if isinstance(stem_weight, torch.Tensor) and stem_weight.ndim == 4:
            state["input_layer.0.weight"] = adapt_input_conv(stem_weight, self.input_channels)
        holder = nn.Module()
        holder.input_layer = self.input_layer
        holder.body = self.body
        load_state_dict_checked(
            holder, state, source=str(path), description=description, ignore_unexpected=("output_layer.",)
        )

    def extra_repr(self) -> str:
        return (
            f"num_ws={self.num_ws}, w_dim={self.w_dim}, input_size={self.input_size}, "
            f"backbone={self.backbone_kind}, coarse_end={self.coarse_end}, middle_end={self.middle_end}"
        )


class IRPyramidEncoder(PyramidStyleEncoder):
    """The pyramid encoder on an IR / IR-SE backbone; a prediction class (e4e's
    :class:`ProgressiveStyleEncoder`, pSp's ``AllEntriesStyleEncoder``) adds ``forward``.

    Args:
        num_ws: W+ entries of the generator (18 at 1024, 16 at 512, 14 at 256, ...).
        w_dim: size of one W code.
        input_size: side of the square input images (256 in the official setup).
        input_channels: channels of the input images.
        num_layers: standard backbone depth 50 / 100 / 152.
        use_se: IR-SE units (True, official) or plain IR units.
        blocks_per_stage: custom units per stage (e.g. ``[1, 1, 1, 1]`` for a CPU demo);
            overrides ``num_layers``.
        stage_channels: custom stage widths (default 64, 128, 256, 512).
        stem_channels: width of the input layer (default: first stage width).
        coarse_end: entries ``[0, coarse_end)`` read the coarsest features.
        middle_end: entries ``[coarse_end, middle_end)`` read the middle features.
        backbone_weights: optional ``model_ir_se50.pth`` to initialise the backbone.
    """

    def __init__(
        self,
        num_ws: int = 18,
        w_dim: int = 512,
        input_size: int = 256,
        input_channels: int = 3,
        num_layers: int = 50,
        use_se: bool = True,
        blocks_per_stage: Sequence[int] | None = None,
        stage_channels: Sequence[int] | None = None,
        stem_channels: int | None = None,
        coarse_end: int = 3,
        middle_end: int = 7,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        channels, strides = self._attach_ir_backbone(
            input_channels, num_layers, use_se, blocks_per_stage, stage_channels, stem_channels
        )
        self._build_heads(num_ws, w_dim, input_size, input_channels, channels, strides, coarse_end, middle_end)
        if backbone_weights is not None:
            self.load_backbone_weights(backbone_weights)


class ResNetPyramidEncoder(PyramidStyleEncoder):
    """The pyramid encoder on a torchvision ResNet backbone (cars, churches, other non-face
    data): taps ``layer1``/``layer2``/``layer3`` (strides 4 / 8 / 16); ``layer4`` is not
    built. ``backbone_weights`` is an optional torchvision-format (or MoCo) ResNet state
    dict. Other arguments as in :class:`IRPyramidEncoder`.
    """

    def __init__(
        self,
        num_ws: int = 18,
        w_dim: int = 512,
        input_size: int = 256,
        input_channels: int = 3,
        resnet_depth: int = 34,
        coarse_end: int = 3,
        middle_end: int = 7,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        channels, strides = self._attach_resnet_backbone(input_channels, resnet_depth, backbone_weights)
        self._build_heads(num_ws, w_dim, input_size, input_channels, channels, strides, coarse_end, middle_end)


class ProgressiveStyleEncoder(PyramidStyleEncoder):
    """e4e prediction: one base code w0 for every entry plus per-entry deltas.

    Training code sets ``progressive_stage`` (e.g. from the global step); the delta
    regulariser is ``||w_i - w_0||`` on the output entries ``1..progressive_stage``.
    """

    def __init__(self, *args: Any, progressive_stage: int | None = None, **kwargs: Any) -> None:
        # The backbone class after this one in the MRO takes every other argument.
        super().__init__(*args, **kwargs)
        self.progressive_stage = self.num_ws - 1 if progressive_stage is None else progressive_stage

    @property
    def progressive_stage(self) -> int:
        """Entries ``1..progressive_stage`` receive a delta; later entries equal w0.

        0 means a single W code broadcast to all entries; ``num_ws - 1`` (the default)
        means every entry is predicted. Larger values are clipped to ``num_ws - 1``.
        """
        return self._progressive_stage

    @progressive_stage.setter
    def progressive_stage(self, stage: int) -> None:
        if isinstance(stage, bool) or not isinstance(stage, int) or stage < 0:
            raise ValueError(f"progressive_stage must be a non-negative int, got {stage!r}")
        self._progressive_stage = min(stage, self.num_ws - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, S, S]`` -> W+ offsets from ``latent_avg``, ``[B, num_ws, w_dim]``."""
        self._check_input(images)
        taps = self.feature_pyramid(images)
        last = self._progressive_stage
        levels = self.pyramid_levels(taps, max(self.level_of(0), self.level_of(last)))
        w0 = self.styles[0](levels[self.level_of(0)])
        entries = [w0]
        for entry in range(1, self.num_ws):
            if entry <= last:
                entries.append(w0 + self.styles[entry](levels[self.level_of(entry)]))
            else:
                entries.append(w0)
        return torch.stack(entries, dim=1)


# The backbone x prediction grid: each named encoder is one backbone class and one
# prediction class; the backbone class's __init__ is the schema (configs name these classes).
class Encoder4Editing(ProgressiveStyleEncoder, IRPyramidEncoder):
    """e4e encoder on an IR / IR-SE backbone (the official LSAP_E encoder). Arguments as in
    :class:`IRPyramidEncoder`, plus ``progressive_stage``: number of delta entries enabled
    (None: all)."""


class ResNetEncoder4Editing(ProgressiveStyleEncoder, ResNetPyramidEncoder):
    """e4e encoder on a torchvision ResNet backbone. Arguments as in
    :class:`ResNetPyramidEncoder`, plus ``progressive_stage``."""
