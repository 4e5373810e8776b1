"""`lsap evaluate`, `lsap fid` and `lsap compare` end to end on a tiny results folder."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import small_source
from lsap.cli import main
from lsap.evaluation import evaluate
from lsap.results import InversionResults


class TinyFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 9, stride=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


def save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    generator = small_source(resolution=16).build().eval()
    results = InversionResults(tmp_path / "results")
    real = tmp_path / "real"
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ws = generator.mapping(torch.randn(5, generator.z_dim, generator=g))[:, None].repeat(1, generator.num_ws, 1)
        images = generator.synthesis(ws, noise_mode="const")
    for i in range(5):
        name = f"sub/{i:03d}"
        save_png(real / f"{name}.png", (images[i] + 0.1 * torch.randn(images[i].shape, generator=g)))
        results.write_code(name, {"ws": ws[i], "key": f"{name}.png", "name": name, "meta": {}})
        results.write_image(name, images[i])
        results.write_record({"name": name, "key": f"{name}.png", "losses": {}, "nscd": None, "meta": {}})
    save_png(real / "extra.png", images[0])  # an input without a reconstruction
    inception = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(TinyFeatures()), str(inception))
    return results.root, real, inception, tmp_path


def test_evaluate_writes_reports_and_is_resume_safe(folders) -> None:
    results, real, inception, tmp_path = folders
    report = evaluate(str(results), str(real), inception=str(inception), batch_size=2)
    metrics = report["metrics"]
    assert report["counts"] == {"pairs": 5, "reconstructions": 5, "unmatched_results": 0, "unmatched_real": 1,
                                "unreadable": 0}
    assert report["unmatched_real"] == ["extra"]
    for name in ("mse", "psnr", "ssim", "fid"):
        assert math.isfinite(metrics[name]["mean"])
    assert set(report["skipped"]) >= {"lpips", "id", "ms_ssim", "nscd", "lec"}
    assert report["convention"] == "default"
    assert report["weights"]["inception"]["sha256"]

    rows = [json.loads(line) for line in (results / "per_image.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == [f"sub/{i:03d}" for i in range(5)]
    # The reported mean is the mean of the per-image values, which follow the hand formula.
    for row in rows:
        pred = np.asarray(Image.open(results / "images" / f"{row['name']}.png"), dtype=np.float64) / 127.5 - 1
        target = np.asarray(Image.open(real / f"{row['name']}.png"), dtype=np.float64) / 127.5 - 1
        mse = ((pred - target) ** 2).mean()
        assert row["mse"] == pytest.approx(mse, rel=1e-6)
        assert row["psnr"] == pytest.approx(10 * np.log10(4 / mse), rel=1e-6)
    assert metrics["mse"]["mean"] == pytest.approx(np.mean([r["mse"] for r in rows]), rel=1e-12)
    assert "| psnr ↑ |" in (results / "metrics.md").read_text()

    first = (results / "metrics.json").read_text()
    evaluate(str(results), str(real), inception=str(inception), batch_size=3)
    assert json.loads((results / "metrics.json").read_text())["metrics"]["mse"]["mean"] == pytest.approx(
        json.loads(first)["metrics"]["mse"]["mean"], rel=1e-12)


def test_fid_command_prints_the_value_evaluate_reports(folders, capsys) -> None:
    results, real, inception, tmp_path = folders
    fake = tmp_path / "fake"
    for path in (results / "images").rglob("*.png"):
        target = fake / path.relative_to(results / "images")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    main(["fid", str(real), str(fake), "--inception", str(inception), "--batch_size", "4"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["num_real"] == 6 and line["num_fake"] == 5
    report = evaluate(str(results), str(real), inception=str(inception), output=str(tmp_path / "out"))
    assert report["metrics"]["fid"]["mean"] == pytest.approx(line["fid"], rel=1e-6)

    from lsap.evaluation import folder_fid

    stats = tmp_path / "real_stats.pt"
    written = folder_fid(real, fake, inception=str(inception), real_stats=str(stats))
    reused = folder_fid(tmp_path / "no-such-folder", fake, inception=str(inception), real_stats=str(stats))
    assert stats.is_file() and reused["fid"] == pytest.approx(written["fid"], rel=1e-9) and reused["num_real"] == 6
    save_png(fake / "bigger.png", torch.zeros(3, 24, 24))  # mixed sizes are fine
    assert folder_fid(real, fake, inception=str(inception))["num_fake"] == 6

    main(["evaluate", str(results), "--real", str(real), "--inception", str(inception), "--convention", "ganinverter",
          "--output", str(tmp_path / "gi")])
    printed = capsys.readouterr().out
    assert "ganinverter" in printed and "| fid ↓ |" in printed
    main(["compare", str(tmp_path / "out"), str(tmp_path / "gi")])
    table = capsys.readouterr().out
    assert "| fid |" in table and "| convention | default | ganinverter |" in table


def test_missing_inception_is_reported_as_skipped(folders) -> None:
    results, real, _, tmp_path = folders
    report = evaluate(str(results), str(real), inception=str(tmp_path / "missing.pt"))
    assert "missing.pt" in report["skipped"]["fid"]


def test_nscd_with_a_generator(folders, tmp_path) -> None:
    results, real, inception, _ = folders
    from lsap.model.checkpoints import save_generator

    generator = small_source(resolution=16).build().eval()
    path = tmp_path / "g.pt"
    save_generator(generator, path)
    report = evaluate(str(results), str(real), generator=str(path), nscd_samples=200, pca_samples=50,
                      tensorboard=str(tmp_path / "tb"), wandb_project="lsap-test", wandb_mode="disabled")
    nscd = report["metrics"]["nscd"]
    assert len(nscd["per_layer"]) == generator.num_ws
    assert nscd["mean"] == pytest.approx(np.mean(nscd["per_layer"]), rel=1e-9)
    rows = [json.loads(line) for line in (results / "per_image.jsonl").read_text().splitlines()]
    assert nscd["mean"] == pytest.approx(np.mean([r["nscd"] for r in rows]), rel=1e-9)
    assert Image.open(results / "pca_sn.png").size == (512, 512)
    assert any((tmp_path / "tb").iterdir())


def test_pca_projects_onto_the_reference_principal_axes() -> None:
    from lsap.evaluation.logging import pca_2d

    g = torch.Generator().manual_seed(0)
    reference = torch.randn(200, 5, generator=g) * torch.tensor([5.0, 2.0, 0.1, 0.1, 0.1])
    ref_2d, other_2d = pca_2d(reference, [reference[:3]])
    assert np.allclose(ref_2d[:3], other_2d)
    variances = ref_2d.var(axis=0)
    assert variances[0] > variances[1] > 0.5 * 4  # the two large axes, in order


def test_lec_through_evaluate_equals_the_metric(folders, tmp_path) -> None:
    from lsap.encoders import Encoder4Editing
    from lsap.encoders.checkpoints import load_encoder_checkpoint, save_e4e_checkpoint
    from lsap.evaluation.inputs import read_image
    from lsap.metrics.lec import LEC
    from lsap.model.checkpoints import save_generator

    results, real, _, _ = folders
    # Narrow codes keep the encoder's heads small (the codes in `folders` are not used here).
    generator = small_source(resolution=16, z_dim=32, w_dim=32).build().eval()
    save_generator(generator, tmp_path / "g.pt")
    torch.manual_seed(0)
    encoder = Encoder4Editing(num_ws=generator.num_ws, w_dim=generator.w_dim, input_size=64,
                              blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 16, 32, 64]).eval()
    save_e4e_checkpoint(tmp_path / "e4e.pt", encoder, generator.w_avg.clone())
    direction = torch.nn.functional.normalize(torch.randn(1, generator.w_dim), dim=1)
    torch.save(direction, tmp_path / "age.pt")
    report = evaluate(str(results), str(real), generator=str(tmp_path / "g.pt"), nscd_samples=100,
                      encoder=str(tmp_path / "e4e.pt"), direction=str(tmp_path / "age.pt"), batch_size=2, pca_samples=0,
                      output=str(tmp_path / "out"))
    assert "another generator" in report["skipped"]["nscd"]
    lec = report["metrics"]["lec"]
    assert lec["count"] == 4 and lec["num_batches"] == 2  # 5 pairs, batch 2, drop_last

    loaded = load_encoder_checkpoint(tmp_path / "e4e.pt")
    n = direction[0]

    def encode(x):
        return loaded.encoder(torch.nn.functional.adaptive_avg_pool2d(x, 64)) + loaded.latent_avg

    metric = LEC(encode, lambda ws: generator.synthesis(ws, noise_mode="const"), lambda ws: ws + 3 * n,
                 lambda ws: ws - 3 * n, image_size=64)
    names = [f"sub/{i:03d}" for i in range(4)]
    for start in (0, 2):
        metric.update(torch.stack([read_image(real / f"{name}.png") for name in names[start:start + 2]]))
    assert lec["mean"] == pytest.approx(metric.compute().item(), rel=1e-6)


def test_real_fit_pad_centres_small_inputs_like_the_fashion_data(tmp_path) -> None:
    """28 px grey inputs padded to 32 px give an exact match with their padded reconstruction;
    resizing them instead does not."""
    import numpy as np
    from PIL import Image

    from lsap.data.fashion_mnist import pad_to_canvas, to_model_range
    from lsap.evaluation.inputs import read_real_image

    real, results = tmp_path / "real", tmp_path / "results"
    real.mkdir()
    results.mkdir()
    rng = np.random.default_rng(0)
    for name in ("0001_3", "0002_5"):
        pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(real / f"{name}.png")
        padded = pad_to_canvas(pixels, 32).numpy()
        Image.fromarray(np.repeat(padded[..., None], 3, axis=2), mode="RGB").save(results / f"{name}.png")
        expected = to_model_range(pad_to_canvas(pixels, 32), 3)
        assert torch.equal(read_real_image(real / f"{name}.png", 32, "pad"), expected)
    padded_report = evaluate(str(results), str(real), real_fit="pad", inception=str(tmp_path / "missing.pt"))
    resized_report = evaluate(str(results), str(real), output=str(tmp_path / "out"),
                              inception=str(tmp_path / "missing.pt"))
    assert padded_report["metrics"]["mse"]["mean"] == 0
    assert resized_report["metrics"]["mse"]["mean"] > 0.01
    with pytest.raises(ValueError, match="larger than"):
        read_real_image(real / "0001_3.png", 16, "pad")


def test_edit_and_reinvert_lec_equals_a_direct_loop(folders, tmp_path) -> None:
    import yaml

    from lsap.metrics.lec import trimmed_mean
    from lsap.modules import LSAP_O

    results, real, _, _ = folders
    source = small_source(resolution=16)
    settings = {"lpips": None, "num_steps": 4, "lambda_lpips": 0.0, "lambda_mse": 1.0, "lambda_nscd": 0.05,
                "anchor_samples": 300, "w_std_samples": 300, "loss_resolution": 16, "seed": 3}
    config = {"model": {"class_path": "lsap.modules.LSAP_O", "init_args": {"generator": source.as_dict(), **settings}}}
    (results / "config.yaml").write_text(yaml.safe_dump(config))
    generator = source.build()
    direction = nn.functional.normalize(torch.randn(1, generator.w_dim, generator=torch.Generator().manual_seed(5)))
    torch.save(direction, tmp_path / "dir.pt")

    report = evaluate(str(results), str(real), generator=str(results / "config.yaml"), direction=str(tmp_path / "dir.pt"),
                      strength=2.0, reinvert=True, batch_size=2, nscd_samples=300, pca_samples=0)
    lec = report["metrics"]["lec_reinvert"]
    assert lec["count"] == 4 and lec["num_batches"] == 2 and lec["reinversion_steps"] == 4

    module = LSAP_O(generator=source, progress=False, **settings)
    batch_values = []
    for names in (["sub/000", "sub/001"], ["sub/002", "sub/003"]):
        codes = torch.stack([torch.load(results / "codes" / f"{n}.pt", weights_only=True)["ws"] for n in names])
        with torch.no_grad():
            edited = generator.synthesis(codes + 2.0 * direction, noise_mode="const")
        again = module.invert(edited, [f"lec-reinvert/{n}" for n in names]).ws.detach()
        batch_values.append((codes.double() - (again - 2.0 * direction).double()).flatten(1).norm(dim=1).mean())
    assert lec["mean"] == pytest.approx(trimmed_mean(torch.stack(batch_values)).item(), rel=1e-5)
    assert "lec_reinvert" not in report["skipped"]


def test_edit_and_reinvert_needs_an_lsap_o_run(folders, tmp_path) -> None:
    results, real, _, _ = folders
    (results / "config.yaml").write_text("model:\n  class_path: lsap.modules.LSAP_E\n")
    direction = tmp_path / "dir.pt"
    torch.save(torch.ones(1, small_source(resolution=16).w_dim), direction)
    spec = json.dumps(small_source(resolution=16).as_dict())
    with pytest.raises(ValueError, match="not an LSAP_O run"):
        evaluate(str(results), str(real), generator=spec, direction=str(direction), reinvert=True, batch_size=2,
                 nscd_samples=300, pca_samples=0)


def test_nscd_with_an_inline_generator_spec(folders) -> None:
    results, real, _, _ = folders
    spec = small_source(resolution=16)
    report = evaluate(str(results), str(real), generator=json.dumps(dataclasses.asdict(spec)), nscd_samples=200,
                      pca_samples=50)
    assert len(report["metrics"]["nscd"]["per_layer"]) == spec.build().num_ws
    assert "generator" not in report["weights"], "an inline spec has no file to hash"
