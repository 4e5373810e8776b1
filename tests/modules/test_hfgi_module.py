"""HFGI module: training changes only ADA + consultation and lowers the loss; prediction from
an embedding or a pivots folder writes the results layout; editing at strength 0 reproduces
the written reconstruction; the config runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torch.utils.data import DataLoader

from lsap.callbacks.hfgi_writer import HFGIWriter
from lsap.data import FashionSamplesDataModule
from lsap.editing.refinement import refinement_renderer
from lsap.encoders import Encoder4Editing
from lsap.encoders.checkpoints import save_e4e_checkpoint
from lsap.modules import HFGI
from lsap.refine.hfgi import save_hfgi_refiner
from lsap.results import InversionResults

from conftest import in_repo_layout, run_lsap, small_source

REPO = Path(__file__).resolve().parents[2]
WIDTHS = dict(aligner_widths=(4, 8, 8, 8), consultation_widths=(4, 8, 8))


def write_embedding(path: Path) -> Path:
    torch.manual_seed(0)
    generator = small_source().build()
    encoder = Encoder4Editing(num_ws=8, input_size=32, blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 16, 32, 48])
    save_e4e_checkpoint(path, encoder.eval(), generator.w_avg)
    return path


def make_module(tmp_path: Path, **kwargs) -> HFGI:
    from lsap.refine.hfgi import HFGIRefiner

    generator = small_source()
    refiner = HFGIRefiner.for_generator(generator.build(), fusion_resolution=16, **WIDTHS)
    settings = dict(generator=generator, embedding=str(write_embedding(tmp_path / "e4e.pt")), refiner=refiner,
                    loss_resolution=32, anchor_samples=300, anchor_cache_dir=str(tmp_path / "anchors"), lr=2e-3)
    settings.update(kwargs)
    return HFGI(**settings)


class ImageBatches(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index]}


def fixed_images(count: int = 8) -> torch.Tensor:
    generator = small_source(seed=3).build()  # another generator: real distortion for the embedding
    with torch.no_grad():
        return generator(torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


def refined_mse(module: HFGI, images: torch.Tensor) -> tuple[float, float]:
    module.eval()
    with torch.no_grad():
        ws = module.embed(images)
        result = module.refiner.refine(module.generator, ws, images)
    return (float(((result["image"] - images) ** 2).mean()), float(((result["reconstruction"] - images) ** 2).mean()))


def test_training_lowers_the_loss_and_changes_only_ada_and_consultation(tmp_path):
    torch.manual_seed(0)
    module = make_module(tmp_path, warp_probability=0.0, lr=2e-2)
    images = fixed_images()
    before_refined, pivot = refined_mse(module, images)
    assert before_refined == pytest.approx(pivot, abs=1e-7), "an untrained (zero-init) refiner renders the pivot"
    frozen = {k: v.clone() for k, v in module.state_dict().items() if not k.startswith("refiner.")}
    refiner = {k: v.clone() for k, v in module.refiner.state_dict().items()}
    trainer = Trainer(max_steps=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(ImageBatches(images), batch_size=8))
    after_refined, pivot_after = refined_mse(module, images)
    assert pivot_after == pytest.approx(pivot, abs=1e-7)
    assert after_refined < 0.9 * before_refined
    for key, value in module.state_dict().items():
        if not key.startswith("refiner."):
            assert torch.equal(value, frozen[key]), f"{key} (frozen) changed"
    changed = {k.split(".")[0] for k, v in module.refiner.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, refiner[k])}
    assert changed == {"grid_align", "residue"}


def test_training_losses_terms(tmp_path):
    module = make_module(tmp_path)
    losses, refined = module.training_losses(fixed_images(4))
    assert set(losses) == {"l2", "distortion", "total"} and refined.shape == (4, 3, 32, 32)
    w = module.loss_weights
    torch.testing.assert_close(losses["total"], w["l2"] * losses["l2"] + w["distortion"] * losses["distortion"])
    losses["total"].backward()
    assert all(p.grad is None for p in module.generator.parameters())
    assert all(p.grad is None for p in module.embedding_encoder.parameters())
    assert module.embedding_encoder.training is False


def test_checkpoint_holds_the_refiner_only(tmp_path):
    module = make_module(tmp_path)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all(k.startswith("refiner.") for k in checkpoint["state_dict"])
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])


def _predict(module: HFGI, out: Path, limit: int = 3) -> InversionResults:
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[HFGIWriter(output_dir=str(out))])
    trainer.predict(module, datamodule=FashionSamplesDataModule(limit=limit, val_batch_size=2))
    return InversionResults(out)


def test_predict_edit_at_strength_zero_reproduces_the_written_reconstruction(tmp_path):
    module = make_module(tmp_path)
    with torch.no_grad():  # a refiner that changes something
        for p in module.refiner.residue.parameters():
            p.add_(0.05 * torch.randn_like(p))
    refiner_file = save_hfgi_refiner(tmp_path / "refiner.pt", module.refiner, meta={"generator_hash": module.generator_hash})
    module = make_module(tmp_path, refiner=None, refiner_checkpoint=str(refiner_file))
    results = _predict(module, tmp_path / "hfgi")
    records = list(results)
    assert len(records) == 3
    record = records[0]
    assert record.refinement == "hfgi" and record.meta["hfgi_refiner"] == str(refiner_file)
    assert record.losses["mse"] != pytest.approx(record.losses["mse_pivot"])
    written = np.asarray(Image.open(record.image_path))
    code = record.load_code()
    renderer = refinement_renderer(module.generator, record, code)
    with torch.no_grad():
        again = renderer.render(code["ws"][None])
        edited = renderer.render(code["ws"][None] + 0.5)
    again_uint8 = ((again[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(again_uint8, written)
    assert not torch.allclose(edited, again)


def test_predict_from_a_pivots_folder_uses_its_codes(tmp_path):
    module = make_module(tmp_path)
    first = _predict(module, tmp_path / "first", limit=2)
    pivots = make_module(tmp_path, embedding=None, pivots_dir=str(tmp_path / "first"))
    second = _predict(pivots, tmp_path / "second", limit=2)
    for a, b in zip(first, second):
        assert torch.equal(a.load_code()["ws"], b.load_code()["ws"])
        assert b.meta["pivot_method"] == "hfgi" and b.meta["pivots_dir"] == str(tmp_path / "first")
    with pytest.raises(ValueError, match="embedding"):
        make_module(tmp_path, embedding=None).embed(torch.zeros(1, 3, 32, 32))


def test_a_refiner_file_must_match_the_fusion_resolution_asked_for(tmp_path):
    from lsap.errors import BadValueError

    refiner_file = save_hfgi_refiner(tmp_path / "r.pt", make_module(tmp_path).refiner)  # fused at 16 px
    assert make_module(tmp_path, refiner=None, refiner_checkpoint=str(refiner_file),
                       fusion_resolution=16).refiner.fusion_resolution == 16
    assert make_module(tmp_path, refiner=None, refiner_checkpoint=str(refiner_file)).refiner.fusion_resolution == 16
    with pytest.raises(BadValueError, match="fusion_resolution=8 does not match"):
        make_module(tmp_path, refiner=None, refiner_checkpoint=str(refiner_file), fusion_resolution=8)


def test_editing_without_the_stored_input_is_a_clear_error(tmp_path):
    import shutil

    from lsap.callbacks import InversionWriter
    from lsap.callbacks.hfgi_writer import HFGIWriter
    from lsap.errors import BadValueError, MissingInputError

    module = make_module(tmp_path, refiner=None,
                         refiner_checkpoint=str(save_hfgi_refiner(tmp_path / "r.pt", make_module(tmp_path).refiner)))
    data = FashionSamplesDataModule(limit=1, val_batch_size=1)
    plain = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[InversionWriter(output_dir=str(tmp_path / "plain"))])
    with pytest.raises(BadValueError, match="hfgi_input"):  # a writer that would drop the inputs is refused
        plain.predict(module, datamodule=data)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[HFGIWriter(output_dir=str(tmp_path / "hfgi"))])
    trainer.predict(module, datamodule=data)
    shutil.rmtree(tmp_path / "hfgi" / "hfgi_inputs")  # a folder that lost its stored inputs
    record = next(iter(InversionResults(tmp_path / "hfgi")))
    with pytest.raises(MissingInputError, match="HFGIWriter"):
        refinement_renderer(module.generator, record, record.load_code())


def test_config_fits_a_few_steps(tmp_path):
    work = in_repo_layout(tmp_path)
    run_lsap(work, "fit", "--config", "configs/hfgi_fashion32.yaml", "--trainer.max_steps", "2",
             "--trainer.logger", "false", "--trainer.callbacks.init_args.dirpath", str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert not (work / "outputs").exists(), "fit must not write predictions"
    trained = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    from lsap.refine.hfgi import load_hfgi_refiner

    shipped = load_hfgi_refiner("fashion32_hfgi_lsap")[0].state_dict()
    floats = [k for k, v in shipped.items() if v.is_floating_point()]
    assert floats and all(f"refiner.{k}" in trained for k in floats)
    step = torch.cat([(trained[f"refiner.{k}"].float() - shipped[k].float()).flatten() for k in floats]).norm()
    size = torch.cat([shipped[k].float().flatten() for k in floats]).norm()
    assert 0 < step < 0.05 * size, "two steps from the shipped refiner: changed, and only a little"


def test_config_predicts_as_the_predict_config(tmp_path):
    """configs/hfgi_fashion32.yaml refines the shipped images exactly as the offline
    configs/hfgi_fashion32_predict.yaml does (same refiner, embedding and images)."""
    work = in_repo_layout(tmp_path)
    run_lsap(work, "predict", "--config", "configs/hfgi_fashion32.yaml",
             "--data.init_args.predict_dataset.init_args.limit", "2")
    run_lsap(work, "predict", "--config", "configs/hfgi_fashion32_predict.yaml", "--data.init_args.limit", "2",
             "--trainer.callbacks.init_args.output_dir", str(tmp_path / "offline"))
    one = {r.name: r for r in InversionResults(work / "outputs" / "hfgi_fashion32")}
    other = {r.name: r for r in InversionResults(tmp_path / "offline")}
    assert len(one) == 2 and one.keys() == other.keys()
    for name, record in one.items():
        assert record.refinement == "hfgi" and record.meta["hfgi_refiner"] == "fashion32_hfgi_lsap"
        assert torch.equal(record.load_code()["ws"], other[name].load_code()["ws"])
        assert np.array_equal(np.asarray(Image.open(record.image_path)), np.asarray(Image.open(other[name].image_path)))
        assert record.losses["mse"] < record.losses["mse_pivot"], "the shipped refiner improves on its pivot"
