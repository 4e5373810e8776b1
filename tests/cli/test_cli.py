"""The non-Lightning subcommands of ``lsap``: convert, anchors, align."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from lsap.cli import main
from lsap.metrics import Anchors
from lsap.model import load_generator, save_generator

from conftest import small_source

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_convert_subcommand_writes_an_lsap_file(fixtures_dir, tmp_path, capsys):
    dst = tmp_path / "g.safetensors"
    main(["convert", str(fixtures_dir / "nvlabs_64px_small.state.pt"), str(dst)])
    assert "num_ws=10" in capsys.readouterr().out
    g = load_generator(dst)
    expected = torch.load(fixtures_dir / "nvlabs_64px_small.expected.pt", weights_only=True)
    assert (g.synthesis(expected["ws"]) - expected["img_from_ws"]).abs().max() <= 1e-4
    torch.testing.assert_close(g.w_avg, load_generator(fixtures_dir / "nvlabs_64px_small.state.pt").w_avg)


def test_convert_rejects_an_unknown_destination_format(fixtures_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(fixtures_dir / "rosinality_64px_small.pt"), str(tmp_path / "g.bin")])
    assert exc.value.code == 2
    assert re.fullmatch(r"lsap: error: .*\.safetensors or \.pt.*\n", capsys.readouterr().err)


@pytest.mark.parametrize("command", ["convert", "anchors"])
@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 cut short", b"garbage"])
def test_bad_generator_files_end_with_one_line(command, content, tmp_path, capsys):
    path = tmp_path / "g.pt"
    if content is not None:
        path.write_bytes(content)
    args = [command, str(path)] + ([str(tmp_path / "out.pt")] if command == "convert" else [])
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lsap: error: ") and err.count("\n") == 1 and str(path) in err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    missing = str(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        main(["anchors", missing, "--debug"])
    monkeypatch.setenv("LSAP_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        main(["anchors", missing])


def test_predict_with_a_missing_generator_ends_with_the_cause(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["lsap"])
    missing = tmp_path / "nowhere" / "g.pt"
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--config", str(CONFIGS / "optimize_demo.yaml"),
              "--model.init_args.generator", f"{{checkpoint: {missing}}}"])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("lsap: error: ") and str(missing) in last and "Namespace" not in last


def test_anchors_subcommand_writes_anchors(tmp_path, capsys):
    src = save_generator(small_source().build(), tmp_path / "g.pt")
    out = tmp_path / "anchors.pt"
    main(["anchors", str(src), "--output", str(out), "--num_samples", "200"])
    assert "8 LSAP layers" in capsys.readouterr().out
    anchors = Anchors.load(out)
    assert anchors.num_samples == 200 and len(anchors.lsap) == 8
    assert all(0 < float(a.norm()) <= 1 + 1e-6 for a in anchors.lsap)


def test_align_subcommand_reports_images_without_faces(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (96, 96), (128, 128, 128)).save(src / "blank.png")
    (src / "broken.jpg").write_bytes(b"not an image")
    main(["align", str(src), str(dst), "--output_size", "64"])
    report = json.loads((dst / "align_report.json").read_text())
    reasons = {item["path"].split("/")[-1]: item["reason"] for item in report["skipped"]}
    assert reasons.get("blank.png") == "no_face" and reasons.get("broken.jpg") == "unreadable", report
    assert capsys.readouterr().out.strip()


def test_align_subcommand_exit_code_for_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["align", str(tmp_path / "missing"), str(tmp_path / "out")])
    assert exc.value.code == 2
