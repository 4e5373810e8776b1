"""IR / IR-SE residual networks (the ArcFace family) and safe weight-file helpers.

The "improved residual" (IR) unit is a pre-activation bottleneck:
``BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN [-> squeeze-excitation]`` added to a
shortcut that is either a strided sub-sampling (same width) or a strided 1x1 conv + BN.
Stages follow ArcFace: four stages whose first unit halves the resolution.

Module and parameter names follow the InsightFace_Pytorch layout used by the public
``model_ir_se50.pth`` (and by the pSp / e4e encoders that start from it), so those files
load without renaming: ``input_layer.{0,1,2}``, ``body.{i}.shortcut_layer.*``,
``body.{i}.res_layer.*`` and, for the recognition net, ``output_layer.*``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lsap.io import UnsafeCheckpointError, WeightsMismatchError, load_weights_file, strip_module_prefix

__all__ = [
    "ARCFACE_INPUT_SIZE",
    "ARCFACE_WEIGHTS_DESCRIPTION",
    "STANDARD_BLOCKS",
    "ArcFaceIRSE",
    "IRBottleneck",
    "IRSEBody",
    "IRArchitecture",
    "SqueezeExcitation",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "adapt_input_conv",
    "blocks_for_depth",
    "build_input_layer",
    "build_ir_body",
    "infer_ir_architecture",
    "load_arcface",
    "load_state_dict_checked",
    "load_weights_file",
    "resolve_ir_layout",
    "run_ir_stages",
    "strip_module_prefix",
]

# Units per stage of the standard ArcFace depths.
STANDARD_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
DEFAULT_STAGE_CHANNELS: tuple[int, int, int, int] = (64, 128, 256, 512)
DEFAULT_STEM_CHANNELS = 64
SE_REDUCTION = 16
ARCFACE_INPUT_SIZE = 112
ARCFACE_WEIGHTS_DESCRIPTION = (
    "ArcFace IR-SE50 face-recognition weights model_ir_se50.pth, published with pSp/e4e"
)


# --------------------------------------------------------------------------------------
# Weight-file helpers (shared by every loader in lsap.nets / lsap.encoders / lsap.losses)
# --------------------------------------------------------------------------------------
def _examples(keys: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (", ..." if len(keys) > limit else "")


def load_state_dict_checked(
    module: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    source: str,
    description: str,
    ignore_unexpected: Sequence[str] = (),
) -> None:
    """Load ``state_dict`` into ``module``, failing with a short, readable message.

    ``num_batches_tracked`` counters may be absent (older files). ``ignore_unexpected``
    lists key prefixes that may be present in the file and are skipped.

    Raises:
        WeightsMismatchError: missing / unexpected / wrong-shape tensors; the message
            gives counts and a few examples, never the full key list.
    """
    expected = module.state_dict()
    provided = {
        key: value
        for key, value in state_dict.items()
        if not any(key.startswith(prefix) for prefix in ignore_unexpected)
    }
    non_tensors = sorted(k for k, v in provided.items() if not isinstance(v, torch.Tensor))
    missing = sorted(
        k for k in expected if k not in provided and not k.endswith("num_batches_tracked")
    )
    unexpected = sorted(k for k in provided if k not in expected)
    wrong_shape = [
        f"{k} (expected {tuple(expected[k].shape)}, found {tuple(provided[k].shape)})"
        for k in sorted(provided)
        if k in expected
        and isinstance(provided[k], torch.Tensor)
        and provided[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} expected tensors are missing (e.g. {_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors are not part of the network (e.g. {_examples(unexpected)})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} tensors have the wrong shape (e.g. {_examples(wrong_shape, 3)})")
    if non_tensors:
        problems.append(f"{len(non_tensors)} entries are not tensors (e.g. {_examples(non_tensors)})")
    if problems:
        raise WeightsMismatchError(
            f"'{source}' does not match {description}: "
            + "; ".join(problems)
            + f". The file has {len(provided)} tensors, the network expects {len(expected)}."
        )
    module.load_state_dict(dict(provided), strict=False)


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Re-use an RGB first-layer kernel for ``in_channels`` inputs.

    The RGB filters are tiled over the new channels and rescaled by ``3 / in_channels``
    so a constant input gives the same response as before.
    """
    if weight.shape[1] == in_channels:
        return weight
    repeats = math.ceil(in_channels / weight.shape[1])
    tiled = weight.repeat(1, repeats, 1, 1)[:, :in_channels]
    return tiled * (weight.shape[1] / in_channels)


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------
class SqueezeExcitation(nn.Module):
    """Channel gating: global average -> 1x1 reduce -> ReLU -> 1x1 expand -> sigmoid."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)  # tiny test nets would otherwise get 0
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class IRBottleneck(nn.Module):
    """One IR (``use_se=False``) or IR-SE (``use_se=True``) residual unit."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, use_se: bool = True) -> None:
        super().__init__()
        if in_channels == out_channels:
            # Same width: the shortcut only sub-samples (a 1x1 max-pool with a stride).
            self.shortcut_layer: nn.Module = nn.MaxPool2d(kernel_size=1, stride=stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if use_se:
            layers.append(SqueezeExcitation(out_channels))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def blocks_for_depth(num_layers: int) -> tuple[int, ...]:
    """Units per stage for a standard ArcFace depth (50, 100 or 152)."""
    if num_layers not in STANDARD_BLOCKS:
        raise ValueError(
            f"num_layers must be one of {sorted(STANDARD_BLOCKS)} (or give blocks_per_stage "
            f"explicitly), got {num_layers}"
        )
    return STANDARD_BLOCKS[num_layers]


def build_input_layer(input_channels: int, stem_channels: int) -> nn.Sequential:
    """3x3 conv (stride 1, no bias) -> BN -> PReLU."""
    return nn.Sequential(
        nn.Conv2d(input_channels, stem_channels, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(stem_channels),
        nn.PReLU(stem_channels),
    )


def build_ir_body(
    blocks_per_stage: Sequence[int],
    stage_channels: Sequence[int],
    stem_channels: int,
    use_se: bool = True,
) -> tuple[nn.Sequential, list[int]]:
    """Flat ``nn.Sequential`` of units and the index of the last unit of every stage.

    The first unit of every stage has stride 2.
    """
    if len(blocks_per_stage) != len(stage_channels):
        raise ValueError(
            f"blocks_per_stage ({list(blocks_per_stage)}) and stage_channels "
            f"({list(stage_channels)}) must have the same length"
        )
    if any(n < 1 for n in blocks_per_stage) or any(c < 1 for c in stage_channels):
        raise ValueError(
            f"every stage needs >= 1 unit and >= 1 channel, got blocks_per_stage="
            f"{list(blocks_per_stage)}, stage_channels={list(stage_channels)}"
        )
    units: list[nn.Module] = []
    stage_ends: list[int] = []
    in_channels = stem_channels
    for num_units, channels in zip(blocks_per_stage, stage_channels):
        for unit in range(num_units):
            units.append(IRBottleneck(in_channels, channels, stride=2 if unit == 0 else 1, use_se=use_se))
            in_channels = channels
        stage_ends.append(len(units) - 1)
    return nn.Sequential(*units), stage_ends


def run_ir_stages(
    input_layer: nn.Module, body: nn.Sequential, stage_ends: Sequence[int], x: torch.Tensor
) -> list[torch.Tensor]:
    """Run stem + body and return the output of every stage (finest first)."""
    x = input_layer(x)
    outputs: list[torch.Tensor] = []
    ends = set(stage_ends)
    for index, unit in enumerate(body):
        x = unit(x)
        if index in ends:
            outputs.append(x)
    return outputs


def resolve_ir_layout(
    num_layers: int,
    blocks_per_stage: Sequence[int] | None,
    stage_channels: Sequence[int] | None,
    stem_channels: int | None,
) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(blocks_per_stage, stage_channels, stem_channels) with defaults filled in."""
    blocks = tuple(blocks_per_stage) if blocks_per_stage is not None else blocks_for_depth(num_layers)
    channels = tuple(stage_channels) if stage_channels is not None else DEFAULT_STAGE_CHANNELS
    stem = stem_channels if stem_channels is not None else channels[0]
    return blocks, channels, stem


class IRSEBody(nn.Module):
    """Configurable IR / IR-SE feature extractor (stem + stages, no head).

    Args:
        num_layers: standard depth 50 / 100 / 152 (ignored when ``blocks_per_stage`` given).
        use_se: IR-SE units (True) or plain IR units.
        input_channels: channels of the input image.
        blocks_per_stage: custom units per stage, e.g. ``(1, 1, 1, 1)`` for tests.
        stage_channels: custom widths per stage (default 64, 128, 256, 512).
        stem_channels: width of the input layer (default: first stage width).

    ``forward`` returns the list of stage outputs, finest first; stage ``k`` (0-based)
    has stride ``2 ** (k + 1)`` relative to the input.
    """

    def __init__(
        self,
        num_layers: int = 50,
        use_se: bool = True,
        input_channels: int = 3,
        blocks_per_stage: Sequence[int] | None = None,
        stage_channels: Sequence[int] | None = None,
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        blocks, channels, stem = resolve_ir_layout(num_layers, blocks_per_stage, stage_channels, stem_channels)
        self.input_channels = input_channels
        self.stage_channels = channels
        self.input_layer = build_input_layer(input_channels, stem)
        self.body, self.stage_ends = build_ir_body(blocks, channels, stem, use_se)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.input_channels:
            raise ValueError(
                f"IRSEBody expects [B, {self.input_channels}, H, W] images, got {tuple(x.shape)}"
            )
        return run_ir_stages(self.input_layer, self.body, self.stage_ends, x)


class ArcFaceIRSE(nn.Module):
    """ArcFace face-recognition network: 112x112 face -> L2-normalised embedding.

    Defaults build IR-SE50 exactly as stored in ``model_ir_se50.pth``. The tiny settings
    (``blocks_per_stage``, ``stage_channels``, ``embedding_dim``) exist for tests.
    Inputs are images in [-1, 1].
    """

    def __init__(
        self,
        num_layers: int = 50,
        use_se: bool = True,
        blocks_per_stage: Sequence[int] | None = None,
        stage_channels: Sequence[int] | None = None,
        stem_channels: int | None = None,
        embedding_dim: int = 512,
        dropout: float = 0.6,
    ) -> None:
        super().__init__()
        blocks, channels, stem = resolve_ir_layout(num_layers, blocks_per_stage, stage_channels, stem_channels)
        final_size = ARCFACE_INPUT_SIZE // 2 ** len(blocks)
        if final_size < 1:
            raise ValueError(f"{len(blocks)} stride-2 stages leave nothing of a {ARCFACE_INPUT_SIZE} input")
        self.input_layer = build_input_layer(3, stem)
        self.body, self.stage_ends = build_ir_body(blocks, channels, stem, use_se)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(channels[-1]),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(channels[-1] * final_size * final_size, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        self.embedding_dim = embedding_dim

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        expected = (3, ARCFACE_INPUT_SIZE, ARCFACE_INPUT_SIZE)
        if faces.ndim != 4 or tuple(faces.shape[1:]) != expected:
            raise ValueError(f"ArcFace expects [B, 3, 112, 112] face crops, got {tuple(faces.shape)}")
        features = self.body(self.input_layer(faces))
        return F.normalize(self.output_layer(features), dim=1)


def load_arcface(path: str | os.PathLike[str]) -> ArcFaceIRSE:
    """Build IR-SE50 ArcFace and load ``model_ir_se50.pth``; returned frozen, in eval mode."""
    raw = load_weights_file(path, ARCFACE_WEIGHTS_DESCRIPTION)
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise WeightsMismatchError(
            f"'{path}' should hold a state dict ({ARCFACE_WEIGHTS_DESCRIPTION}), "
            f"found a {type(raw).__name__}"
        )
    net = ArcFaceIRSE()
    load_state_dict_checked(
        net, strip_module_prefix(raw), source=str(path), description=ARCFACE_WEIGHTS_DESCRIPTION
    )
    net.eval().requires_grad_(False)
    return net


# --------------------------------------------------------------------------------------
# Architecture inference (used by the checkpoint loaders)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IRArchitecture:
    """Layout of an IR / IR-SE body, as inferred from weights."""

    blocks_per_stage: tuple[int, ...]
    stage_channels: tuple[int, ...]
    stem_channels: int
    input_channels: int
    use_se: bool


def infer_ir_architecture(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> IRArchitecture:
    """Recover stem/stage layout of an IR / IR-SE body from its ``input_layer`` and ``body`` keys.

    Stages are runs of consecutive units with the same width, which holds for every
    standard configuration (widths strictly increase between stages).
    """
    stem_key = f"{prefix}input_layer.0.weight"
    if stem_key not in state_dict:
        raise WeightsMismatchError(f"no '{stem_key}' tensor: not an IR / IR-SE network")
    stem_weight = state_dict[stem_key]
    pattern = re.compile(rf"^{re.escape(prefix)}body\.(\d+)\.res_layer\.1\.weight$")
    widths: dict[int, int] = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        if match:
            widths[int(match.group(1))] = int(value.shape[0])
    if not widths or sorted(widths) != list(range(len(widths))):
        raise WeightsMismatchError(
            f"IR body units under '{prefix}body.' are missing or not numbered 0..N-1 "
            f"(found {sorted(widths)[:8]})"
        )
    blocks: list[int] = []
    channels: list[int] = []
    for index in range(len(widths)):
        if channels and widths[index] == channels[-1]:
            blocks[-1] += 1
        else:
            blocks.append(1)
            channels.append(widths[index])
    use_se = f"{prefix}body.0.res_layer.5.fc1.weight" in state_dict
    return IRArchitecture(
        blocks_per_stage=tuple(blocks),
        stage_channels=tuple(channels),
        stem_channels=int(stem_weight.shape[0]),
        input_channels=int(stem_weight.shape[1]),
        use_se=use_se,
    )
