"""The evaluators of `lsap evaluate`, each against an independent computation; the options and
their command line; unreadable inputs, strict JSON reports and clear errors."""

from __future__ import annotations

import copy
import json
import re
import shlex
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import small_source
from lsap.cli import main
from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.evaluation import evaluate
from lsap.images import to_uint8
from lsap.results import InversionResults

REPO = Path(__file__).resolve().parents[2]


def save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy()).save(path)


def write_decompression_bomb(path: Path) -> None:
    """A tiny PNG whose header claims 40000 x 40000 pixels (PIL refuses it unread)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 32 px generator (the shipped classifier's size), a results folder of 6 images named
    like the shipped samples (NNNN_<class>), their inputs, and a PTI-style folder whose
    first image has its own weight delta."""
    from lsap.model.delta import make_delta

    root = tmp_path_factory.mktemp("world")
    source = small_source(resolution=32, z_dim=32, w_dim=32)
    generator = source.build().eval()
    g = torch.Generator().manual_seed(1)
    names = ["0000_7", "0001_7", "0002_9", "0003_7", "0004_1", "0005_7"]
    with torch.no_grad():
        ws = generator.mapping(torch.randn(len(names), generator.z_dim, generator=g))[:, None].repeat(
            1, generator.num_ws, 1)
        ws = ws + 0.3 * torch.randn(ws.shape, generator=g)
        images = generator.synthesis(ws, noise_mode="const")
    real = root / "real"
    plain, pti = InversionResults(root / "plain"), InversionResults(root / "pti")
    tuned = copy.deepcopy(generator)
    with torch.no_grad():
        for p in tuned.synthesis_network.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    delta = make_delta(generator, tuned, dtype="float32")
    for i, name in enumerate(names):
        save_png(real / f"{name}.png", images[i] + 0.05 * torch.randn(images[i].shape, generator=g))
        for results in (plain, pti):
            results.write_code(name, {"ws": ws[i], "key": f"{name}.png", "name": name, "meta": {}})
            results.write_image(name, images[i])
            results.write_record({"name": name, "key": f"{name}.png", "losses": {}, "nscd": None, "meta": {}})
    pti.write_delta(names[0], delta)
    direction = torch.nn.functional.normalize(torch.randn(generator.w_dim, generator=g), dim=0)
    from lsap.editing.directions import Direction, save_direction

    save_direction(Direction(direction, name="seven_to_nine", meta={"classes": [7, 9]}), root / "seven_to_nine.pt")
    return {"root": root, "source": source, "generator": generator, "tuned": tuned, "names": names, "ws": ws,
            "real": real, "plain": plain.root, "pti": pti.root, "direction": direction,
            "direction_file": root / "seven_to_nine.pt", "spec": json.dumps(source.as_dict())}


def expected_class_edit(world, strength: float, results: str) -> dict:
    """Class-edit success computed directly: render each class-7 code before and after the edit
    (the PTI image with its tuned weights), classify, compare."""
    from lsap.nets.fashion_classifier import load_fashion_classifier

    classifier = load_fashion_classifier()
    rises, reads, others = [], [], []
    for i, name in enumerate(world["names"]):
        if not name.endswith("_7"):
            continue
        g = world["tuned"] if (results == "pti" and i == 0) else world["generator"]
        ws = world["ws"][i:i + 1]
        with torch.no_grad():
            before = classifier(g.synthesis(ws, noise_mode="const").clamp(-1, 1)).softmax(1)[0].double()
            after = classifier(g.synthesis(ws + strength * world["direction"], noise_mode="const").clamp(-1, 1)
                               ).softmax(1)[0].double()
        change = after - before
        rises.append(float(change[9] > 0))
        reads.append(float(after.argmax() == 9))
        others.append(torch.cat([change[:9], change[10:]]).abs().mean().item())
    return {"success_rate": sum(rises) / len(rises), "reads_target": sum(reads) / len(reads),
            "mean_abs_other_change": sum(others) / len(others), "count": len(rises)}


