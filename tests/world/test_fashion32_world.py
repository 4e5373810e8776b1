"""The offline fashion32 world: shipped encoders and directions, the demo and the claims script.

Tests of shipped files skip, saying so, while those files are absent (they are made with the
final generator: see bench/claims_fashion32.py and the configs/encoder_fashion32_*.yaml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lsap.data import FashionSamplesDataset
from lsap.encoders import Encoder4Editing, load_encoder_checkpoint

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "lsap" / "assets"
GENERATOR_FILE = ASSETS / "fashion32.safetensors"
ENCODERS = {"e4e": ASSETS / "encoders" / "fashion32_e4e.pt", "lsap": ASSETS / "encoders" / "fashion32_lsap.pt"}
DIRECTIONS = ASSETS / "directions"
# A small random generator with the fashion32 code sizes (w_dim 256, num_ws 8 at 32 px).
TINY_GENERATOR = {"checkpoint": None, "seed": 0, "resolution": 32, "z_dim": 256, "w_dim": 256,
                  "mapping_layers": 2, "channel_base": 1024, "channel_max": 32, "w_avg_samples": 1000}


def run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(cwd / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def needs(*paths: Path) -> None:
    missing = [str(p.relative_to(REPO)) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"not shipped yet: {', '.join(missing)} (made with the final fashion32 generator)")


@pytest.mark.parametrize("label", sorted(ENCODERS))
def test_shipped_encoder_reconstructs_better_than_an_untrained_one(label):
    needs(GENERATOR_FILE, ENCODERS[label])
    from lsap.model import load_generator

    generator = load_generator("fashion32")
    loaded = load_encoder_checkpoint(f"fashion32_{label}")  # the built-in name of ENCODERS[label]
    assert ENCODERS[label].stat().st_size < 15_000_000
    assert (loaded.num_ws, loaded.w_dim) == (generator.num_ws, generator.w_dim)
    images = torch.stack([item["image"] for item in FashionSamplesDataset(limit=32)])
    torch.manual_seed(0)
    untrained = Encoder4Editing(num_ws=8, w_dim=256, input_size=32, blocks_per_stage=[1, 1, 1, 1],
                                stage_channels=[32, 48, 64, 96]).eval()

    def mse(encoder) -> float:
        with torch.no_grad():
            ws = encoder(images) + loaded.latent_avg
            return float((generator.synthesis(ws, noise_mode="const").clamp(-1, 1) - images).square().mean())

    assert mse(loaded.encoder) < 0.7 * mse(untrained)


@pytest.mark.parametrize("name, source, target", [("sneaker_to_boot", 7, 9), ("pullover_to_coat", 2, 4),
                                                  ("tshirt_to_shirt", 0, 6)])
def test_shipped_direction_moves_the_classifier_towards_its_target(name, source, target):
    needs(GENERATOR_FILE, DIRECTIONS / f"{name}.pt")
    from lsap.editing import available_directions, load_direction
    from lsap.model import load_generator
    from lsap.nets.fashion_classifier import load_fashion_classifier

    assert name in available_directions(), "found by name, as `lsap edit --direction NAME` looks it up"
    generator = load_generator("fashion32")
    direction = load_direction(DIRECTIONS / f"{name}.pt")
    direction.check_generator(generator)
    classifier = load_fashion_classifier()
    with torch.no_grad():
        w = generator.mapping(torch.randn(1024, generator.z_dim, generator=torch.Generator().manual_seed(1)))
        std = float((w @ direction.vector).std())
        probs = classifier(generator.synthesis(w, noise_mode="const").clamp(-1, 1)).softmax(1)
        chosen = w[probs.argmax(1) == source][:64]
        assert chosen.shape[0] >= 8, "the generator makes enough images of the source class"

        def target_probability(codes):
            return classifier(generator.synthesis(codes, noise_mode="const").clamp(-1, 1)).softmax(1)[:, target]

        before = target_probability(chosen).mean()
        after = target_probability(direction.apply(chosen, 3 * std)).mean()
        backwards = target_probability(direction.apply(chosen, -3 * std)).mean()
    assert after > before + 0.02 and backwards < before


def test_demo_config_trains_a_few_steps_on_generator_samples_and_validates_on_real_images(tmp_path):
    from lsap.editing import Direction, save_direction

    generator = json.dumps(TINY_GENERATOR)
    root = tmp_path / "run"
    direction = tmp_path / "sneaker_to_boot.pt"
    save_direction(Direction(torch.randn(256, generator=torch.Generator().manual_seed(0)), name="test"), direction)
    # The README's demo config, with its edit row pointed at a direction for the tiny generator.
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    (grid,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ReconstructionGridCallback")]
    edits = grid["init_args"]["class_edits"]
    assert edits[7] == "sneaker_to_boot" and edits[0] == "tshirt_to_shirt", "the demo's PNG has a class edit row"
    grid["init_args"]["class_edits"] = {k: (str(direction) if v else None) for k, v in edits.items()}
    demo = tmp_path / "demo.yaml"
    demo.write_text(yaml.safe_dump(config))
    run(["-m", "lsap", "fit", "--config", str(demo),
         "--trainer.callbacks+=lsap.callbacks.EditGridCallback", f"--trainer.callbacks.directions=[{direction}]",
         "--trainer.callbacks.save_dir", str(tmp_path / "edits"),
         "--model.init_args.generator", generator, "--data.init_args.train_generator", generator,
         "--data.init_args.num_train", "16", "--data.init_args.limit", "8", "--model.init_args.anchor_samples", "300",
         "--trainer.max_steps", "3", "--trainer.val_check_interval", "3", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root)], tmp_path)
    last = next(root.rglob("last.ckpt"))
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    assert "val/mse" in str(ckpt["callbacks"]), "validation ran on the shipped images"
    assert len(list((tmp_path / "edits").glob("*.png"))) == 4, "an edit direction can be configured"
    from PIL import Image

    height = Image.open(next(root.rglob("reconstructions.png"))).height
    assert 3 * 128 <= height < 4 * 128, "three rows (real | reconstruction | edit) of 32 px images shown at 128 px"


def test_claims_script_runs_end_to_end_on_a_tiny_subset(tmp_path):
    generator = json.dumps(TINY_GENERATOR)
    directions = tmp_path / "directions"
    run([str(REPO / "bench" / "fashion32_directions.py"), "--generator", generator, "--output", str(directions),
         "--num-samples", "96", "--ganspace-samples", "500", "--check-samples", "8", "--batch-size", "48"], tmp_path)
    from lsap.editing import load_direction

    direction = load_direction(directions / "sneaker_to_boot.pt")
    reverse = load_direction(directions / "boot_to_sneaker.pt")
    torch.testing.assert_close(reverse.vector, -direction.vector)
    assert direction.generator_hash and abs(float(direction.vector.norm()) - 1) < 1e-4

    out = tmp_path / "claims"
    run([str(REPO / "bench" / "claims_fashion32.py"), "--generator", generator, "--output", str(out),
         "--num-images", "4", "--pti-images", "2", "--directions", str(directions),
         # the shipped encoders belong to fashion32: the tiny generator gets untrained ones
         "--allow-untrained-encoders", "--e4e-encoder", str(tmp_path / "none.pt"),
         "--lsap-encoder", str(tmp_path / "none.pt"),
         "--lsap-o-steps", "3", "--pti-steps", "2", "--anchor-samples", "300", "--threads", "1",
         "--lec-batch-size", "2", "--batch-size", "4", "--test-images", "shipped", "--refinements", "none", "pti",
         "sam", "--sam-images", "2", "--sam-steps", "2", "--resamples", "50"], tmp_path)
    result = json.loads((out / "claims.json").read_text())
    methods = [row["method"] for row in result["rows"]]
    pivots = ["encoder_e4e", "encoder_lsap", "restyle_e4e", "restyle_lsap", "lsap_o_w+_lambda0", "lsap_o_w+_lambda0.05",
              "lsap_o_w+_lambda0.5", "lsap_o_w_lambda0.05"]
    assert methods == ["encoder_e4e_untrained", "encoder_lsap_untrained", *pivots[2:],
                       *[f"pti_on_{p}" for p in pivots], *[f"sam_on_{p}" for p in pivots]]
    assert result["unavailable"] == {"HFGI on every pivot": "not run in this table (not in --refinements)"}
    for row in result["rows"]:
        assert row["images"] == (2 if row["refinement"] in ("pti", "sam") else 4)
        for key in ("mse", "nscd", "keep_judge", "keep_labeller"):
            interval = row["values"][key]
            assert interval is None or interval["low"] <= interval["value"] <= interval["high"]
        assert row["mse"] > 0 and row["nscd"] > 0 and row["fid_classifier"] >= 0
        assert 0 <= row["edit_reads_target"] <= 1 or row["edits"]["all"]["count"] == 0
    assert result["rows"][0]["lec"] is not None
    assert result["spearman_nscd_vs_edit_success"]["n"] >= 0
    assert result["spearman_across_rows"]["fid"]["n"] == len(methods)
    assert {(e["refinement"], e["lsap"]) for e in result["pivot_effects"]} >= {("none", "lsap_o_w+_lambda0.05"),
                                                                                 ("pti", "restyle_lsap")}
    table = (out / "claims.md").read_text()
    assert "| method |" in table and "the 256 shipped test images" in table and "class keep (judge)" in table


def test_evaluate_takes_the_builtin_generator_encoder_and_direction_names(tmp_path):
    needs(GENERATOR_FILE, ENCODERS["lsap"], DIRECTIONS / "sneaker_to_boot.pt")
    from lsap.data.fashion_samples import SHIPPED_SAMPLES_DIR
    from lsap.evaluation.pipeline import evaluate
    from lsap.model import load_generator
    from lsap.results import InversionResults

    generator = load_generator("fashion32")
    results = InversionResults(tmp_path / "results")
    names = FashionSamplesDataset(limit=4).names
    with torch.no_grad():
        ws = generator.mapping(torch.randn(len(names), generator.z_dim, generator=torch.Generator().manual_seed(0)))
        ws = ws[:, None].repeat(1, generator.num_ws, 1)
        images = generator.synthesis(ws, noise_mode="const").clamp(-1, 1)
    for i, name in enumerate(names):
        results.write_code(name, {"ws": ws[i], "key": f"{name}.png", "name": name, "meta": {}})
        results.write_image(name, images[i])
        results.write_record({"name": name, "key": f"{name}.png", "losses": {}, "nscd": None, "meta": {}})
    report = evaluate(str(results.root), str(SHIPPED_SAMPLES_DIR), real_fit="pad", generator="fashion32",
                      encoder="fashion32_lsap", direction="sneaker_to_boot", nscd_samples=200, pca_samples=50,
                      batch_size=4)
    assert report["counts"]["pairs"] == 4
    assert report["metrics"]["lec"]["mean"] > 0
    assert {Path(report["weights"][k]["path"]) for k in ("generator", "encoder", "direction")} == {
        GENERATOR_FILE, ENCODERS["lsap"], DIRECTIONS / "sneaker_to_boot.pt"}
