"""EditGridCallback: grids reach the logger during validation and prediction."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from lsap.callbacks import EditGridCallback, InversionWriter
from lsap.data import SyntheticDataModule
from lsap.editing import Direction, save_direction
from conftest import small_source

from lsap.model import GeneratorSource
from lsap.modules import LSAP_O


def tiny_source(seed: int = 0) -> GeneratorSource:
    return small_source(16, seed, z_dim=32, w_dim=32, channel_base=512, channel_max=16, w_avg_samples=500)


class _Images:
    def __init__(self) -> None:
        self.added: list[tuple[str, tuple[int, ...], int]] = []

    def add_image(self, tag, image, global_step=0):
        self.added.append((tag, tuple(image.shape), global_step))


class RecordingLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self._experiment = _Images()

    @property
    def experiment(self):
        return self._experiment

    name = "recording"
    version = 0

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class Encoding(LightningModule):
    """A stand-in encoder module: codes are the mapped means of the image pixels (any codes do)."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = tiny_source().build()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def encode(self, images):
        z = images.flatten(1)[:, : self.generator.z_dim] * self.scale
        return self.generator.mapping(z)[:, None].repeat(1, self.generator.num_ws, 1)

    def validation_step(self, batch, batch_idx):
        return None


def test_grids_logged_in_validation(tmp_path, single_thread):
    save_direction(Direction(torch.randn(32), name="d"), tmp_path / "d.pt")
    logger = RecordingLogger()
    callback = EditGridCallback([str(tmp_path / "d.pt"), "stylespace:1:0"], num_images=2, style_std_samples=100)
    trainer = Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=[callback], enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    images = [{"image": torch.rand(3, 16, 16) * 2 - 1} for _ in range(4)]
    trainer.validate(Encoding(), DataLoader(images, batch_size=4), verbose=False)
    # Two images, each a grid of 2 edit rows x 3 strength columns of 16 px with 2 px padding.
    assert [(tag, shape) for tag, shape, _ in logger.experiment.added] == [
        ("edits/0", (3, 2 * 18 + 2, 3 * 18 + 2)), ("edits/1", (3, 2 * 18 + 2, 3 * 18 + 2))]


def test_grids_saved_during_predict(tmp_path, single_thread):
    save_direction(Direction(torch.randn(32), name="d"), tmp_path / "d.pt")
    model = LSAP_O(tiny_source(), num_steps=1, lambda_lpips=0.0, lambda_mse=1.0, anchor_samples=200,
                   w_std_samples=200, anchor_cache_dir=str(tmp_path / "anchors"), progress=False)
    grids = tmp_path / "grids"
    trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=[EditGridCallback([str(tmp_path / "d.pt")], num_images=3, save_dir=str(grids)),
                                 InversionWriter(str(tmp_path / "out"))])
    data = SyntheticDataModule(generator=tiny_source(), num_train=0, num_val=0, num_test=0, num_predict=4,
                               batch_size=2, seed=1)
    trainer.predict(model, datamodule=data)
    assert len(sorted(Path(grids).glob("*.png"))) == 3
