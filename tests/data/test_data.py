"""Tests of the image data pipeline; every image is made here, in tmp_path."""

from __future__ import annotations

import typing
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from PIL import Image
from torch.utils.data import DataLoader

from lsap.data import (
    ContentBox,
    DomainPreset,
    ImageDataModule,
    ImageFolderDataset,
    PresetName,
    SkippedImagesWarning,
    SyntheticDataModule,
    SyntheticDataset,
    load_rgb,
)
from lsap.model import GeneratorSource

GOOD = ["a_rgb.jpg", "b_rgb.png", "c_gray.png", "d_rgba.png", "e_palette.png", "f_16bit.png",
        "g_odd.png", "h_cmyk.jpg", "sub/deeper/i_nested.PNG"]
BAD = ["x_truncated.jpg", "y_empty.png", "z_text.png", "w_truncated.png"]


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_truncated(path: Path, fmt: str) -> None:
    full = path.with_suffix(".full" + path.suffix)
    Image.fromarray(_noise(64, 64, seed=7)).save(full, format=fmt)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()


def make_mixed_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(30, 40, 1)).save(root / "a_rgb.jpg", quality=90)
    Image.fromarray(_noise(32, 32, 2)).save(root / "b_rgb.png")
    Image.fromarray(_noise(20, 20, 3)[..., 0], "L").save(root / "c_gray.png")
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[:, 8:] = (255, 0, 0, 255)  # left half fully transparent (black underneath), right half opaque red
    Image.fromarray(rgba, "RGBA").save(root / "d_rgba.png")
    Image.fromarray(_noise(16, 16, 4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(root / "e_palette.png")
    Image.fromarray(np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)).save(root / "f_16bit.png")
    Image.fromarray(_noise(91, 37, 5)).save(root / "g_odd.png")
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(root / "h_cmyk.jpg")
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(_noise(20, 10, 6)).save(root / "sub" / "deeper" / "i_nested.PNG")
    _write_truncated(root / "x_truncated.jpg", "JPEG")
    _write_truncated(root / "w_truncated.png", "PNG")
    (root / "y_empty.png").write_bytes(b"")
    (root / "z_text.png").write_text("this is not an image\n")
    (root / "notes.txt").write_text("ignored: not an image extension\n")
    Image.fromarray(_noise(8, 8)).save(root / ".hidden.png")  # hidden files are ignored
    return root


def build_quietly(*args, **kwargs) -> ImageFolderDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImagesWarning)
        return ImageFolderDataset(*args, **kwargs)


