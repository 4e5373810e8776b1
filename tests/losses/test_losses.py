"""Tests for the reconstruction losses, LPIPS, MoCo and the latent regularisers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from lsap.io import WeightsMismatchError
from lsap.losses import DeltaRegularizer, L2Loss, LPIPSLoss, MoCoLoss, NoiseRegularizer, normalize_noise_
from lsap.losses.lpips import torchvision_features_to_lpips
from lsap.losses.moco import moco_to_torchvision_resnet


def _images(seed: int, batch: int = 2, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


# --------------------------------------------------------------------------------------------
# L2


def test_l2_equals_hand_computation() -> None:
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 3.0]]]])
    per_sample = L2Loss(reduction="none")(pred, target)
    torch.testing.assert_close(per_sample, torch.tensor([30.0 / 4, 12.0 / 4]))
    torch.testing.assert_close(L2Loss()(pred, target), torch.tensor((7.5 + 3.0) / 2))


def test_l2_mask_restricts_to_weighted_pixels() -> None:
    pred, target = _images(0, size=8), _images(1, size=8)
    mask = torch.zeros(8, 8)
    mask[2:6, 1:7] = 1.0
    expected = (pred - target)[:, :, 2:6, 1:7].square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(L2Loss(reduction="none")(pred, target, mask), expected)
    # Pixels outside the mask do not matter at all.
    changed = pred.clone()
    changed[:, :, 0] = 5.0
    torch.testing.assert_close(L2Loss()(changed, target, mask), L2Loss()(pred, target, mask))


def test_l2_per_sample_mask_and_box() -> None:
    pred, target = _images(2, size=8), _images(3, size=8)
    mask = torch.ones(2, 1, 8, 8)
    mask[1] = 0.0
    mask[1, :, :4] = 1.0
    expected = torch.stack(
        [(pred[0] - target[0]).square().mean(), (pred[1, :, :4] - target[1, :, :4]).square().mean()]
    )
    torch.testing.assert_close(L2Loss(reduction="none")(pred, target, mask), expected)
    boxed = L2Loss(reduction="none", box=(1, 5, 2, 8))(pred, target)
    torch.testing.assert_close(boxed, (pred - target)[:, :, 1:5, 2:8].square().mean(dim=(1, 2, 3)))


def test_l2_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"same shape.*\(1, 3, 8, 8\).*\(1, 3, 8, 4\)"):
        L2Loss()(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 4))
    with pytest.raises(ValueError, match="mask"):
        L2Loss()(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match="does not fit"):
        L2Loss(box=(0, 16, 0, 8))(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="reduction"):
        L2Loss(reduction="sum")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# LPIPS


@pytest.fixture(scope="module")
def alexnet_features_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision-format AlexNet state dict with random weights (features plus a stand-in head)."""
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    state = {f"features.{key}": value.clone() for key, value in features.state_dict().items()}
    state["classifier.1.weight"] = torch.randn(4, 4)  # the head is present in real files and ignored
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-random.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def lpips_loss(alexnet_features_file: tuple[Path, dict[str, torch.Tensor]]) -> LPIPSLoss:
    return LPIPSLoss(backbone_weights=str(alexnet_features_file[0]))


def test_lpips_backbone_loading_maps_every_key(
    lpips_loss: LPIPSLoss, alexnet_features_file: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    _, state = alexnet_features_file
    loaded = lpips_loss.model.net.state_dict()
    assert len(loaded) == 10  # five convolutions, weight and bias each
    for key, value in loaded.items():
        slice_name, index, name = key.split(".")
        assert slice_name.startswith("slice")
        assert torch.equal(value, state[f"features.{index}.{name}"]), key


def test_lpips_linear_layers_come_from_the_package(lpips_loss: LPIPSLoss) -> None:
    import lpips

    shipped = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    reference = torch.load(shipped, map_location="cpu", weights_only=True)
    for index in range(5):
        loaded = lpips_loss.model.lins[index].model[1].weight
        assert torch.equal(loaded, reference[f"lin{index}.model.1.weight"])


def test_lpips_matches_the_lpips_package(lpips_loss: LPIPSLoss) -> None:
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)
    reference.net.load_state_dict(lpips_loss.model.net.state_dict())
    pred, target = _images(4), _images(5)
    with torch.no_grad():
        expected = reference(pred, target).flatten()
    torch.testing.assert_close(lpips_loss(pred, target), expected.mean())
    lpips_loss.reduction = "none"
    try:
        torch.testing.assert_close(lpips_loss(pred, target), expected)
    finally:
        lpips_loss.reduction = "mean"


