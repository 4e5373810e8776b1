"""S^N anchors: definition, reproducibility, cache."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import lsap.style.anchors as anchors_module
import lsap.style.statistics as statistics_module
from lsap.metrics import Anchors, anchors_cache_path, compute_anchors, default_cache_dir, generator_fingerprint
from lsap.model import Generator
from conftest import small_source

NUM_SAMPLES = 1200  # more than one z block (Z_BLOCK = 1024), so block joins are exercised


@pytest.fixture(scope="module")
def generator() -> Generator:
    return small_source(32, 3, channel_max=64).build()


@pytest.fixture(scope="module")
def anchors(generator: Generator) -> Anchors:
    return compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, use_cache=False)


class SampleSpy:
    """Counts the uncached computations (each draws one seeded z stream)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = statistics_module.sample_z

        def spy(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(statistics_module, "sample_z", spy)


def assert_anchors_equal(a: Anchors, b: Anchors, atol: float = 0.0) -> None:
    assert len(a.full) == len(b.full)
    for x, y in zip(a.full, b.full):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def test_anchor_is_mean_of_unit_styles_not_renormalised(generator: Generator, anchors: Anchors) -> None:
    # Documented z stream: one CPU generator seeded with `seed`, blocks of Z_BLOCK samples.
    rng = torch.Generator().manual_seed(0)
    blocks, left = [], NUM_SAMPLES
    while left:
        n = min(anchors_module.Z_BLOCK, left)
        blocks.append(torch.randn(n, generator.z_dim, generator=rng))
        left -= n
    z = torch.cat(blocks)
    with torch.no_grad():
        styles = generator.styles(generator.mapping(z))
    for anchor, style in zip(anchors.full, styles):
        expected = torch.nn.functional.normalize(style.double(), dim=1).mean(0)
        torch.testing.assert_close(anchor, expected, atol=1e-6, rtol=0)
        assert 0.05 < anchor.norm() < 1  # a mean of unit vectors, not renormalised
    assert anchors.full[0].dtype == torch.float64 and anchors.full[0].device.type == "cpu"


def test_layer_metadata_and_selections(generator: Generator, anchors: Anchors) -> None:
    assert anchors.num_ws == generator.num_ws == 8
    assert anchors.w_dim == generator.w_dim
    assert anchors.layers == tuple(generator.style_layers)
    assert len(anchors.full) == 11  # 4x4 conv + toRGB, then 3 blocks of conv, conv, toRGB
    assert list(anchors.lsap_indices) == generator.lsap_style_indices
    assert [layer.w_index for layer in anchors.lsap_layers] == list(range(generator.num_ws))
    assert [layer.channels for layer in anchors.lsap_layers] == [a.shape[0] for a in anchors.lsap]
    assert anchors.select("full") == anchors.full and anchors.select("lsap") == anchors.lsap
    torch.testing.assert_close(anchors.norms("lsap"), torch.stack([a.norm() for a in anchors.lsap]))
    with pytest.raises(ValueError, match="'lsap' or 'full'"):
        anchors.select("everything")  # type: ignore[arg-type]
    assert (anchors.num_samples, anchors.seed, anchors.generator_hash) == (NUM_SAMPLES, 0,
                                                                           generator_fingerprint(generator))


def test_reproducible_and_seed_dependent(generator: Generator, anchors: Anchors) -> None:
    again = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, use_cache=False)
    assert_anchors_equal(anchors, again)
    other_seed = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=1, use_cache=False)
    assert not torch.allclose(anchors.full[0], other_seed.full[0], atol=1e-4)
    # ... but both estimate the same expectation.
    torch.testing.assert_close(anchors.full[0], other_seed.full[0], atol=0.05, rtol=0)


def test_batch_size_does_not_change_anchors(generator: Generator, anchors: Anchors) -> None:
    for batch_size in (300, 5000):
        other = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, batch_size=batch_size, use_cache=False)
        assert_anchors_equal(anchors, other, atol=1e-6)


def test_weight_change_changes_anchors_and_fingerprint(generator: Generator, anchors: Anchors) -> None:
    changed = copy.deepcopy(generator)
    with torch.no_grad():
        changed.synthesis_network.convs[2].affine.weight[0, 0] += 1.0
    assert generator_fingerprint(changed) != generator_fingerprint(generator)
    other = compute_anchors(changed, num_samples=NUM_SAMPLES, seed=0, use_cache=False)
    assert not torch.allclose(other.lsap[2], anchors.lsap[2], atol=1e-5)
    torch.testing.assert_close(other.lsap[0], anchors.lsap[0], atol=1e-12, rtol=0)  # other layers untouched

    # Any tensor of the state dict counts, even one the anchors do not depend on.
    noise_changed = copy.deepcopy(generator)
    with torch.no_grad():
        noise_changed.synthesis_network.convs[0].noise_const[0, 0] += 1.0
    assert generator_fingerprint(noise_changed) != generator_fingerprint(generator)
    assert generator_fingerprint(copy.deepcopy(generator)) == generator_fingerprint(generator)