@pytest.mark.parametrize("results", ["plain", "pti"])
def test_class_edit_success_equals_a_direct_computation(world, tmp_path, results) -> None:
    report = evaluate(str(world[results]), str(world["real"]), generator=world["spec"], classifier="fashion32",
                      direction=str(world["direction_file"]), strength=2.0, nscd_samples=200, pca_samples=0,
                      inception=str(tmp_path / "none.pt"), output=str(tmp_path / "out"))
    edit = report["metrics"]["class_edit"]
    expected = expected_class_edit(world, 2.0, results)
    assert edit["count"] == expected["count"] == 4 and edit["source_class"] == 7 and edit["target_class"] == 9
    assert edit["labels"] == "file names"
    assert edit["reads_target"] == pytest.approx(expected["reads_target"])
    assert edit["success_rate"] == pytest.approx(expected["success_rate"])
    assert edit["mean_abs_other_change"] == pytest.approx(expected["mean_abs_other_change"], rel=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "out" / "per_image.jsonl").read_text().splitlines()]
    assert sum("edit_reads_target" in row for row in rows) == 4


def test_pti_results_edit_through_their_own_weights(world, tmp_path) -> None:
    """The PTI folder differs from the plain one only by the first image's delta; its class-edit
    numbers must follow the tuned weights (else the two folders would agree)."""
    kwargs = dict(generator=world["spec"], classifier="fashion32", direction=str(world["direction_file"]),
                  strength=2.0, nscd_samples=200, pca_samples=0, inception=str(tmp_path / "none.pt"))
    plain = evaluate(str(world["plain"]), str(world["real"]), output=str(tmp_path / "a"), **kwargs)
    pti = evaluate(str(world["pti"]), str(world["real"]), output=str(tmp_path / "b"), **kwargs)
    assert plain["metrics"]["class_edit"]["mean_target_change"] != pti["metrics"]["class_edit"]["mean_target_change"]


def test_strength_in_std_units_is_the_directions_own_unit(world, tmp_path) -> None:
    from lsap.editing.directions import load_direction

    unit = load_direction(world["direction_file"]).std_strength(world["generator"], 1.5)
    report = evaluate(str(world["plain"]), str(world["real"]), generator=world["spec"], classifier="fashion32",
                      direction=str(world["direction_file"]), strength=1.5, strength_unit="std", nscd_samples=200,
                      pca_samples=0, inception=str(tmp_path / "none.pt"), output=str(tmp_path / "out"))
    assert report["metrics"]["class_edit"]["strength"] == pytest.approx(unit)
    expected = expected_class_edit(world, unit, "plain")
    assert report["metrics"]["class_edit"]["reads_target"] == pytest.approx(expected["reads_target"])


