"""Backbone networks: IR / IR-SE (ArcFace family) and torchvision ResNet."""

from lsap.nets.irse import (
    ARCFACE_WEIGHTS_DESCRIPTION,
    STANDARD_BLOCKS,
    ArcFaceIRSE,
    IRArchitecture,
    IRBottleneck,
    IRSEBody,
    SqueezeExcitation,
    UnsafeCheckpointError,
    WeightsMismatchError,
    adapt_input_conv,
    infer_ir_architecture,
    load_arcface,
    load_state_dict_checked,
    load_weights_file,
    strip_module_prefix,
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
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "adapt_input_conv",
    "infer_ir_architecture",
    "load_arcface",
    "load_state_dict_checked",
    "load_weights_file",
    "strip_module_prefix",
]
