"""Editing's bad inputs (one clear error each), the refinement-state protocol, and the
edit folder's per-image files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lsap.cli import main
from lsap.editing import Direction, edit_results, load_direction, resolve_edit, save_direction
from lsap.editing.refinement import REFINEMENT_LOADERS, GeneratorRenderer
from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.results import EditResults, InversionResults
from test_edit_command import tiny_source, write_results


@pytest.fixture(scope="module")
def generator():
    return tiny_source().build().eval()


def _direction_file(tmp_path: Path, w_dim: int = 32) -> Path:
    return save_direction(Direction(torch.randn(w_dim), name="d"), tmp_path / "d.pt")


# ----- codes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["3d", "w_dim", "nan", "int"])
def test_a_bad_code_file_is_refused_naming_it(tmp_path, generator, bad):
    ws = write_results(tmp_path / "inv", generator, ["a", "b"])
    path = tmp_path / "inv" / "codes" / "b.pt"
    code = torch.load(path, weights_only=True)
    code["ws"] = {"3d": ws[1][None], "w_dim": ws[1][:, :20], "nan": ws[1] * float("nan"),
                  "int": ws[1].long()}[bad]
    torch.save(code, path)
    edit = resolve_edit(str(_direction_file(tmp_path)), generator)
    with pytest.raises(BadFileError, match="b.pt"):
        edit_results(tmp_path / "inv", generator, [edit], [-1, 1], output=tmp_path / "out")


def test_interfacegan_codes_dir_with_a_wrong_shape_is_one_line(tmp_path, generator, capsys):
    source = tiny_source()
    g = source.build()
    names = [f"i{k}" for k in range(6)]
    ws = write_results(tmp_path / "inv", g, names)
    torch.save({"ws": ws[0, :3], "name": "i0"}, tmp_path / "inv" / "codes" / "i0.pt")
    (tmp_path / "labels.csv").write_text("".join(f"{n},{k % 2}\n" for k, n in enumerate(names)))
    (tmp_path / "g.json").write_text(json.dumps(source.as_dict()))
    with pytest.raises(SystemExit) as exit_info:
        main(["directions", "interfacegan", str(tmp_path / "g.json"), str(tmp_path / "out.pt"),
              "--labels", str(tmp_path / "labels.csv"), "--codes_dir", str(tmp_path / "inv")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "i0.pt" in err[0] and "shape" in err[0]


# ----- directions ----------------------------------------------------------------------------
def test_non_finite_directions_are_refused_at_load(tmp_path):
    vector = np.ones((1, 8), dtype=np.float32)
    vector[0, 3] = np.nan
    np.save(tmp_path / "nan.npy", vector)
    torch.save(torch.tensor([[1.0, float("inf"), 0.0]]), tmp_path / "inf.pt")
    save_direction(Direction(torch.tensor([1.0, float("nan")])), tmp_path / "own.pt")
    for name in ("nan.npy", "inf.pt", "own.pt"):
        with pytest.raises(BadFileError, match=name.replace(".", r"\.") + ".*NaN or infinite"):
            load_direction(tmp_path / name)


def test_npy_read_errors_name_the_file(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((1, 64), dtype=np.float32))
    data = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 100])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name in ("cut.npy", "obj.npy"):
        with pytest.raises(BadFileError, match=f"{name}"):
            load_direction(tmp_path / name)


def test_interfacegan_condition_with_nan_is_refused_before_the_fit(tmp_path, capsys):
    source = tiny_source()
    (tmp_path / "g.json").write_text(json.dumps(source.as_dict()))
    np.save(tmp_path / "cond.npy", np.full((1, 32), np.nan, dtype=np.float32))
    with pytest.raises(SystemExit) as exit_info:
        main(["directions", "interfacegan", str(tmp_path / "g.json"), str(tmp_path / "out.pt"),
              "--classifier", "no.such.module:Thing", "--condition", str(tmp_path / "cond.npy")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cond.npy" in err and "NaN" in err and not (tmp_path / "out.pt").exists()


# ----- layers --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["9:3", "4:4", "0:99", "-1:2", "1,1"])
def test_empty_reversed_or_out_of_range_layers_are_refused(generator, tmp_path, spec):
    with pytest.raises(BadValueError, match="layers"):
        resolve_edit(str(_direction_file(tmp_path)), generator, layers=spec)


def test_cli_layer_ranges_are_one_line(tmp_path, capsys):
    source = tiny_source()
    g = source.build()
    write_results(tmp_path / "inv", g, ["a"])
    (tmp_path / "g.json").write_text(json.dumps(source.as_dict()))
    commands = [
        ["directions", "sefa", str(tmp_path / "g.json"), str(tmp_path / "s.pt"), "--layers", f"5:{g.num_ws + 90}"],
        ["edit", str(tmp_path / "inv"), "--generator", str(tmp_path / "g.json"), "--direction",
         str(_direction_file(tmp_path)), "--layers", "9:3"],
    ]
    for args in commands:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "layers" in err[0], err
    assert not (tmp_path / "s.pt").exists() and not (tmp_path / "inv" / "edits").exists()


def test_a_layer_spec_is_recorded_as_given(tmp_path, generator):
    write_results(tmp_path / "inv", generator, ["a"])
    edit = resolve_edit(str(_direction_file(tmp_path)), generator, layers="2:4")
    edit_results(tmp_path / "inv", generator, [edit], [1.0], output=tmp_path / "out")
    record = EditResults(tmp_path / "out").records()[0]
    assert record["edits"][0]["layers"] == [2, 3]


# ----- per-image edit files --------------------------------------------------------------------
def test_edit_code_files_hold_their_own_image_and_do_not_depend_on_batching(tmp_path, generator):
    write_results(tmp_path / "inv", generator, ["a", "b", "c", "d"])
    edit = resolve_edit(str(_direction_file(tmp_path)), generator)
    edit_results(tmp_path / "inv", generator, [edit], [-2, 0, 2], output=tmp_path / "one", batch_size=1)
    edit_results(tmp_path / "inv", generator, [edit], [-2, 0, 2], output=tmp_path / "four", batch_size=4)
    for name in "abcd":
        one = (tmp_path / "one" / "codes" / f"{name}.pt").read_bytes()
        four = (tmp_path / "four" / "codes" / f"{name}.pt").read_bytes()
        assert one == four
        assert (tmp_path / "one" / "grids" / f"{name}.png").read_bytes() == \
            (tmp_path / "four" / "grids" / f"{name}.png").read_bytes()
    codes = EditResults(tmp_path / "four").load_codes("b")["edits"]["d"]["codes"]
    assert codes.untyped_storage().nbytes() == codes.numel() * codes.element_size()


# ----- the refinement-state protocol -------------------------------------------------------------
SHIFT = 0.25


def load_shifted_renderer(generator, record, code):
    """A test refinement: the reconstruction is G(ws) + SHIFT (stands in for HFGI / SAM)."""
    assert record.refinement == "test_shift" and torch.is_tensor(code["ws"])

    class Shifted(GeneratorRenderer):
        def render(self, ws):
            return super().render(ws) + SHIFT

    return Shifted(generator, code.get("noise"))


def test_a_refinement_renders_edits_through_its_loader(tmp_path, generator, monkeypatch):
    write_results(tmp_path / "inv", generator, ["plain"])
    results = InversionResults(tmp_path / "inv")
    record = json.loads(results.record_path("plain").read_text())
    record["name"] = "refined"
    record["meta"]["refinement"] = "test_shift"
    results.write_record(record)
    torch.save(torch.load(results.code_path("plain"), weights_only=True), results.code_path("refined"))
    assert results["refined"].refinement == "test_shift" and results["plain"].refinement is None
    edit = resolve_edit(str(_direction_file(tmp_path)), generator)
    with pytest.raises(BadValueError, match="test_shift"):  # not in the table: refused, no guessing
        edit_results(tmp_path / "inv", generator, [edit], [0.0], output=tmp_path / "out")
    monkeypatch.setitem(REFINEMENT_LOADERS, "test_shift", f"{__name__}:load_shifted_renderer")
    assert __name__ in sys.modules
    edit_results(tmp_path / "inv", generator, [edit], [0.0, 2.0], output=tmp_path / "out2")
    grids = {n: np.asarray(__import__("PIL.Image").Image.open(tmp_path / "out2" / "grids" / f"{n}.png")).astype(int)
             for n in ("plain", "refined")}
    # the same code: the refined grid is the plain one shifted by SHIFT (in 8-bit levels)
    inside = grids["plain"][2:-2, 2:-2]
    moved = grids["refined"][2:-2, 2:-2] - inside
    assert np.median(moved[inside < 200]) == pytest.approx(SHIFT * 127.5, abs=1.5)
    assert EditResults(tmp_path / "out2").records()[1]["refinement"] == "test_shift"


def test_pti_records_name_their_refinement(tmp_path, generator):
    from lsap.model.delta import make_delta

    write_results(tmp_path / "pti", generator, ["p"], pti_deltas=[make_delta(generator, generator)])
    assert InversionResults(tmp_path / "pti")["p"].refinement == "pti"


# ----- newcomer messages -------------------------------------------------------------------------
def test_edit_names_a_missing_or_foreign_folder_first(tmp_path, capsys):
    (tmp_path / "not_results").mkdir()
    (tmp_path / "not_results" / "notes.txt").write_text("hello")
    for folder, expected in (("no_such_run", "not found"), ("not_results", "not a results folder")):
        with pytest.raises(SystemExit) as exit_info:
            main(["edit", str(tmp_path / folder), "--direction", "sneaker_to_boot"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and "generator" not in err


def test_shipped_ganspace_components_work_by_name(tmp_path):
    from lsap.model.source import generator_from_spec

    g = generator_from_spec("fashion32")
    edit = resolve_edit("ganspace#2", g)
    assert edit.name == "ganspace_2" and edit.direction.meta["unit"] == "std"
    ws = g.mapping(torch.randn(1, g.z_dim))[:, None].repeat(1, g.num_ws, 1)
    assert (edit.edited(g, ws, 1.0) - ws).abs().sum() > 0
    layered = resolve_edit("ganspace#0", g, layers="0:2")
    moved = (layered.edited(g, ws, 1.0) - ws).abs().sum(-1)[0]
    assert bool((moved[:2] > 0).all()) and bool((moved[2:] == 0).all())
    with pytest.raises(BadValueError, match="ganspace#k"):
        resolve_edit("ganspace", g)
    with pytest.raises(BadValueError, match="components"):
        resolve_edit("ganspace#100000", g)
    with pytest.raises(MissingInputError, match="ganspace#k"):  # the listing shows the working form
        resolve_edit("no_such_direction", g)


def test_std_units_option_scales_strengths(tmp_path, generator):
    source = tiny_source()
    write_results(tmp_path / "inv", generator, ["a"])
    (tmp_path / "g.json").write_text(json.dumps(source.as_dict()))
    direction = Direction(0.01 * torch.randn(32), name="d")
    save_direction(direction, tmp_path / "d.pt")
    main(["edit", str(tmp_path / "inv"), "--generator", str(tmp_path / "g.json"), "--direction",
          str(tmp_path / "d.pt"), "--strengths", "2", "--std_units", "true", "--output", str(tmp_path / "out")])
    codes = EditResults(tmp_path / "out").load_codes("a")["edits"]["d"]["codes"][0]
    ws = InversionResults(tmp_path / "inv").load_code("a")["ws"]
    n = direction.vector / direction.vector.norm()
    moved = (codes - ws) @ n
    std = direction.std_along(generator)
    torch.testing.assert_close(moved, torch.full_like(moved, 2 * std), rtol=1e-4, atol=1e-4)


def test_a_batch_size_below_one_is_one_line(tmp_path, generator):
    write_results(tmp_path / "inv", generator, ["a"])
    edit = resolve_edit(str(_direction_file(tmp_path)), generator)
    with pytest.raises(BadValueError, match="batch_size"):
        edit_results(tmp_path / "inv", generator, [edit], [1.0], output=tmp_path / "out", batch_size=0)
