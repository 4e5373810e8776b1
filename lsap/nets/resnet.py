"""torchvision ResNet as a multi-scale feature extractor (for non-face domains).

The network is built with ``weights=None`` (never downloads); pretrained weights come
from a torchvision-format state dict file given by path. MoCo-style files
(``state_dict`` with ``module.encoder_q.`` prefixes) are accepted too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torchvision
from torch import nn

from lsap.nets.irse import (
    WeightsMismatchError,
    adapt_input_conv,
    load_state_dict_checked,
    load_weights_file,
    strip_module_prefix,
)

__all__ = ["RESNET_STAGE_CHANNELS", "ResNetBackbone"]

RESNET_STAGE_CHANNELS: dict[int, tuple[int, int, int, int]] = {
    18: (64, 128, 256, 512),
    34: (64, 128, 256, 512),
    50: (256, 512, 1024, 2048),
    101: (256, 512, 1024, 2048),
    152: (256, 512, 1024, 2048),
}


class ResNetBackbone(nn.Module):
    """ResNet stem + the first ``num_stages`` residual stages.

    Args:
        depth: 18, 34, 50, 101 or 152.
        input_channels: channels of the input image; with pretrained RGB weights the
            first conv is adapted (RGB kernel tiled, rescaled by ``3 / input_channels``).
        num_stages: how many of ``layer1..layer4`` to keep (dropped ones cost nothing).
        weights_path: optional torchvision-format state dict (``fc.*`` and dropped
            stages are ignored).

    ``forward`` returns the output of every kept stage; stage ``k`` (1-based) has stride
    ``2 ** (k + 1)``. Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1``...).
    Inputs are used as given (no ImageNet re-normalisation), which suits fine-tuning.
    """

    def __init__(
        self,
        depth: int = 34,
        input_channels: int = 3,
        num_stages: int = 4,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        if depth not in RESNET_STAGE_CHANNELS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_STAGE_CHANNELS)}, got {depth}")
        if not 1 <= num_stages <= 4:
            raise ValueError(f"num_stages must be in 1..4, got {num_stages}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.depth = depth
        self.input_channels = input_channels
        self.num_stages = num_stages
        self.stage_channels = RESNET_STAGE_CHANNELS[depth][:num_stages]
        self.conv1 = net.conv1
        if input_channels != 3:
            self.conv1 = nn.Conv2d(input_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        for stage in range(1, num_stages + 1):
            setattr(self, f"layer{stage}", getattr(net, f"layer{stage}"))
        if weights_path is not None:
            self.load_weights(weights_path)

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        description = f"torchvision ResNet-{self.depth} state dict"
        raw: Any = load_weights_file(path, description)
        for container in ("state_dict", "model"):
            if isinstance(raw, Mapping) and isinstance(raw.get(container), Mapping):
                raw = raw[container]
                break
        if not isinstance(raw, Mapping):
            raise WeightsMismatchError(f"'{path}' should hold a {description}, found a {type(raw).__name__}")
        state = strip_module_prefix(raw)
        # MoCo keeps the query encoder under "encoder_q." and a key encoder we do not need.
        if any(key.startswith("encoder_q.") for key in state):
            state = {k[len("encoder_q."):]: v for k, v in state.items() if k.startswith("encoder_q.")}
        dropped = ["fc."] + [f"layer{s}." for s in range(self.num_stages + 1, 5)]
        conv1 = state.get("conv1.weight")
        if isinstance(conv1, torch.Tensor) and conv1.shape[1] != self.input_channels:
            state = dict(state)
            state["conv1.weight"] = adapt_input_conv(conv1, self.input_channels)
        load_state_dict_checked(self, state, source=str(path), description=description, ignore_unexpected=dropped)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.input_channels:
            raise ValueError(f"ResNetBackbone expects [B, {self.input_channels}, H, W], got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
            outputs.append(x)
        return outputs
