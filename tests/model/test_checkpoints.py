"""Checkpoint formats: reference fixtures, round trips, refusal of code-running files."""

from __future__ import annotations

import collections
import io
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from lsap.convert import convert
from lsap.model import (
    CheckpointError,
    Generator,
    UnsafeCheckpointError,
    generator_from_state_dict,
    load_generator,
    save_generator,
)

TOL = 1e-4  # fixtures README: max abs difference for float32 images


def _check_against_expected(g: Generator, expected: dict) -> None:
    with torch.no_grad():
        torch.testing.assert_close(g.mapping(expected["z"]), expected["w"], rtol=0, atol=TOL)
        assert (g(expected["z"]) - expected["img_from_z"]).abs().max() <= TOL
        assert (g.synthesis(expected["ws"]) - expected["img_from_ws"]).abs().max() <= TOL


def test_rosinality_fixture_matches_reference_outputs(fixtures_dir):
    g = load_generator(fixtures_dir / "rosinality_64px_small.pt")
    assert (g.resolution, g.num_ws, len(g.mapping_network.layers)) == (64, 10, 2)
    assert g.config["channels"] == {4: 64, 8: 64, 16: 64, 32: 32, 64: 32}
    assert not g.training
    _check_against_expected(g, torch.load(fixtures_dir / "rosinality_64px_small.expected.pt", weights_only=True))


def test_nvlabs_state_fixture_matches_reference_outputs(fixtures_dir):
    g = load_generator(fixtures_dir / "nvlabs_64px_small.state.pt")
    expected = torch.load(fixtures_dir / "nvlabs_64px_small.expected.pt", weights_only=True)
    _check_against_expected(g, expected)
    torch.testing.assert_close(g.mapping(expected["z"], truncation_psi=0.7), expected["w_psi0.7"], rtol=0, atol=TOL)


# ---- an NVlabs-style .pkl, written the way stylegan2-ada-pytorch pickles its networks ----

MODULE_SRC_MARKER = "LSAP_TEST_SOURCE_WAS_RUN"


