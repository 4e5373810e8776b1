"""The independent Fashion-MNIST judge shipped with lsap."""

from __future__ import annotations

import pytest
import torch

from lsap.data import FashionSamplesDataset
from lsap.nets.fashion_classifier import load_fashion_classifier
from lsap.nets.fashion_judge import BUILTIN_JUDGES, WEIGHTS_FILE, FashionJudge, load_fashion_judge

# Measured on the 256 shipped test images when the weights were made (see the README's
# shipped-files table); the bound leaves room for float16 rounding only.
SHIPPED_ACCURACY_BOUND = 0.85  # measured 0.871 (223 of 256)


@pytest.fixture(scope="module")
def shipped_images() -> tuple[torch.Tensor, torch.Tensor]:
    samples = FashionSamplesDataset()
    return torch.stack([samples[i]["image"] for i in range(len(samples))]), samples.labels


def test_shipped_weights_are_small_and_load_by_name() -> None:
    assert WEIGHTS_FILE.is_file() and WEIGHTS_FILE.stat().st_size < 1_000_000
    by_name, by_default = load_fashion_judge("fashion_judge"), load_fashion_judge()
    assert not by_name.training and not any(p.requires_grad for p in by_name.parameters())
    for (k, a), (_, b) in zip(by_name.state_dict().items(), by_default.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert set(BUILTIN_JUDGES) == {"fashion_judge"}


def test_accuracy_on_the_shipped_test_images(shipped_images) -> None:
    images, labels = shipped_images
    with torch.no_grad():
        accuracy = (load_fashion_judge()(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= SHIPPED_ACCURACY_BOUND


def test_deterministic_and_batch_independent(shipped_images) -> None:
    images = shipped_images[0][:16]
    judge = load_fashion_judge()
    with torch.no_grad():
        first, second = judge(images), judge(images)
        one_by_one = torch.cat([judge(images[i:i + 1]) for i in range(len(images))])
    assert torch.equal(first, second)
    torch.testing.assert_close(one_by_one, first, rtol=1e-4, atol=1e-4)


def test_grey_and_rgb_28_and_32_px_inputs_agree(shipped_images) -> None:
    rgb32 = shipped_images[0][:8]
    grey28 = rgb32[:, :1, 2:30, 2:30]
    judge = load_fashion_judge()
    with torch.no_grad():
        torch.testing.assert_close(judge(rgb32), judge(grey28))
    with pytest.raises(ValueError, match="expected"):
        judge(torch.zeros(2, 2, 32, 32))


def test_it_is_another_network_than_the_labeller(shipped_images) -> None:
    judge, labeller = load_fashion_judge(), load_fashion_classifier()
    judge_shapes = {tuple(v.shape) for v in judge.state_dict().values()}
    labeller_shapes = {tuple(v.shape) for v in labeller.state_dict().values()}
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in judge.modules())
    assert judge_shapes != labeller_shapes
    images = shipped_images[0]
    with torch.no_grad():
        agree = (judge(images).argmax(1) == labeller(images).argmax(1)).float().mean().item()
    # two good classifiers mostly agree, but an independent one is not a copy
    assert 0.8 < agree < 1.0


def test_missing_and_damaged_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="judge"):
        load_fashion_judge(tmp_path / "absent.safetensors")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read"):
        load_fashion_judge(damaged)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other))
    with pytest.raises(ValueError, match="FashionJudge"):
        load_fashion_judge(other)


def test_an_untrained_judge_is_near_chance(shipped_images) -> None:
    images, labels = shipped_images
    torch.manual_seed(0)
    with torch.no_grad():
        accuracy = (FashionJudge().eval()(images).argmax(1) == labels).float().mean().item()
    assert accuracy < 0.4  # the accuracy bound above is earned by training
