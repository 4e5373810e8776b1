"""bench/gpu_suite.py keeps working: its CPU smoke mode runs every case at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_suite_smoke_mode_writes_json_and_markdown(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_suite.py"), str(tmp_path), "--smoke"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert report["smoke"] is True
    names = [c["case"] for c in report["cases"]]
    assert sum(n.startswith("G ") for n in names) == 4  # fused x precision
    assert sum(n.startswith("LSAP_E") for n in names) == 2 and sum(n.startswith("LSAP_O") for n in names) == 3
    for case in report["cases"]:
        assert "error" not in case and "skipped" not in case, case
        assert case["s"] > 0
    assert "| case |" in (tmp_path / "gpu_suite.md").read_text()
