"""ReconstructionGridCallback: grids reach the logger, and the end-of-fit PNG is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
