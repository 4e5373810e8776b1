"""bench/fashion32_encoder_runs.py: the NSCD weight chosen on validation, curves as a table,
and ``best`` comparing only runs stopped at the same step, on hand-made metrics.csv files."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from conftest import load_bench_script

runs_script = load_bench_script("fashion32_encoder_runs")
table = load_bench_script("claims_table")


def write_run(runs: Path, name: str, rows: list[tuple[int, float, float]]) -> None:
    """A run folder whose metrics.csv holds validation rows (step, val/mse, val/nscd) between
    training rows, as Lightning's CSVLogger writes them."""
    folder = runs / "encoders" / name / "logs" / "version_0"
    folder.mkdir(parents=True)
    with (folder / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", "train/loss", "val/mse", "val/nscd"])
        writer.writeheader()
        for step, mse, nscd in rows:
            writer.writerow({"epoch": 0, "step": step - 1, "train/loss": 0.5})
            writer.writerow({"epoch": 0, "step": step, "val/mse": mse, "val/nscd": nscd})


def test_rule_on_hand_made_numbers():
    scores = {0.05: {"mse": 0.010, "nscd": 0.30}, 0.15: {"mse": 0.020, "nscd": 0.20},
              0.5: {"mse": 0.030, "nscd": 0.10}}
    # half of 0.5 is 0.25: 0.05 does not qualify (lowest MSE, too much NSCD), 0.15 and 0.5 do
    chosen = table.select_under_half_nscd(scores, reference_nscd=0.5, fallback=0.5)
    assert chosen["choice"] == 0.15 and chosen["by_rule"]
    assert chosen["qualifies"] == {0.05: False, 0.15: True, 0.5: True}
    # a tie in MSE among qualifying weights goes to the larger weight
    tied = {**scores, 0.5: {"mse": 0.020, "nscd": 0.10}}
    assert table.select_under_half_nscd(tied, 0.5, fallback=0.05)["choice"] == 0.5
    # exactly half qualifies
    assert table.select_under_half_nscd({0.1: {"mse": 1.0, "nscd": 0.25}}, 0.5, fallback=0.7)["choice"] == 0.1
    # none qualifies: the fallback, said so
    none = table.select_under_half_nscd(scores, reference_nscd=0.1, fallback=0.5)
    assert none["choice"] == 0.5 and not none["by_rule"] and not any(none["qualifies"].values())


def cli(monkeypatch, capsys, *argv: str) -> str:
    """The script's command line, run in this process (its stdout)."""
    monkeypatch.setattr(sys, "argv", ["fashion32_encoder_runs.py", *argv])
    capsys.readouterr()
    runs_script.main()
    return capsys.readouterr().out


def test_choose_weight_reads_the_final_validation_rows(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "e4e_s0", [(1000, 0.02, 0.90), (2000, 0.015, 0.40)])  # final NSCD 0.40: half is 0.20
    write_run(runs, "lsap_s0_nscd0.05", [(1000, 0.03, 0.10), (2000, 0.012, 0.25)])  # best MSE, NSCD too high
    write_run(runs, "lsap_s0_nscd0.15", [(1000, 0.01, 0.30), (2000, 0.016, 0.18)])  # qualifies
    write_run(runs, "lsap_s0", [(1000, 0.02, 0.10), (2000, 0.016, 0.05)])  # weight 0.5: qualifies, ties 0.15
    result = runs_script.choose_weight(runs, [0.05, 0.15, 0.5])
    assert result["final_step"] == 2000 and result["e4e_s0_val_nscd"] == pytest.approx(0.40)
    assert result["qualifies"] == {0.05: False, 0.15: True, 0.5: True}
    assert result["choice"] == 0.5, "the tie at MSE 0.016 goes to the larger weight"
    assert runs_script.choose_weight(runs, [0.05, 0.15])["choice"] == 0.15
    alone = runs_script.choose_weight(runs, [0.05])  # the only candidate does not qualify
    assert alone["choice"] == 0.5 and not alone["by_rule"]

    out = tmp_path / "choice.json"
    stdout = cli(monkeypatch, capsys, "choose-weight", "0.05", "0.15", "0.5", "--runs", str(runs), "--json", str(out))
    assert "lowest final validation MSE" in stdout and "| 0.05 | lsap_s0_nscd0.05 | 2000 |" in stdout
    assert "Chosen NSCD weight: 0.5" in stdout
    saved = json.loads(out.read_text())
    assert saved["choice"] == 0.5 and saved["qualifies"] == {"0.05": False, "0.15": True, "0.5": True}

    lines = cli(monkeypatch, capsys, "curves", "e4e_s0", "lsap_s0", "--markdown", "--runs", str(runs)).splitlines()
    assert lines[0] == "| step | e4e_s0 val/mse | e4e_s0 val/nscd | lsap_s0 val/mse | lsap_s0 val/nscd |"
    assert lines[2:] == ["| 1000 | 0.02 | 0.9 | 0.02 | 0.1 |", "| 2000 | 0.015 | 0.4 | 0.016 | 0.05 |"]


def test_runs_stopped_at_different_steps_are_not_compared(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "e4e_s0", [(1000, 0.02, 0.9), (2000, 0.015, 0.4)])
    write_run(runs, "lsap_s0", [(1000, 0.02, 0.1)])  # stopped earlier
    with pytest.raises(SystemExit, match="different final steps.*lsap_s0 at step 1000"):
        runs_script.choose_weight(runs, [0.5])
    write_run(runs, "e4e_s1", [(1000, 0.01, 0.9)])
    with pytest.raises(SystemExit, match="e4e_s0 at step 2000, e4e_s1 at step 1000"):
        cli(monkeypatch, capsys, "best", "e4e", "0", "1", str(tmp_path / "out.pt"), "--runs", str(runs))
    assert not (tmp_path / "out.pt").exists()


def test_a_resumed_run_keeps_its_earlier_validation_rows(tmp_path):
    # the first launch logs version_0, a resume version_1 (overlapping at step 2000)
    write_run(tmp_path, "e4e_s0", [(1000, 0.09, 0.08), (2000, 0.08, 0.08)])
    resumed = tmp_path / "encoders" / "e4e_s0" / "logs" / "version_1"
    resumed.mkdir(parents=True)
    with (resumed / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", "val/mse", "val/nscd"])
        writer.writeheader()
        writer.writerow({"epoch": 1, "step": 2000, "val/mse": 0.075, "val/nscd": 0.07})
        writer.writerow({"epoch": 1, "step": 3000, "val/mse": 0.07, "val/nscd": 0.07})
    curve = runs_script.read_curve(tmp_path / "encoders" / "e4e_s0")
    assert [(row["step"], row["val/mse"]) for row in curve] == [(1000, 0.09), (2000, 0.075), (3000, 0.07)]
    config = runs_script.run_config("e4e", 0, tmp_path / "run", tmp_path / "val", 100, 64, 50, None)
    assert config["trainer"]["logger"]["init_args"]["version"] is None  # every launch gets its own version


def test_restyle_runs_validate_on_the_split_and_keep_their_weights(tmp_path, monkeypatch, capsys):
    for kind, weight in (("restyle_e4e", 0.0), ("restyle_lsap", 0.5)):
        config = runs_script.run_config(kind, 2, tmp_path / "run", tmp_path / "val", 600, 64, 200, None)
        trainer, model, data = config["trainer"], config["model"]["init_args"], config["data"]["init_args"]
        assert config["model"]["class_path"] == "lsap.modules.ReStyle"
        assert "limit_val_batches" not in trainer, "the run validates on the held-out training images"
        assert trainer["val_check_interval"] == 200 and trainer["check_val_every_n_epoch"] is None
        assert trainer["max_steps"] == 600 and model["nscd_weight"] == weight
        assert data["root"] == str(tmp_path / "val") and data["seed"] == 2 and config["seed_everything"] == 2
        assert model["encoder"]["init_args"]["input_channels"] == 6
        assert runs_script.EXPORTERS[kind].name == "export_fashion32_restyle.py"
    with pytest.raises(SystemExit, match="lsap runs only"):
        runs_script.run_config("restyle_lsap", 0, tmp_path / "run", tmp_path / "val", 10, 8, 5, 0.15)
    with pytest.raises(SystemExit, match="one-shot kinds only"):
        cli(monkeypatch, capsys, "score", "restyle_e4e", "0", "--runs", str(tmp_path))


def test_scores_table_gives_each_run_and_the_spread_across_seeds():
    def result(run: str, mse: float, keep: float) -> dict:
        cell = lambda v: {"value": v, "low": v - 0.001, "high": v + 0.001, "level": 0.95, "n": 10}  # noqa: E731
        return {"run": run, "step": 100, "test": {"mse": cell(mse), "nscd": cell(0.5), "keep_labeller": cell(keep),
                                                  "keep_judge": cell(keep), "images": 10}}

    results = [result("e4e_s0", 0.010, 0.7), result("e4e_s1", 0.030, 0.9), result("lsap_s0", 0.02, 0.5)]
    lines = runs_script.scores_markdown(results, "test").splitlines()
    assert lines[2] == "| e4e_s0 | 100 | 10 | 0.0100 [0.0090, 0.0110] | 0.5000 [0.4990, 0.5010] | " \
                       "0.7000 [0.6990, 0.7010] | 0.7000 [0.6990, 0.7010] |"
    # mean ± sample sd of the two e4e runs: 0.02 ± 0.01414, 0.8 ± 0.1414; one lsap run: no spread row
    assert lines[-1] == "| **e4e: mean ± sd of 2 runs** | | | 0.0200 ± 0.0141 | 0.5000 ± 0.0000 | 0.8000 ± 0.1414 | " \
                        "0.8000 ± 0.1414 |"
    assert len(lines) == 6
    assert runs_script.scores_markdown(results, "validation (training images)").count("\n") == 2  # no rows


def test_seed_curves_average_each_kind_and_show_how_flat_they_are(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "e4e_s0", [(1000, 0.10, 0.9), (2000, 0.08, 0.8)])
    write_run(runs, "e4e_s1", [(1000, 0.12, 0.7), (2000, 0.10, 0.6)])
    write_run(runs, "lsap_s0", [(1000, 0.20, 0.1)])  # one seed, stopped at step 1000
    lines = cli(monkeypatch, capsys, "curves", "e4e_s0", "e4e_s1", "lsap_s0", "--seeds-mean",
                "--runs", str(runs)).splitlines()
    assert lines[0] == "| step | e4e val/mse (2 seeds) | change | e4e val/nscd | lsap val/mse (1 seeds) | change | " \
                       "lsap val/nscd |"
    assert lines[2] == "| 1000 | 0.1100 ± 0.0141 | – | 0.8000 ± 0.1414 | 0.2000 | – | 0.1000 |"
    # e4e's mean val/mse 0.11 -> 0.09 is -18.2 %; lsap has no row at 2000
    assert lines[3] == "| 2000 | 0.0900 ± 0.0141 | -18.2% | 0.7000 ± 0.1414 | – | – | – |"


def test_seed_groups_keep_nscd_weights_apart():
    assert runs_script.seed_group("lsap_s2") == "lsap"
    assert runs_script.seed_group("lsap_s2_nscd0.15") == "lsap_nscd0.15"
    assert runs_script.seed_group("restyle_e4e_s0") == "restyle_e4e"
    assert runs_script.seed_group("fashion32_lsap.pt") == "fashion32_lsap.pt"  # no seed: its own group


def test_scores_table_reads_saved_score_output(tmp_path, monkeypatch, capsys):
    cell = {"value": 0.25, "low": 0.2, "high": 0.3, "level": 0.95, "n": 4}
    result = {"run": "e4e_s0", "step": 10,
              "test": {"images": 4, **{k: cell for k in ("mse", "nscd", "keep_labeller", "keep_judge")}}}
    saved = tmp_path / "score.jsonl"
    saved.write_text("wrote /tmp/x/encoder.pt (12.3 MB): e4e encoder\n" + json.dumps(result) + "\n")
    out = cli(monkeypatch, capsys, "scores-table", str(saved))
    assert "| e4e_s0 | 10 | 4 | 0.2500 [0.2000, 0.3000] |" in out and "validation" not in out
    (tmp_path / "empty.jsonl").write_text("wrote something\n")
    with pytest.raises(SystemExit, match="no score results"):
        cli(monkeypatch, capsys, "scores-table", str(tmp_path / "empty.jsonl"))
