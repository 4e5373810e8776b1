"""lsap.cache: one root for every cache, damaged files recomputed with a warning, and the
sampling loop of cached statistics leaves every submodule's train/eval mode as it was."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from lsap import cache
from lsap.ops import _build
from lsap.style import compute_anchors, default_cache_dir, sampled_styles, style_std
from conftest import small_source

SAMPLES = 300


@pytest.fixture(scope="module")
def generator():
    return small_source(resolution=16).build()


def test_lsap_cache_dir_is_honoured_by_every_cache(generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSAP_CACHE_DIR", str(tmp_path / "root"))
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    root = tmp_path / "root"
    assert cache.cache_root() == root
    assert default_cache_dir() == root / "anchors"
    assert _build.cache_root() == root / "torch_extensions"
    compute_anchors(generator, num_samples=SAMPLES, seed=0)
    style_std(generator, num_samples=SAMPLES, seed=0, batch_size=128)
    assert len(list((root / "anchors").glob("anchors-*.pt"))) == 1
    assert len(list((root / "style_std").glob("style-std-*.pt"))) == 1
    monkeypatch.delenv("LSAP_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "lsap"


def test_the_key_depends_on_every_part() -> None:
    assert cache.cache_key("a", 1, "b") == cache.cache_key("a", 1, "b")
    assert len({cache.cache_key("a", 1, "b"), cache.cache_key("a", 2, "b"), cache.cache_key("a", 1, "c")}) == 3
    path = cache.cache_file("/x", "stem", "a", 1)
    assert path.parent == Path("/x") and path.name.startswith("stem-") and path.suffix == ".pt"


@pytest.mark.parametrize("what", ["anchors", "style std"])
def test_a_damaged_file_is_recomputed_with_a_warning(generator, what: str, tmp_path: Path) -> None:
    def compute():
        if what == "anchors":
            return compute_anchors(generator, num_samples=SAMPLES, seed=1, cache_dir=tmp_path)
        return style_std(generator, num_samples=SAMPLES, seed=1, batch_size=128, cache_dir=tmp_path)

    def values(result):
        return result.full if what == "anchors" else result

    fresh = values(compute())
    (path,) = list(tmp_path.glob("*.pt"))
    path.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        repaired = values(compute())
    for a, b in zip(fresh, repaired):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file is read back silently
        again = values(compute())
    torch.testing.assert_close(again[0], fresh[0], rtol=0, atol=0)


def test_a_file_of_other_settings_is_recomputed(generator, tmp_path: Path) -> None:
    std = style_std(generator, num_samples=SAMPLES, seed=2, batch_size=128, cache_dir=tmp_path)
    (path,) = list(tmp_path.glob("*.pt"))
    state = torch.load(path, weights_only=True)
    state["seed"] = 99
    torch.save(state, path)
    with pytest.warns(RuntimeWarning, match="other settings"):
        recomputed = style_std(generator, num_samples=SAMPLES, seed=2, batch_size=128, cache_dir=tmp_path)
    torch.testing.assert_close(recomputed[0], std[0], rtol=0, atol=0)


def test_an_unwritable_cache_only_warns(tmp_path: Path) -> None:
    def refuse(value, path):
        raise PermissionError(13, "read-only", str(path))

    with pytest.warns(RuntimeWarning, match="could not write"):
        value = cache.cached(tmp_path / "x.pt", compute=lambda: 7, load=lambda p: 0, save=refuse,
                             matches=lambda v: True, what="number")
    assert value == 7
    assert cache.cached(None, compute=lambda: 8, load=lambda p: 0, save=refuse, matches=lambda v: True,
                        what="number") == 8


def test_sampling_restores_every_submodules_mode(generator) -> None:
    generator.train()
    generator.mapping_network.eval()
    before = {name: module.training for name, module in generator.named_modules()}
    assert len(set(before.values())) == 2, "a mix of modes, so a top-level restore would be caught"
    compute_anchors(generator, num_samples=SAMPLES, seed=3, use_cache=False)
    style_std(generator, num_samples=SAMPLES, seed=3, batch_size=128, use_cache=False)
    stream = sampled_styles(generator, SAMPLES, seed=3, batch_size=64)
    next(stream)
    assert not any(module.training for module in generator.modules()), "sampling runs in eval mode"
    stream.close()  # abandoned early: the modes come back all the same
    assert {name: module.training for name, module in generator.named_modules()} == before
    generator.eval()


def test_sampled_styles_do_not_depend_on_the_batch_size(generator) -> None:
    small = [torch.cat(layer) for layer in zip(*sampled_styles(generator, 200, seed=4, batch_size=37))]
    large = [torch.cat(layer) for layer in zip(*sampled_styles(generator, 200, seed=4, batch_size=200))]
    for a, b in zip(small, large):
        torch.testing.assert_close(a, b)
