"""Data: image folders per domain preset, and samples drawn from a generator."""

from lsap.data.datamodule import ImageDataModule, SyntheticDataModule, SyntheticDataset
from lsap.data.fashion_mnist import FashionMNISTDataModule, FashionMNISTDataset
from lsap.data.fashion_samples import SHIPPED_SAMPLES_DIR, FashionSamplesDataModule, FashionSamplesDataset
from lsap.data.images import (
    IMAGE_EXTENSIONS,
    ContentBox,
    DomainPreset,
    ImageFolderDataset,
    PresetName,
    SkippedImagesWarning,
    VerifyMode,
    check_image_file,
    load_rgb,
    scan_image_files,
    to_rgb8,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ContentBox",
    "DomainPreset",
    "FashionMNISTDataModule",
    "FashionMNISTDataset",
    "FashionSamplesDataModule",
    "FashionSamplesDataset",
    "ImageDataModule",
    "ImageFolderDataset",
    "PresetName",
    "SHIPPED_SAMPLES_DIR",
    "SkippedImagesWarning",
    "SyntheticDataModule",
    "SyntheticDataset",
    "VerifyMode",
    "check_image_file",
    "load_rgb",
    "scan_image_files",
    "to_rgb8",
]