def _fake_nvlabs_modules():
    persistence = types.ModuleType("torch_utils.persistence")
    dnnlib_util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    dnnlib_util.EasyDict = EasyDict

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only the reader's stand-in runs
        raise AssertionError("the real reconstruct function must never be called when loading")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    return {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": dnnlib_util}


class _Persistent:
    """Pickles like an NVlabs persistent object: reconstruct(meta) with source + state."""

    def __init__(self, class_name: str, state: dict, reconstruct, easydict):
        self.meta = easydict(type="class", version=4, class_name=class_name, state=state,
                             module_src=f"import os\nos.environ['{MODULE_SRC_MARKER}'] = '1'\n")
        self.reconstruct = reconstruct

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def write_nvlabs_pkl(path: Path, state_dict: dict, init_kwargs: dict) -> None:
    fake = _fake_nvlabs_modules()
    reconstruct = fake["torch_utils.persistence"]._reconstruct_persistent_obj
    easydict = fake["dnnlib.util"].EasyDict

    tree: dict = {}
    for key, value in state_dict.items():
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def build(name: str, node: dict, extra: dict | None = None) -> _Persistent:
        params, buffers, modules = collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict()
        for key, value in node.items():
            if isinstance(value, dict):
                modules[key] = build(key, value)
            elif key in ("noise_const", "resample_filter", "w_avg"):
                buffers[key] = value
            else:
                params[key] = torch.nn.Parameter(value, requires_grad=False)
        state = {"training": False, "_parameters": params, "_buffers": buffers, "_modules": modules,
                 "_non_persistent_buffers_set": set()}
        if name.startswith("fc"):
            state["bias_gain"] = np.float64(0.01)  # attributes are often numpy scalars
            state["weight_gain"] = np.float64(0.01 / np.sqrt(512))
        state.update(extra or {})
        return _Persistent(name, state, reconstruct, easydict)

    g_ema = build("Generator", tree, {"_init_kwargs": easydict(init_kwargs), "_init_args": ()})
    saved = {k: sys.modules.get(k) for k in fake}
    sys.modules.update(fake)
    try:
        with open(path, "wb") as f:
            pickle.dump({"G": g_ema, "D": None, "G_ema": g_ema, "augment_pipe": None,
                         "training_set_kwargs": easydict(resolution=64)}, f)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_nvlabs_pkl_loads_without_running_its_source(fixtures_dir, tmp_path, monkeypatch):
    state = torch.load(fixtures_dir / "nvlabs_64px_small.state.pt", weights_only=True)
    pkl = tmp_path / "network-snapshot.pkl"
    write_nvlabs_pkl(pkl, state["G_ema_state_dict"], state["init_kwargs"])
    monkeypatch.delenv(MODULE_SRC_MARKER, raising=False)
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        assert name not in sys.modules
    g = load_generator(pkl)
    assert MODULE_SRC_MARKER not in os.environ
    assert "torch_utils.persistence" not in sys.modules
    assert g.mapping_network.layers[0].lr_mul == pytest.approx(0.01)
    _check_against_expected(g, torch.load(fixtures_dir / "nvlabs_64px_small.expected.pt", weights_only=True))
    # Bit-identical to loading the same weights from the state dict.
    direct = load_generator(fixtures_dir / "nvlabs_64px_small.state.pt")
    ws = torch.randn(2, g.num_ws, g.w_dim)
    assert torch.equal(g.synthesis(ws), direct.synthesis(ws))


def test_rosinality_round_trip_from_a_file_the_test_writes(fixtures_dir, tmp_path):
    ckpt = torch.load(fixtures_dir / "rosinality_64px_small.pt", weights_only=True)
    g_ref = generator_from_state_dict(ckpt["g_ema"], latent_avg=ckpt["latent_avg"])
    # e4e / pSp and GANInverter files carry the same generator as their decoder.
    variants = {
        "plain.pt": {"g_ema": ckpt["g_ema"], "latent_avg": ckpt["latent_avg"]},
        "e4e.pt": {"state_dict": {f"decoder.{k}": v for k, v in ckpt["g_ema"].items()},
                   "latent_avg": ckpt["latent_avg"][None].repeat(10, 1), "opts": {"stylegan_size": 64}},
        "lsap_release.pt": {"encoder": {"latent_avg": ckpt["latent_avg"]},
                            "decoder": {f"module.{k}": v for k, v in ckpt["g_ema"].items()}, "opts": {},
                            "global_step": 10},
    }
    ws = torch.randn(3, 10, 512)
    for name, payload in variants.items():
        torch.save(payload, tmp_path / name)
        g = load_generator(tmp_path / name)
        assert torch.equal(g.synthesis(ws), g_ref.synthesis(ws)), name
        assert torch.equal(g.w_avg, ckpt["latent_avg"]), name


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_lsap_format_round_trip_is_bit_identical(fixtures_dir, tmp_path, suffix, capsys):
    src = fixtures_dir / "rosinality_64px_small.pt"
    dst = convert(str(src), str(tmp_path / f"g{suffix}"))
    assert "64px" in capsys.readouterr().out
    a, b = load_generator(src), load_generator(dst)
    z = torch.randn(2, 512)
    assert torch.equal(a(z), b(z))
    assert torch.equal(a.w_avg, b.w_avg)
    assert a.config == b.config


def test_save_generator_keeps_architecture_of_a_custom_generator(tmp_path):
    g = Generator(resolution=16, mapping_layers=3, channels={4: 8, 8: 16, 16: 4}, conv_clamp=256.0)
    save_generator(g, tmp_path / "g.safetensors")
    h = load_generator(tmp_path / "g.safetensors")
    assert h.config == g.config
    ws = torch.randn(1, g.num_ws, 512)
    assert torch.equal(h.synthesis(ws), g.synthesis(ws))


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_pickle_that_would_run_a_command_is_refused(tmp_path):
    marker = tmp_path / "command-ran"
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"G_ema": _RunsACommand(marker)}))
    # Sanity: an ordinary unpickler would run it.
    pickle.loads(pickle.dumps(_RunsACommand(tmp_path / "control")))
    assert (tmp_path / "control").exists()
    with pytest.raises(UnsafeCheckpointError, match=r"system"):
        load_generator(pkl)
    pt = tmp_path / "evil.pt"
    torch.save({"g_ema": _RunsACommand(marker)}, pt)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt.*system"):
        load_generator(pt)
    assert not marker.exists()