def test_lpips_zero_positive_symmetric_and_reductions(lpips_loss: LPIPSLoss) -> None:
    pred, target = _images(6), _images(7)
    assert lpips_loss(pred, pred.clone()).item() == 0.0
    forward_value = lpips_loss(pred, target)
    assert forward_value.item() > 0
    torch.testing.assert_close(forward_value, lpips_loss(target, pred))
    lpips_loss.reduction = "none"
    try:
        per_sample = lpips_loss(pred, target)
    finally:
        lpips_loss.reduction = "mean"
    assert per_sample.shape == (2,) and bool((per_sample > 0).all())
    torch.testing.assert_close(per_sample.mean(), forward_value)
    # Per-sample values do not depend on the other samples of the batch.
    torch.testing.assert_close(lpips_loss(pred[:1], target[:1]), per_sample[0])


def test_lpips_mask_and_box(lpips_loss: LPIPSLoss) -> None:
    pred, target = _images(8), _images(9)
    torch.testing.assert_close(lpips_loss(pred, target, torch.ones(64, 64)), lpips_loss(pred, target))
    left_half = torch.zeros(64, 64)
    left_half[:, :32] = 1.0
    # Differences only where the mask is zero are (nearly: receptive fields overlap) invisible.
    differs_on_the_right = pred.clone()
    differs_on_the_right[:, :, :, 40:] = target[:, :, :, 40:]
    masked = lpips_loss(pred, differs_on_the_right, left_half)
    assert masked < 0.5 * lpips_loss(pred, differs_on_the_right)
    assert masked < 0.5 * lpips_loss(pred, differs_on_the_right, 1 - left_half)
    unboxed = lpips_loss(pred[:, :, 8:56], target[:, :, 8:56])
    lpips_loss.box = (8, 56, 0, 64)
    try:
        torch.testing.assert_close(lpips_loss(pred, target), unboxed)
    finally:
        lpips_loss.box = None


def test_lpips_is_frozen_but_differentiable(lpips_loss: LPIPSLoss) -> None:
    container = torch.nn.ModuleDict({"lpips": lpips_loss})
    container.train()
    assert not lpips_loss.training and not lpips_loss.model.training
    pred = _images(10).requires_grad_(True)
    target = _images(11)
    first = lpips_loss(pred, target)
    torch.testing.assert_close(lpips_loss(pred, target), first)  # no dropout
    first.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in lpips_loss.parameters())
    # Identical inputs: finite (zero) gradient, no NaN from the feature normalisation.
    same = _images(12).requires_grad_(True)
    lpips_loss(same, same.detach().clone()).backward()
    assert torch.isfinite(same.grad).all()


def test_lpips_missing_backbone_file_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "alexnet-owt-7be5be79.pth"
    with pytest.raises(FileNotFoundError) as info:
        LPIPSLoss(backbone_weights=str(missing))
    message = str(info.value)
    assert str(missing) in message
    assert "alexnet-owt-7be5be79.pth" in message and "download.pytorch.org" in message
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        LPIPSLoss(backbone_weights=str(missing), net="vgg")
    with pytest.raises(ValueError, match="allow_random_backbone"):
        LPIPSLoss()


