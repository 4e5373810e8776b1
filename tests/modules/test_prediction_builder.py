"""The one prediction builder of the inversion modules, and LSAP_E's validation metrics
against ``lsap evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image

from lsap.callbacks import InversionWriter
from lsap.data import ImageDataModule, SyntheticDataset
from lsap.metrics import NSCD
from lsap.modules import LSAP_E, LSAP_O, PTI
from lsap.results import split_pending

from conftest import small_source
from test_lsap_e import tiny_encoder


def lsap_o(tmp_path: Path, **overrides) -> LSAP_O:
    settings = dict(space="w+", num_steps=2, lambda_lpips=0.0, lambda_mse=1.0, anchor_samples=300,
                    w_std_samples=300, anchor_cache_dir=str(tmp_path / "anchors"), progress=False)
    settings.update(overrides)
    return LSAP_O(small_source(), **settings)


def independent_nscd(module, ws: torch.Tensor) -> torch.Tensor:
    """Per-image NSCD through the metric (its own alignment), one image at a time."""
    values = []
    for code in ws:
        metric = NSCD(generator=module.generator, anchors=module.anchors)
        metric.update(code[None])
        values.append(float(metric.compute()))
    return torch.tensor(values)


def test_build_prediction_fills_every_entry_and_computes_nscd(tmp_path: Path) -> None:
    module = lsap_o(tmp_path)
    G = module.generator
    ws = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1)))
    image = 3 * torch.randn(3, 3, 32, 32)  # outside [-1, 1] on purpose
    pending = split_pending({"path": ["a.png", "b.png", "c.png", "d.png"], "done": [False, True, False, False]})[1]
    out = module.build_prediction(pending, ws.requires_grad_(True), image, {"mse": torch.ones(3, 1)},
                                  meta={"method": "x"}, noise=["n"])
    assert out["path"] == ["a.png", "c.png", "d.png"] and out["skipped"] == ["b.png"]
    assert not out["ws"].requires_grad and out["image"].abs().max() <= 1
    assert out["losses"]["mse"].shape == (3,)
    assert out["meta"] == {"method": "x", "generator_hash": module.generator_hash}
    assert out["noise"] == ["n"]
    assert out["nscd_layers"].shape == (3, module.nscd_loss.alignment.distances(ws[:1]).shape[1])
    assert out["nscd"].dtype == torch.float32
    torch.testing.assert_close(out["nscd"].double(), independent_nscd(module, ws.detach()).double(),
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["nscd"], out["nscd_layers"].mean(1))
    with pytest.raises(ValueError, match="one code and one image"):
        module.build_prediction(split_pending({"path": ["a.png"]})[1], ws, image, {}, meta={})


def test_the_three_modules_report_the_metric_nscd_of_their_codes(tmp_path: Path) -> None:
    embed = lsap_o(tmp_path)
    data = SyntheticDataset(embed.generator, 3, seed=1)
    loader = torch.utils.data.DataLoader(data, batch_size=3)

    def predict(module, out_dir: Path):
        trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False,
                          enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                          callbacks=[InversionWriter(str(out_dir), keep_outputs=True)])
        return trainer.predict(module, loader)[0]

    encoder = LSAP_E(generator=small_source(), encoder=tiny_encoder(), loss_resolution=32,
                     anchor_samples=300, anchor_cache_dir=str(tmp_path / "anchors"))
    pivots = tmp_path / "pivots"
    outputs = {"lsap_o": predict(embed, pivots), "lsap_e": predict(encoder, tmp_path / "enc")}
    outputs["pti"] = predict(PTI(small_source(), pivots_dir=str(pivots), num_steps=1, anchor_samples=300,
                                 anchor_cache_dir=str(tmp_path / "anchors"), loss_resolution=32, progress=False),
                             tmp_path / "pti")
    for method, out in outputs.items():
        assert out["meta"]["method"] == method and out["meta"]["generator_hash"] == embed.generator_hash
        assert out["image"].abs().max() <= 1
        torch.testing.assert_close(out["nscd"].double(), independent_nscd(embed, out["ws"]).double(),
                                   atol=1e-6, rtol=1e-5, msg=method)
    torch.testing.assert_close(outputs["pti"]["ws"], outputs["lsap_o"]["ws"])


def test_lsap_e_validation_reports_what_lsap_evaluate_reports(tmp_path: Path) -> None:
    from lsap.evaluation import evaluate

    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(8, 8, 3))
    for i in range(5):
        pixels = np.kron(base + 20 * i, np.ones((4, 4, 1))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    module = LSAP_E(generator=small_source(), encoder=tiny_encoder(), loss_resolution=32,
                    anchor_samples=300, anchor_cache_dir=str(tmp_path / "anchors"))
    data = ImageDataModule(val_dir=str(folder), predict_dir=str(folder), resolution=32, batch_size=2,
                           num_workers=0)
    out = tmp_path / "out"
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=[InversionWriter(str(out))])
    validated = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer.predict(module, datamodule=data)
    report = evaluate(results_dir=str(out), real=str(folder), output=str(tmp_path / "report"))
    text = json.dumps(report)
    for name in ("mse", "psnr", "ssim"):
        evaluated = report["metrics"][name]["mean"] if "metrics" in report else report[name]["mean"]
        assert validated[f"val/{name}"] == pytest.approx(evaluated, rel=1e-5, abs=1e-6), (name, text[:500])
