"""Losses and regularisers for encoder training and per-image optimisation."""

from lsap.losses.identity import IDLoss
from lsap.losses.locality import LocalityRegularizer
from lsap.losses.lpips import LPIPSLoss
from lsap.losses.moco import MoCoLoss
from lsap.losses.nscd import NSCDLoss
from lsap.losses.reconstruction import L2Loss
from lsap.losses.regularizers import DeltaRegularizer, NoiseRegularizer, normalize_noise_

__all__ = [
    "DeltaRegularizer",
    "IDLoss",
    "L2Loss",
    "LocalityRegularizer",
    "LPIPSLoss",
    "MoCoLoss",
    "NSCDLoss",
    "NoiseRegularizer",
    "normalize_noise_",
]