def test_lpips_rejects_incomplete_backbone(
    lpips_loss: LPIPSLoss, alexnet_features_file: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    _, state = alexnet_features_file
    incomplete = {key: value for key, value in state.items() if key != "features.8.bias"}
    with pytest.raises(WeightsMismatchError, match=r"features\.8\.bias"):
        torchvision_features_to_lpips(incomplete, lpips_loss.model.net)
    wrong_shape = dict(state)
    wrong_shape["features.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"features\.0\.weight"):
        torchvision_features_to_lpips(wrong_shape, lpips_loss.model.net)


# --------------------------------------------------------------------------------------------
# MoCo


def test_moco_key_mapping_keeps_query_encoder_only() -> None:
    tensor = torch.zeros(1)
    state = {
        "module.encoder_q.conv1.weight": tensor,
        "module.encoder_q.layer1.0.bn1.running_mean": tensor,
        "module.encoder_q.fc.0.weight": tensor,
        "module.encoder_q.fc.2.bias": tensor,
        "module.encoder_k.conv1.weight": tensor,
        "module.queue": tensor,
        "module.queue_ptr": tensor,
    }
    assert set(moco_to_torchvision_resnet(state)) == {"conv1.weight", "layer1.0.bn1.running_mean"}
    assert set(moco_to_torchvision_resnet({"encoder_q.conv1.weight": tensor})) == {"conv1.weight"}
    with pytest.raises(WeightsMismatchError, match="encoder_q"):
        moco_to_torchvision_resnet({"conv1.weight": tensor})


@pytest.fixture(scope="module")
def moco_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    reference = torchvision.models.resnet50(weights=None)
    with torch.no_grad():  # non-trivial batch-norm statistics, so a wrong mapping shows up
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    backbone = {key: value for key, value in reference.state_dict().items() if not key.startswith("fc.")}
    state = {f"module.encoder_q.{key}": value for key, value in backbone.items()}
    state["module.encoder_q.fc.0.weight"] = torch.randn(8, 2048)
    state["module.encoder_q.fc.2.weight"] = torch.randn(4, 8)
    state["module.encoder_k.conv1.weight"] = torch.randn(64, 3, 7, 7)
    state["module.queue"] = torch.randn(4, 16)
    path = tmp_path_factory.mktemp("moco") / "moco_v2_800ep_pretrain.pth.tar"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state}, path)
    return path, backbone


@pytest.fixture(scope="module")
def moco_loss(moco_checkpoint: tuple[Path, dict[str, torch.Tensor]]) -> MoCoLoss:
    return MoCoLoss(weights=str(moco_checkpoint[0]), input_size=32)


def test_moco_loads_every_backbone_tensor(
    moco_loss: MoCoLoss, moco_checkpoint: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    _, backbone = moco_checkpoint
    loaded = moco_loss.network.state_dict()
    assert set(loaded) == set(backbone)
    for key, value in loaded.items():
        assert torch.equal(value, backbone[key]), key


def test_moco_loss_values_and_frozen_network(moco_loss: MoCoLoss) -> None:
    pred, target = _images(20, size=40), _images(21, size=40)
    moco_loss.reduction = "none"
    try:
        assert moco_loss(pred, pred.clone()).abs().max().item() < 1e-5
        per_sample = moco_loss(pred, target)
    finally:
        moco_loss.reduction = "mean"
    assert per_sample.shape == (2,) and bool((per_sample > 0).all()) and bool((per_sample <= 2).all())
    embedding = moco_loss.embed(pred)
    assert embedding.shape == (2, 2048)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))

    running_mean = moco_loss.network.bn1.running_mean.clone()
    torch.nn.Sequential(moco_loss).train()
    assert not moco_loss.network.training
    grad_input = pred.clone().requires_grad_(True)
    moco_loss(grad_input, target).backward()
    assert torch.equal(moco_loss.network.bn1.running_mean, running_mean)
    assert grad_input.grad is not None and torch.isfinite(grad_input.grad).all()
    assert all(p.grad is None for p in moco_loss.parameters())


def test_moco_missing_file_error(tmp_path: Path) -> None:
    missing = tmp_path / "moco.pt"
    with pytest.raises(FileNotFoundError) as info:
        MoCoLoss(weights=str(missing))
    assert str(missing) in str(info.value) and "moco_v2_800ep_pretrain" in str(info.value)
    not_moco = tmp_path / "plain.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, not_moco)
    with pytest.raises(ValueError, match="state_dict"):
        MoCoLoss(weights=str(not_moco))


# --------------------------------------------------------------------------------------------
# Delta regulariser


