"""Fashion-MNIST (Xiao et al. 2017) from its idx-ubyte gzip files, as 32 px RGB images.

Debian's ``dataset-fashion-mnist`` package installs the four files in
``/usr/share/datasets/fashion-mnist/``. Images are padded from 28 to 32 px with the
background value (0, i.e. -1 after scaling) and the grey channel is repeated to RGB in
[-1, 1], which is what a 32 px StyleGAN2 trains on.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lsap.errors import BadValueError, MissingInputError
from lsap.images import from_uint8

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
Split = Literal["train", "test"]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx-ubyte file (gzip-compressed or not) into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise BadValueError(f"cannot read idx file '{path}': {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BadValueError(f"'{path}' is not an idx file (bad magic number)")
    if data[2] != 0x08:
        raise BadValueError(f"'{path}' holds type 0x{data[2]:02x}; only unsigned bytes (0x08) are supported")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BadValueError(f"'{path}' is truncated (header)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape)) if shape else 1
    if len(data) - header != count:
        raise BadValueError(f"'{path}' holds {len(data) - header} bytes of data, its header announces {count} "
                         f"(shape {shape}): the file is truncated or damaged")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def check_root(root: str | Path) -> Path:
    """The folder, or a FileNotFoundError naming what is missing and how to get it."""
    root = Path(root)
    needed = [name for pair in FILES.values() for name in pair]
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        where = "folder does not exist" if not root.is_dir() else f"missing {', '.join(missing)}"
        raise MissingInputError(
            f"Fashion-MNIST not found in '{root}' ({where}). Install it with "
            f"`apt-get install dataset-fashion-mnist` (as root; files go to {DEFAULT_ROOT}) or point "
            "root at a folder holding the four idx-ubyte .gz files."
        )
    return root


def pad_to_canvas(images: np.ndarray, resolution: int = 32) -> torch.Tensor:
    """uint8 ``[..., 28, 28]`` -> uint8 ``[..., R, R]``, centred on the background value 0."""
    if resolution < 28:
        raise BadValueError(f"resolution must be >= 28 (images are 28 px), got {resolution}")
    if images.shape[-2:] != (28, 28):
        raise BadValueError(f"expected 28x28 Fashion-MNIST images, got {tuple(images.shape[-2:])}")
    before = (resolution - 28) // 2
    canvas = np.zeros((*images.shape[:-2], resolution, resolution), dtype=np.uint8)
    canvas[..., before:before + 28, before:before + 28] = images
    return torch.from_numpy(canvas)


def to_model_range(images: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """uint8 grey ``[..., R, R]`` -> float ``[..., channels, R, R]`` in [-1, 1]."""
    x = from_uint8(images)
    x = x.unsqueeze(-3)
    return x.expand(*x.shape[:-3], channels, -1, -1).contiguous()


class FashionMNISTDataset(Dataset):
    """One split of Fashion-MNIST. Item ``i`` is ``(image [3, 32, 32] in [-1, 1], label)``.

    The split is kept as uint8 (60 000 x 32 x 32 is 61 MB) and converted per item.

    Args:
        root: folder with the idx-ubyte gzip files.
        split: ``train`` (60 000 images) or ``test`` (10 000).
        resolution: output size (>= 28); the 28 px image is centred on a background canvas.
        channels: 3 repeats the grey channel to RGB, 1 keeps it grey.
    """

    def __init__(self, root: str | Path = DEFAULT_ROOT, split: Split = "train", resolution: int = 32,
                 channels: int = 3):
        if split not in FILES:
            raise BadValueError(f"split must be 'train' or 'test', got {split!r}")
        if resolution < 28:
            raise BadValueError(f"resolution must be >= 28 (images are 28 px), got {resolution}")
        if channels not in (1, 3):
            raise BadValueError(f"channels must be 1 or 3, got {channels}")
        root = check_root(root)
        images = read_idx(root / FILES[split][0])
        labels = read_idx(root / FILES[split][1])
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise BadValueError(f"{root / FILES[split][0]} holds images of shape {images.shape[1:]}, expected 28x28")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise BadValueError(f"{split} split has {images.shape[0]} images but {labels.shape[0]} labels")
        if labels.size and labels.max() >= len(CLASS_NAMES):
            raise BadValueError(f"{split} labels go up to {labels.max()}, Fashion-MNIST has {len(CLASS_NAMES)} classes")
        self.images = pad_to_canvas(images, resolution)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.split, self.resolution, self.channels = split, resolution, channels

    def __len__(self) -> int:
        return self.images.shape[0]

    def image(self, index: int | slice | torch.Tensor) -> torch.Tensor:
        return to_model_range(self.images[index], self.channels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.image(index), int(self.labels[index])


class FashionMNISTDataModule(LightningDataModule):
    """Fashion-MNIST train / test splits as ``(image, label)`` batches.

    ``fit`` trains on the train split (and, with ``validate_on_test``, validates on the
    test split); ``test`` and ``predict`` use the test split.

    Args:
        root: folder with the idx-ubyte gzip files (Debian: ``/usr/share/datasets/fashion-mnist``).
        resolution: image size (32 for a StyleGAN2; 28 keeps the original).
        channels: 3 (grey repeated to RGB) or 1.
        batch_size: per process.
        num_workers: DataLoader workers.
        drop_last: drop the last incomplete training batch.
        validate_on_test: run validation on the test split during fit.
    """

    def __init__(self, root: str = DEFAULT_ROOT, resolution: int = 32, channels: int = 3, batch_size: int = 32,
                 num_workers: int = 0, drop_last: bool = True, validate_on_test: bool = False):
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise BadValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.root, self.resolution, self.channels = root, resolution, channels
        self.batch_size, self.num_workers, self.drop_last = batch_size, num_workers, drop_last
        self.validate_on_test = validate_on_test
        self.datasets: dict[str, FashionMNISTDataset] = {}

    def split(self, name: Split) -> FashionMNISTDataset:
        """The dataset of a split (read on first use)."""
        if name not in self.datasets:
            self.datasets[name] = FashionMNISTDataset(self.root, name, self.resolution, self.channels)
        return self.datasets[name]

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.split("train")
        if stage in (None, "validate", "test", "predict") or (stage == "fit" and self.validate_on_test):
            self.split("test")

    def _loader(self, name: Split, train: bool) -> DataLoader:
        return DataLoader(self.split(name), batch_size=self.batch_size, shuffle=train,
                          drop_last=self.drop_last if train else False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("test", train=False) if self.validate_on_test else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
