"""bench/remake_world.py: one command remakes everything downstream of a generator.

The smoke test remakes a tiny world (a small random generator, a few images, a few steps)
into a temporary folder: classifiers (when Debian's Fashion-MNIST is installed), directions,
encoders of two seeds each with the best one exported, and the claims table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_bench_script

REPO = Path(__file__).resolve().parents[2]
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
# The fashion32 code sizes (w_dim 256, num_ws 8 at 32 px), tiny channels.
TINY_GENERATOR = {"checkpoint": None, "seed": 0, "resolution": 32, "z_dim": 256, "w_dim": 256,
                  "mapping_layers": 2, "channel_base": 1024, "channel_max": 32, "w_avg_samples": 1000}


def run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(cwd / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a dozen subprocesses (classifiers, directions, 4 encoder runs, claims)
@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason="needs Debian's dataset-fashion-mnist (validation split)")
def test_remake_a_tiny_world_end_to_end(tmp_path):
    world = tmp_path / "world"
    proc = run([str(REPO / "bench" / "remake_world.py"), "--generator", json.dumps(TINY_GENERATOR),
                "--output", str(world), "--tiny", "--seeds", "0", "1",
                "--steps", "classifiers", "directions", "encoders", "claims"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((world / "remake_world.json").read_text())
    assert summary["failed"] is None and summary["tiny"]
    assert list(summary["steps"]) == ["classifiers", "directions", "encoders", "claims"]
    for name in ("fashion_classifier.safetensors", "fashion_judge.safetensors", "generator.safetensors",
                 "directions/sneaker_to_boot.pt", "encoders/fashion32_e4e.pt", "encoders/fashion32_lsap.pt",
                 "claims/claims.json", "claims/claims.md"):
        assert (world / name).is_file(), name
    # every seed of both encoders ran and was validated on real training images
    runs = world / "runs" / "encoders"
    assert sorted(p.name for p in runs.iterdir()) == ["e4e_s0", "e4e_s1", "lsap_s0", "lsap_s1"]
    assert len(list((world / "runs" / "fashion_val_train").glob("*.png"))) == 10
    assert "best seed" in proc.stdout
    from lsap.encoders import load_encoder_checkpoint

    assert load_encoder_checkpoint(world / "encoders" / "fashion32_lsap.pt").num_ws == 8
    claims = json.loads((world / "claims" / "claims.json").read_text())
    assert claims["rows"] and all(row["mse"] > 0 for row in claims["rows"])
    assert not any("untrained" in row["method"] for row in claims["rows"]), "the remade encoders were used"


def test_dry_run_prints_every_step_in_order(tmp_path):
    proc = run([str(REPO / "bench" / "remake_world.py"), "--generator", "fashion32", "--output", str(tmp_path / "w"),
                "--dry-run", "--keep-going"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    order = [line[3:] for line in proc.stdout.splitlines() if line.startswith("== ")]
    assert order == ["classifiers", "directions", "encoders", "refinements", "figures", "demo", "claims"]
    assert not (tmp_path / "w" / "remake_world.json").exists(), "a dry run writes nothing"


def test_a_missing_refinement_script_is_a_clear_failure(tmp_path, monkeypatch):
    remake = load_bench_script("remake_world")
    monkeypatch.setattr(remake, "REPO", tmp_path)  # a checkout without the refinement scripts
    (tmp_path / "lsap" / "assets").mkdir(parents=True)
    args = remake.parse_args(["--generator", "fashion32"])
    plan = remake.World(args).refinements()
    assert plan.missing and not plan.commands
    assert any("bench/train_sam_invertibility.py is missing" in line for line in plan.missing)
    assert any("HFGI" in line and "train_fashion32_refiners.sh is missing" in line for line in plan.missing)


def test_in_place_needs_the_builtin_generator(tmp_path):
    proc = run([str(REPO / "bench" / "remake_world.py"), "--generator", str(tmp_path / "g.safetensors"),
                "--dry-run"], tmp_path, timeout=120)
    assert proc.returncode != 0 and "lsap/assets/fashion32.safetensors" in proc.stderr
