"""StyleGAN2 generator with style-space access, and its checkpoint formats."""

from lsap.model.checkpoints import (
    CheckpointError,
    generator_from_checkpoint,
    generator_from_state_dict,
    load_generator,
    read_checkpoint,
    save_generator,
)
from lsap.model.delta import apply_delta, load_delta, save_delta
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.discriminator import Discriminator
from lsap.model.generator import Generator, StyleLayer, channels_for
from lsap.model.safe_pickle import UnsafeCheckpointError
from lsap.model.source import GeneratorSource

__all__ = [
    "CheckpointError",
    "Discriminator",
    "Generator",
    "GeneratorSource",
    "StyleLayer",
    "UnsafeCheckpointError",
    "apply_delta",
    "channels_for",
    "generator_from_checkpoint",
    "generator_from_state_dict",
    "generator_fingerprint",
    "load_delta",
    "load_generator",
    "read_checkpoint",
    "save_delta",
    "save_generator",
]
