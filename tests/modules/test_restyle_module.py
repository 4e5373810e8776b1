"""ReStyle module: per-batch random step counts, LSAP_E's losses on the last step, prediction
with N steps in the results layout, and the configs run (configs/restyle_fashion32.yaml both
fits and predicts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from lsap.callbacks import InversionWriter
from lsap.data import FashionSamplesDataModule
from lsap.encoders import Encoder4Editing
from lsap.encoders.restyle import restyle_invert
from lsap.modules import ReStyle
from lsap.results import InversionResults

from conftest import in_repo_layout, run_lsap, small_source

REPO = Path(__file__).resolve().parents[2]


def encoder(channels: int = 6) -> Encoder4Editing:
    return Encoder4Editing(num_ws=8, input_size=32, input_channels=channels, blocks_per_stage=[1, 1, 1, 1],
                           stage_channels=[8, 16, 32, 48])


def make_module(tmp_path, **kwargs) -> ReStyle:
    settings = dict(generator=small_source(), encoder=encoder(), loss_resolution=32, anchor_samples=300,
                    anchor_cache_dir=str(tmp_path / "anchors"), progressive_start=0, progressive_every=1)
    settings.update(kwargs)
    return ReStyle(**settings)


def test_needs_a_six_channel_encoder(tmp_path):
    with pytest.raises(ValueError, match="input_channels: 6"):
        make_module(tmp_path, encoder=encoder(3))


def test_training_draws_1_to_n_steps_per_batch_reproducibly(tmp_path):
    module = make_module(tmp_path, num_steps=4)
    counts = [module.training_step_count(step) for step in range(60)]
    assert set(counts) == {1, 2, 3, 4}
    assert counts == [module.training_step_count(step) for step in range(60)]  # a resumed run draws the same
    assert module.training_step_count() == counts[0]  # global step 0 outside a trainer
    module.train_max_steps = 2
    assert {module.training_step_count(step) for step in range(30)} == {1, 2}


def test_training_step_runs_the_drawn_steps_with_gradients_on_the_last(tmp_path):
    module = make_module(tmp_path, num_steps=3).train()
    calls = []
    module.encoder.register_forward_hook(lambda *args: calls.append(torch.is_grad_enabled()))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    steps = module.training_step_count()
    ws, recon = module(images)
    assert len(calls) == steps and calls[-1] and not any(calls[:-1])
    losses = module.training_losses({"image": images}, ws, recon, active=8)
    assert {"l2", "delta", "nscd", "total"} <= set(losses)
    losses["total"].backward()
    assert any(p.grad is not None for p in module.encoder.parameters())
    module.eval()
    calls.clear()
    with torch.no_grad():
        ws_eval, _ = module(images)
        expected = restyle_invert(module.encoder, module.generator, images, module.latent_avg, 3).final_ws
    assert len(calls) == 6  # 3 steps in the module, 3 in the independent computation
    torch.testing.assert_close(ws_eval, expected)


def test_predict_writes_restyle_results(tmp_path):
    module = make_module(tmp_path, num_steps=2)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[InversionWriter(output_dir=str(tmp_path / "out"))])
    trainer.predict(module, datamodule=FashionSamplesDataModule(limit=2, val_batch_size=2))
    records = list(InversionResults(tmp_path / "out"))
    assert len(records) == 2 and records[0].meta["method"] == "restyle" and records[0].meta["restyle_steps"] == 2
    assert records[0].refinement is None  # a plain embedding: editing renders it with the generator


@pytest.mark.parametrize("config", ["restyle_fashion32_lsap.yaml"])
def test_config_fits_a_few_steps(tmp_path, config):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lsap", "fit", "--config", str(REPO / "configs" / config),
               "--trainer.max_steps", "2", "--trainer.logger", "false",
               "--trainer.default_root_dir", str(tmp_path / "logs"),
               "--trainer.callbacks.init_args.dirpath", str(tmp_path / "ckpt"),
               "--data.init_args.num_train", "32",
               "--model.init_args.anchor_cache_dir", str(tmp_path / "anchors")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()


def test_one_config_fits_from_the_shipped_encoder(tmp_path):
    from lsap.encoders.restyle import load_restyle_encoder

    work = in_repo_layout(tmp_path)
    run_lsap(work, "fit", "--config", "configs/restyle_fashion32.yaml", "--trainer.max_steps", "2",
             "--trainer.logger", "false", "--data.init_args.num_train", "16")
    last = work / "lightning_logs" / "restyle_fashion32" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert not (work / "outputs").exists(), "fit must not write predictions"
    trained = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    shipped = load_restyle_encoder(REPO / "lsap" / "assets" / "encoders" / "fashion32_restyle_lsap.pt").encoder
    pairs = [(trained[f"encoder.{k}"].float(), v.float()) for k, v in shipped.state_dict().items()
             if v.is_floating_point() and f"encoder.{k}" in trained]
    assert len(pairs) == sum(1 for v in shipped.state_dict().values() if v.is_floating_point())
    step = torch.cat([(a - b).flatten() for a, b in pairs]).norm()
    size = torch.cat([b.flatten() for _, b in pairs]).norm()
    assert 0 < step < 0.05 * size, "two steps from the shipped encoder: changed, and only a little"


def test_one_config_predicts_with_the_shipped_encoder(tmp_path):
    from lsap.data import FashionSamplesDataset
    from lsap.encoders.restyle import load_restyle_encoder
    from lsap.model import GeneratorSource

    work = in_repo_layout(tmp_path)
    run_lsap(work, "predict", "--config", "configs/restyle_fashion32.yaml", "--data.init_args.limit", "2")
    records = sorted(InversionResults(work / "outputs" / "restyle_fashion32"), key=lambda r: r.name)
    assert len(records) == 2 and all(r.meta["method"] == "restyle" and r.meta["restyle_steps"] == 5 for r in records)
    # The same inversion computed here from the shipped file and the shipped images.
    loaded = load_restyle_encoder(REPO / "lsap" / "assets" / "encoders" / "fashion32_restyle_lsap.pt")
    generator = GeneratorSource(checkpoint="fashion32").build().eval()
    images = FashionSamplesDataset(limit=2)
    batch = torch.stack([images[i]["image"] for i in range(2)])
    with torch.no_grad():
        expected = restyle_invert(loaded.encoder.float().eval(), generator, batch,
                                  loaded.latent_avg.reshape(-1, generator.w_dim)[0], 5).final_ws
    by_name = {item["name"]: i for i, item in enumerate(images[i] for i in range(2))}
    for record in records:
        torch.testing.assert_close(record.load_code()["ws"].float(), expected[by_name[record.name]],
                                   atol=1e-4, rtol=1e-4)
