"""Fashion-MNIST classifier, its loader, and the fashion32 quality script."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lsap.model import Generator, save_generator
from lsap.nets.fashion_classifier import FEATURE_DIM, WEIGHTS_FILE, FashionClassifier, load_fashion_classifier
from conftest import load_bench_script


def load_quality_script():
    return load_bench_script("fashion32_quality")


def test_classifier_shapes_and_input_forms() -> None:
    torch.manual_seed(0)
    net = FashionClassifier().eval()
    grey28 = torch.rand(3, 1, 28, 28) * 2 - 1
    logits, feats = net.forward_features(grey28)
    assert logits.shape == (3, 10) and feats.shape == (3, FEATURE_DIM)
    # The same image as padded 32 px RGB gives the same answer.
    rgb32 = torch.full((3, 3, 32, 32), -1.0)
    rgb32[:, :, 2:30, 2:30] = grey28
    assert torch.allclose(net(rgb32), logits, atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        net(torch.zeros(1, 3, 64, 64))


def test_missing_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_fashion_classifier(tmp_path / "nope.safetensors")


@pytest.mark.skipif(not WEIGHTS_FILE.is_file(), reason=f"classifier weights not trained yet ({WEIGHTS_FILE})")
def test_shipped_weights_load_and_are_small() -> None:
    net = load_fashion_classifier()
    assert WEIGHTS_FILE.stat().st_size < 1_000_000
    assert not net.training and net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_frechet_distance_matches_the_diagonal_closed_form() -> None:
    quality = load_quality_script()
    rng = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=rng, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    b = torch.randn(20000, 3, generator=rng, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64) + 1
    va, vb = a.var(0), b.var(0)
    expected = (a.mean(0) - b.mean(0)).square().sum() + (va + vb - 2 * (va * vb).sqrt()).sum()
    # Sample covariances are only nearly diagonal, hence the tolerance.
    assert quality.feature_fid(a, b) == pytest.approx(float(expected), rel=2e-2)
    assert quality.feature_fid(a, a) == pytest.approx(0.0, abs=1e-6)


def _fake_fashion(root: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (40, 28, 28)),
              "train-labels-idx1-ubyte.gz": np.arange(40) % 10,
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (30, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": np.arange(30) % 10}
    root.mkdir()
    for name, array in arrays.items():
        with gzip.open(root / name, "wb") as f:
            f.write(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
                    + array.astype(np.uint8).tobytes())


def test_quality_script_on_a_tiny_random_generator(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    quality = load_quality_script()
    torch.manual_seed(0)
    generator = save_generator(Generator(resolution=32, z_dim=16, w_dim=16, mapping_layers=1, channel_base=128,
                                         channel_max=8), tmp_path / "g.safetensors")
    from safetensors.torch import save_file

    save_file(FashionClassifier().state_dict(), str(tmp_path / "clf.safetensors"))
    _fake_fashion(tmp_path / "fashion")
    import sys

    argv = ["fashion32_quality.py", str(generator), "--num-samples", "40", "--root", str(tmp_path / "fashion"),
            "--classifier", str(tmp_path / "clf.safetensors")]
    old, sys.argv = sys.argv, argv
    try:
        quality.main()
    finally:
        sys.argv = old
    out = capsys.readouterr().out.splitlines()
    result = json.loads(out[0])
    assert result["num_samples"] == 40
    assert sum(result["class_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert 0 <= result["confident"] <= 1 and result["fid"] >= 0 and result["fid_real_train_vs_test"] >= 0
    assert out[1].startswith("| metric |")
