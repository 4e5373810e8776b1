"""ReconstructionGridCallback: grids reach the logger, and the end-of-fit PNG is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lsap.callbacks import ReconstructionGridCallback


class Images(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": torch.full((3, 8, 8), -1.0 + 0.5 * i)}


class Negate(LightningModule):
    """Reconstructs an image as its negative, so inputs and reconstructions differ."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def training_step(self, batch, batch_idx):
        recon = -self.scale * batch["image"]
        return {"loss": (recon - batch["image"]).square().mean(), "recon": recon.detach()}

    def validation_step(self, batch, batch_idx):
        return {"recon": -self.scale.detach() * batch["image"]}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class Experiment:
    def __init__(self) -> None:
        self.images: list[tuple[str, int, tuple[int, ...]]] = []

    def add_image(self, tag, image, global_step):
        self.images.append((tag, global_step, tuple(image.shape)))


class RecordingLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self._experiment = Experiment()

    name, version = "recording", 0

    @property
    def experiment(self) -> Experiment:
        return self._experiment

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass


def test_grids_are_logged_and_the_png_lands_next_to_the_checkpoints(tmp_path: Path) -> None:
    logger = RecordingLogger()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    trainer = Trainer(accelerator="cpu", max_steps=3, val_check_interval=3, check_val_every_n_epoch=None, logger=logger,
                      callbacks=[checkpoints, ReconstructionGridCallback(every_n_steps=2, num_images=3)],
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      default_root_dir=tmp_path)
    loader = DataLoader(Images(), batch_size=4)
    trainer.fit(Negate(), loader, loader)
    tags = [(tag, step) for tag, step, _ in logger.experiment.images]
    assert tags == [("train/reconstructions", 0), ("train/reconstructions", 2), ("val/reconstructions", 3)]
    # Two rows (inputs, reconstructions) of three 8 px images with 2 px padding.
    assert {shape for _, _, shape in logger.experiment.images} == {(3, 2 * 10 + 2, 3 * 10 + 2)}
    png = np.asarray(Image.open(tmp_path / "ckpt" / "reconstructions.png"))
    # Enlarged to at least 128 px per image: 16 x 8 px.
    assert png.shape == (2 * 130 + 2, 3 * 130 + 2, 3)
    first_input, first_recon = png[2:130, 2:130], png[132:260, 2:130]
    assert (first_input == 0).all() and (first_recon == 255).all()  # -1 and its negative +1


class TinyInverter(LightningModule):
    """Reconstructs every image as the generator's image of a fixed code."""

    def __init__(self, generator: torch.nn.Module, ws: torch.Tensor) -> None:
        super().__init__()
        self.generator, self.codes = generator, ws
        self.scale = torch.nn.Parameter(torch.ones(()))

    def training_step(self, batch, batch_idx):
        return (self.scale - 1).square()

    def validation_step(self, batch, batch_idx):
        ws = self.codes[: batch["image"].shape[0]]
        return {"recon": self.generator.synthesis(ws).clamp(-1, 1), "ws": ws}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_an_edit_adds_a_third_row_rendered_from_the_edited_codes(tmp_path: Path) -> None:
    from conftest import small_source

    from lsap.visualize import image_grid, save_image_grid

    generator = small_source(resolution=8).build().eval()
    ws = generator.mapping(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(1)))
    direction = torch.nn.functional.normalize(torch.randn(1, generator.w_dim), dim=1)
    torch.save(direction, tmp_path / "dir.pt")
    callback = ReconstructionGridCallback(every_n_steps=0, num_images=3, min_png_size=8, edit=str(tmp_path / "dir.pt"),
                                          edit_strength=2.0)
    trainer = Trainer(accelerator="cpu", max_steps=1, val_check_interval=1, check_val_every_n_epoch=None, logger=False,
                      callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, default_root_dir=tmp_path, enable_checkpointing=False)
    loader = DataLoader(Images(), batch_size=4)
    trainer.fit(TinyInverter(generator, ws), loader, loader)
    with torch.no_grad():
        images = torch.stack([Images()[i]["image"] for i in range(3)])
        recon = generator.synthesis(ws[:3]).clamp(-1, 1)
        edited = generator.synthesis(ws[:3] + 2.0 * direction).clamp(-1, 1)
    save_image_grid(image_grid([images, recon, edited]), tmp_path / "expected.png")
    written = np.asarray(Image.open(tmp_path / "reconstructions.png")).astype(int)
    expected = np.asarray(Image.open(tmp_path / "expected.png")).astype(int)
    assert written.shape == expected.shape == (3 * 10 + 2, 3 * 10 + 2, 3)
    assert np.abs(written - expected).max() <= 1
    assert np.abs(written[22:30] - written[12:20]).max() > 0  # the edit changed the images


class LabelledImages(Dataset):
    """Six images of classes 2, 0, 2, 5, 0, 5: the first of each class are items 1, 0 and 3."""

    labels = [2, 0, 2, 5, 0, 5]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((3, 8, 8), -1.0 + 0.3 * i), "label": self.labels[i]}


