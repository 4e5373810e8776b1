"""GANSpace: e4e's edit formula, files, and the PCA (orthonormal, sorted, recovers planted structure)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lsap.editing import GANSPACE_PRESETS, GANSpace, compute_ganspace, load_ganspace, save_ganspace


def _random_ganspace(k: int = 4, d: int = 6) -> GANSpace:
    q, _ = torch.linalg.qr(torch.randn(d, d))
    return GANSpace(mean=torch.randn(d), components=q.T[:k].contiguous(), std=torch.rand(k) + 0.5)


def test_target_mode_matches_hand_computation():
    g = _random_ganspace()
    ws = torch.randn(2, 5, 6)
    k, start, end, strength = 1, 1, 3, 2.0
    out = g.apply(ws, k, start, end, strength)
    for b in range(2):
        c = float(torch.dot(ws[b, 0] - g.mean, g.components[k]) / g.std[k])
        delta = (strength - c) * g.components[k] * g.std[k]
        expected = ws[b].clone()
        expected[start:end] += delta
        torch.testing.assert_close(out[b], expected)
    # Entries outside start..end-1 are untouched (end exclusive).
    torch.testing.assert_close(out[:, [0, 3, 4]], ws[:, [0, 3, 4]])


def test_target_is_reached_when_entry_zero_is_edited():
    g = _random_ganspace()
    ws = torch.randn(3, 4, 6)
    out = g.apply(ws, 2, 0, 4, -1.5)
    torch.testing.assert_close(g.coordinate(out, 2), torch.full((3,), -1.5))


def test_shift_mode_adds_strength_std():
    g = _random_ganspace()
    ws = torch.randn(2, 4, 6)
    out = g.apply(ws, 0, 2, 4, 3.0, mode="shift")
    torch.testing.assert_close(out[:, 2:4] - ws[:, 2:4], (3.0 * g.std[0] * g.components[0]).expand(2, 2, 6))


def test_presets_are_data_with_sources():
    assert (GANSPACE_PRESETS["eye_openness"].component, GANSPACE_PRESETS["eye_openness"].start,
            GANSPACE_PRESETS["eye_openness"].end, GANSPACE_PRESETS["eye_openness"].strength) == (54, 7, 8, 20.0)
    assert GANSPACE_PRESETS["white_hair"].strength == -24.0
    assert all(p.source for p in GANSPACE_PRESETS.values())


def test_e4e_pt_and_npz_files(tmp_path):
    g = _random_ganspace(k=3, d=8)
    torch.save({"mean": g.mean[None], "comp": g.components[:, None], "std": g.std}, tmp_path / "ffhq_pca.pt")
    a = load_ganspace(tmp_path / "ffhq_pca.pt")
    np.savez(tmp_path / "pca.npz", lat_comp=g.components[:, None].numpy(), lat_mean=g.mean[None].numpy(),
             lat_stdev=g.std.numpy(), var_ratio=np.ones(3, np.float32) / 3)
    b = load_ganspace(tmp_path / "pca.npz")
    for loaded in (a, b):
        torch.testing.assert_close(loaded.components, g.components)
        torch.testing.assert_close(loaded.mean, g.mean)
        torch.testing.assert_close(loaded.std, g.std)
    np.savez(tmp_path / "bad.npz", lat_comp=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="missing"):
        load_ganspace(tmp_path / "bad.npz")


class _PlantedMapping(nn.Module):
    """A stand-in generator whose w = mean + U diag(scales) z[:r] + tiny noise (known PCA)."""

    def __init__(self, d: int = 12, r: int = 3) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(5)))
        self.basis = nn.Parameter(q[:, :r].contiguous(), requires_grad=False)
        self.scales = nn.Parameter(torch.tensor([4.0, 2.0, 1.0]), requires_grad=False)
        self.offset = nn.Parameter(torch.linspace(-1, 1, d), requires_grad=False)
        self.z_dim, self.w_dim, self.r = d, d, r

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.offset + (z[:, : self.r] * self.scales) @ self.basis.T + 1e-3 * z


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_pca_orthonormal_sorted_and_recovers_planted_subspace(method):
    g = _PlantedMapping()
    result = compute_ganspace(g, num_samples=20_000, num_components=5, method=method, batch_size=4096)
    c = result.components.double()
    torch.testing.assert_close(c @ c.T, torch.eye(5, dtype=torch.float64), atol=1e-5, rtol=0)
    assert bool((result.std[:-1] >= result.std[1:] - 1e-6).all())
    # Planted directions and their stds come back (sampling error ~1%).
    cos = (c[:3] @ g.basis.double()).abs().diagonal()
    assert bool((cos > 0.999).all()), cos
    torch.testing.assert_close(result.std[:3], g.scales, rtol=0.03, atol=0)
    assert float(result.var_ratio[:3].sum()) > 0.999
    torch.testing.assert_close(result.mean, g.offset, atol=0.1, rtol=0)


def test_small_generator_pca_saved_in_e4e_format(tmp_path, small_generator):
    result = compute_ganspace(small_generator, num_samples=2000, num_components=8)
    save_ganspace(result, tmp_path / "pca.pt")
    raw = torch.load(tmp_path / "pca.pt", weights_only=True)
    assert raw["mean"].shape == (1, 512) and raw["comp"].shape == (8, 1, 512) and raw["std"].shape == (8,)
    back = load_ganspace(tmp_path / "pca.pt")
    assert back.generator_hash == result.generator_hash
    torch.testing.assert_close(back.var_ratio, result.var_ratio)
    # Same seed, same components (the z sampler is seeded).
    again = compute_ganspace(small_generator, num_samples=2000, num_components=8, batch_size=333)
    torch.testing.assert_close(again.components, result.components, atol=1e-4, rtol=0)


def test_w_codes_and_bad_ranges_refused():
    g = _random_ganspace()
    with pytest.raises(ValueError, match="W\\+"):
        g.apply(torch.randn(2, 6), 0, 0, 1, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        g.apply(torch.randn(2, 4, 6), 0, 2, 5, 1.0)
    with pytest.raises(ValueError, match="component"):
        g.apply(torch.randn(2, 4, 6), 9, 0, 1, 1.0)
