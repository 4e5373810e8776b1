"""LSAP_O: the projector schedule, optimisation, batch independence and the Trainer path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from lsap.data import SyntheticDataset
from lsap.model import GeneratorSource
from lsap.modules import LSAP_O
from lsap.modules.lsap_o import latent_noise_at, learning_rate_at
from conftest import small_source


def tiny_source(seed: int = 0) -> GeneratorSource:
    # w_dim <= channels, so the affines are injective and a W code is recoverable.
    return small_source(16, seed, z_dim=32, w_dim=32, channel_max=64)


def make_model(tmp_path: Path, **overrides) -> LSAP_O:
    settings = {"space": "w+", "num_steps": 4, "lambda_lpips": 0.0, "lambda_mse": 1.0, "lambda_nscd": 0.05,
                "anchor_samples": 1000, "w_std_samples": 1000, "anchor_cache_dir": str(tmp_path / "anchors"),
                "progress": False}
    settings.update(overrides)
    return LSAP_O(tiny_source(), **settings)


def synthetic(model: LSAP_O, count: int, truncation_psi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    data = SyntheticDataset(model.generator, count, seed=7, truncation_psi=truncation_psi)
    return torch.stack([data[i]["image"] for i in range(count)]), torch.stack([data[i]["ws"] for i in range(count)])


# ----- schedule ------------------------------------------------------------------------------
def test_learning_rate_ramps_like_the_projector() -> None:
    steps = 1000
    assert learning_rate_at(0, steps, 0.1, 0.05, 0.25) == 0.0
    assert learning_rate_at(25, steps, 0.1, 0.05, 0.25) == pytest.approx(0.05)  # halfway up the linear ramp
    assert learning_rate_at(500, steps, 0.1, 0.05, 0.25) == pytest.approx(0.1)
    # Half-cosine ramp-down over the last quarter: halfway down at 87.5 %.
    assert learning_rate_at(875, steps, 0.1, 0.05, 0.25) == pytest.approx(0.05)
    assert learning_rate_at(999, steps, 0.1, 0.05, 0.25) < 1e-5


def test_latent_noise_decays_quadratically_to_zero() -> None:
    assert latent_noise_at(0, 1000, 2.0, 0.05, 0.75) == pytest.approx(0.1)
    assert latent_noise_at(375, 1000, 2.0, 0.05, 0.75) == pytest.approx(0.1 * 0.25)
    assert latent_noise_at(750, 1000, 2.0, 0.05, 0.75) == 0.0
    assert latent_noise_at(900, 1000, 2.0, 0.05, 0.75) == 0.0


# ----- optimisation --------------------------------------------------------------------------
def test_optimisation_lowers_the_loss_and_recovers_a_known_code(tmp_path: Path) -> None:
    model = make_model(tmp_path, space="w", optimize_noise=False, num_steps=40, learning_rate=0.03,
                       lambda_nscd=0.0, latent_noise=0.0)
    images, true_ws = synthetic(model, 2, truncation_psi=0.5)
    start = model.generator.w_avg.expand_as(true_ws)
    with torch.no_grad():
        start_mse = (model.generator.synthesis(start) - images).square().mean(dim=(1, 2, 3))
    result = model.invert(images, ["a.png", "b.png"])
    assert torch.all(result.losses["mse"] < start_mse / 3)
    start_error = (start - true_ws).norm(dim=-1).mean(dim=1)
    final_error = (result.ws - true_ws).norm(dim=-1).mean(dim=1)
    assert torch.all(final_error < 0.9 * start_error), (start_error, final_error)
    # W space: one code broadcast over all layers.
    assert torch.equal(result.ws, result.ws[:, :1].expand_as(result.ws))


def test_nscd_term_aligns_the_codes(tmp_path: Path) -> None:
    images, _ = synthetic(make_model(tmp_path), 2)
    plain = make_model(tmp_path, num_steps=12, lambda_nscd=0.0).invert(images, ["a", "b"])
    aligned = make_model(tmp_path, num_steps=12, lambda_nscd=1.0).invert(images, ["a", "b"])
    assert aligned.nscd.mean() < plain.nscd.mean() - 1e-3
    assert plain.nscd_layers.shape == (2, plain.ws.shape[1])
    torch.testing.assert_close(plain.nscd, plain.nscd_layers.mean(dim=1))


def test_a_batch_gives_the_same_codes_as_images_one_by_one(tmp_path: Path) -> None:
    # The guarantee is mathematical (summed per-image losses, per-image seeds), not bitwise:
    # another batch size rounds differently and the optimisation amplifies that (README,
    # bench/batch_independence.py). On this tiny generator 6 steps stay within 1e-4.
    # Every source of randomness on (noise maps, latent noise), plus NSCD and noise regularisation.
    model = make_model(tmp_path, num_steps=6, latent_noise=0.5)
    images, _ = synthetic(model, 4)
    keys = ["x/0.png", "x/1.png", "y/2.png", "y/3.png"]
    together = model.invert(images, keys)
    for i in range(4):
        alone = model.invert(images[i:i + 1], keys[i:i + 1])
        torch.testing.assert_close(together.ws[i:i + 1], alone.ws, atol=1e-4, rtol=1e-4)
        for batched, single in zip(together.noise, alone.noise):
            torch.testing.assert_close(batched[i:i + 1], single, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(together.losses["total"][i:i + 1], alone.losses["total"], atol=1e-4, rtol=1e-3)
    # Distinct images get distinct random draws: swapping keys changes the result.
    swapped = model.invert(images[:2], [keys[1], keys[0]])
    assert not torch.allclose(swapped.ws, together.ws[:2], atol=1e-4)


def test_the_same_batch_gives_bit_identical_results(tmp_path: Path) -> None:
    model = make_model(tmp_path, num_steps=6, latent_noise=0.5)
    images, _ = synthetic(model, 3)
    keys = ["a.png", "b.png", "c.png"]
    first, second = model.invert(images, keys), model.invert(images, keys)
    assert torch.equal(first.ws, second.ws) and all(torch.equal(a, b) for a, b in zip(first.noise, second.noise))


def test_prediction_under_inference_mode_is_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    batch = {"image": torch.zeros(1, 3, 16, 16), "path": ["a.png"], "index": torch.tensor([0])}
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode=False"):
        model.predict_step(batch, 0)


def test_trainer_predict_returns_per_image_results(tmp_path: Path) -> None:
    model = make_model(tmp_path, num_steps=2)
    data = SyntheticDataset(model.generator, 3, seed=1)
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    outputs = trainer.predict(model, loader)
    assert [o["path"] for o in outputs] == [["000000", "000001"], ["000002"]]
    first = outputs[0]
    assert first["ws"].shape == (2, model.generator.num_ws, model.generator.w_dim)
    assert first["image"].shape == (2, 3, 16, 16) and first["image"].abs().max() <= 1
    assert set(first["losses"]) == {"mse", "nscd_loss", "noise_reg", "total"}
    assert all(v.shape == (2,) and torch.isfinite(v).all() for v in first["losses"].values())
    assert first["meta"]["method"] == "lsap_o" and first["meta"]["space"] == "w+"
    assert not math.isnan(float(first["nscd"].mean()))


@pytest.mark.slow
def test_ddp_predict_splits_images_across_two_processes(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    config = Path(__file__).resolve().parents[2] / "configs" / "optimize_demo.yaml"
    out = tmp_path / "out"
    env = {**os.environ, "LSAP_CACHE_DIR": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "lsap", "predict", "--config", str(config), "--trainer.devices", "2",
            "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(tmp_path / "root"),
            "--trainer.callbacks.init_args.output_dir", str(out), "--model.init_args.num_steps", "5",
            "--model.init_args.anchor_samples", "300", "--model.init_args.w_std_samples", "300",
            "--model.init_args.progress", "false", "--data.init_args.batch_size", "1",
            "--trainer.enable_progress_bar", "false"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 4
    assert len(list((out / "codes").rglob("*.pt"))) == 4
