"""LSAP_E: the module, the progressive schedule, and real runs through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lsap.encoders import Encoder4Editing
from lsap.modules import LSAP_E
from lsap.modules.lsap_e import progressive_stage

from conftest import small_source

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo_synthetic.yaml"


def tiny_encoder(num_ws: int = 8, input_size: int = 32) -> Encoder4Editing:
    return Encoder4Editing(num_ws=num_ws, input_size=input_size, blocks_per_stage=[1, 1, 1, 1],
                           stage_channels=[8, 16, 32, 32])


def make_module(tmp_path, **kwargs) -> LSAP_E:
    defaults = dict(generator=small_source(), encoder=tiny_encoder(), loss_resolution=32, anchor_samples=300,
                    anchor_cache_dir=str(tmp_path / "anchors"), progressive_start=0, progressive_every=2)
    defaults.update(kwargs)
    return LSAP_E(**defaults)


def test_progressive_schedule():
    assert [progressive_stage(s, 8, start=10, every=5) for s in (0, 9, 10, 14, 15, 100)] == [0, 0, 1, 1, 2, 7]


def test_encoder_generator_num_ws_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"num_ws=18 .* num_ws=8: set model.init_args.encoder.init_args.num_ws: 8"):
        make_module(tmp_path, encoder=tiny_encoder(num_ws=18))


def test_training_step_loss_terms_and_gradients(tmp_path):
    module = make_module(tmp_path)
    g = module.generator
    ws_true = g.mapping(torch.randn(4, g.z_dim))
    batch = {"image": g.synthesis(ws_true).clamp(-1, 1)}
    ws = module.encode(batch["image"])
    assert ws.shape == (4, g.num_ws, g.w_dim)
    losses = module.training_losses(batch, ws, module.decode(ws), active=3)
    assert set(losses) == {"l2", "delta", "nscd", "total"}
    w = module.loss_weights
    expected = sum(w[k] * losses[k] for k in ("l2", "delta", "nscd"))
    torch.testing.assert_close(losses["total"], expected)
    torch.testing.assert_close(losses["nscd"], module.nscd_loss(ws, active_layers=3).mean())
    losses["total"].backward()
    assert all(p.grad is None for p in g.parameters()), "the generator is frozen"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.encoder.parameters())


def test_checkpoint_keeps_the_encoder_and_stage_only(tmp_path):
    module = make_module(tmp_path)
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert not any(k.startswith("generator.") for k in ckpt["state_dict"])
    assert any(k.startswith("encoder.") for k in ckpt["state_dict"])
    assert ckpt["lsap_progressive_stage"] == progressive_stage(0, 8, start=0, every=2) == 1
    assert module.frozen_prefixes() == ("generator.",)
    # Loading fills the frozen part back from the configured module; strict loading still
    # catches a missing encoder entry.
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])
    broken = {"state_dict": {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("encoder.")}}
    module.on_load_checkpoint(broken)
    with pytest.raises(RuntimeError, match="Missing key"):
        module.load_state_dict(broken["state_dict"])


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(cwd / "cache")}
    proc = subprocess.run([sys.executable, "-m", "lsap", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


FAST = [
    "--config", str(DEMO), "--data.init_args.num_train", "32", "--data.init_args.num_val", "8",
    "--data.init_args.num_test", "8", "--model.init_args.anchor_samples", "300",
    "--trainer.val_check_interval", "4", "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
]


@pytest.mark.slow
def test_demo_fit_through_the_cli_writes_checkpoint_logs_and_png_then_resumes(tmp_path):
    root = tmp_path / "run"
    args = [*FAST, "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root)]
    run_cli(["fit", *args, "--trainer.max_steps", "4"], tmp_path)
    version = root / "demo_synthetic" / "version_0"
    last = version / "checkpoints" / "last.ckpt"
    assert last.is_file(), sorted(str(p) for p in root.rglob("*"))
    assert (version / "checkpoints" / "reconstructions.png").is_file()
    assert list(version.glob("events.out.tfevents.*")), "TensorBoard logs"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    assert ckpt["lsap_progressive_stage"] == progressive_stage(4, 8, 0, 30)
    assert not any(k.startswith("generator.") for k in ckpt["state_dict"])

    # Resume: continues from step 4 with the optimiser state, up to the new max_steps.
    run_cli(["fit", *args, "--trainer.max_steps", "6", "--ckpt_path", str(last)], tmp_path)
    resumed = sorted(root.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)[-1]
    ckpt2 = torch.load(resumed, map_location="cpu", weights_only=False)
    assert ckpt2["global_step"] == 6
    assert ckpt2["optimizer_states"][0]["state"], "optimiser state carried over"

    # The trained encoder inverts a folder-free synthetic test split.
    out = run_cli(["test", *args, "--ckpt_path", str(last)], tmp_path)
    assert "test/nscd" in out.stdout + out.stderr


@pytest.mark.slow
def test_demo_fit_with_two_ddp_processes(tmp_path):
    root = tmp_path / "ddp"
    run_cli(["fit", *FAST, "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root),
             "--trainer.max_steps", "2", "--trainer.strategy", "ddp_find_unused_parameters_true",
             "--trainer.devices", "2", "--trainer.val_check_interval", "2"], tmp_path)
    ckpt = torch.load(root / "demo_synthetic" / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert ckpt["global_step"] == 2


def test_typo_in_config_is_rejected_with_a_clear_message(tmp_path):
    env = {**os.environ, "LSAP_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "lsap", "fit", "--config", str(DEMO),
                           "--model.init_args.nscd_wieght", "1.0", "--print_config"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "nscd_wieght" in proc.stderr


def test_encoder_inversion_uses_the_inversion_writer_and_resumes(tmp_path):
    from lightning.pytorch import Trainer

    from lsap.callbacks import InversionWriter
    from lsap.data import SyntheticDataModule

    module = make_module(tmp_path)
    data = SyntheticDataModule(generator=small_source(), num_train=0, num_val=0, num_test=0, num_predict=4,
                               batch_size=2)
    out = tmp_path / "inverted"

    def predict():
        trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                          callbacks=[InversionWriter(out)])
        return trainer.predict(module, datamodule=data)

    first = predict()
    codes = sorted((out / "codes").rglob("*.pt"))
    assert len(codes) == 4 and len(list((out / "images").rglob("*.png"))) == 4
    assert sum(len(p["path"]) for p in first) == 4
    record = next((out / "records").rglob("*.json")).read_text()
    assert '"lsap_e"' in record and '"nscd"' in record
    again = predict()
    assert sum(len(p["path"]) for p in again) == 0, "finished images are not inverted again"
    assert sum(len(p["skipped"]) for p in again) == 4


@pytest.mark.slow
def test_wandb_logger_offline_gets_metrics_and_image_grids(tmp_path):
    run_cli(["fit", *FAST, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
             "--trainer.default_root_dir", str(tmp_path / "root"),
             "--trainer.logger", "lightning.pytorch.loggers.WandbLogger", "--trainer.logger.offline", "true",
             "--trainer.logger.save_dir", str(tmp_path / "wb"), "--trainer.logger.project", "lsap-test"], tmp_path)
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "an offline run, nothing sent anywhere"
    grids = list(runs[0].rglob("media/images/**/reconstructions_*.png"))
    assert grids, "input | reconstruction grids are logged to wandb"


def test_checkpoint_of_a_python_built_module_resumes_and_reloads(tmp_path):
    from lightning.pytorch import Trainer

    from lsap.data import SyntheticDataModule

    data = SyntheticDataModule(generator=small_source(), num_train=8, num_val=0, num_test=0, batch_size=4)

    def trainer(steps):
        return Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                       default_root_dir=tmp_path, enable_model_summary=False)

    module = make_module(tmp_path)
    first = trainer(2)
    first.fit(module, datamodule=data)
    ckpt = tmp_path / "step2.ckpt"
    first.save_checkpoint(ckpt)
    # Hyper-parameters are plain data, so the file loads with weights_only=True.
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["generator"]["resolution"] == 32
    resumed = trainer(3)
    resumed.fit(make_module(tmp_path), datamodule=data, ckpt_path=str(ckpt))
    assert resumed.global_step == 3
    reloaded = LSAP_E.load_from_checkpoint(ckpt, encoder=tiny_encoder())
    # The saved stage is the one the next step trains at.
    assert reloaded.encoder.progressive_stage == progressive_stage(2, 8, start=0, every=2)
    module.encoder.progressive_stage = reloaded.encoder.progressive_stage
    images = torch.zeros(1, 3, 32, 32)
    torch.testing.assert_close(reloaded.encode(images), module.encode(images))


def test_image_grid_layout_and_upscale():
    from lsap.visualize import image_grid

    inputs, recon = -torch.ones(3, 3, 4, 4), torch.ones(3, 3, 4, 4)
    grid = image_grid([inputs, recon], padding=1, upscale=2)
    assert grid.shape == (3, 2 * (8 + 1) + 1, 3 * (8 + 1) + 1)
    assert torch.all(grid[:, 1:9, 1:9] == -1) and torch.all(grid[:, 10:18, 1:9] == 1)
