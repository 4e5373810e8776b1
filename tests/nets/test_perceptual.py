"""Perceptual distances: the deep-feature distance against a computation written out by hand,
spatial maps whose mean is the per-sample distance, and LPIPS against the lpips package."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lsap.losses import LPIPSLoss as LossesLPIPS
from lsap.nets import FeatureDistance, LPIPSLoss, PerceptualDistance
from lsap.nets.fashion_classifier import load_fashion_classifier
from lsap.nets.perceptual import upsample_to


def _images(seed: int, shape: tuple[int, ...] = (3, 1, 32, 32)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def fashion_distance() -> FeatureDistance:
    return FeatureDistance("fashion_classifier", reduction="none")


@pytest.fixture(scope="module")
def random_lpips(tmp_path_factory: pytest.TempPathFactory) -> LPIPSLoss:
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    path = tmp_path_factory.mktemp("alex") / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return LPIPSLoss(backbone_weights=str(path), reduction="none")


def _by_hand_fashion_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The classifier's conv stack run op by op from its state dict; per layer the channel
    vectors divided by their norm, squared differences summed over channels, averaged over
    positions; the mean over the five layers."""
    state = {k: v.double() for k, v in load_fashion_classifier().state_dict().items()}

    def activations(images: torch.Tensor) -> list[torch.Tensor]:
        h = images.mean(dim=1, keepdim=True)
        outputs = []
        conv_indices = [0, 3, 7, 10, 14]  # conv positions in the Sequential (bn +1, relu +2)
        for position, index in enumerate(conv_indices):
            h = F.conv2d(h, state[f"features.{index}.weight"], padding=1)
            h = F.batch_norm(h, state[f"features.{index + 1}.running_mean"], state[f"features.{index + 1}.running_var"],
                             state[f"features.{index + 1}.weight"], state[f"features.{index + 1}.bias"],
                             training=False, eps=1e-5)
            h = torch.relu(h)
            outputs.append(h)
            if position in (1, 3):
                h = F.max_pool2d(h, 2)
        return outputs

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    layers = list(zip(activations(x.double()), activations(y.double())))
    for a, b in layers:
        a = a / (torch.linalg.vector_norm(a, dim=1, keepdim=True) + 1e-10)
        b = b / (torch.linalg.vector_norm(b, dim=1, keepdim=True) + 1e-10)
        total += ((a - b) ** 2).sum(dim=1).mean(dim=(1, 2))
    return total / len(layers)


def test_feature_distance_equals_the_computation_by_hand(fashion_distance: FeatureDistance) -> None:
    x, y = _images(0), _images(1)
    expected = _by_hand_fashion_distance(x, y).float()
    torch.testing.assert_close(fashion_distance.per_sample(x, y), expected, rtol=1e-4, atol=1e-5)
    assert (expected > 0).all()
    assert fashion_distance.per_sample(x, x).abs().max() < 1e-6
    torch.testing.assert_close(fashion_distance.per_sample(x, y), fashion_distance.per_sample(y, x))
    # RGB input is averaged to grey first: a grey image repeated over channels changes nothing.
    torch.testing.assert_close(fashion_distance.per_sample(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)),
                               fashion_distance.per_sample(x, y))


def test_forward_is_the_mean_of_per_sample() -> None:
    distance = FeatureDistance()
    x, y = _images(2), _images(3)
    torch.testing.assert_close(distance(x, y), distance.per_sample(x, y).mean())


@pytest.mark.parametrize("which", ["fashion", "lpips"])
def test_spatial_map_mean_is_per_sample(which: str, fashion_distance: FeatureDistance,
                                        random_lpips: LPIPSLoss) -> None:
    if which == "fashion":
        distance: PerceptualDistance = fashion_distance
        x, y = _images(4), _images(5)
    else:
        distance = random_lpips
        x, y = _images(4, (2, 3, 64, 48)), _images(5, (2, 3, 64, 48))  # AlexNet maps: 15x11, 7x5, 3x2
    spatial = distance.spatial(x, y)
    assert spatial.shape == (x.shape[0], 1, *x.shape[-2:])
    if which == "fashion":
        assert (spatial >= 0).all()
    torch.testing.assert_close(spatial.mean(dim=(1, 2, 3)), distance.per_sample(x, y), rtol=1e-5, atol=1e-6)


