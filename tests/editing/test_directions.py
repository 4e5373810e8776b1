"""Direction files: shapes, devices, refusal of code, and the edit formula."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lsap.editing import Direction, load_direction, save_direction
from lsap.io import UnsafeCheckpointError


def test_w_direction_broadcasts_over_every_entry():
    n = torch.randn(1, 8)
    d = Direction(n[0])
    ws = torch.randn(3, 5, 8)
    out = d.apply(ws, 2.5)
    for i in range(5):
        torch.testing.assert_close(out[:, i], ws[:, i] + 2.5 * n[0])
    w = torch.randn(3, 8)
    torch.testing.assert_close(d.apply(w, -1.0), w - n[0])


def test_layer_range_restricts_the_edit_and_per_code_strengths():
    d = Direction(torch.ones(4), layers="1:3")
    ws = torch.zeros(2, 5, 4)
    out = d.apply(ws, torch.tensor([1.0, -2.0]))
    expected = torch.zeros(2, 5, 4)
    expected[0, 1:3] = 1.0
    expected[1, 1:3] = -2.0
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="W\\+ codes"):
        d.apply(torch.zeros(2, 4), 1.0)


def test_wplus_direction_and_num_ws_mismatch_names_both_shapes():
    rows = torch.randn(5, 4)
    d = Direction(rows)
    ws = torch.randn(2, 5, 4)
    torch.testing.assert_close(d.apply(ws, 3.0), ws + 3.0 * rows)
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(2, 6, 4\)"):
        d.apply(torch.randn(2, 6, 4), 1.0)


@pytest.mark.parametrize("shape", [(1, 16), (16,), (1, 6, 16)])
def test_load_published_tensor_shapes(tmp_path, shape):
    t = torch.randn(shape)
    torch.save(t, tmp_path / "age.pt")
    d = load_direction(tmp_path / "age.pt")
    torch.testing.assert_close(d.vector, t.reshape(-1, 16).squeeze(0))
    assert d.name == "age"


def test_wrong_shapes_refused(tmp_path):
    torch.save(torch.randn(2, 3, 4), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="expected a direction of shape"):
        load_direction(tmp_path / "bad.pt")
    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="expected a direction of shape"):
        load_direction(tmp_path / "bad.npy")


def test_npy_boundary(tmp_path):
    a = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    np.save(tmp_path / "smile.npy", a)
    torch.testing.assert_close(load_direction(tmp_path / "smile.npy").vector, torch.from_numpy(a[0]))


def test_npy_object_array_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="refusing"):
        load_direction(tmp_path / "obj.npy")


def _relocate_storage(path: Path, location: str) -> None:
    """Rewrite a torch.save zip so its storages claim to live on ``location`` (as a file
    saved on a CUDA device does)."""
    with zipfile.ZipFile(path) as zin:
        entries = {name: zin.read(name) for name in zin.namelist()}
    pkl_name = next(n for n in entries if n.endswith("data.pkl"))
    old = b"X\x03\x00\x00\x00cpu"  # BINUNICODE 'cpu' (torch.save writes pickle protocol 2)
    assert old in entries[pkl_name]
    new = b"X" + len(location).to_bytes(4, "little") + location.encode()
    entries[pkl_name] = entries[pkl_name].replace(old, new)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for name, data in entries.items():
            zout.writestr(name, data)


def test_tensor_saved_on_cuda_loads_on_cpu(tmp_path):
    t = torch.randn(1, 6, 16)
    file = tmp_path / "pose.pt"
    torch.save(t, file)
    _relocate_storage(file, "cuda:0")
    if not torch.cuda.is_available():  # the file really asks for CUDA: a plain load fails here
        with pytest.raises(RuntimeError):
            torch.load(file, weights_only=True)
    d = load_direction(file)
    assert d.vector.device.type == "cpu"
    torch.testing.assert_close(d.vector, t[0])


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    file = tmp_path / "evil.pt"
    torch.save({"direction": _RunsCode()}, file)
    with pytest.raises(UnsafeCheckpointError):
        load_direction(file)
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises((UnsafeCheckpointError, ValueError)):
        load_direction(legacy)


def test_own_format_round_trip_and_fingerprint_warning(tmp_path, small_generator):
    from lsap.metrics import generator_fingerprint

    d = Direction(torch.randn(512), layers=(2, 3), name="x", generator_hash=generator_fingerprint(small_generator))
    save_direction(d, tmp_path / "x.pt")
    back = load_direction(tmp_path / "x.pt")
    torch.testing.assert_close(back.vector, d.vector)
    assert back.layers == (2, 3)
    back.check_generator(small_generator)  # same generator: silent
    other = type(small_generator)(**{k: v for k, v in small_generator.config.items()})
    with pytest.warns(RuntimeWarning, match="another generator"):
        back.check_generator(other)
    # Published tools read it as a plain tensor entry.
    assert torch.load(tmp_path / "x.pt", weights_only=True)["direction"].shape == (1, 512)
