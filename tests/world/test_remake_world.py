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
                "--steps", "classifiers", "directions", "encoders", "lambda", "claims"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((world / "remake_world.json").read_text())
    assert summary["failed"] is None and summary["tiny"]
    assert list(summary["steps"]) == ["classifiers", "directions", "encoders", "lambda", "claims"]
    for name in ("fashion_classifier.safetensors", "fashion_judge.safetensors", "generator.safetensors",
                 "directions/sneaker_to_boot.pt", "encoders/fashion32_e4e.pt", "encoders/fashion32_lsap.pt",
                 "claims/claims.json", "claims/claims.md"):
        assert (world / name).is_file(), name
    # every seed of both encoders ran and was validated on real training images
    runs = world / "runs" / "encoders"
    assert sorted(p.name for p in runs.iterdir()) == ["e4e_s0", "e4e_s1", "lsap_s0", "lsap_s0_nscd0.05", "lsap_s1"]
    assert len(list((world / "runs" / "fashion_val_train").glob("*.png"))) == 10
    assert "best seed" in proc.stdout
    from lsap.encoders import load_encoder_checkpoint

    assert load_encoder_checkpoint(world / "encoders" / "fashion32_lsap.pt").num_ws == 8
    claims = json.loads((world / "claims" / "claims.json").read_text())
    assert claims["rows"] and all(row["mse"] > 0 for row in claims["rows"])
    assert not any("untrained" in row["method"] for row in claims["rows"]), "the remade encoders were used"
    # the further seed and the choices made on validation reached the claims table
    picks = world / "runs" / "claims_inputs"
    assert sorted(p.name for p in (picks / "seeds").iterdir()) in (
        ["fashion32_e4e_s0.pt", "fashion32_lsap_s0.pt"], ["fashion32_e4e_s0.pt", "fashion32_lsap_s1.pt"],
        ["fashion32_e4e_s1.pt", "fashion32_lsap_s0.pt"], ["fashion32_e4e_s1.pt", "fashion32_lsap_s1.pt"])
    assert set(claims["seeds"]) == {"e4e", "lsap"} and claims["seeds"]["lsap"]["n"] == 2
    weight = json.loads((picks / "nscd_weight_choice.json").read_text())["choice"]
    assert (picks / "fashion32_lsap_nscd_chosen.pt").is_file() and "Chosen NSCD weight" in proc.stdout
    lam = json.loads((picks / "lambda_validation" / "lambda_validation.json").read_text())["choice"]
    assert lam in (0.05,) and claims["settings"]["lambda_NSCD"][:2] == [0.0, lam]
    assert ("encoder_lsap_nscd0.05" in [r["embedding"] for r in claims["rows"]]) == (weight == 0.05)


def test_dry_run_prints_every_step_in_order(tmp_path):
    proc = run([str(REPO / "bench" / "remake_world.py"), "--generator", "fashion32", "--output", str(tmp_path / "w"),
                "--dry-run", "--keep-going"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    order = [line[3:] for line in proc.stdout.splitlines() if line.startswith("== ")]
    assert order == ["classifiers", "directions", "encoders", "refinements", "figures", "demo", "lambda", "claims"]
    assert not (tmp_path / "w" / "remake_world.json").exists(), "a dry run writes nothing"
    commands = [line[5:] for line in proc.stdout.splitlines() if line.startswith("   $ ")]
    picks = tmp_path / "w" / "runs" / "claims_inputs"
    for weight in ("0.05", "0.15"):
        assert any(" run lsap 0 --nscd-weight " + weight in c for c in commands), weight
    (choose,) = [c for c in commands if " choose-weight " in c]
    assert " choose-weight 0.05 0.15 0.5 " in choose and f"--export {picks}/fashion32_lsap_nscd_chosen.pt" in choose
    assert all(f"--others {picks}/seeds" in c for c in commands if " best " in c)
    (lam,) = [c for c in commands if "lsap_o_lambda_validation.py" in c]
    assert f"--val-dir {tmp_path / 'w' / 'runs' / 'fashion_val_train'}" in lam
    (claims,) = [c for c in commands if "claims_fashion32.py" in c]
    for option in ("--seed-encoders", "--extra-encoders", "--lambdas 0 '<lambda in"):
        assert option in claims, option


def test_claims_take_the_choices_made_on_validation(tmp_path):
    """The claims command reads the seeds, the NSCD weight and the lambda the earlier steps chose."""
    remake = load_bench_script("remake_world")
    args = remake.parse_args(["--generator", "fashion32", "--output", str(tmp_path / "w")])
    world = remake.World(args)
    (world.picks / "seeds").mkdir(parents=True)
    for name in ("fashion32_e4e_s1.pt", "fashion32_lsap_s0.pt", "fashion32_lsap_s2.pt"):
        (world.picks / "seeds" / name).write_bytes(b"")
    (world.picks / "nscd_weight_choice.json").write_text(json.dumps({"choice": 0.15}))
    (world.picks / "lambda_validation").mkdir()
    (world.picks / "lambda_validation" / "lambda_validation.json").write_text(json.dumps({"choice": 0.1}))
    (command,) = world.claims().commands
    seeds = command[command.index("--seed-encoders") + 1:command.index("--extra-encoders")]
    assert seeds == [f"e4e={world.picks / 'seeds' / 'fashion32_e4e_s1.pt'}",
                     f"lsap={world.picks / 'seeds' / 'fashion32_lsap_s0.pt'}",
                     f"lsap={world.picks / 'seeds' / 'fashion32_lsap_s2.pt'}"]
    assert command[command.index("--extra-encoders") + 1] == \
        f"lsap_nscd0.15=lsap={world.picks / 'fashion32_lsap_nscd_chosen.pt'}"
    assert command[command.index("--lambdas") + 1:command.index("--lambdas") + 4] == ["0", "0.1", "0.5"]
    # the config's weight chosen: no extra row (the main LSAP_E row is that weight); lambda 0.5: listed once
    (world.picks / "nscd_weight_choice.json").write_text(json.dumps({"choice": 0.5}))
    (world.picks / "lambda_validation" / "lambda_validation.json").write_text(json.dumps({"choice": 0.5}))
    plan = world.claims()
    assert "--extra-encoders" not in plan.commands[0] and "config's 0.5" in plan.note
    lambdas = plan.commands[0][plan.commands[0].index("--lambdas") + 1:]
    assert lambdas[:2] == ["0", "0.5"] and (len(lambdas) == 2 or lambdas[2].startswith("--"))


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
