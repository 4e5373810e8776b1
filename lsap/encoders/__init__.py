"""Image -> W+ encoders (e4e, pSp) and loaders for their published checkpoints.

All encoders map ``[B, C, S, S]`` images to ``[B, num_ws, w_dim]`` W+ offsets from the
generator's ``latent_avg`` (the caller adds ``latent_avg``).
"""

from lsap.encoders.checkpoints import (
    ENCODER_TYPE_NAMES,
    LoadedEncoder,
    build_encoder_from_state_dict,
    infer_encoder_config,
    load_encoder_checkpoint,
    save_e4e_checkpoint,
)
from lsap.encoders.e4e import (
    Encoder4Editing,
    IRPyramidEncoder,
    ProgressiveStyleEncoder,
    PyramidStyleEncoder,
    ResNetEncoder4Editing,
    ResNetPyramidEncoder,
)
from lsap.encoders.psp import AllEntriesStyleEncoder, GradualStyleEncoder, ResNetGradualStyleEncoder

__all__ = [
    "ENCODER_TYPE_NAMES",
    "AllEntriesStyleEncoder",
    "Encoder4Editing",
    "GradualStyleEncoder",
    "IRPyramidEncoder",
    "LoadedEncoder",
    "ProgressiveStyleEncoder",
    "PyramidStyleEncoder",
    "ResNetEncoder4Editing",
    "ResNetGradualStyleEncoder",
    "ResNetPyramidEncoder",
    "build_encoder_from_state_dict",
    "infer_encoder_config",
    "load_encoder_checkpoint",
    "save_e4e_checkpoint",
]