def test_missing_truncated_and_mismatched_files_give_clear_errors(fixtures_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"StyleGAN2 generator checkpoint not found: '.*nope\.pt'"):
        load_generator(tmp_path / "nope.pt")
    data = (fixtures_dir / "rosinality_64px_small.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt.*truncated"):
        load_generator(tmp_path / "cut.pt")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(tmp_path / "empty.pkl")
    ckpt = torch.load(fixtures_dir / "rosinality_64px_small.pt", weights_only=True)
    del ckpt["g_ema"]["convs.3.conv.weight"]
    torch.save(ckpt, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"broken\.pt.*convs\.3\.conv\.weight"):
        load_generator(tmp_path / "broken.pt")
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a recognised StyleGAN2 generator"):
        load_generator(tmp_path / "other.pt")
    ckpt = torch.load(fixtures_dir / "rosinality_64px_small.pt", weights_only=True)
    ckpt["g_ema"]["convs.5.conv.weight"] = torch.zeros(1, 32, 16, 3, 3)
    torch.save(ckpt, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape \(32, 16, 3, 3\)"):
        load_generator(tmp_path / "shape.pt")


def test_safe_unpickler_rebuilds_plain_tensor_pickles():
    from lsap.model.safe_pickle import safe_load_pickle

    payload = {"t": torch.arange(6.0).reshape(2, 3), "p": torch.nn.Parameter(torch.ones(2)), "n": np.float32(1.5)}
    out = safe_load_pickle(io.BytesIO(pickle.dumps(payload)))
    assert torch.equal(out["t"], payload["t"]) and torch.equal(out["p"], payload["p"]) and out["n"] == 1.5


class _DiskFillsUp:
    """A file whose disk fills after ``room`` bytes (what ``write`` reports on a full disk)."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data) -> int:
        if len(data) > self.room:
            self.file.write(data[:self.room])
            self.room = 0
            raise OSError(28, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


@pytest.mark.parametrize("kind", ["generator.pt", "generator.safetensors", "encoder.pt", "grid.png"])
def test_every_writer_fails_on_a_full_disk_with_one_error_and_no_file(tmp_path, monkeypatch, kind):
    import lsap.io
    from lsap.encoders import Encoder4Editing, save_e4e_checkpoint
    from lsap.errors import OutputError
    from lsap.visualize import save_image_grid

    from conftest import small_source

    target = tmp_path / "out" / kind
    if kind.startswith("generator"):
        generator = small_source().build()
        write = lambda: save_generator(generator, target)  # noqa: E731
    elif kind.startswith("encoder"):
        encoder = Encoder4Editing(num_ws=8, input_size=32, blocks_per_stage=[1, 1, 1, 1],
                                  stage_channels=[8, 16, 32, 32])
        write = lambda: save_e4e_checkpoint(target, encoder, torch.zeros(encoder.w_dim))  # noqa: E731
    else:
        write = lambda: save_image_grid(torch.zeros(3, 64, 64), target)  # noqa: E731
    real_fdopen = lsap.io.os.fdopen
    monkeypatch.setattr(lsap.io.os, "fdopen", lambda *a, **k: _DiskFillsUp(real_fdopen(*a, **k), room=100))
    with pytest.raises(OutputError, match=f"cannot write '{target}': No space left on device"):
        write()
    assert not target.exists() and not list(target.parent.iterdir()), "no truncated file, no temporary"
    monkeypatch.undo()
    write()
    assert target.stat().st_size > 100
