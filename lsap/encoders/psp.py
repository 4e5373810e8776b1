"""pSp encoder (GradualStyleEncoder): every W+ entry predicted by its own style head.

Same backbone, feature pyramid, head layout, coarse / middle split and parameter names as
:mod:`lsap.encoders.e4e`; the only difference is the prediction: entry ``i`` is
``styles[i](features)`` directly (no shared w0, no progressive stages). Outputs are W+
offsets from ``latent_avg``; the caller adds ``latent_avg``.
"""

from __future__ import annotations

import torch

from lsap.encoders.e4e import IRPyramidEncoder, PyramidStyleEncoder, ResNetPyramidEncoder

__all__ = ["AllEntriesStyleEncoder", "GradualStyleEncoder", "ResNetGradualStyleEncoder"]


class AllEntriesStyleEncoder(PyramidStyleEncoder):
    """pSp prediction: every W+ entry from its own style head."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, S, S]`` -> W+ offsets from ``latent_avg``, ``[B, num_ws, w_dim]``."""
        self._check_input(images)
        taps = self.feature_pyramid(images)
        levels = self.pyramid_levels(taps, self.level_of(self.num_ws - 1))
        codes = [head(levels[self.level_of(entry)]) for entry, head in enumerate(self.styles)]
        return torch.stack(codes, dim=1)


class GradualStyleEncoder(AllEntriesStyleEncoder, IRPyramidEncoder):
    """pSp encoder on an IR / IR-SE backbone. Arguments as in :class:`~lsap.encoders.e4e.IRPyramidEncoder`."""


class ResNetGradualStyleEncoder(AllEntriesStyleEncoder, ResNetPyramidEncoder):
    """pSp encoder on a torchvision ResNet backbone. Arguments as in
    :class:`~lsap.encoders.e4e.ResNetPyramidEncoder`."""