def test_generator_is_left_as_it_was(generator: Generator) -> None:
    trained = copy.deepcopy(generator).train()
    trained.synthesis_network.eval()
    w_avg = trained.w_avg.clone()
    compute_anchors(trained, num_samples=100, use_cache=False)
    assert torch.equal(trained.w_avg, w_avg)  # sampling in train mode would have moved it
    assert trained.training and trained.mapping_network.training and not trained.synthesis_network.training


def test_cache_is_used_and_keyed(generator: Generator, anchors: Anchors, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SampleSpy(monkeypatch)
    first = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, cache_dir=tmp_path)
    assert spy.calls == 1
    path = anchors_cache_path(tmp_path, generator_fingerprint(generator), NUM_SAMPLES, 0)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left
    assert_anchors_equal(first, anchors)

    second = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, batch_size=77, cache_dir=tmp_path)
    assert spy.calls == 1  # read back, batch size is not part of the key
    assert_anchors_equal(second, first)
    assert second.layers == first.layers and second.lsap_indices == first.lsap_indices

    compute_anchors(generator, num_samples=NUM_SAMPLES, seed=1, cache_dir=tmp_path)
    compute_anchors(generator, num_samples=NUM_SAMPLES // 2, seed=0, cache_dir=tmp_path)
    assert spy.calls == 3

    changed = copy.deepcopy(generator)
    with torch.no_grad():
        changed.mapping_network.layers[0].weight[:, 0] += 100.0
    stale = compute_anchors(changed, num_samples=NUM_SAMPLES, seed=0, cache_dir=tmp_path)
    assert spy.calls == 4
    assert not torch.allclose(stale.full[0], first.full[0], atol=1e-6)
    assert stale.generator_hash == generator_fingerprint(changed)

    compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, cache_dir=tmp_path, use_cache=False)
    assert spy.calls == 5


def test_corrupt_cache_is_recomputed(generator: Generator, anchors: Anchors, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = anchors_cache_path(tmp_path, generator_fingerprint(generator), NUM_SAMPLES, 0)
    spy = SampleSpy(monkeypatch)
    for damage in (b"not a torch file", b""):
        path.write_bytes(damage)
        with pytest.warns(RuntimeWarning, match="unreadable anchors cache"):
            repaired = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, cache_dir=tmp_path)
        assert_anchors_equal(repaired, anchors)
        assert Anchors.load(path).generator_hash == anchors.generator_hash  # rewritten
    assert spy.calls == 2

    # A readable file that holds something else is not trusted either.
    torch.save({"format": "lsap.anchors", "version": 1, "full": []}, path)
    with pytest.warns(RuntimeWarning, match="unreadable anchors cache"):
        compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, cache_dir=tmp_path)
    other = compute_anchors(generator, num_samples=10, seed=5, use_cache=False)
    other.save(path)
    with pytest.warns(RuntimeWarning, match="other settings"):
        fixed = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, cache_dir=tmp_path)
    assert_anchors_equal(fixed, anchors)
    assert spy.calls == 5


def test_unwritable_cache_only_warns(generator: Generator, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    with pytest.warns(RuntimeWarning, match="could not write the anchors cache"):
        result = compute_anchors(generator, num_samples=50, cache_dir=blocker)
    assert result.num_samples == 50


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, generator: Generator) -> None:
    monkeypatch.delenv("LSAP_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "lsap" / "anchors"
    monkeypatch.setenv("LSAP_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "anchors"
    compute_anchors(generator, num_samples=50)
    assert len(list((tmp_path / "anchors").glob("anchors-M50-seed0-*.pt"))) == 1


def test_save_load_round_trip_and_to(anchors: Anchors, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "anchors.pt"
    anchors.save(path)
    loaded = Anchors.load(path)
    assert_anchors_equal(loaded, anchors)
    assert loaded.layers == anchors.layers and loaded.lsap_indices == anchors.lsap_indices
    assert (loaded.num_ws, loaded.w_dim, loaded.num_samples, loaded.seed, loaded.generator_hash) == (
        anchors.num_ws, anchors.w_dim, anchors.num_samples, anchors.seed, anchors.generator_hash)
    half = anchors.to(dtype=torch.float32)
    assert half.full[0].dtype == torch.float32 and anchors.full[0].dtype == torch.float64
    assert anchors.to("meta").full[0].device.type == "meta"
    with pytest.raises(FileNotFoundError, match="anchors file not found"):
        Anchors.load(tmp_path / "missing.pt")


def test_invalid_arguments(generator: Generator, anchors: Anchors) -> None:
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        compute_anchors(generator, num_samples=0, use_cache=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        compute_anchors(generator, num_samples=10, batch_size=0, use_cache=False)
    with pytest.raises(ValueError, match=r"must have shape \[64\], got \(3,\)"):
        Anchors(full=[torch.zeros(3)] + anchors.full[1:], layers=anchors.layers, lsap_indices=anchors.lsap_indices,
                num_ws=anchors.num_ws, w_dim=anchors.w_dim, num_samples=1, seed=0, generator_hash="x")
