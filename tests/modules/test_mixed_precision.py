"""bf16 mixed precision on CPU: LSAP_E and LSAP_O train / optimise under autocast and
through Lightning's ``precision="bf16-mixed"``, and the generator stays close to fp32."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Trainer

from lsap.data import SyntheticDataset
from lsap.encoders import Encoder4Editing
from lsap.model import GeneratorSource
from lsap.modules import LSAP_E, LSAP_O

from conftest import small_source


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_generator_bf16_is_close_to_fp32():
    """bf16 rounds each value to 8 mantissa bits (~4e-3 relative); through ~10 layers of
    convolutions the image error stays at a few percent of its range. 0.1 of the fp32
    image's range bounds it with margin while any wrong path (errors ~1) fails."""
    g = small_source().build()
    torch.manual_seed(0)
    ws = g.mapping(torch.randn(3, g.z_dim))
    ref = g.synthesis(ws)
    for fused in (True, False):
        g.fused_modconv = fused
        with bf16():
            low = g.synthesis(ws)
        assert torch.isfinite(low).all()
        err = (low.float() - ref).abs().max() / (ref.max() - ref.min())
        assert err < 0.1, (fused, err)


def test_lsap_e_training_steps_under_bf16_lower_the_loss(tmp_path: Path):
    torch.manual_seed(0)
    encoder = Encoder4Editing(num_ws=8, input_size=32, blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 16, 32, 32])
    module = LSAP_E(generator=small_source(), encoder=encoder, loss_resolution=32, anchor_samples=300,
                    anchor_cache_dir=str(tmp_path / "anchors"), progressive_start=0, progressive_every=2)
    g = module.generator
    with torch.no_grad():
        batch = {"image": g.synthesis(g.mapping(torch.randn(4, g.z_dim))).clamp(-1, 1)}
    opt = torch.optim.Adam(module.encoder.parameters(), lr=1e-3)
    totals = []
    for _ in range(6):
        with bf16():
            ws = module.encode(batch["image"])
            losses = module.training_losses(batch, ws, module.decode(ws), active=3)
        assert torch.isfinite(losses["total"])
        opt.zero_grad()
        losses["total"].float().backward()
        opt.step()
        totals.append(float(losses["total"]))
    assert min(totals[-2:]) < totals[0], totals


def _lsap_o(tmp_path: Path, **overrides) -> LSAP_O:
    source = GeneratorSource(seed=0, resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024,
                             channel_max=64, w_avg_samples=1000)
    settings = {"space": "w+", "num_steps": 4, "lambda_lpips": 0.0, "lambda_mse": 1.0, "lambda_nscd": 0.05,
                "anchor_samples": 1000, "w_std_samples": 1000, "anchor_cache_dir": str(tmp_path / "anchors"),
                "progress": False}
    settings.update(overrides)
    return LSAP_O(source, **settings)


def test_lsap_o_under_bf16_lowers_the_loss(tmp_path: Path):
    model = _lsap_o(tmp_path, space="w", optimize_noise=False, num_steps=20, learning_rate=0.03, lambda_nscd=0.0,
                    latent_noise=0.0)
    data = SyntheticDataset(model.generator, 2, seed=7, truncation_psi=0.5)
    images = torch.stack([data[i]["image"] for i in range(2)])
    start = model.generator.w_avg.expand(2, model.generator.num_ws, -1)
    with torch.no_grad():
        start_mse = (model.generator.synthesis(start) - images).square().mean(dim=(1, 2, 3))
    with bf16():
        result = model.invert(images, ["a.png", "b.png"])
    assert torch.isfinite(result.ws).all()
    assert torch.all(result.losses["mse"].float() < start_mse), (result.losses["mse"], start_mse)


def test_lightning_bf16_mixed_predict_runs(tmp_path: Path):
    model = _lsap_o(tmp_path, num_steps=2)
    loader = torch.utils.data.DataLoader(SyntheticDataset(model.generator, 2, seed=1), batch_size=2)
    trainer = Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", inference_mode=False, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    (out,) = trainer.predict(model, loader)
    assert torch.isfinite(out["ws"]).all() and torch.isfinite(out["image"]).all()
    assert all(torch.isfinite(v).all() for v in out["losses"].values())
