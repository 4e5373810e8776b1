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


def test_unknown_name_is_a_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="fashion33"):
        load_generator("fashion33")


def test_missing_builtin_asset_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(checkpoints.BUILTIN_GENERATORS, "nothere", "nothere.safetensors")
    with pytest.raises(FileNotFoundError, match="built-in generator 'nothere'.*nothere.safetensors"):
        load_generator("nothere")
