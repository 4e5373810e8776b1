"""Backbone networks: IR / IR-SE (ArcFace family) and torchvision ResNet."""

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
from lsap.nets.resnet import RESNET_STAGE_CHANNELS, ResNetBackbone

__all__ = [
    "ARCFACE_WEIGHTS_DESCRIPTION",
    "RESNET_STAGE_CHANNELS",
    "STANDARD_BLOCKS",
    "ArcFaceIRSE",
    "IRArchitecture",
    "IRBottleneck",
    "IRSEBody",
    "ResNetBackbone",
    "SqueezeExcitation",
    "WeightsMismatchError",
    "infer_ir_architecture",
    "load_arcface",
]