def test_spatial_map_locates_the_difference(fashion_distance: FeatureDistance) -> None:
    x = _images(6)
    y = x.clone()
    y[:, :, :, 20:] = -y[:, :, :, 20:]  # differ only on the right
    spatial = fashion_distance.spatial(x, y)
    assert spatial[..., :6].abs().max() < 1e-6 * spatial[..., 20:].abs().max() + 1e-7
    assert spatial[..., 20:].mean() > 0


def test_spatial_with_a_box_is_zero_outside_and_keeps_its_mean_inside() -> None:
    box = (4, 28, 2, 30)
    distance = FeatureDistance(box=box, reduction="none")
    x, y = _images(7), _images(8)
    spatial = distance.spatial(x, y)
    top, bottom, left, right = box
    inside = spatial[..., top:bottom, left:right]
    assert spatial.sum() == pytest.approx(inside.sum().item())
    torch.testing.assert_close(inside.mean(dim=(1, 2, 3)), distance.per_sample(x, y), rtol=1e-5, atol=1e-6)


def test_upsampling_is_the_scaled_adjoint_of_area_pooling() -> None:
    values = torch.rand(2, 1, 5, 3, dtype=torch.float64)
    images = torch.rand(2, 1, 17, 11, dtype=torch.float64, requires_grad=True)
    pooled = F.adaptive_avg_pool2d(images, (5, 3))
    (gradient,) = torch.autograd.grad((pooled * values).sum(), images)
    torch.testing.assert_close(upsample_to(values, (17, 11)), gradient * (17 * 11) / (5 * 3))


class _TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.second = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.first(x)
        return [a, self.second(a)]


def test_any_feature_network_by_returned_maps_or_by_named_layers() -> None:
    network = _TwoLayers()
    x, y = _images(9, (2, 3, 16, 16)), _images(10, (2, 3, 16, 16))
    by_output = FeatureDistance(network, reduction="none").per_sample(x, y)
    by_layers = FeatureDistance(network, layers=["first", "second"], reduction="none").per_sample(x, y)
    torch.testing.assert_close(by_output, by_layers)
    with pytest.raises(ValueError, match="not submodules"):
        FeatureDistance(network, layers=["third"])
    with pytest.raises(ValueError, match="unknown feature network"):
        FeatureDistance("imagenet")


def test_frozen_in_eval_mode_but_differentiable(fashion_distance: FeatureDistance) -> None:
    parent = nn.ModuleDict({"distance": fashion_distance}).train()
    assert not parent["distance"].training and not fashion_distance.network.training
    assert not any(p.requires_grad for p in fashion_distance.parameters())
    x = _images(11).requires_grad_(True)
    fashion_distance.per_sample(x, _images(12)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_configs_name_the_backends_by_class_path() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--lpips", type=PerceptualDistance | None, default=None)
    config = parser.parse_object({"lpips": {"class_path": "lsap.nets.FeatureDistance",
                                            "init_args": {"network": "fashion_classifier"}}})
    built = parser.instantiate(config).lpips
    assert isinstance(built, FeatureDistance) and built.network_name == "fashion_classifier"
    config = parser.parse_object({"lpips": {"class_path": "lsap.losses.LPIPSLoss",
                                            "init_args": {"allow_random_backbone": True}}})
    assert isinstance(parser.instantiate(config).lpips, LPIPSLoss)
    assert LossesLPIPS is LPIPSLoss


ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _real_alexnet_file() -> Path | None:
    candidates = [os.environ.get("LSAP_ALEXNET_WEIGHTS", ""),
                  str(Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE),
                  str(Path("pretrained") / ALEXNET_FILE)]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def test_lpips_with_real_weights_equals_the_lpips_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _real_alexnet_file()
    if path is None:
        pytest.skip(f"torchvision's AlexNet weights {ALEXNET_FILE} not found (set LSAP_ALEXNET_WEIGHTS, or put "
                    "it in torch hub's checkpoints folder or pretrained/)")
    import lpips

    # The package loads its backbone through torchvision's cache; point that cache at the file
    # so the reference is the package's own code path, with nothing downloaded.
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / ALEXNET_FILE).symlink_to(path.resolve())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", verbose=False).eval()
    ours = LPIPSLoss(backbone_weights=str(path), reduction="none")
    x, y = _images(13, (3, 3, 64, 64)), _images(14, (3, 3, 64, 64))
    with torch.no_grad():
        expected = reference(x, y).flatten()
    assert (expected > 0).all()
    torch.testing.assert_close(ours.per_sample(x, y), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.spatial(x, y).mean(dim=(1, 2, 3)), expected, rtol=1e-5, atol=1e-6)
