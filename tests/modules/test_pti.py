"""PTI refinement: tuning, compact deltas that reproduce the output, and the chained pipeline."""

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
from lsap.losses import LocalityRegularizer, LPIPSLoss
from lsap.model import GeneratorSource
from lsap.model.delta import apply_delta, load_delta
from lsap.modules import LSAP_O, PTI
from lsap.results import load_code
from conftest import small_source


def tiny_source(seed: int = 0) -> GeneratorSource:
    return small_source(16, seed, z_dim=32, w_dim=32, channel_max=64)


def make_pti(tmp_path: Path, **overrides) -> PTI:
    settings = {"pivots_dir": str(tmp_path / "pivots"), "num_steps": 10, "learning_rate": 3e-3,
                "early_stop_lpips": None, "anchor_samples": 1000, "anchor_cache_dir": str(tmp_path / "anchors"),
                "progress": False}
    settings.update(overrides)
    return PTI(tiny_source(), **settings)


def target_and_pivot(model: PTI) -> tuple[torch.Tensor, torch.Tensor]:
    image = SyntheticDataset(model.generator, 1, seed=5)[0]["image"][None]
    pivot = model.generator.w_avg[None, None].expand(1, model.generator.num_ws, -1).clone()
    return image, pivot


def test_tuning_lowers_the_error_and_the_delta_reproduces_the_output(tmp_path: Path) -> None:
    model = make_pti(tmp_path)
    image, pivot = target_and_pivot(model)
    result = model.tune(image, pivot, "face.png")
    losses = result["losses"]
    assert float(losses["mse"]) < 0.8 * float(losses["mse_pivot"])
    assert float(losses["steps"]) == 10

    delta = result["delta"]
    assert delta["deltas"], "nothing was tuned"
    assert all(name.startswith("synthesis_network.") for name in delta["deltas"])
    assert all(t.dtype == torch.float16 for t in delta["deltas"].values())
    path = tmp_path / "delta.pt"
    torch.save(delta, path)

    fresh = tiny_source().build()
    tuned = apply_delta(fresh, path)
    with torch.no_grad():
        assert torch.equal(tuned.synthesis(pivot, noise=delta["noise"]), result["image"])
        # The original generators are untouched.
        assert torch.equal(fresh.synthesis(pivot), model.generator.synthesis(pivot))
        assert not torch.equal(fresh.synthesis(pivot), result["image"])


def test_a_delta_for_another_generator_is_refused(tmp_path: Path) -> None:
    model = make_pti(tmp_path, num_steps=1)
    image, pivot = target_and_pivot(model)
    delta = model.tune(image, pivot, "face.png")["delta"]
    with pytest.raises(ValueError, match="another generator"):
        apply_delta(tiny_source(seed=1).build(), delta)
    with pytest.raises(ValueError, match="not an lsap PTI delta"):
        load_delta({"deltas": {}})


def test_early_stop_on_lpips(tmp_path: Path) -> None:
    lpips = LPIPSLoss(allow_random_backbone=True)
    model = make_pti(tmp_path, lpips=lpips, early_stop_lpips=1e9)
    image, pivot = target_and_pivot(model)
    result = model.tune(image, pivot, "face.png")
    assert float(result["losses"]["steps"]) == 0
    assert result["delta"]["deltas"] == {}
    assert "lpips" in result["losses"] and "lpips_pivot" in result["losses"]
    running = make_pti(tmp_path, lpips=lpips, early_stop_lpips=0.0, num_steps=2).tune(image, pivot, "face.png")
    assert float(running["losses"]["steps"]) == 2


def test_locality_regularisation_keeps_other_codes_in_place(tmp_path: Path) -> None:
    image, pivot = target_and_pivot(make_pti(tmp_path))
    changes = []
    for locality in (False, True):
        regularizer = LocalityRegularizer(weight=100.0, num_samples=4, alpha=2.0, truncation=1.0)
        model = make_pti(tmp_path, locality=regularizer if locality else None)
        tuned = apply_delta(model.generator, model.tune(image, pivot, "face.png")["delta"])
        with torch.no_grad():
            z = torch.randn(8, model.generator.z_dim, generator=torch.Generator().manual_seed(0))
            w = model.generator.mapping(z)
            changes.append(float((tuned.synthesis(w) - model.generator.synthesis(w)).square().mean()))
    assert changes[1] < 0.7 * changes[0], changes


def write_folder(root: Path, count: int, source: GeneratorSource) -> None:
    data = SyntheticDataset(source.build(), count, seed=3)
    root.mkdir(parents=True)
    for i in range(count):
        array = ((data[i]["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(array).save(root / f"{i}.png")


def predict(model, input_dir: Path, output_dir: Path) -> None:
    trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[InversionWriter(str(output_dir))],
                      default_root_dir=output_dir)
    trainer.predict(model, datamodule=ImageDataModule(predict_dir=str(input_dir), preset="face", resolution=16,
                                                      batch_size=2, num_workers=0))


def test_pti_chains_after_lsap_o_through_the_trainer(tmp_path: Path) -> None:
    write_folder(tmp_path / "in", 2, tiny_source())
    embedding = LSAP_O(tiny_source(), num_steps=2, lambda_lpips=0.0, lambda_mse=1.0, anchor_samples=1000,
                       w_std_samples=1000, anchor_cache_dir=str(tmp_path / "anchors"), progress=False)
    predict(embedding, tmp_path / "in", tmp_path / "pivots")
    refine = make_pti(tmp_path, num_steps=3)
    predict(refine, tmp_path / "in", tmp_path / "pti")

    out = tmp_path / "pti"
    for name in ("0", "1"):
        pivot, code = load_code(tmp_path / "pivots" / "codes" / f"{name}.pt"), load_code(out / "codes" / f"{name}.pt")
        assert torch.equal(pivot["ws"], code["ws"])
        tuned = apply_delta(tiny_source().build(), out / "pti" / f"{name}.pt")
        with torch.no_grad():
            image = tuned.synthesis(code["ws"][None]).clamp(-1, 1)[0]
        written = np.asarray(Image.open(out / "images" / f"{name}.png"), dtype=np.float32)
        assert np.abs(written - (image.permute(1, 2, 0).numpy() + 1) * 127.5).max() <= 1.0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["meta"]["method"] for r in records] == ["pti", "pti"]
    assert [r["meta"]["refinement"] for r in records] == ["pti", "pti"]  # what editing renders through
    assert all(r["meta"]["pivot_method"] == "lsap_o" for r in records)
    assert all(r["losses"]["mse"] < r["losses"]["mse_pivot"] for r in records)


def test_a_missing_pivot_names_the_expected_file(tmp_path: Path) -> None:
    write_folder(tmp_path / "in", 1, tiny_source())
    with pytest.raises(FileNotFoundError, match=r"pivots[/\\]codes[/\\]0\.pt"):
        predict(make_pti(tmp_path, num_steps=1), tmp_path / "in", tmp_path / "pti")