def make_uniform_folder(root: Path, count: int, size: tuple[int, int] = (24, 24)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(_noise(size[1], size[0], 100 + i)).save(root / f"img_{i:03d}.png")
    return root


# ----- folder scan and decoding --------------------------------------------------------
def test_mixed_folder_keeps_good_skips_bad_with_one_warning(tmp_path: Path) -> None:
    root = make_mixed_folder(tmp_path / "mixed")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageFolderDataset(root, preset="face", resolution=32)
    skip_warnings = [w for w in caught if issubclass(w.category, SkippedImagesWarning)]
    assert len(skip_warnings) == 1
    message = str(skip_warnings[0].message)
    for name in BAD:
        assert name in message
    assert str(root) in message

    kept = [Path(p).relative_to(root).as_posix() for p in dataset.paths]
    assert kept == sorted(GOOD)  # sorted by relative path, deterministic
    assert len(dataset) == len(GOOD)
    assert sorted(Path(p).name for p, _ in dataset.skipped) == sorted(BAD)
    assert dataset.num_skipped == len(BAD)
    assert all(reason for _, reason in dataset.skipped)

    for index in range(len(dataset)):
        item = dataset[index]
        image = item["image"]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
        assert image.shape == (3, 32, 32)
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert item["index"] == index and item["path"] == dataset.paths[index]
        assert "mask" not in item  # face preset fills the canvas
    assert dataset.num_skipped == len(BAD)  # nothing new failed at load time


def test_warning_lists_first_files_and_counts_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "many_bad"
    make_uniform_folder(root, 1)
    for i in range(5):
        (root / f"broken_{i}.png").write_text("nope")
    with pytest.warns(SkippedImagesWarning) as record:
        ImageFolderDataset(root, resolution=8, max_listed_skips=2)
    message = str(record[0].message)
    assert "broken_0.png" in message and "broken_1.png" in message
    assert "broken_4.png" not in message
    assert "and 3 more" in message and "skipped 5 of 6" in message


def test_mode_conversions(tmp_path: Path) -> None:
    root = make_mixed_folder(tmp_path / "modes")
    rgba = np.asarray(load_rgb(root / "d_rgba.png"))
    assert rgba.shape == (16, 16, 3) and rgba.dtype == np.uint8
    assert (rgba[:, :8] == 255).all()  # transparent -> white background, not the black underneath
    assert (rgba[:, 8:] == (255, 0, 0)).all()

    gray = np.asarray(load_rgb(root / "c_gray.png"))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (gray[..., 0] == _noise(20, 20, 3)[..., 0]).all()

    sixteen = np.asarray(load_rgb(root / "f_16bit.png"))[..., 0].astype(int)
    expected = np.rint(np.linspace(0, 65535, 256).reshape(16, 16) * 255 / 65535).astype(int)
    assert np.abs(sixteen - expected).max() <= 1  # scaled, not clipped at 255
    assert sixteen.min() == 0 and sixteen.max() == 255

    cmyk = np.asarray(load_rgb(root / "h_cmyk.jpg")).astype(int)
    assert cmyk.shape == (24, 24, 3)
    assert np.abs(cmyk - np.array([255, 0, 0])).max() < 10  # C=0, M=Y=255 is red

    palette = load_rgb(root / "e_palette.png")
    assert palette.mode == "RGB" and palette.size == (16, 16)


def test_transparent_palette_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    image.save(tmp_path / "p.png", transparency=0)
    array = np.asarray(load_rgb(tmp_path / "p.png"))
    assert (array[0, 0] == (0, 255, 0)).all()
    assert (array[1:, :] == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_noise(10, 30)).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(tmp_path / "rotated.jpg").size == (10, 30)


# ----- load-time guard -----------------------------------------------------------------
def test_file_corrupted_after_build_is_skipped_and_counted(tmp_path: Path) -> None:
    root = make_uniform_folder(tmp_path / "later", 4)
    dataset = ImageFolderDataset(root, resolution=16)
    assert dataset.num_skipped == 0
    victim = dataset.paths[1]
    Path(victim).write_bytes(b"\x89PNG garbage")
    with pytest.warns(SkippedImagesWarning, match="img_001.png"):
        item = dataset[1]
    assert item["index"] == 2 and item["path"] == dataset.paths[2]  # the next valid image
    assert dataset.num_skipped == 1 and dataset.skipped[0][0] == victim
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known-bad file is not retried or re-warned
        assert dataset[1]["index"] == 2
    assert dataset.num_skipped == 1
    # Wrap-around: the last item failing falls back to the first.
    Path(dataset.paths[3]).write_bytes(b"")
    with pytest.warns(SkippedImagesWarning):
        assert dataset[3]["index"] == 0
    assert dataset.num_skipped == 2


def test_verify_none_defers_detection_to_load_time(tmp_path: Path) -> None:
    root = make_uniform_folder(tmp_path / "deferred", 2)
    _write_truncated(root / "img_000b.jpg", "JPEG")
    deferred = ImageFolderDataset(root, resolution=16, verify="none")
    assert len(deferred) == 3 and deferred.num_skipped == 0
    with pytest.warns(SkippedImagesWarning, match="img_000b.jpg"):
        items = [deferred[i] for i in range(len(deferred))]
    assert [item["index"] for item in items] == [0, 2, 2]
    assert deferred.num_skipped == 1
    with pytest.warns(SkippedImagesWarning, match="img_000b.jpg"):
        quick = ImageFolderDataset(root, resolution=16, verify="quick")
    assert len(quick) == 2


def test_every_file_failing_at_load_time_raises(tmp_path: Path) -> None:
    root = make_uniform_folder(tmp_path / "doomed", 2)
    dataset = ImageFolderDataset(root, resolution=8)
    for path in dataset.paths:
        Path(path).write_text("gone")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImagesWarning)
        with pytest.raises(RuntimeError, match="every image"):
            dataset[0]


