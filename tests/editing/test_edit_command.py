"""`lsap edit` end to end on inversion outputs (LSAP_O-like and PTI), including resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lsap.callbacks import InversionWriter
from lsap.cli import main
from lsap.editing import Direction, edit_results, render_grid, resolve_edit, save_direction, save_ganspace
from lsap.editing.run import columns_for
from lsap.metrics import generator_fingerprint
from conftest import small_source

from lsap.model import GeneratorSource
from lsap.visualize import image_grid, to_uint8


def tiny_source(seed: int = 0) -> GeneratorSource:
    return small_source(16, seed, z_dim=32, w_dim=32, channel_base=512, channel_max=16, w_avg_samples=500)


def write_results(folder: Path, generator, names: list[str], pti_deltas: list[dict] | None = None) -> torch.Tensor:
    """An inversion output folder as the writer makes it, for codes sampled from ``generator``."""
    ws = generator.mapping(torch.randn(len(names), generator.z_dim))[:, None].repeat(1, generator.num_ws, 1)
    ws = ws + 0.05 * torch.randn_like(ws)
    writer = InversionWriter(str(folder))
    prediction = {"path": names, "ws": ws, "image": generator.synthesis(ws).clamp(-1, 1),
                  "losses": {"mse": torch.zeros(len(names))}, "nscd": torch.zeros(len(names)),
                  "meta": {"method": "pti" if pti_deltas else "lsap_o",
                           "generator_hash": generator_fingerprint(generator)}}
    if pti_deltas is not None:
        prediction["pti_delta"] = pti_deltas
    for i, key in enumerate(names):
        writer.write_one(prediction, i, key)
    writer.merge()
    return ws


def test_columns_put_the_reconstruction_in_the_middle():
    assert columns_for([3, -3, 0], True) == [-3.0, None, 3.0]
    assert columns_for([-3, 0, 3], False) == [-3.0, None, 0.0, 3.0]
    assert columns_for([-2, 2], True) == [-2.0, None, 2.0]


def test_lsap_edit_end_to_end_with_resume(tmp_path, single_thread):
    source = tiny_source()
    g = source.build()
    results = tmp_path / "inv"
    names = ["a", "sub/b", "c"]
    write_results(results, g, names)
    (results / "config.yaml").write_text(json.dumps({"model": {"init_args": {"generator": source.as_dict()}}}))
    direction = Direction(torch.randn(32), name="smile")
    save_direction(direction, tmp_path / "smile.pt")
    from lsap.editing import compute_ganspace

    save_ganspace(compute_ganspace(g, num_samples=500, num_components=4), tmp_path / "pca.pt")
    args = ["edit", str(results), "--direction", str(tmp_path / "smile.pt"), "ganspace:0:0:3",
            "stylespace:2:1", "--strengths", "-3", "0", "3", "--ganspace", str(tmp_path / "pca.pt"),
            "--style_std_samples", "200", "--batch_size", "2", "--layers", "0:4"]
    main(args)
    out = results / "edits"
    records = [json.loads(line) for line in (out / "edits.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["a", "c", "sub/b"]
    grid = np.asarray(Image.open(out / "grids" / "sub" / "b.png"))
    # 3 rows (edits); GANSpace's target mode makes 0 an edit, so the reconstruction gets its own column.
    assert grid.shape[0] == 3 * 18 + 2 and grid.shape[1] == 4 * 18 + 2
    saved = torch.load(out / "codes" / "a.pt", weights_only=True)
    smile = saved["edits"]["smile"]
    assert smile["strengths"] == [-3.0, 0.0, 3.0] and smile["codes"].shape == (3, g.num_ws, 32)
    assert smile["columns"] == [-3.0, None, 0.0, 3.0]
    code = torch.load(results / "codes" / "a.pt", weights_only=True)["ws"]
    expected = direction.apply(code[None], 3.0, layers="0:4")[0]
    torch.testing.assert_close(smile["codes"][2], expected)
    assert torch.equal(smile["codes"][2][4:], code[4:])  # --layers 0:4 left the rest alone
    # Resume: a second run edits nothing; a new image is the only one done.
    before = (out / "grids" / "a.png").stat().st_mtime_ns
    main(args)
    assert (out / "grids" / "a.png").stat().st_mtime_ns == before
    write_results(results, g, ["d"])
    from lsap.editing import edit_results as run

    counts = run(results, g, [resolve_edit(str(tmp_path / "smile.pt"), g)], [-3, 0, 3])
    assert counts == {"edited": 1, "skipped": 3, "total": 4}


def test_grid_matches_direct_rendering(tmp_path, single_thread):
    g = tiny_source().build()
    ws = write_results(tmp_path / "inv", g, ["x"])
    edit = resolve_edit(str(save_direction(Direction(torch.randn(32)), tmp_path / "d.pt")), g)
    edit_results(tmp_path / "inv", g, [edit], [-2, 0, 2], output=tmp_path / "out")
    png = np.asarray(Image.open(tmp_path / "out" / "grids" / "x.png"))
    images, _ = render_grid(g, ws[:1].float(), [edit], [-2, 0, 2])
    expected = to_uint8(image_grid(list(images[0]))).permute(1, 2, 0).numpy()
    assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1
    # The middle column is the reconstruction the inversion wrote.
    recon = np.asarray(Image.open(tmp_path / "inv" / "images" / "x.png")).astype(int)
    assert np.abs(png[2:18, 20:36].astype(int) - recon).max() <= 1


def test_pti_editing_with_delta_equals_editing_with_tuned_generator(tmp_path, single_thread):
    from lsap.model.delta import apply_delta, make_delta

    g = tiny_source().build()
    tuned = copy.deepcopy(g)
    with torch.no_grad():
        for p in tuned.synthesis_network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    delta = make_delta(g, tuned, dtype="float32")
    ws = write_results(tmp_path / "pti", g, ["p"], pti_deltas=[delta])
    edit = resolve_edit(str(save_direction(Direction(torch.randn(32)), tmp_path / "d.pt")), g)
    edit_results(tmp_path / "pti", g, [edit], [-2, 0, 2], output=tmp_path / "out")
    png = np.asarray(Image.open(tmp_path / "out" / "grids" / "p.png")).astype(int)

    def grid_of(model):
        images, _ = render_grid(model, ws[:1].float(), [edit], [-2, 0, 2])
        return to_uint8(image_grid(list(images[0]))).permute(1, 2, 0).numpy().astype(int)

    assert np.array_equal(png, grid_of(apply_delta(g, delta)))
    assert np.abs(png - grid_of(tuned)).max() <= 1
    assert np.abs(png - grid_of(g)).max() > 10  # the tuned weights were used
    record = json.loads((tmp_path / "out" / "edits.jsonl").read_text())
    assert record["method"] == "pti" and record["pti_delta"].endswith("p.pt")


def test_named_directions_and_errors(tmp_path, monkeypatch):
    g = tiny_source().build()
    save_direction(Direction(torch.ones(32), name="sneaker_to_boot"), tmp_path / "sneaker_to_boot.pt")
    monkeypatch.setenv("LSAP_DIRECTIONS_PATH", str(tmp_path))
    edit = resolve_edit("sneaker_to_boot", g)
    assert edit.name == "sneaker_to_boot"
    with pytest.raises(FileNotFoundError, match="sneaker_to_boot"):
        resolve_edit("no_such_direction", g)
    with pytest.raises(ValueError, match="GANSpace file"):
        resolve_edit("ganspace:smile", g)
    other = tiny_source(seed=1).build()
    save_direction(Direction(torch.ones(32), generator_hash=generator_fingerprint(other)), tmp_path / "o.pt")
    with pytest.warns(RuntimeWarning, match="another generator"):
        resolve_edit(str(tmp_path / "o.pt"), g)