class TinyEncoderModule(LightningModule):
    """encode: a fixed code per image brightness; decode: the generator's image of it."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.scale = torch.nn.Parameter(torch.ones(()))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        z = images.mean(dim=(1, 2, 3))[:, None] * torch.linspace(-1, 1, self.generator.z_dim)
        return self.generator.mapping(z)[:, None].expand(-1, self.generator.num_ws, -1)

    def decode(self, ws: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesis(ws, noise_mode="const")

    def training_step(self, batch, batch_idx):
        return (self.scale - 1).square()

    def validation_step(self, batch, batch_idx):
        return {"recon": batch["image"]}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_first_index_per_class_keeps_the_lowest_index_in_class_order() -> None:
    from lsap.callbacks.reconstruction_grid import first_index_per_class

    assert first_index_per_class(LabelledImages.labels) == [1, 0, 3]
    assert first_index_per_class([9, 9, 7, 0]) == [3, 2, 0]


def test_one_per_class_grid_edits_each_column_along_its_class_direction(tmp_path: Path) -> None:
    from conftest import small_source

    from lsap.editing import load_direction
    from lsap.visualize import image_grid

    generator = small_source(resolution=8).build().eval()
    for name, seed in (("up", 1), ("down", 2)):
        vector = torch.randn(1, generator.w_dim, generator=torch.Generator().manual_seed(seed))
        torch.save(vector, tmp_path / f"{name}.pt")
    table = {0: str(tmp_path / "up.pt"), 2: str(tmp_path / "down.pt"), 5: None}
    callback = ReconstructionGridCallback(every_n_steps=0, min_png_size=16, columns="one_per_class",
                                          class_edits=table, edit_strength=2.0, edit_unit="std",
                                          class_names=["zero", "one", "two", "three", "four", "five"])
    assert [callback.edit_for_class(c) for c in (0, 2, 5, 1)] == [table[0], table[2], None, None]
    trainer = Trainer(accelerator="cpu", max_steps=1, val_check_interval=1, check_val_every_n_epoch=None, logger=False,
                      callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, default_root_dir=tmp_path, enable_checkpointing=False)
    module = TinyEncoderModule(generator)
    trainer.fit(module, DataLoader(LabelledImages(), batch_size=2), DataLoader(LabelledImages(), batch_size=2))

    # Independent computation: columns are items 1, 0, 3 (classes 0, 2, 5), each edited
    # by 2 std of sampled w along its own direction; class 5 has no edit (a black tile).
    images = torch.stack([LabelledImages()[i]["image"] for i in (1, 0, 3)])
    with torch.no_grad():
        ws = module.encode(images)
        recon = module.decode(ws).clamp(-1, 1)
        edited = torch.full_like(recon, -1.0)
        for j, name in ((0, "up"), (1, "down")):
            direction = load_direction(tmp_path / f"{name}.pt")
            unit = direction.in_std_units(generator)
            edited[j] = module.decode(ws[j:j + 1] + 2.0 * unit.vector.to(ws))[0].clamp(-1, 1)
    expected = np.asarray(Image.fromarray(
        ((image_grid([images, recon, edited], upscale=2) + 1) * 127.5).round().clamp(0, 255).byte()
        .permute(1, 2, 0).numpy())).astype(int)
    written = np.asarray(Image.open(tmp_path / "reconstructions.png")).astype(int)
    grid_height = 3 * 18 + 2
    # 3 rows of 16 px images (8 px enlarged twice), 3 columns, a label strip of 3 lines below.
    assert written.shape == (grid_height + 3 * 12 + 2, 3 * 18 + 2, 3)
    diff = np.abs(written[:grid_height] - expected).max(axis=(1, 2))
    assert diff.max() <= 1, [(i, int(d)) for i, d in enumerate(diff) if d > 1]
    assert np.abs(written[38:54, 2:18] - written[20:36, 2:18]).max() > 0  # edited
    assert (written[2 + 2 * 18:2 + 2 * 18 + 16, 2 + 2 * 18:2 + 2 * 18 + 16] == 0).all()  # no edit: black
    strip = written[grid_height:]
    assert strip.min() < 128 and (strip[:, 0] == 255).all()  # text, black on white


def test_class_edits_need_the_one_per_class_columns() -> None:
    from lsap.errors import BadValueError

    with pytest.raises(BadValueError, match="one_per_class"):
        ReconstructionGridCallback(class_edits={0: "sneaker_to_boot"})
    with pytest.raises(BadValueError, match="edit_unit"):
        ReconstructionGridCallback(edit_unit="sigma")  # type: ignore[arg-type]


def test_one_per_class_needs_labels(tmp_path: Path) -> None:
    from conftest import small_source

    from lsap.errors import BadValueError

    callback = ReconstructionGridCallback(every_n_steps=0, columns="one_per_class")
    trainer = Trainer(accelerator="cpu", max_steps=1, val_check_interval=1, check_val_every_n_epoch=None, logger=False,
                      callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, default_root_dir=tmp_path, enable_checkpointing=False)
    with pytest.raises(BadValueError, match="labels"):
        trainer.fit(TinyEncoderModule(small_source(resolution=8).build().eval()), DataLoader(Images(), batch_size=2),
                    DataLoader(Images(), batch_size=2))
