"""`lsap directions ganspace|sefa|interfacegan` write files that load and edit."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import small_source

from lsap.cli import main
from lsap.editing import load_direction, load_ganspace, resolve_edit
from lsap.model.fingerprint import generator_fingerprint as fingerprint

SOURCE = small_source(16, z_dim=32, w_dim=32, channel_base=512, channel_max=16, w_avg_samples=500)
SPEC = json.dumps(SOURCE.as_dict())


def test_ganspace_and_sefa_commands(tmp_path, single_thread, capsys):
    g = SOURCE.build()
    main(["directions", "ganspace", SPEC, str(tmp_path / "pca.pt"), "--num_samples", "2000", "--num_components",
          "6"])
    pca = load_ganspace(tmp_path / "pca.pt")
    assert pca.components.shape == (6, 32) and pca.generator_hash == fingerprint(g)
    assert "explained variance" in capsys.readouterr().out
    main(["directions", "sefa", SPEC, str(tmp_path / "sefa.pt"), "--layers", "1:3", "--num_components", "4"])
    edit = resolve_edit(f"{tmp_path / 'sefa.pt'}#0", g)
    assert edit.direction.layers == (1, 2)
    ws = torch.zeros(1, g.num_ws, 32)
    changed = (edit.edited(g, ws, 2.0) - ws).abs().sum(-1)[0] > 0
    assert changed.tolist() == [i in (1, 2) for i in range(g.num_ws)]
    ganspace_edit = resolve_edit(f"{tmp_path / 'pca.pt'}#1:0:2", g)
    assert ganspace_edit.component == 1 and (ganspace_edit.start, ganspace_edit.end) == (0, 2)


def test_interfacegan_with_a_user_classifier(tmp_path, single_thread, monkeypatch, capsys):
    (tmp_path / "my_scores.py").write_text(
        "import torch\n"
        "class Brightness(torch.nn.Module):\n"
        "    def forward(self, images):\n"
        "        return images.mean(dim=(1, 2, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    main(["directions", "interfacegan", SPEC, str(tmp_path / "bright.pt"), "--classifier", "my_scores:Brightness",
          "--num_samples", "400", "--chosen_ratio", "0.25"])
    out = capsys.readouterr().out
    assert "held-out accuracy" in out
    d = load_direction(tmp_path / "bright.pt")
    assert d.meta["method"] == "interfacegan" and d.meta["accuracy"] > 0.8
    assert abs(float(d.vector.norm()) - 1) < 1e-5
    # Moving along the direction makes images brighter.
    g = SOURCE.build()
    w = g.mapping(torch.randn(16, 32))
    brighter = g.synthesis(d.apply(w, 3.0)).mean(dim=(1, 2, 3))
    darker = g.synthesis(d.apply(w, -3.0)).mean(dim=(1, 2, 3))
    assert bool((brighter > darker).float().mean() > 0.8)
    # Conditional: project out another direction.
    torch.save(torch.randn(1, 32), tmp_path / "other.pt")
    main(["directions", "interfacegan", SPEC, str(tmp_path / "cond.pt"), "--classifier", "my_scores:Brightness",
          "--num_samples", "400", "--chosen_ratio", "0.25", "--condition", str(tmp_path / "other.pt")])
    cond = load_direction(tmp_path / "cond.pt").vector
    other = torch.load(tmp_path / "other.pt")[0]
    assert abs(float(cond @ other)) < 1e-4


def test_interfacegan_from_labels_and_codes(tmp_path, single_thread, capsys):
    from lsap.callbacks import InversionWriter

    g = SOURCE.build()
    truth = torch.randn(32)
    truth /= truth.norm()
    w = g.mapping(torch.randn(60, 32))
    names = [f"img{i:02d}" for i in range(60)]
    ws = w[:, None].repeat(1, g.num_ws, 1)
    writer = InversionWriter(str(tmp_path / "inv"), save_images=False)
    pred = {"path": names, "ws": ws, "losses": {}, "nscd": torch.zeros(60), "meta": {}}
    for i, name in enumerate(names):
        writer.write_one(pred, i, name)
    proj = (w - w.mean(0)) @ truth
    (tmp_path / "labels.csv").write_text("name,label\n" + "".join(
        f"{n}.png,{int(p > 0)}\n" for n, p in zip(names, proj.tolist())))
    main(["directions", "interfacegan", SPEC, str(tmp_path / "attr.pt"), "--labels", str(tmp_path / "labels.csv"),
          "--codes_dir", str(tmp_path / "inv"), "--method", "logistic"])
    d = load_direction(tmp_path / "attr.pt")
    assert d.meta["num_train"] + d.meta["num_test"] == 60
    with pytest.raises(SystemExit) as exit_info:  # bad input: one line and status 2
        main(["directions", "interfacegan", SPEC, str(tmp_path / "x.pt"), "--labels", str(tmp_path / "labels.csv")])
    assert exit_info.value.code == 2 and "--labels needs --codes_dir" in capsys.readouterr().err