def test_classifier_features_fid_equals_torchmetrics_on_the_same_images(world, tmp_path) -> None:
    """FID in the shipped classifier's features, against torchmetrics' FID fed by hand."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from lsap.metrics.fid import ClassifierFeatures
    from lsap.nets.fashion_classifier import load_fashion_classifier

    report = evaluate(str(world["plain"]), str(world["real"]), classifier="fashion32", fid_features="classifier",
                      output=str(tmp_path / "out"), batch_size=4)
    reference = FrechetInceptionDistance(feature=ClassifierFeatures(load_fashion_classifier(), 128), normalize=False)

    def read(path: Path) -> torch.Tensor:
        return torch.from_numpy(__import__("numpy").array(Image.open(path).convert("RGB"))).permute(2, 0, 1)

    reference.update(torch.stack([read(p) for p in sorted(world["real"].glob("*.png"))]), real=True)
    reference.update(torch.stack([read(p) for p in sorted((world["plain"] / "images").glob("*.png"))]), real=False)
    assert report["metrics"]["fid"]["feature_network"] == "classifier"
    assert report["metrics"]["fid"]["mean"] == pytest.approx(float(reference.compute()), rel=1e-6)


def test_nscd_once_per_batch_equals_the_nscd_metric(world, tmp_path) -> None:
    from lsap.metrics import NSCD

    report = evaluate(str(world["plain"]), str(world["real"]), generator=world["spec"], nscd_samples=300,
                      pca_samples=0, batch_size=4, inception=str(tmp_path / "none.pt"), output=str(tmp_path / "o"))
    metric = NSCD(generator=world["generator"], num_samples=300)
    metric.update(world["ws"])
    assert report["metrics"]["nscd"]["mean"] == pytest.approx(float(metric.compute()), rel=1e-9)
    assert report["metrics"]["nscd"]["per_layer"] == pytest.approx(metric.compute_per_layer().tolist(), rel=1e-9)


def test_each_skipped_metric_says_why(world, tmp_path) -> None:
    report = evaluate(str(world["plain"]), str(world["real"]), inception=str(tmp_path / "none.pt"),
                      output=str(tmp_path / "o"))
    assert set(report["skipped"]) == {"ms_ssim", "lpips", "id", "fid", "nscd", "lec", "lec_reinvert", "class_edit"}
    assert all(isinstance(why, str) and why for why in report["skipped"].values())
    assert "--classifier" in report["skipped"]["class_edit"]


# ----- options and the command line ----------------------------------------------------------
def documented_evaluate_commands() -> list[list[str]]:
    """Every `lsap evaluate ...` command of the README (continuation lines joined)."""
    text = (REPO / "README.md").read_text()
    text = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in text.splitlines():
        start = line.find("lsap evaluate ")
        if start < 0 or line[start - 1:start] == "`" and "`" in line[start:]:
            continue  # inline prose mention, not a command line
        command = line[start:].split("#")[0].strip()
        commands.append(shlex.split(command)[2:])
    return commands


def documented_flags(command: list[str]) -> set[str]:
    flags = set()
    for token in command:
        for option in re.findall(r"--([A-Za-z][\w-]*)", token):
            flags.add(option.replace("-", "_"))
    return flags


def evaluate_parser():
    from jsonargparse import CLI, capture_parser

    from lsap.evaluation.cli import evaluate_command

    return capture_parser(lambda: CLI(evaluate_command, args=[], as_positional=True))


def test_every_flag_the_readme_documents_is_accepted() -> None:
    from lsap.argv import underscore_options
    from lsap.commands import find_command

    evaluate_argv = find_command("evaluate").prepare_argv  # the registry's folding, as `lsap evaluate` runs it

    commands = documented_evaluate_commands()
    assert len(commands) >= 2
    parser = evaluate_parser()
    accepted = {action.dest for action in parser._actions}
    documented = set().union(*map(documented_flags, commands))
    prose = set(re.findall(r"`--(\w+)", (REPO / "README.md").read_text().split("### Evaluation")[1]
                           .split("\n### ")[0]))
    assert {"reinvert", "reinvert_steps", "strength", "detect_faces"} <= prose
    assert documented | prose <= accepted, f"documented but refused: {sorted((documented | prose) - accepted)}"
    # The README's own command lines parse as written (optional parts written [--x ...] included).
    for command in commands:
        tokens = [t.strip("[]").split("|")[0] for t in command]  # "[--convention default|ganinverter]"
        argv = evaluate_argv(underscore_options([t for t in tokens if t]))
        parsed = parser.parse_args(argv)
        assert parsed.results_dir
    assert parser.parse_args(evaluate_argv(["R", "--real", "X", "--reinvert", "--reinvert_steps", "5"])).reinvert
    assert not parser.parse_args(evaluate_argv(["R", "--real", "X", "--reinvert", "false"])).reinvert


def test_options_are_checked_once_for_python_and_the_cli(tmp_path, capsys) -> None:
    from lsap.evaluation.options import EvaluationOptions

    with pytest.raises(BadValueError, match="nscd_smaples"):
        EvaluationOptions.from_kwargs("real", nscd_smaples=3)
    with pytest.raises(BadValueError, match="convention"):
        EvaluationOptions(real="real", convention="mine")  # type: ignore[arg-type]
    with pytest.raises(BadValueError, match="batch_size"):
        EvaluationOptions(real="real", batch_size=0)
    with pytest.raises(SystemExit) as exit_status:
        main(["evaluate", str(tmp_path), "--real", str(tmp_path), "--batch_size", "0"])
    assert exit_status.value.code == 2 and "batch_size must be at least 1" in capsys.readouterr().err


# ----- unreadable inputs, strict JSON, clear errors ------------------------------------------
def damaged_copy(world, tmp_path: Path) -> Path:
    real = tmp_path / "real"
    real.mkdir()
    for path in world["real"].glob("*.png"):
        (real / path.name).write_bytes(path.read_bytes())
    (real / "0001_7.png").write_bytes(b"")  # 0-byte
    (real / "0002_9.png").write_text("not an image")
    write_decompression_bomb(real / "0003_7.png")
    return real


def test_evaluate_skips_and_names_unreadable_inputs(world, tmp_path) -> None:
    real = damaged_copy(world, tmp_path)
    report = evaluate(str(world["plain"]), str(real), inception=str(tmp_path / "none.pt"), output=str(tmp_path / "o"))
    assert report["counts"]["unreadable"] == 3 and report["counts"]["pairs"] == 3
    assert set(report["unreadable"]) == {str(real / n) for n in ("0001_7.png", "0002_9.png", "0003_7.png")}
    assert "DecompressionBomb" in report["unreadable"][str(real / "0003_7.png")]
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert saved["counts"]["unreadable"] == 3 and len(saved["unreadable"]) == 3


def test_fid_skips_unreadable_images_and_says_not_found(world, tmp_path, capsys) -> None:
    from lsap.evaluation import folder_fid
    from lsap.metrics.fid import ClassifierFeatures
    from lsap.nets.fashion_classifier import load_fashion_classifier

    real = damaged_copy(world, tmp_path)
    features = ClassifierFeatures(load_fashion_classifier(), 128)
    result = folder_fid(real, world["plain"] / "images", extractor=features)
    assert result["num_real"] == 3 and result["num_unreadable"] == 3 and len(result["unreadable"]) == 3
    with pytest.raises(MissingInputError, match="not found"):
        folder_fid(tmp_path / "no_such_folder", world["plain"] / "images", extractor=features)
    main(["fid", str(real), str(world["plain"] / "images"), "--classifier", "fashion32"])
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["fid"] == pytest.approx(result["fid"], rel=1e-9) and line["num_unreadable"] == 3
    assert captured.err.count("skipped unreadable image") == 3
    with pytest.raises(SystemExit) as exit_status:
        main(["fid", str(tmp_path / "no_such_folder"), str(world["plain"] / "images"), "--inception",
              str(tmp_path / "x.pt")])
    assert exit_status.value.code == 2 and "not found" in capsys.readouterr().err


def test_reports_are_strict_json_with_non_finite_values_counted(world, tmp_path) -> None:
    from lsap.metrics.fidelity import PerImageMetric

    class HalfNaN(PerImageMetric):
        name = "half_nan"

        def scores(self, pred, target):
            values = torch.ones(pred.shape[0], dtype=torch.float64)
            values[::2] = float("nan")
            return values

    report = evaluate(str(world["plain"]), str(world["real"]), inception=str(tmp_path / "none.pt"),
                      output=str(tmp_path / "o"), extra_metrics={"half_nan": HalfNaN()}, batch_size=4)

    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in a JSON report")

    saved = json.loads((tmp_path / "o" / "metrics.json").read_text(), parse_constant=refuse)
    rows = [json.loads(line, parse_constant=refuse) for line in (tmp_path / "o" / "per_image.jsonl").read_text()
            .splitlines()]
    assert [row["half_nan"] for row in rows] == [None, 1.0, None, 1.0, None, 1.0]
    assert saved["nonfinite_values"]["per_image"] == 3 and report["nonfinite_values"]["per_image"] == 3
    assert saved["metrics"]["half_nan"]["nonfinite"] == 3 and saved["metrics"]["half_nan"]["mean"] == 1.0


def test_compare_names_a_malformed_or_truncated_metrics_file(world, tmp_path, capsys) -> None:
    from lsap.evaluation import compare_table

    evaluate(str(world["plain"]), str(world["real"]), inception=str(tmp_path / "none.pt"), output=str(tmp_path / "a"))
    good = (tmp_path / "a" / "metrics.json").read_text()
    cases = {"truncated": good[: len(good) // 2], "malformed": json.dumps({"metrics": [1, 2]}),
             "not a mapping": "[1, 2, 3]", "binary": None}
    for label, text in cases.items():
        path = tmp_path / label.replace(" ", "_") / "metrics.json"
        path.parent.mkdir()
        if text is None:
            path.write_bytes(b"\xff\xfe\x00garbage")
        else:
            path.write_text(text)
        with pytest.raises(BadFileError, match=re.escape(str(path))):
            compare_table([tmp_path / "a", path.parent])
        with pytest.raises(SystemExit) as exit_status:
            main(["compare", str(tmp_path / "a"), str(path.parent)])
        error = capsys.readouterr().err.strip().splitlines()
        assert exit_status.value.code == 2 and len(error) == 1 and str(path) in error[0], label


def test_the_pca_figure_is_written_atomically(world, tmp_path, monkeypatch) -> None:
    """A write that fails midway leaves the previous figure intact and no temporary behind."""
    from lsap.evaluation.logging import scatter_png

    import numpy as np

    target = scatter_png(tmp_path / "pca.png", [(np.zeros((3, 2)), (0, 0, 0), "a")])
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        scatter_png(target, [(np.ones((3, 2)), (0, 0, 0), "b")])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pca.png"]
