"""Built-in generators by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsap.model import checkpoints, load_generator

FASHION32 = Path(checkpoints.__file__).resolve().parent.parent / "assets" / "fashion32.safetensors"


@pytest.mark.skipif(not FASHION32.is_file(), reason=f"the trained fashion32 generator is not installed yet ({FASHION32})")
def test_fashion32_loads_by_name() -> None:
    g = load_generator("fashion32")
    assert g.resolution == 32
    assert FASHION32.stat().st_size <= 10_000_000
    with torch.no_grad():
        assert g(torch.randn(2, g.z_dim)).shape == (2, 3, 32, 32)


@pytest.mark.skipif(not FASHION32.is_file(), reason=f"the trained fashion32 generator is not installed yet ({FASHION32})")
def test_fashion32_is_deterministic_and_draws_centred_grey_items() -> None:
    from lsap.model.sampling import sample_z

    g = load_generator("fashion32")
    (z,) = sample_z(256, g.z_dim, seed=0, batch_size=256)
    with torch.no_grad():
        images = g(z, noise_mode="const")
        torch.testing.assert_close(g(z[:8], noise_mode="const"), images[:8], rtol=0, atol=1e-5)
    assert images.shape == (256, 3, 32, 32)
    # Grey replicated to RGB, as in training.
    assert float((images[:, 0] - images[:, 1]).abs().mean()) < 0.02
    assert float((images[:, 1] - images[:, 2]).abs().mean()) < 0.02
    # The 28 px items sit on a 32 px background canvas: a dark 2 px frame, a bright middle,
    # and the brightness centred.
    mean = images.mean(dim=(0, 1))
    frame = torch.cat([mean[:2].flatten(), mean[-2:].flatten(), mean[2:-2, :2].flatten(), mean[2:-2, -2:].flatten()])
    assert float(frame.max()) < -0.9
    assert float(mean[8:24, 8:24].mean()) > -0.3
    weight = mean + 1
    coords = torch.arange(32.0)
    centroid_y = float((weight.sum(1) * coords).sum() / weight.sum())
    centroid_x = float((weight.sum(0) * coords).sum() / weight.sum())
    assert abs(centroid_y - 15.5) < 1.5 and abs(centroid_x - 15.5) < 1.5


def test_unknown_name_is_a_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="fashion33"):
        load_generator("fashion33")


def test_missing_builtin_asset_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(checkpoints.BUILTIN_GENERATORS, "nothere", "nothere.safetensors")
    with pytest.raises(FileNotFoundError, match="built-in generator 'nothere'.*nothere.safetensors"):
        load_generator("nothere")
