"""bench/lsap_o_lambda_validation.py: LSAP_O's lambda_NSCD chosen on validation images, on a
tiny random generator, 3 images, 2 lambdas and 2 steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_bench_script
from lsap.data import SHIPPED_SAMPLES_DIR

REPO = Path(__file__).resolve().parents[2]
TINY_GENERATOR = {"checkpoint": None, "seed": 0, "resolution": 32, "z_dim": 256, "w_dim": 256,
                  "mapping_layers": 2, "channel_base": 1024, "channel_max": 32, "w_avg_samples": 1000}


def test_the_rule_needs_lambda_zero_and_falls_back_to_the_default():
    script = load_bench_script("lsap_o_lambda_validation")
    scores = {0.0: {"mse": 0.01, "nscd": 0.4}, 0.1: {"mse": 0.03, "nscd": 0.1}, 0.2: {"mse": 0.02, "nscd": 0.3}}
    assert script.choose(scores)["choice"] == 0.1  # 0.2 has the lower MSE but NSCD above 0.2
    scores[0.2]["nscd"] = 0.2  # exactly half qualifies, and has the lower MSE
    assert script.choose(scores)["choice"] == 0.2
    none = script.choose({0.0: {"mse": 0.01, "nscd": 0.1}, 0.5: {"mse": 0.01, "nscd": 0.09}})
    assert none["choice"] == 0.05 and not none["by_rule"]
    with pytest.raises(SystemExit, match="include 0"):
        script.choose({0.1: {"mse": 0.01, "nscd": 0.1}})


@pytest.mark.slow
def test_lambda_validation_on_three_images(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    for path in sorted(SHIPPED_SAMPLES_DIR.glob("*.png"))[:4]:
        shutil.copyfile(path, val / path.name)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "lsap_o_lambda_validation.py"), "--generator",
                           json.dumps(TINY_GENERATOR), "--val-dir", str(val), "--images", "3", "--lambdas", "0", "0.5",
                           "--lsap-o-steps", "2", "--anchor-samples", "300", "--resamples", "20", "--threads", "1",
                           "--batch-size", "4", "--output", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "lowest validation MSE among those whose mean NSCD is at most half" in proc.stdout
    result = json.loads((out / "lambda_validation.json").read_text())
    assert list(result["lambdas"]) == ["0", "0.5"] and result["settings"]["images"] == 3
    for key, entry in result["lambdas"].items():
        assert entry["images"] == 3
        for column in ("mse", "nscd", "keep_labeller"):
            assert entry[column]["low"] <= entry[column]["value"] <= entry[column]["high"]
        # MSE of the 8-bit reconstructions against the inputs padded 28 -> 32 px on black, in [-1, 1],
        # computed here from the written files
        errors = []
        for name in sorted(p.name for p in val.glob("*.png"))[:3]:
            real = np.asarray(Image.open(val / name).convert("L"), dtype=np.float64) / 127.5 - 1
            real = np.pad(real, 2, constant_values=-1.0)
            fake = np.asarray(Image.open(out / "runs" / f"lambda{key}" / "images" / name).convert("RGB"),
                              dtype=np.float64) / 127.5 - 1  # the tiny generator's images are in colour
            real = real[..., None]  # grey inputs against every channel
            errors.append(((fake - real) ** 2).mean())
        assert entry["mse"]["value"] == pytest.approx(np.mean(errors), rel=1e-4)
    # the rule, applied here to the numbers written: only lambda 0.5 is a candidate
    qualifies = result["lambdas"]["0.5"]["nscd"]["value"] <= result["lambdas"]["0"]["nscd"]["value"] / 2
    assert result["qualifies"] == {"0.5": qualifies}
    assert result["choice"] == (0.5 if qualifies else 0.05) and result["by_rule"] == qualifies
    assert "Chosen lambda_NSCD" in (out / "lambda_validation.md").read_text()