# ----- errors --------------------------------------------------------------------------
def test_empty_and_missing_and_all_bad_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images found") as info:
        ImageFolderDataset(empty)
    assert str(empty) in str(info.value)

    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError) as info:
        ImageFolderDataset(missing)
    assert str(missing) in str(info.value)

    bad = tmp_path / "all_bad"
    bad.mkdir()
    (bad / "one.png").write_bytes(b"")
    (bad / "two.jpg").write_text("text")
    with pytest.raises(ValueError) as info:
        ImageFolderDataset(bad)
    assert str(bad) in str(info.value) and "one.png" in str(info.value) and "two.jpg" in str(info.value)

    a_file = tmp_path / "file.png"
    Image.new("RGB", (4, 4)).save(a_file)
    with pytest.raises(NotADirectoryError, match="file.png"):
        ImageFolderDataset(a_file)


def test_datamodule_errors_name_the_config_key(tmp_path: Path) -> None:
    train = make_uniform_folder(tmp_path / "train", 2)
    with pytest.raises(ValueError, match=r"data\.init_args\.val_dir"):
        ImageDataModule(train_dir=str(train), resolution=8).setup("validate")
    with pytest.raises(ValueError, match=r"data\.init_args\.train_dir"):
        ImageDataModule(val_dir=str(train), resolution=8).setup("fit")
    with pytest.raises(ValueError, match=r"data\.init_args\.test_dir"):
        ImageDataModule(train_dir=str(train), resolution=8).setup("test")
    with pytest.raises(ValueError, match=r"data\.init_args\.predict_dir"):
        ImageDataModule(train_dir=str(train), resolution=8).setup("predict")
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        ImageDataModule(train_dir=str(train), val_dir=str(missing), resolution=8).setup("fit")
    assert "data.init_args.val_dir" in str(info.value) and str(missing) in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"data\.init_args\.test_dir: no images found"):
        ImageDataModule(test_dir=str(empty), resolution=8).setup("test")


# ----- presets -------------------------------------------------------------------------
def test_car_letterbox_box_and_mask(tmp_path: Path) -> None:
    assert DomainPreset.CAR.content_box(512) == ContentBox(top=64, left=0, bottom=448, right=512)
    assert DomainPreset.CAR.content_box(256) == ContentBox(top=32, left=0, bottom=224, right=256)
    assert DomainPreset.CAR.content_box(64) == ContentBox(top=8, left=0, bottom=56, right=64)
    assert DomainPreset.FACE.content_box(256) is None and DomainPreset.CHURCH.content_box(256) is None
    assert DomainPreset.CAR.default_resolution == 512

    root = tmp_path / "cars"
    root.mkdir()
    Image.new("RGB", (100, 50), (255, 255, 255)).save(root / "wide.png")  # wider than 4:3
    Image.new("RGB", (30, 90), (255, 255, 255)).save(root / "tall.png")  # taller than 4:3
    dataset = ImageFolderDataset(root, preset=DomainPreset.CAR, resolution=64)
    for index in range(len(dataset)):
        item = dataset[index]
        image, mask = item["image"], item["mask"]
        assert image.shape == (3, 64, 64) and mask.shape == (1, 64, 64)
        assert torch.equal(item["content_box"], torch.tensor([8, 0, 56, 64]))
        assert torch.all(image[:, 8:56] == 1.0)  # content fills the box exactly
        assert torch.all(image[:, :8] == -1.0) and torch.all(image[:, 56:] == -1.0)  # black bars
        assert mask.sum() == 48 * 64 and torch.all(mask[:, 8:56] == 1)


