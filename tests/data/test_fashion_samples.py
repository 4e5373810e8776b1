"""The shipped Fashion-MNIST test images: balanced, labelled, served like FashionMNISTDataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import small_source
from lsap.data import SHIPPED_SAMPLES_DIR, FashionSamplesDataModule, FashionSamplesDataset
from lsap.data.fashion_mnist import DEFAULT_ROOT, FILES, FashionMNISTDataset


def test_shipped_images_are_balanced_small_and_labelled():
    files = sorted(SHIPPED_SAMPLES_DIR.glob("*.png"))
    assert len(files) == 256
    assert sum(f.stat().st_size for f in files) < 1_000_000
    dataset = FashionSamplesDataset()
    counts = torch.bincount(dataset.labels, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 256
    assert len(set(dataset.split_indices)) == 256 and max(dataset.split_indices) < 10_000


def test_items_match_the_full_split_pixel_for_pixel():
    if not (Path(DEFAULT_ROOT) / FILES["test"][0]).is_file():
        pytest.skip(f"Fashion-MNIST not installed in {DEFAULT_ROOT}")
    full = FashionMNISTDataset(split="test")
    shipped = FashionSamplesDataset()
    for i in (0, 100, 255):
        item = shipped[i]
        index = shipped.split_indices[i]
        image, label = full[index]
        assert item["label"] == label
        assert torch.equal(item["image"], image)


def test_items_carry_the_keys_of_an_image_folder_item():
    item = FashionSamplesDataset(limit=3)[1]
    assert set(item) >= {"image", "label", "path", "name", "index"}
    assert item["image"].shape == (3, 32, 32) and item["image"].min() >= -1 and item["image"].max() <= 1
    # the border added by the padding is background (-1); the 28 px content sits in the middle
    assert torch.all(item["image"][:, :2] == -1) and torch.all(item["image"][:, :, -2:] == -1)
    assert item["name"] == Path(item["path"]).stem


def test_padding_places_the_original_pixels(tmp_path):
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(pixels, mode="L").save(tmp_path / "0007_3.png")
    item = FashionSamplesDataset(tmp_path, resolution=36, channels=1)[0]
    assert item["label"] == 3 and item["name"] == "0007_3"
    expected = torch.from_numpy(pixels).float() / 127.5 - 1
    assert torch.allclose(item["image"][0, 4:32, 4:32], expected)


def test_bad_names_and_sizes_are_refused(tmp_path):
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(tmp_path / "shoe.png")
    with pytest.raises(ValueError, match="NNNN_<class index>"):
        FashionSamplesDataset(tmp_path)
    (tmp_path / "shoe.png").unlink()
    Image.fromarray(np.zeros((30, 30), np.uint8), mode="L").save(tmp_path / "0001_2.png")
    with pytest.raises(ValueError, match="28 x 28"):
        FashionSamplesDataset(tmp_path)


def test_data_module_trains_on_generator_samples_and_validates_on_the_images():
    source = small_source(resolution=32)
    module = FashionSamplesDataModule(limit=8, train_generator=source, num_train=6, batch_size=3,
                                      val_batch_size=4)
    module.setup("fit")
    train = next(iter(module.train_dataloader()))
    assert train["image"].shape == (3, 3, 32, 32) and "ws" in train
    val = next(iter(module.val_dataloader()))
    assert val["image"].shape == (4, 3, 32, 32) and val["label"].dtype == torch.int64
    assert len(val["path"]) == 4
    plain = FashionSamplesDataModule(limit=4, batch_size=2)
    plain.setup("fit")
    assert torch.equal(next(iter(plain.val_dataloader()))["image"], plain.samples.images[:2].float().div(127.5)
                       .sub(1)[:, None].expand(-1, 3, -1, -1))
