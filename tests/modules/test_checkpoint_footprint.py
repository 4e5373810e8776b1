"""Checkpoints of the inversion modules hold what training changes, never the frozen parts,
and still resume and load."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from lightning.pytorch import Trainer
from torch import nn

from lsap.data import SyntheticDataModule
from lsap.modules import LSAP_E

from conftest import small_source
from test_lsap_e import make_module, tiny_encoder

REPO = Path(__file__).resolve().parents[2]


class FrozenStatistics(nn.Module):
    """A frozen part with buffers only (as anchors or feature statistics are)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.randn(1000))


def with_frozen_parts(tmp_path: Path) -> LSAP_E:
    module = make_module(tmp_path, lpips=frozen_feature_distance())
    module.statistics = FrozenStatistics()
    return module


def frozen_feature_distance():
    from lsap.nets import FeatureDistance

    return FeatureDistance(network=nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), layers=["0"])


def nbytes(state) -> int:
    return sum(v.numel() * v.element_size() for v in state.values())


def test_a_trained_checkpoint_holds_the_encoder_only_and_resumes_and_loads(tmp_path: Path) -> None:
    data = SyntheticDataModule(generator=small_source(), num_train=8, num_val=0, num_test=0, batch_size=4)

    def trainer(steps: int) -> Trainer:
        return Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                       enable_model_summary=False, default_root_dir=tmp_path, enable_checkpointing=False)

    module = with_frozen_parts(tmp_path)
    assert set(module.frozen_prefixes()) == {"generator.", "lpips.", "statistics."}
    first = trainer(2)
    first.fit(module, datamodule=data)
    path = tmp_path / "step2.ckpt"
    first.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    kept = saved["state_dict"]
    assert {k.split(".")[0] for k in kept} == {"encoder", "latent_avg"}
    assert nbytes(kept) == nbytes(module.encoder.state_dict()) + nbytes({"a": module.latent_avg})
    full = nbytes(module.state_dict())
    assert nbytes(kept) < full - nbytes(module.generator.state_dict()) + 1

    resumed = trainer(3)
    fresh = with_frozen_parts(tmp_path)
    fresh.statistics.mean.copy_(module.statistics.mean)  # a frozen part comes from the configuration
    resumed.fit(fresh, datamodule=data, ckpt_path=str(path))
    assert resumed.global_step == 3
    torch.testing.assert_close(fresh.generator.w_avg, module.generator.w_avg)

    reloaded = LSAP_E.load_from_checkpoint(path, encoder=tiny_encoder(), lpips=frozen_feature_distance(),
                                           strict=False)
    images = torch.zeros(1, 3, 32, 32)
    module.encoder.progressive_stage = reloaded.encoder.progressive_stage
    torch.testing.assert_close(reloaded.encode(images), module.encode(images))


def test_an_older_checkpoint_with_frozen_weights_still_loads(tmp_path: Path) -> None:
    module = make_module(tmp_path)
    old = {"state_dict": dict(module.state_dict())}  # as checkpoints once were: everything
    key = next(k for k in old["state_dict"] if k.startswith("generator.") and old["state_dict"][k].is_floating_point())
    old["state_dict"][key] = old["state_dict"][key] + 1  # stale frozen weights
    other = make_module(tmp_path)
    other.on_load_checkpoint(old)
    other.load_state_dict(old["state_dict"])
    torch.testing.assert_close(other.state_dict()[key], module.state_dict()[key])  # the configured generator wins
    torch.testing.assert_close(other.encode(torch.zeros(1, 3, 32, 32)), module.encode(torch.zeros(1, 3, 32, 32)))


def test_demo_keeps_one_resumable_checkpoint() -> None:
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    checkpoints = [c["init_args"] for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert len(checkpoints) == 1
    assert checkpoints[0]["save_last"] is True and checkpoints[0]["save_top_k"] == 0
    assert not checkpoints[0].get("save_weights_only"), "last.ckpt must resume"