def test_delta_regularizer_hand_computation_and_active() -> None:
    ws = torch.zeros(2, 4, 2)
    ws[0, 1] = torch.tensor([3.0, 4.0])  # |w1 - w0| = 5
    ws[0, 2] = torch.tensor([0.0, 1.0])  # 1
    ws[0, 3] = torch.tensor([6.0, 8.0])  # 10
    ws[1] += torch.tensor([1.0, 1.0])  # w0 = (1, 1)
    ws[1, 1] = torch.tensor([1.0, 3.0])  # 2
    ws[1, 3] = torch.tensor([2.0, 2.0])  # sqrt(2); entry 2 equals w0
    regularizer = DeltaRegularizer(reduction="none")
    torch.testing.assert_close(regularizer(ws), torch.tensor([16.0, 2.0 + 2**0.5]))
    torch.testing.assert_close(regularizer(ws, active=2), torch.tensor([5.0, 2.0]))
    torch.testing.assert_close(regularizer(ws, active=3), torch.tensor([6.0, 2.0]))
    torch.testing.assert_close(regularizer(ws, active=1), torch.zeros(2))
    torch.testing.assert_close(DeltaRegularizer()(ws, active=2), torch.tensor(3.5))
    # Inactive entries have no influence, not even through the gradient.
    ws.requires_grad_(True)
    DeltaRegularizer()(ws, active=2).backward()
    assert ws.grad[:, 2:].abs().sum() == 0 and ws.grad[:, :2].abs().sum() > 0


def test_delta_regularizer_edge_cases() -> None:
    ws = torch.ones(3, 5, 4, requires_grad=True)
    value = DeltaRegularizer()(ws)
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(ws.grad).all()
    with pytest.raises(ValueError, match=r"\[B, num_ws, w_dim\].*\(5, 4\)"):
        DeltaRegularizer()(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="active"):
        DeltaRegularizer()(torch.zeros(1, 5, 4), active=6)
    with pytest.raises(ValueError, match="active"):
        DeltaRegularizer()(torch.zeros(1, 5, 4), active=0)


# --------------------------------------------------------------------------------------------
# Noise regulariser


def test_noise_regularizer_hand_computation() -> None:
    noise = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # Width shift: mean([1*2, 2*1, 3*4, 4*3]) = 7; height shift: mean([1*3, 2*4, 3*1, 4*2]) = 5.5.
    assert NoiseRegularizer()([noise]).item() == pytest.approx(7.0**2 + 5.5**2)
    # A constant map correlates perfectly at every scale: 64 -> 32 -> 16 -> 8 is four scales.
    assert NoiseRegularizer()([torch.ones(64, 64)]).item() == pytest.approx(8.0)
    assert NoiseRegularizer()([torch.ones(64, 64), torch.ones(4, 4)]).item() == pytest.approx(10.0)


def test_noise_regularizer_small_for_white_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    noises = [torch.randn(1, 1, size, size, generator=generator) for size in (4, 8, 16, 32, 64, 128)]
    white = NoiseRegularizer()(noises[2:])
    assert white.item() < 0.05
    smooth = [torch.nn.functional.interpolate(n, scale_factor=4, mode="bilinear") for n in noises[:4]]
    normalize_noise_(smooth)
    assert NoiseRegularizer()(smooth).item() > 10 * white.item()


def test_noise_regularizer_is_per_sample() -> None:
    generator = torch.Generator().manual_seed(1)
    noises = [torch.randn(3, 1, size, size, generator=generator) for size in (8, 16, 32)]
    regularizer = NoiseRegularizer(reduction="none")
    values = regularizer(noises)
    assert values.shape == (3,)
    for index in range(3):
        alone = regularizer([noise[index : index + 1] for noise in noises])
        torch.testing.assert_close(alone, values[index : index + 1])
    changed = [noise.clone() for noise in noises]
    for noise in changed:
        noise[1] = 1.0
    changed_values = regularizer(changed)
    torch.testing.assert_close(changed_values[[0, 2]], values[[0, 2]])
    assert changed_values[1] > 100 * values[1]
    torch.testing.assert_close(NoiseRegularizer()(noises), values.mean())
    with pytest.raises(ValueError, match="same batch size"):
        regularizer([torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8)])


def test_normalize_noise_in_place_per_sample() -> None:
    generator = torch.Generator().manual_seed(2)
    batched = torch.randn(2, 1, 16, 16, generator=generator) * torch.tensor([3.0, 0.2]).view(2, 1, 1, 1) + 5
    sample1 = batched[1].clone()
    unbatched = torch.randn(8, 8, generator=generator) * 4 - 1
    normalize_noise_([batched, unbatched])
    torch.testing.assert_close(batched.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.square().mean(dim=(1, 2, 3)), torch.ones(2))
    torch.testing.assert_close(unbatched.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(unbatched.square().mean(), torch.tensor(1.0))
    # Sample 1 was normalised with its own statistics only.
    expected = (sample1 - sample1.mean()) / (sample1 - sample1.mean()).square().mean().sqrt()
    torch.testing.assert_close(batched[1], expected)
