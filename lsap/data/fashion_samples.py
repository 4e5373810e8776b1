"""The Fashion-MNIST test images shipped with lsap, as a dataset and a data module.

``lsap/assets/fashion_mnist_test/`` holds 256 class-balanced images of the t10k split
(written by ``bench/make_fashion_samples.py``), stored as the original 28 x 28 grey PNGs
named ``NNNN_<class index>.png``. They are served padded to 32 px RGB in [-1, 1] exactly as
``FashionMNISTDataModule`` serves the full split, so no download is ever needed for the
offline demo, the shipped encoders and the fashion32 benchmark.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.data.datamodule import SyntheticDataset, _make_loader
from lsap.data.fashion_mnist import CLASS_NAMES, pad_to_canvas, to_model_range
from lsap.io import ASSETS_DIR
from lsap.model import GeneratorSource
from lsap.model.generator import NoiseMode
from lsap.results import output_name

SHIPPED_SAMPLES_DIR = ASSETS_DIR / "fashion_mnist_test"
"""Folder of the shipped Fashion-MNIST test images."""

FILE_NAME = re.compile(r"^(\d+)_(\d)\.png$")


def parse_sample_name(name: str) -> tuple[int, int]:
    """``"0042_7.png"`` -> ``(42, 7)``: the index in the t10k split and the class index."""
    match = FILE_NAME.match(name)
    if match is None:
        raise BadValueError(f"'{name}' is not named NNNN_<class index>.png")
    index, label = int(match.group(1)), int(match.group(2))
    if label >= len(CLASS_NAMES):
        raise BadValueError(f"'{name}': class index {label} is not a Fashion-MNIST class (0-{len(CLASS_NAMES) - 1})")
    return index, label


class FashionSamplesDataset(Dataset):
    """The shipped Fashion-MNIST test images (or any folder named the same way).

    Item ``i`` is ``{"image": float32 [channels, R, R] in [-1, 1], "label": int,
    "path": str, "name": str, "index": int}``, the keys an ``ImageFolderDataset`` item has
    plus the label, so the inversion modules' predict / validation steps and
    ``lsap.callbacks.InversionWriter`` take it as they take any image folder.

    Args:
        root: folder of ``NNNN_<class>.png`` files; default: the shipped folder.
        resolution: output size (>= 28); the 28 px image is centred on the background.
        channels: 3 (grey repeated to RGB) or 1.
        limit: keep only the first ``limit`` files (sorted by name); None keeps all.
    """

    def __init__(self, root: str | os.PathLike | None = None, resolution: int = 32, channels: int = 3,
                 limit: Optional[int] = None):
        self.root = os.fspath(root if root is not None else SHIPPED_SAMPLES_DIR)
        if channels not in (1, 3):
            raise BadValueError(f"channels must be 1 or 3, got {channels}")
        if not os.path.isdir(self.root):
            raise MissingInputError(
                f"Fashion-MNIST sample folder '{self.root}' does not exist (the package ships it in "
                f"lsap/assets/fashion_mnist_test; bench/make_fashion_samples.py writes it)"
            )
        names = sorted(n for n in os.listdir(self.root) if n.lower().endswith(".png") and not n.startswith("."))
        if limit is not None:
            if limit < 1:
                raise BadValueError(f"limit must be >= 1, got {limit}")
            names = names[:limit]
        if not names:
            raise MissingInputError(f"no PNG images in '{self.root}' (expected NNNN_<class index>.png files)")
        parsed = [parse_sample_name(n) for n in names]
        pixels = []
        for name in names:
            path = os.path.join(self.root, name)
            try:
                with Image.open(path) as picture:
                    if picture.mode != "L" or picture.size != (28, 28):
                        raise BadFileError(f"'{path}' is {picture.mode} {picture.size}; "
                                           "expected a 28 x 28 grey (L) Fashion-MNIST image")
                    pixels.append(np.asarray(picture, dtype=np.uint8))
            except (OSError, SyntaxError) as error:  # PIL: empty, truncated or not an image
                raise BadFileError(f"cannot read Fashion-MNIST sample '{path}': {error}") from None
        self.images = pad_to_canvas(np.stack(pixels), resolution)
        self.labels = torch.tensor([label for _, label in parsed], dtype=torch.int64)
        self.split_indices = [index for index, _ in parsed]
        self.paths = [os.path.join(self.root, n) for n in names]
        self.names = [output_name(p, self.root) for p in self.paths]
        self.resolution, self.channels = resolution, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, object]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        return {"image": to_model_range(self.images[index], self.channels), "label": int(self.labels[index]),
                "path": self.paths[index], "name": self.names[index], "index": index}


class FashionSamplesDataModule(LightningDataModule):
    """Validation / test / predict on the shipped Fashion-MNIST test images; training on a
    generator's own samples (``train_generator``) or, without one, on the same images.

    Args:
        root: folder of ``NNNN_<class>.png`` images; default: the shipped folder.
        resolution, channels: see ``FashionSamplesDataset``.
        limit: use only the first ``limit`` images (smoke runs).
        train_generator: generator whose samples are the training set (``SyntheticDataset``:
            items carry their W+ code); None trains on the shipped images.
        num_train: number of generator samples for training.
        seed: seed of the training samples.
        truncation_psi, noise_mode: sampling settings of the training samples.
        batch_size: training batch size; val_batch_size: the other loaders' (default: batch_size).
        num_workers, pin_memory, drop_last: DataLoader settings.
    """

    def __init__(self, root: Optional[str] = None, resolution: int = 32, channels: int = 3,
                 limit: Optional[int] = None, train_generator: Optional[GeneratorSource] = None,
                 num_train: int = 1000, seed: int = 0, truncation_psi: float = 1.0, noise_mode: NoiseMode = "const",
                 batch_size: int = 16, val_batch_size: Optional[int] = None, num_workers: int = 0,
                 pin_memory: Optional[bool] = None, drop_last: bool = True):
        super().__init__()
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1) or num_workers < 0:
            raise BadValueError(f"batch sizes must be >= 1 and num_workers >= 0, got {batch_size}, "
                             f"{val_batch_size}, {num_workers}")
        if train_generator is not None and num_train < 1:
            raise BadValueError(f"num_train must be >= 1 with a train_generator, got {num_train}")
        self.root, self.resolution, self.channels, self.limit = root, resolution, channels, limit
        self.train_generator = GeneratorSource.coerce(train_generator) if train_generator is not None else None
        self.num_train, self.seed = num_train, seed
        self.truncation_psi, self.noise_mode = truncation_psi, noise_mode
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size if val_batch_size is not None else batch_size
        self.num_workers, self.pin_memory, self.drop_last = num_workers, pin_memory, drop_last
        self.samples: FashionSamplesDataset | None = None
        self.train_set: Dataset | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit", "validate", "test", "predict"):
            raise BadValueError(f"unknown stage {stage!r}")
        if self.samples is None:
            self.samples = FashionSamplesDataset(self.root, self.resolution, self.channels, self.limit)
        if stage in (None, "fit") and self.train_set is None:
            if self.train_generator is None:
                self.train_set = self.samples
            else:
                generator = self.train_generator.build()
                if generator.resolution != self.resolution:
                    raise BadValueError(f"train_generator makes {generator.resolution} px images but the shipped "
                                     f"images are served at {self.resolution} px")
                strategy = getattr(self.trainer, "strategy", None) if self.trainer is not None else None
                if strategy is not None:
                    generator = generator.to(strategy.root_device)
                self.train_set = SyntheticDataset(generator, self.num_train, seed=self.seed,
                                                  truncation_psi=self.truncation_psi, noise_mode=self.noise_mode)
                del generator

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() first")
        return _make_loader(self, dataset, train)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.samples, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.samples, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.samples, train=False)
