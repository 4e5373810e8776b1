"""FashionMNISTDataModule on small idx gzip files written here."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lsap.data import FashionMNISTDataModule
from lsap.data.fashion_mnist import FILES, FashionMNISTDataset, read_idx


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 5)):
        images = rng.integers(0, 256, size=(count, 28, 28))
        labels = np.arange(count) % 10
        write_idx(tmp_path / FILES[split][0], images)
        write_idx(tmp_path / FILES[split][1], labels)
    return tmp_path


def test_items_are_padded_rgb_in_range(fake_root: Path) -> None:
    raw = read_idx(fake_root / FILES["train"][0])
    ds = FashionMNISTDataset(fake_root, "train")
    assert len(ds) == 12
    image, label = ds[3]
    assert image.shape == (3, 32, 32) and label == 3
    # The 28 px image sits in the middle; the 2 px border is the background (0 -> -1).
    assert torch.equal(image[0, 2:30, 2:30], torch.from_numpy(raw[3]).float() / 127.5 - 1)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.all(image[:, border] == -1)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    assert image.min() >= -1 and image.max() <= 1


def test_datamodule_splits_and_labels(fake_root: Path) -> None:
    dm = FashionMNISTDataModule(root=str(fake_root), batch_size=4)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.int64
    assert len(dm.split("test")) == 5
    assert dm.split("test").labels.tolist() == [0, 1, 2, 3, 4]
    assert len(dm.class_names) == 10
    assert sum(len(b[0]) for b in dm.test_dataloader()) == 5


def test_missing_folder_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        FashionMNISTDataset(tmp_path / "nowhere")


def test_truncated_file_is_a_clear_error(fake_root: Path) -> None:
    path = fake_root / FILES["train"][0]
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        FashionMNISTDataset(fake_root, "train")
