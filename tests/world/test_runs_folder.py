"""bench/runs_folder.py: the bench scripts' runs folder is the repository's runs/ unless
$LSAP_RUNS_DIR names another, and every script that reads the validation split agrees."""

from __future__ import annotations

from conftest import REPO, load_bench_script

runs_folder = load_bench_script("runs_folder")


def test_default_is_in_the_repository_and_the_variable_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("LSAP_RUNS_DIR", raising=False)
    assert runs_folder.runs_folder() == REPO / "runs"
    monkeypatch.setenv("LSAP_RUNS_DIR", str(tmp_path))
    assert runs_folder.runs_folder() == tmp_path
    assert runs_folder.validation_folder() == tmp_path / "fashion_val_train"


def test_the_scripts_default_to_it(monkeypatch, tmp_path):
    monkeypatch.setenv("LSAP_RUNS_DIR", str(tmp_path))
    encoder_runs = load_bench_script("fashion32_encoder_runs")
    assert encoder_runs.DEFAULT_RUNS == tmp_path
    for name in ("lsap_o_lambda_validation", "fashion32_hfgi_fusion", "remake_world"):
        source = (REPO / "bench" / f"{name}.py").read_text()
        assert "/work/" not in source and "runs_folder" in source, name
