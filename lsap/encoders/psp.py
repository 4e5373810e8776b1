"""pSp encoder (GradualStyleEncoder): every W+ entry predicted by its own style head.

Same backbone, feature pyramid, head layout, coarse / middle split and parameter names as
:mod:`lsap.encoders.e4e`; the only difference is the prediction: entry ``i`` is
``styles[i](features)`` directly (no shared w0, no progressive stages). Outputs are W+
offsets from ``latent_avg``; the caller adds ``latent_avg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lsap.encoders.e4e import PyramidStyleEncoder

__all__ = ["GradualStyleEncoder", "ResNetGradualStyleEncoder"]


class _AllEntriesEncoder(PyramidStyleEncoder):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, S, S]`` -> W+ offsets from ``latent_avg``, ``[B, num_ws, w_dim]``."""
        self._check_input(images)
        taps = self.feature_pyramid(images)
        levels = self.pyramid_levels(taps, self.level_of(self.num_ws - 1))
        codes = [head(levels[self.level_of(entry)]) for entry, head in enumerate(self.styles)]
        return torch.stack(codes, dim=1)


class GradualStyleEncoder(_AllEntriesEncoder):
    """pSp encoder on an IR / IR-SE backbone. Arguments as in :class:`~lsap.encoders.Encoder4Editing`."""

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


class ResNetGradualStyleEncoder(_AllEntriesEncoder):
    """pSp encoder on a torchvision ResNet backbone. Arguments as in :class:`~lsap.encoders.ResNetEncoder4Editing`."""

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
