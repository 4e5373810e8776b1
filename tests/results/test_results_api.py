"""lsap.results as a reader: checked code files, helpful missing names, folder checks."""

from __future__ import annotations

import json

import pytest
import torch

from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.results import EditResults, InversionResults, load_code


def _folder(root, names, num_ws=4, w_dim=6):
    results = InversionResults(root)
    for name in names:
        results.write_code(name, {"ws": torch.randn(num_ws, w_dim), "name": name})
        results.write_record({"name": name, "key": name, "losses": {}, "nscd": None, "meta": {"method": "lsap_o"}})
    return results


def test_a_missing_name_lists_the_names_there_are(tmp_path):
    _folder(tmp_path, [f"a/{i:03d}" for i in range(8)])
    with pytest.raises(MissingInputError) as info:
        load_code(tmp_path, "a/999")
    message = str(info.value)
    assert "'a/000'" in message and "8 finished images" in message and "..." in message
    assert "download" not in message
    with pytest.raises(MissingInputError, match="'a/001'"):
        InversionResults(tmp_path).record("b/001")
    assert load_code(tmp_path, "a/001")["name"] == "a/001"


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(MissingInputError, match="not found"):
        InversionResults(tmp_path / "nope").checked()
    with pytest.raises(MissingInputError, match="not found"):
        load_code(tmp_path / "nope", "x")
    (tmp_path / "other").mkdir()
    with pytest.raises(BadValueError, match="not a results folder"):
        InversionResults(tmp_path / "other").checked()
    _folder(tmp_path / "run", ["x"])
    assert InversionResults(tmp_path / "run").checked().names() == ["x"]


@pytest.mark.parametrize("ws, expected", [
    (torch.randn(1, 4, 6), "floating-point"),
    (torch.ones(4, 6, dtype=torch.long), "floating-point"),
    (torch.full((4, 6), float("nan")), "NaN"),
    ([1.0, 2.0], "floating-point"),
])
def test_bad_code_files_name_the_file(tmp_path, ws, expected):
    results = _folder(tmp_path, ["x"])
    torch.save({"ws": ws}, results.code_path("x"))
    with pytest.raises(BadFileError, match=expected) as info:
        results["x"].load_code()
    assert str(results.code_path("x")) in str(info.value)


def test_shape_is_checked_against_a_generator(tmp_path):
    results = _folder(tmp_path, ["x"])
    assert results.load_code("x", shape=(4, 6))["ws"].shape == (4, 6)
    with pytest.raises(BadFileError, match=r"\[4, 6\].*\[5, 6\]"):
        results.load_code("x", shape=(5, 6))


def test_non_finite_noise_is_refused(tmp_path):
    results = _folder(tmp_path, ["x"])
    torch.save({"ws": torch.zeros(4, 6), "noise": [torch.zeros(1, 1, 4, 4), torch.full((1, 1, 8, 8), float("inf"))]},
               results.code_path("x"))
    with pytest.raises(BadFileError, match="noise"):
        results.load_code("x")


def test_edit_results_layout_round_trip(tmp_path):
    out = EditResults(tmp_path / "edits")
    batch = torch.randn(3, 2, 4, 6)
    out.write("sub/a", torch.zeros(3, 10, 10), {"d": {"columns": [-1.0, None, 1.0], "strengths": [-1.0, 1.0],
                                                      "codes": batch[1]}}, {"edits": []})
    assert out.is_done("sub/a") and out.grid_path("sub/a").is_file()
    codes = out.load_codes("sub/a")["edits"]["d"]["codes"]
    assert torch.equal(codes, batch[1]) and codes.untyped_storage().nbytes() == batch[1].numel() * 4
    records = out.write_edits_file()
    assert records == [{"edits": [], "name": "sub/a"}]
    assert [json.loads(line) for line in out.edits_file.read_text().splitlines()] == records
    with pytest.raises(MissingInputError, match="'sub/a'"):
        out.load_codes("b")


def test_records_know_their_folder_for_refinement_state(tmp_path):
    results = _folder(tmp_path, ["sub/x"])
    record = results["sub/x"]
    assert record.state_path("sam") == tmp_path / "sam" / "sub" / "x.pt"
    assert record.state_path("pti") == results.delta_path("sub/x")
    assert "results_root" not in record.as_dict()