def test_church_crops_centre_and_face_resizes(tmp_path: Path) -> None:
    stripes = np.zeros((40, 80, 3), dtype=np.uint8)
    stripes[:, :20] = (255, 0, 0)
    stripes[:, 20:60] = (0, 0, 255)
    stripes[:, 60:] = (0, 255, 0)
    root = tmp_path / "stripes"
    root.mkdir()
    Image.fromarray(stripes).save(root / "s.png")
    church = ImageFolderDataset(root, preset="church", resolution=32)[0]["image"]
    assert church.shape == (3, 32, 32)
    interior = church[:, :, 2:30]
    assert torch.allclose(interior[2], torch.ones_like(interior[2]), atol=0.02)  # only the blue centre survives
    assert interior[0].max() < -0.95 and interior[1].max() < -0.95
    face = ImageFolderDataset(root, preset="face", resolution=32)[0]["image"]
    assert face.shape == (3, 32, 32)
    assert face[0, :, :4].min() > 0.95 and face[1, :, -4:].min() > 0.95  # whole width kept (squeezed)


def test_default_resolution_follows_preset(tmp_path: Path) -> None:
    root = make_uniform_folder(tmp_path / "default", 1, size=(20, 10))
    assert ImageFolderDataset(root, preset="church")[0]["image"].shape == (3, 256, 256)


# ----- flips ---------------------------------------------------------------------------
def _half_black_half_white(root: Path) -> Path:
    root.mkdir()
    array = np.zeros((16, 16, 3), dtype=np.uint8)
    array[:, 8:] = 255
    Image.fromarray(array).save(root / "half.png")
    return root


def _flip_sequence(dataset: ImageFolderDataset, draws: int) -> list[bool]:
    reference = ImageFolderDataset(dataset.root, resolution=dataset.resolution)[0]["image"]
    flips = []
    for _ in range(draws):
        image = dataset[0]["image"]
        if torch.equal(image, reference):
            flips.append(False)
        else:
            assert torch.equal(image, reference.flip(-1))  # a flip and nothing else
            flips.append(True)
    return flips


def test_flip_is_seeded_and_happens_about_half_the_time(tmp_path: Path) -> None:
    root = _half_black_half_white(tmp_path / "flip")
    first = _flip_sequence(ImageFolderDataset(root, resolution=16, hflip_probability=0.5, seed=1), 400)
    again = _flip_sequence(ImageFolderDataset(root, resolution=16, hflip_probability=0.5, seed=1), 400)
    other = _flip_sequence(ImageFolderDataset(root, resolution=16, hflip_probability=0.5, seed=2), 400)
    assert first == again
    assert first != other
    assert 150 < sum(first) < 250
    assert not any(_flip_sequence(ImageFolderDataset(root, resolution=16), 50))  # evaluation: no flips
    assert all(_flip_sequence(ImageFolderDataset(root, resolution=16, hflip_probability=1.0), 50))


def test_flip_reproducible_across_dataloader_workers(tmp_path: Path) -> None:
    root = make_uniform_folder(tmp_path / "workers", 8, size=(8, 8))
    dataset = ImageFolderDataset(root, resolution=8, hflip_probability=0.5, seed=3)

    def run(loader_seed: int) -> torch.Tensor:
        loader = DataLoader(dataset, batch_size=4, num_workers=2,
                            generator=torch.Generator().manual_seed(loader_seed))
        return torch.cat([batch["image"] for batch in loader])

    one, two, other = run(0), run(0), run(1)
    assert torch.equal(one, two)
    assert not torch.equal(one, other)  # worker seeds change, and with them the flips
    unflipped = torch.stack([ImageFolderDataset(root, resolution=8)[i]["image"] for i in range(8)])
    flipped = [not torch.equal(a, b) for a, b in zip(one, unflipped)]
    assert 0 < sum(flipped) < 8


