"""bench/claims_fashion32.py with further training seeds (--seed-encoders), further encoder
rows (--extra-encoders) and resumed runs (--reuse-runs), on a tiny random generator and a few
shipped images."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_bench_script

REPO = Path(__file__).resolve().parents[2]
TINY_GENERATOR = {"checkpoint": None, "seed": 0, "resolution": 32, "z_dim": 256, "w_dim": 256,
                  "mapping_layers": 2, "channel_base": 1024, "channel_max": 32, "w_avg_samples": 1000}


def encoder(path: Path, seed: int) -> str:
    """An untrained encoder of the shipped architecture, its weights drawn with ``seed``."""
    from lsap.encoders import Encoder4Editing
    from lsap.encoders.checkpoints import save_e4e_checkpoint

    claims = load_bench_script("claims_fashion32")
    torch.manual_seed(seed)
    save_e4e_checkpoint(path, Encoder4Editing(**claims.ENCODER_ARCH), 0.1 * torch.randn(256))
    return str(path)


def directions(folder: Path) -> Path:
    from lsap.editing import Direction, save_direction

    claims = load_bench_script("claims_fashion32")
    folder.mkdir()
    for k, (name, _, _) in enumerate(claims.CLASS_EDITS):
        save_direction(Direction(torch.randn(256, generator=torch.Generator().manual_seed(k)), name=name),
                       folder / f"{name}.pt")
    return folder


@pytest.mark.slow
def test_seed_rows_and_extra_encoder_rows(tmp_path):
    out = tmp_path / "claims"
    files = {seed: encoder(tmp_path / f"enc{seed}.pt", seed) for seed in range(1, 7)}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "claims_fashion32.py"), "--generator", json.dumps(TINY_GENERATOR),
         "--output", str(out), "--num-images", "4", "--pti-images", "2", "--directions", str(directions(tmp_path / "d")),
         "--e4e-encoder", files[1], "--lsap-encoder", files[2],
         "--seed-encoders", f"e4e={files[3]}", f"lsap={files[4]}", f"lsap={files[5]}",
         "--extra-encoders", f"lsap_nscd0.15=lsap={files[6]}",
         "--restyle-encoders", str(tmp_path / "none1.pt"), str(tmp_path / "none2.pt"),
         "--lambdas", "0", "--lsap-o-steps", "2", "--pti-steps", "2", "--anchor-samples", "300", "--threads", "1",
         "--lec-batch-size", "2", "--lec-images", "2", "--batch-size", "4", "--test-images", "shipped",
         "--refinements", "none", "pti", "--resamples", "20"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads((out / "claims.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    pivots = ["encoder_e4e", "encoder_lsap", "encoder_lsap_nscd0.15", "lsap_o_w+_lambda0", "lsap_o_w_lambda0.05"]
    seeds = ["encoder_e4e_seed1", "encoder_lsap_seed1", "encoder_lsap_seed2"]
    assert list(rows) == [*pivots[:3], *seeds, *pivots[3:], *[f"pti_on_{p}" for p in pivots]]
    assert rows["encoder_lsap_nscd0.15"]["kind"] == "lsap" and rows["encoder_lsap_nscd0.15"]["lec"] is not None
    assert all(rows[s]["refinement"] == "none" and rows[s]["lec"] is not None for s in seeds)
    assert {rows[s]["seed_of"] for s in seeds} == {"e4e", "lsap"}
    # the seed rows stay out of the method-level correlation: one row per method
    assert result["spearman_across_rows"]["fid"]["n"] == len(rows) - len(seeds)
    # the seeds table: mean and sd across seeds of each row's mean, recomputed here from the rows
    for kind, group in (("e4e", ["encoder_e4e", "encoder_e4e_seed1"]),
                        ("lsap", ["encoder_lsap", "encoder_lsap_seed1", "encoder_lsap_seed2"])):
        table = result["seeds"][kind]
        assert table["rows"] == group and table["n"] == len(group)
        for key in ("mse", "nscd", "keep_judge", "fid"):
            values = [rows[m]["values"][key]["value"] for m in group]
            assert table["columns"][key]["mean"] == pytest.approx(statistics.fmean(values))
            assert table["columns"][key]["sd"] == pytest.approx(statistics.stdev(values))
        lec = [rows[m]["lec"] for m in group]
        assert table["columns"]["lec"]["mean"] == pytest.approx(statistics.fmean(lec))
    assert result["seeds"]["lsap"]["columns"]["mse"]["sd"] > 0, "different encoders, different reconstructions"
    assert ("none", "encoder_lsap_nscd0.15") in {(e["refinement"], e["lsap"]) for e in result["pivot_effects"]}
    text = (out / "claims.md").read_text()
    assert "| encoder_lsap | 3 |" in text and "| encoder_e4e | 2 |" in text
    assert "seed rows left out" in text


def test_embeddings_option_keeps_only_the_rows_named(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def claims(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "bench" / "claims_fashion32.py"), "--generator", json.dumps(TINY_GENERATOR),
             "--output", str(tmp_path / "claims"), "--num-images", "3", "--directions", str(tmp_path / "d"),
             "--allow-untrained-encoders", "--restyle-encoders", str(tmp_path / "none1.pt"), str(tmp_path / "none2.pt"),
             "--lambdas", "0", "--lsap-o-steps", "1", "--anchor-samples", "300", "--threads", "1", "--batch-size", "4",
             "--test-images", "shipped", "--refinements", "none", "--resamples", "20", *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    directions(tmp_path / "d")
    unknown = claims("--embeddings", "encoder_e4e", "lsap_o_w+_lambda7")
    assert unknown.returncode != 0 and "unknown rows ['lsap_o_w+_lambda7']" in unknown.stderr
    proc = claims("--embeddings", "lsap_o_w+_lambda0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = json.loads((tmp_path / "claims" / "claims.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["lsap_o_w+_lambda0"]


@pytest.mark.slow
def test_reuse_runs_keeps_a_folder_only_for_the_same_recipe(tmp_path):
    """--reuse-runs keeps a run folder made from the same files and settings; an encoder
    retrained under the same path makes its row, and the refinement over it, run again."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    file = tmp_path / "enc.pt"
    runs = tmp_path / "claims" / "runs"

    def claims() -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, str(REPO / "bench" / "claims_fashion32.py"), "--generator", json.dumps(TINY_GENERATOR),
             "--output", str(tmp_path / "claims"), "--num-images", "3", "--pti-images", "2", "--pti-steps", "1",
             "--directions", str(tmp_path / "d"), "--e4e-encoder", str(file), "--embeddings", "encoder_e4e",
             "--anchor-samples", "300", "--threads", "1", "--lec-batch-size", "2", "--lec-images", "2",
             "--batch-size", "4", "--test-images", "shipped", "--refinements", "none", "pti", "--resamples", "20",
             "--reuse-runs"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return proc

    def recorded() -> dict[str, tuple[str, str]]:
        return {name: ((runs / name / "recipe.json").read_text(), (runs / name / "seconds.json").read_text())
                for name in ("encoder_e4e", "pti_on_encoder_e4e")}

    directions(tmp_path / "d")
    encoder(file, seed=1)
    first = claims()
    assert "run again" not in first.stdout
    settings = json.loads((tmp_path / "claims" / "claims.json").read_text())["settings"]
    assert settings["PTI steps"] == 1 and "LSAP_O steps" not in settings, "the settings of the rows that ran"
    made = recorded()
    again = claims()
    assert "run again" not in again.stdout and recorded() == made, "same recipe: both folders kept as they were"
    encoder(file, seed=2)
    retrained = claims()
    assert "encoder_e4e: run again, its folder was made from another recipe" in retrained.stdout
    assert "pti_on_encoder_e4e: run again" in retrained.stdout, "a refinement follows its pivot's recipe"
    remade = recorded()
    for name in made:
        assert remade[name][0] != made[name][0]
    assert json.loads(remade["encoder_e4e"][0])["settings"] != json.loads(made["encoder_e4e"][0])["settings"]
