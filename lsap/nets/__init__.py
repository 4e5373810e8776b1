"""Networks: IR / IR-SE (ArcFace family) and torchvision ResNet backbones, and the frozen
feature networks behind perceptual distances (LPIPS, deep-feature distance)."""

from lsap.io import WeightsMismatchError
from lsap.nets.irse import (
    ARCFACE_WEIGHTS_DESCRIPTION,
    STANDARD_BLOCKS,
    ArcFaceIRSE,
    IRArchitecture,
    IRBottleneck,
    IRSEBody,
    SqueezeExcitation,
    infer_ir_architecture,
    load_arcface,
)
from lsap.nets.lpips import LPIPSLoss
from lsap.nets.perceptual import FeatureDistance, PerceptualDistance
from lsap.nets.resnet import RESNET_STAGE_CHANNELS, ResNetBackbone

__all__ = [
    "ARCFACE_WEIGHTS_DESCRIPTION",
    "RESNET_STAGE_CHANNELS",
    "STANDARD_BLOCKS",
    "ArcFaceIRSE",
    "FeatureDistance",
    "IRArchitecture",
    "IRBottleneck",
    "IRSEBody",
    "LPIPSLoss",
    "PerceptualDistance",
    "ResNetBackbone",
    "SqueezeExcitation",
    "WeightsMismatchError",
    "infer_ir_architecture",
    "load_arcface",
]