# ----- data module ---------------------------------------------------------------------
class _CountingModule(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[str, int] = {"train": 0, "val": 0}

    def training_step(self, batch, batch_idx):
        self.seen["train"] += 1
        return (batch["image"].mean() - self.weight).pow(2)

    def validation_step(self, batch, batch_idx):
        self.seen["val"] += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_datamodule_batches_through_dataloader(tmp_path: Path) -> None:
    train = make_uniform_folder(tmp_path / "train", 5, size=(30, 20))
    val = make_uniform_folder(tmp_path / "val", 3)
    module = ImageDataModule(train_dir=str(train), val_dir=str(val), predict_dir=str(val), preset="car",
                             resolution=32, batch_size=2, num_workers=0, pin_memory=False)
    module.setup("fit")
    assert set(module.datasets) == {"train_dir", "val_dir"}  # predict is not built for fit
    batches = list(module.train_dataloader())
    assert len(batches) == 2  # 5 images, batch 2, drop_last
    for batch in batches:
        assert batch["image"].shape == (2, 3, 32, 32)
        assert batch["mask"].shape == (2, 1, 32, 32) and batch["content_box"].shape == (2, 4)
        assert len(batch["path"]) == 2 and batch["index"].shape == (2,)
    val_batches = list(module.val_dataloader())
    assert [b["image"].shape[0] for b in val_batches] == [2, 1]  # evaluation keeps every image
    assert module.content_box == ContentBox(4, 0, 28, 32)
    module.setup("predict")
    predicted = list(module.predict_dataloader())
    assert sum(len(b["path"]) for b in predicted) == 3
    assert module.datasets["train_dir"].hflip_probability == 0.5
    assert module.datasets["val_dir"].hflip_probability == 0.0


def test_datamodule_in_trainer_with_and_without_validation(tmp_path: Path) -> None:
    train = make_uniform_folder(tmp_path / "train", 4)
    val = make_uniform_folder(tmp_path / "val", 2)
    common = dict(default_root_dir=tmp_path, max_epochs=1, accelerator="cpu", devices=1, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  num_sanity_val_steps=0)
    without_val = _CountingModule()
    Trainer(**common).fit(without_val, datamodule=ImageDataModule(
        train_dir=str(train), resolution=8, batch_size=2, num_workers=0))
    assert without_val.seen == {"train": 2, "val": 0}
    with_val = _CountingModule()
    Trainer(**common).fit(with_val, datamodule=ImageDataModule(
        train_dir=str(train), val_dir=str(val), resolution=8, batch_size=2, num_workers=0))
    assert with_val.seen == {"train": 2, "val": 1}


# ----- synthetic data ------------------------------------------------------------------
TINY_GENERATOR = dict(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32,
                      w_avg_samples=100)


@pytest.fixture(scope="module")
def tiny_generator():
    return GeneratorSource(**TINY_GENERATOR).build()


def test_synthetic_items_are_deterministic_and_match_synthesis(tiny_generator) -> None:
    G = tiny_generator
    a = SyntheticDataset(G, 6, seed=5, batch_size=4)
    b = SyntheticDataset(G, 3, seed=5, batch_size=1)  # other size and batching, same items
    c = SyntheticDataset(G, 3, seed=6)
    assert len(a) == 6
    for i in range(3):
        item = a[i]
        assert item["index"] == i
        assert item["image"].shape == (3, 16, 16) and item["ws"].shape == (G.num_ws, G.w_dim)
        assert item["image"].min() >= -1 and item["image"].max() <= 1
        assert torch.allclose(item["ws"], b[i]["ws"], atol=1e-5)
        assert torch.allclose(item["image"], b[i]["image"], atol=1e-5)
        assert not torch.allclose(item["ws"], c[i]["ws"])
        # The stored code is one w repeated, and it is what makes the image.
        assert torch.equal(item["ws"], item["ws"][:1].expand_as(item["ws"]))
        with torch.no_grad():
            expected = G.synthesis(item["ws"][None], noise_mode="const").clamp(-1, 1)[0]
        assert torch.allclose(item["image"], expected, atol=1e-5)
        with torch.no_grad():
            w = G.mapping(SyntheticDataset.latent_z(G.z_dim, 5, i)[None])
        assert torch.allclose(item["ws"][0], w[0], atol=1e-6)
    assert not torch.equal(a[0]["ws"], a[1]["ws"])


def test_synthetic_truncation_and_pooling(tiny_generator) -> None:
    G = tiny_generator
    full = SyntheticDataset(G, 2, seed=0)
    pooled = SyntheticDataset(G, 2, seed=0, image_resolution=8)
    assert pooled[0]["image"].shape == (3, 8, 8)
    assert torch.allclose(pooled.images, F.avg_pool2d(full.images, 2), atol=1e-6)
    truncated = SyntheticDataset(G, 2, seed=0, truncation_psi=0.5)
    expected = G.w_avg.lerp(full.ws[:, 0], 0.5)
    assert torch.allclose(truncated.ws[:, 0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="image_resolution"):
        SyntheticDataset(G, 1, image_resolution=32)


def test_synthetic_datamodule_splits_and_loaders() -> None:
    module = SyntheticDataModule(GeneratorSource(**TINY_GENERATOR), num_train=10, num_val=4, num_test=0,
                                 batch_size=4, seed=0, pin_memory=False)
    module.setup("fit")
    assert set(module.datasets) == {"train", "val"}
    train_ws = module.datasets["train"].ws[:, 0]
    val_ws = module.datasets["val"].ws[:, 0]
    assert not torch.isclose(train_ws[:, None], val_ws[None]).all(-1).any()  # no shared items
    batches = list(module.train_dataloader())
    assert len(batches) == 2  # 10 items, batch 4, drop_last
    assert batches[0]["image"].shape == (4, 3, 16, 16) and batches[0]["ws"].shape == (4, 6, 32)
    assert [b["image"].shape[0] for b in module.val_dataloader()] == [4]
    with pytest.raises(ValueError, match=r"data\.init_args\.num_test"):
        module.setup("test")
    again = SyntheticDataModule(GeneratorSource(**TINY_GENERATOR), num_train=10, num_val=4, seed=0)
    again.setup("fit")
    assert torch.equal(again.datasets["train"].ws, module.datasets["train"].ws)
    no_val = SyntheticDataModule(GeneratorSource(**TINY_GENERATOR), num_train=4, num_val=0)
    no_val.setup("fit")
    assert no_val.val_dataloader() == []


# ----- config schema -------------------------------------------------------------------
def test_datamodules_parse_as_config(tmp_path: Path) -> None:
    from jsonargparse import ArgumentParser

    assert set(typing.get_args(PresetName)) == {p.value for p in DomainPreset}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ImageDataModule, "data")
    parser.add_class_arguments(SyntheticDataModule, "synthetic")
    config = parser.parse_args([
        "--data.preset=car", f"--data.train_dir={tmp_path}", "--data.resolution=64",
        "--synthetic.generator.resolution=16", "--synthetic.num_train=3",
    ])
    # `instantiate` replaced `instantiate_classes` in jsonargparse 4.49; support both.
    built = getattr(parser, "instantiate", None) or parser.instantiate_classes
    built = built(config)
    assert built.data.preset is DomainPreset.CAR and built.data.resolution == 64
    assert built.data.folders["train_dir"] == str(tmp_path)
    assert isinstance(built.synthetic.generator_source, GeneratorSource)
    assert built.synthetic.generator_source.resolution == 16
    with pytest.raises(Exception, match="preset"):
        parser.parse_args(["--data.preset=boat"])


def test_default_workers_follow_the_usable_cores() -> None:
    import os

    from lsap.data.datamodule import default_num_workers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_num_workers() == max(1, min(8, cores)) == ImageDataModule(predict_dir=".").num_workers
    assert default_num_workers(limit=1) == 1


def test_float_images_with_nan_and_infinity_become_finite_rgb() -> None:
    from lsap.data.images import to_rgb8

    values = np.array([[np.nan, 0.5], [np.inf, -np.inf]], dtype=np.float32)
    converted = np.asarray(to_rgb8(Image.fromarray(values, "F")))
    assert converted.shape == (2, 2, 3)
    assert converted[..., 0].tolist() == [[0, 128], [255, 0]]
