"""InversionWriter: output names, files, resuming, and the config files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI
from PIL import Image

from lsap.callbacks import InversionWriter
from lsap.results import InversionResults, batch_names, load_code, load_results, output_name, split_pending
from lsap.data import ImageDataModule, SyntheticDataset
from lsap.model import GeneratorSource
from lsap.modules import LSAP_O
from conftest import small_source

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_source() -> GeneratorSource:
    return small_source(16, 0, z_dim=32, w_dim=32, channel_max=64)


def make_model(tmp_path: Path, num_steps: int = 2) -> LSAP_O:
    return LSAP_O(tiny_source(), num_steps=num_steps, lambda_lpips=0.0, lambda_mse=1.0, anchor_samples=1000,
                  w_std_samples=1000, anchor_cache_dir=str(tmp_path / "anchors"), progress=False)


def write_folder(root: Path, names: list[str], model: LSAP_O) -> None:
    data = SyntheticDataset(model.generator, len(names), seed=3)
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        array = ((data[i]["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(array).save(path)


def run(model: LSAP_O, input_dir: Path, output_dir: Path, batch_size: int = 2) -> list[dict]:
    trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[InversionWriter(str(output_dir), save_noise=True)],
                      default_root_dir=output_dir)
    data = ImageDataModule(predict_dir=str(input_dir), preset="face", resolution=16, batch_size=batch_size,
                           num_workers=0)
    return trainer.predict(model, datamodule=data)


class CountingInversions:
    """Wraps ``model.invert`` to record the names of the images it optimised."""

    def __init__(self, model: LSAP_O) -> None:
        self.names: list[str] = []
        self._invert = model.invert
        model.invert = self  # type: ignore[method-assign]

    def __call__(self, images, names, *args, **kwargs):
        self.names.extend(names)
        return self._invert(images, names, *args, **kwargs)


# ----- names -------------------------------------------------------------------------------
def test_output_names_mirror_the_relative_path() -> None:
    assert output_name("/data/in/a/001.png", "/data/in") == "a/001"
    assert output_name("/data/in/b/001.png", "/data/in") == "b/001"
    assert output_name("/data/in/x.y.jpg", "/data/in/") == "x.y"
    assert output_name("sub/002.jpg") == "sub/002"
    assert output_name("000007") == "000007"
    # Outside the root, or climbing out of it: just the file name.
    assert output_name("/elsewhere/c.png", "/data/in") == "c"
    assert output_name("../c.png") == "c"


def test_inputs_sharing_an_output_name_are_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    write_folder(tmp_path / "in", ["c.png", "c.jpg"], model)
    with pytest.raises(ValueError, match="rename"):
        run(model, tmp_path / "in", tmp_path / "out")


def test_writer_needs_the_documented_dict(tmp_path: Path) -> None:
    writer = InversionWriter(str(tmp_path))
    with pytest.raises(TypeError, match="'path'"):
        writer.write_on_batch_end(None, None, torch.zeros(2), None, None, 0, 0)


def test_path_less_predictions_are_named_by_index(tmp_path: Path) -> None:
    writer = InversionWriter(str(tmp_path))
    prediction = {"path": None, "index": torch.tensor([3, 12]), "ws": torch.randn(2, 4, 8),
                  "image": torch.zeros(2, 3, 8, 8), "losses": {"mse": torch.tensor([0.1, 0.3])},
                  "nscd": torch.tensor([0.2, 0.4])}
    writer.write_on_batch_end(None, None, prediction, None, None, 0, 0)
    assert torch.equal(load_code(tmp_path / "codes" / "000012.pt")["ws"], prediction["ws"][1])
    assert writer.is_done("000003") and not writer.is_done("000004")
    summary = writer.merge()
    assert summary["num_images"] == 2 and summary["mean_losses"]["mse"] == pytest.approx(0.2)
    assert summary["methods"] == [] and "image" not in prediction


def test_split_pending_and_batch_names() -> None:
    batch = {"path": ["/in/a/1.png", "/in/b/2.png", "/in/3.png"], "name": ["a/1", "b/2", "3"],
             "done": [False, True, False]}
    todo, out = split_pending(batch)
    assert todo == [0, 2] and out == {"path": ["/in/a/1.png", "/in/3.png"], "skipped": ["/in/b/2.png"]}
    assert batch_names(batch) == ["a/1", "b/2", "3"]
    assert batch_names(batch, "/in/a") == ["1", "2", "3"]  # outside the root: the file name
    assert split_pending({"index": torch.tensor([4, 5])})[1]["path"] == ["000004", "000005"]


def test_missing_and_damaged_results_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        load_results(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no finished result named 'x'"):
        InversionResults(tmp_path)["x"]
    (tmp_path / "codes").mkdir()
    torch.save({"no_ws": 1}, tmp_path / "codes" / "x.pt")
    with pytest.raises(ValueError, match=r"x\.pt' is not an lsap code file"):
        load_code(tmp_path, "x")


# ----- files and resuming ------------------------------------------------------------------
def test_writer_files_and_resume(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    names = ["sub1/a.png", "sub2/a.png", "b.png"]
    write_folder(tmp_path / "in", names, model)
    out = tmp_path / "out"
    counter = CountingInversions(model)
    predictions = run(model, tmp_path / "in", out)
    assert sorted(counter.names) == ["b", "sub1/a", "sub2/a"]

    for name in ["sub1/a", "sub2/a", "b"]:
        for kind, suffix in [("codes", ".pt"), ("images", ".png"), ("records", ".json")]:
            assert (out / kind / f"{name}{suffix}").is_file(), (kind, name)
    # Large tensors are dropped from the returned predictions once written.
    assert all("image" not in p and "noise" not in p for p in predictions)

    # The code file reproduces the reconstruction written next to it.
    code = load_code(out / "codes" / "sub2" / "a.pt")
    assert code["ws"].shape == (model.generator.num_ws, model.generator.w_dim)
    assert code["name"] == "sub2/a" and code["meta"]["method"] == "lsap_o"
    with torch.no_grad():
        image = model.generator.synthesis(code["ws"][None], noise=code["noise"]).clamp(-1, 1)
    written = np.asarray(Image.open(out / "images" / "sub2" / "a.png"), dtype=np.float32)
    expected = ((image[0].permute(1, 2, 0).numpy() + 1) * 127.5)
    assert np.abs(written - expected).max() <= 1.0

    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in lines] == ["b", "sub1/a", "sub2/a"]
    assert set(lines[0]["losses"]) >= {"mse", "nscd_loss", "total"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 3 and summary["written_this_run"] == 3 and summary["skipped_this_run"] == 0
    assert summary["mean_nscd"] == pytest.approx(np.mean([r["nscd"] for r in lines]))

    # The same folder read back through the public results API.
    results = InversionResults(out)
    records = list(results)
    assert [r.name for r in records] == ["b", "sub1/a", "sub2/a"] == [r.name for r in load_results(out)]
    assert len(results) == 3 and "sub2/a" in results and "sub2/x" not in results
    record = results["sub2/a"]
    assert record.key == str(tmp_path / "in" / "sub2" / "a.png") and record.method == "lsap_o"
    assert record.image_path == out / "images" / "sub2" / "a.png" and record.delta_path is None
    assert record.as_dict() == lines[2]
    assert torch.equal(record.load_code()["ws"], code["ws"])
    assert torch.equal(load_code(out, "sub2/a")["ws"], code["ws"])

    # Second run: nothing left to do, so nothing is optimised.
    counter.names.clear()
    run(model, tmp_path / "in", out)
    assert counter.names == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 3 and summary["written_this_run"] == 0 and summary["skipped_this_run"] == 3

    # An interrupted image (its record never written) is the only one redone.
    (out / "records" / "sub1" / "a.json").unlink()
    run(model, tmp_path / "in", out)
    assert counter.names == ["sub1/a"]
    assert json.loads((out / "summary.json").read_text())["num_images"] == 3


def test_unreadable_inputs_are_listed_in_the_summary(tmp_path: Path) -> None:
    model = make_model(tmp_path, num_steps=1)
    write_folder(tmp_path / "in", ["a.png"], model)
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.png"):
        run(model, tmp_path / "in", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_images"] == 1
    [entry] = summary["unreadable_inputs"]
    assert entry["path"] == str(tmp_path / "in" / "broken.png") and entry["reason"]


def test_a_file_failing_inside_a_dataloader_worker_is_listed_in_the_summary(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from lsap.data import ImageFolderDataset

    model = make_model(tmp_path, num_steps=1)
    write_folder(tmp_path / "in", ["a.png", "b.png"], model)
    dataset = ImageFolderDataset(tmp_path / "in", preset="face", resolution=16)
    assert dataset.skipped == []
    (tmp_path / "in" / "b.png").write_bytes(b"damaged after the scan")  # only a worker process sees this
    loader = DataLoader(dataset, batch_size=2, num_workers=1)
    trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[InversionWriter(str(tmp_path / "out"))],
                      default_root_dir=tmp_path / "out")
    trainer.predict(model, dataloaders=loader)
    assert dataset.skipped == [], "the failure happened in the worker process, not in this one"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    [entry] = summary["unreadable_inputs"]
    assert entry["path"] == str(tmp_path / "in" / "b.png") and entry["reason"]


# ----- configs -----------------------------------------------------------------------------
class ParseOnlyCLI(LightningCLI):
    """Validates a config against the typed signatures without building anything."""

    def instantiate_classes(self) -> None:
        pass


@pytest.mark.parametrize("name", ["optimize_face", "optimize_car", "optimize_church", "optimize_demo", "pti_face",
                                  "pti_demo"])
def test_configs_match_the_signatures(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["lsap"])
    cli = ParseOnlyCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       run=False, args=["--config", str(CONFIGS / f"{name}.yaml")])
    config = cli.config
    assert config.trainer.inference_mode is False
    assert config.model.class_path == ("lsap.modules.PTI" if name.startswith("pti") else "lsap.modules.LSAP_O")
    assert config.trainer.callbacks[0].class_path == "lsap.callbacks.InversionWriter"


def test_demo_config_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["lsap"])
    out = tmp_path / "demo"
    cli = LightningCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       args=["predict", "--config", str(CONFIGS / "optimize_demo.yaml"),
                             "--model.init_args.num_steps", "2", "--model.init_args.anchor_samples", "500",
                             "--model.init_args.w_std_samples", "500",
                             "--model.init_args.anchor_cache_dir", str(tmp_path / "anchors"),
                             "--trainer.callbacks.init_args.output_dir", str(out),
                             "--trainer.default_root_dir", str(out),
                             "--trainer.enable_progress_bar", "false"])
    assert isinstance(cli.model, LSAP_O)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 4 and summary["methods"] == ["lsap_o"]
    assert (out / "config.yaml").is_file()
    assert sorted(p.name for p in (out / "codes").iterdir()) == [f"{i:06d}.pt" for i in range(4)]
