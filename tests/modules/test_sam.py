"""SAM refinement: the optimisation, batch independence, the results layout, resuming,
counted skips, and editing through the stored state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image

from lsap.callbacks.sam_writer import SAMWriter
from lsap.data import ImageDataModule, SyntheticDataset
from lsap.model import GeneratorSource
from lsap.modules.sam import SAM
from lsap.refine.invertibility import InvertibilityNet, save_invertibility_net
from lsap.refine.sam import load_state, render_state_file
from lsap.results import InversionResults, load_code
from conftest import small_source

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_source(seed: int = 0) -> GeneratorSource:
    return small_source(16, seed, z_dim=32, w_dim=32, channel_max=64)


def make_sam(tmp_path: Path, **overrides) -> SAM:
    settings = {"pivots_dir": str(tmp_path / "pivots"), "num_steps": 12, "loss_resolution": None,
                "mvg_samples": 200, "anchor_samples": 1000, "anchor_cache_dir": str(tmp_path / "anchors"),
                "progress": False}
    settings.update(overrides)
    return SAM(tiny_source(), **settings)


def targets(model: SAM, count: int = 2) -> torch.Tensor:
    data = SyntheticDataset(model.generator, count, seed=5)
    return torch.stack([data[i]["image"] for i in range(count)])


def full_masks(model: SAM, batch: int) -> dict[int, torch.Tensor]:
    return {r: torch.ones(batch, 1, r, r) for r in model.blocks}


def pivots_for(model: SAM, batch: int) -> torch.Tensor:
    return model.generator.w_avg[None, None].expand(batch, model.generator.num_ws, -1).clone()


def test_a_few_steps_lower_the_loss(tmp_path: Path) -> None:
    model = make_sam(tmp_path)
    images = targets(model)
    result = model.refine(images, pivots_for(model, 2), full_masks(model, 2))
    losses = result["losses"]
    assert (losses["mse"] < 0.8 * losses["mse_pivot"]).all(), losses
    curve = result["loss_curve"]
    assert (curve[:, -1] < curve[:, 0]).all()
    assert all(o.abs().sum() > 0 for o in result["offsets"].values())


def test_a_batch_equals_one_by_one(tmp_path: Path) -> None:
    model = make_sam(tmp_path, num_steps=6)
    images = targets(model, 3)
    masks = {r: (torch.rand(3, 1, r, r, generator=torch.Generator().manual_seed(r)) > 0.5).float()
             for r in model.blocks}
    together = model.refine(images, pivots_for(model, 3), masks)
    for i in range(3):
        alone = model.refine(images[i:i + 1], pivots_for(model, 1), {r: m[i:i + 1] for r, m in masks.items()})
        assert torch.allclose(alone["ws"], together["ws"][i:i + 1], atol=1e-5)
        for r in model.blocks:
            assert torch.allclose(alone["offsets"][r], together["offsets"][r][i:i + 1], atol=1e-3)
        assert torch.allclose(alone["image"], together["image"][i:i + 1], atol=1e-4)


def test_the_invertibility_net_must_match_the_blocks(tmp_path: Path) -> None:
    path = tmp_path / "inv.safetensors"
    save_invertibility_net(InvertibilityNet(2, width=4, input_resolution=16, blocks=[8]), path)
    with pytest.raises(ValueError, match="blocks"):
        make_sam(tmp_path, invertibility=str(path))
    assert make_sam(tmp_path, invertibility=str(path), blocks=[8]).blocks == [8]


def test_the_invertibility_net_weights_are_part_of_the_run_settings(tmp_path: Path) -> None:
    """A net retrained under the same file name gives other results: a results folder must
    tell the two runs apart (the net is frozen, so its weights are not the module's own state)."""
    from lsap.run_settings import run_settings, settings_fingerprint

    path = tmp_path / "inv.safetensors"

    def fingerprint(seed: int) -> str:
        torch.manual_seed(seed)
        save_invertibility_net(InvertibilityNet(2, width=4, input_resolution=16, blocks=[8]), path)
        return settings_fingerprint(run_settings(make_sam(tmp_path, invertibility=str(path), blocks=[8])))

    first = fingerprint(0)
    assert fingerprint(0) == first, "the same weights, the same settings"
    assert fingerprint(1) != first
    without = run_settings(make_sam(tmp_path, blocks=[8]))["model"]
    assert "loaded_weights" not in without, "modules without such a network keep their settings as they were"


def write_inputs(tmp_path: Path, model: SAM, count: int) -> None:
    root = tmp_path / "in"
    root.mkdir()
    images = targets(model, count)
    pivots = InversionResults(tmp_path / "pivots")
    for i in range(count):
        array = ((images[i].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(array).save(root / f"{i}.png")
        if i == count - 1:
            continue  # the last image has no pivot: a counted skip
        pivots.write_code(str(i), {"ws": pivots_for(model, 1)[0], "meta": {"method": "lsap_o",
                                                                           "generator_hash": model.generator_hash}})
        pivots.write_record({"name": str(i), "key": str(i), "losses": {}, "nscd": None, "meta": {}})


def predict(model: SAM, tmp_path: Path, writer: type = SAMWriter) -> dict:
    out = tmp_path / "sam_out"
    trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[writer(str(out))], default_root_dir=out)
    trainer.predict(model, datamodule=ImageDataModule(predict_dir=str(tmp_path / "in"), preset="face",
                                                      resolution=16, batch_size=2, num_workers=0))
    return json.loads((out / "summary.json").read_text())


def test_a_run_whose_writer_would_drop_the_states_is_refused_before_any_step(tmp_path: Path) -> None:
    from lsap.callbacks import InversionWriter
    from lsap.errors import BadValueError

    model = make_sam(tmp_path, num_steps=2)
    write_inputs(tmp_path, model, 2)
    with pytest.raises(BadValueError, match="sam_state"):
        predict(model, tmp_path, writer=InversionWriter)
    assert not (tmp_path / "sam_out" / "codes").exists()


def test_results_layout_skips_resume_and_editing_at_strength_zero(tmp_path: Path) -> None:
    path = tmp_path / "inv.safetensors"
    torch.manual_seed(0)
    save_invertibility_net(InvertibilityNet(3, width=4, input_resolution=16, blocks=[4, 8]), path)
    model = make_sam(tmp_path, num_steps=4, invertibility=str(path), threshold=0.0)
    write_inputs(tmp_path, model, 3)
    summary = predict(model, tmp_path)
    assert summary["num_images"] == 2 and summary["written_this_run"] == 2
    assert summary["failed_this_run"] == 1 and "2.pt" in summary["failed_inputs"][0]["reason"]

    out = tmp_path / "sam_out"
    G = tiny_source().build()
    for name in ("0", "1"):
        state = load_state(out / "sam" / f"{name}.pt", generator_hash=model.generator_hash)
        assert all(o.dtype == torch.float16 for o in state["offsets"]) and state["blocks"] == [4, 8]
        assert torch.equal(state["ws"], load_code(out, name)["ws"])
        with torch.no_grad():
            image = render_state_file(G, state).clamp(-1, 1)[0]
            edit0 = render_state_file(G, state, edited_ws=state["ws"][None]).clamp(-1, 1)[0]
        written = np.asarray(Image.open(out / "images" / f"{name}.png"), dtype=np.float32)
        assert np.abs(written - (image.permute(1, 2, 0).numpy() + 1) * 127.5).max() <= 1.0
        assert torch.allclose(edit0, image, atol=1e-5)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["meta"]["method"] for r in records] == ["sam", "sam"]
    check_editing_protocol(out, G)

    # Resuming: finished images are skipped; an image whose state is gone is redone.
    (out / "sam" / "1.pt").unlink()
    again = predict(model, tmp_path)
    assert again["written_this_run"] == 1 and again["skipped_this_run"] == 1
    assert (out / "sam" / "1.pt").is_file()


def check_editing_protocol(out: Path, G) -> None:
    """lsap.editing renders SAM results through the state: strength 0 = the reconstruction,
    a real edit differs, StyleSpace edits go through the same blend."""
    from lsap.editing.refinement import refinement_renderer

    results = InversionResults(out)
    for record in results:
        assert record.refinement == "sam"
        code = record.load_code()
        renderer = refinement_renderer(G, record, code)
        with torch.no_grad():
            reconstruction = render_state_file(G, load_state(out / "sam" / f"{record.name}.pt"))
            same = renderer.render(code["ws"][None])
            edited = renderer.render(code["ws"][None] + 0.5)
            styles = renderer.render_styles(G.styles(code["ws"][None]))
        assert torch.allclose(same, reconstruction, atol=1e-5)
        assert torch.allclose(styles, reconstruction, atol=1e-5)
        assert not torch.allclose(edited, reconstruction, atol=1e-3)


def test_the_fashion32_config_builds_sam_with_the_shipped_invertibility_net() -> None:
    import yaml
    from jsonargparse import ArgumentParser

    from lsap.nets import FeatureDistance
    from lsap.refine.segments import SuperpixelSegmenter

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "sam_fashion32.yaml").read_text())
    assert config["model"]["class_path"] == "lsap.modules.SAM"
    parser = ArgumentParser()
    parser.add_class_arguments(SAM, "model")
    parsed = parser.parse_object({"model": config["model"]["init_args"]})
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    model = instantiate(parsed)["model"]
    assert isinstance(model, SAM) and isinstance(model.lpips, FeatureDistance)
    assert isinstance(model.segmenter, SuperpixelSegmenter)
    assert model.blocks == [4, 8] and model.invertibility is not None and model.invertibility.blocks == [4, 8]
