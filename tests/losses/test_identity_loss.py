"""Identity loss and the ArcFace IR-SE50 network / loader."""

from __future__ import annotations

import re

import pytest
import torch

from lsap.losses.identity import IDLoss, face_crop_box
from lsap.nets import ArcFaceIRSE, WeightsMismatchError, load_arcface

TINY_ARCFACE = dict(blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 16, 16, 32], embedding_dim=32)


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_id_loss(**kwargs) -> IDLoss:
    network = ArcFaceIRSE(**TINY_ARCFACE)
    for module in network.modules():  # non-trivial statistics so inference mode matters
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
    return IDLoss(network=network, **kwargs)


def images(batch: int = 3, size: int = 256) -> torch.Tensor:
    return torch.rand(batch, 3, size, size) * 2 - 1


# ------------------------------------------------------------------------- ArcFace net
def test_ir_se50_key_layout_matches_model_ir_se50() -> None:
    with torch.device("meta"):
        net = ArcFaceIRSE()
    state = net.state_dict()
    # 24 units (3+4+14+3) with SE, 3 conv shortcuts, stem, BN-dropout-flatten-linear-BN head.
    assert len(state) == 397
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 343
    expected_shapes = {
        "input_layer.0.weight": (64, 3, 3, 3),
        "input_layer.1.running_var": (64,),
        "input_layer.2.weight": (64,),
        "body.0.res_layer.1.weight": (64, 64, 3, 3),
        "body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),
        "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
        "body.3.shortcut_layer.1.weight": (128,),
        "body.7.shortcut_layer.0.weight": (256, 128, 1, 1),
        "body.21.shortcut_layer.0.weight": (512, 256, 1, 1),
        "body.23.res_layer.5.fc2.weight": (512, 32, 1, 1),
        "output_layer.0.weight": (512,),
        "output_layer.3.weight": (512, 512 * 7 * 7),
        "output_layer.4.running_mean": (512,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("body.24.") for k in state)
    assert not any(k.startswith(("body.0.shortcut_layer.", "body.1.shortcut_layer.")) for k in state)
    params = sum(p.numel() for p in net.parameters())
    assert 43.5e6 < params < 44.0e6


def test_arcface_embeddings_are_unit_norm_and_input_is_checked() -> None:
    net = ArcFaceIRSE(**TINY_ARCFACE).eval()
    embedding = net(torch.randn(2, 3, 112, 112))
    assert embedding.shape == (2, 32)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match=r"\[B, 3, 112, 112\].*\(2, 3, 128, 128\)"):
        net(torch.randn(2, 3, 128, 128))


def test_load_arcface_reads_full_ir_se50_file(tmp_path) -> None:
    reference = ArcFaceIRSE()
    path = tmp_path / "model_ir_se50.pth"
    # Files written through DataParallel carry "module." and older ones lack BN counters.
    state = {f"module.{k}": v for k, v in reference.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, path)
    loss = IDLoss(weights=str(path))
    loaded = loss.network
    assert not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded.output_layer[3].weight, reference.output_layer[3].weight)
    torch.testing.assert_close(loaded.body[20].res_layer[5].fc2.weight, reference.body[20].res_layer[5].fc2.weight)


def test_missing_arcface_file_names_path_and_content(tmp_path) -> None:
    path = tmp_path / "pretrained" / "model_ir_se50.pth"
    with pytest.raises(FileNotFoundError) as info:
        IDLoss(weights=str(path))
    message = str(info.value)
    assert str(path) in message
    assert "ArcFace IR-SE50 face-recognition weights model_ir_se50.pth, published with pSp/e4e" in message


def test_wrong_arcface_file_gives_short_clear_error(tmp_path) -> None:
    path = tmp_path / "not_arcface.pth"
    torch.save(ArcFaceIRSE(**TINY_ARCFACE).state_dict(), path)
    with pytest.raises(WeightsMismatchError) as info:
        load_arcface(path)
    message = str(info.value)
    assert re.search(r"\d+ expected tensors are missing", message)
    assert "wrong shape" in message and "model_ir_se50.pth" in message
    assert len(message) < 1200  # a summary, not a key dump


def test_weights_are_required_without_a_network() -> None:
    with pytest.raises(ValueError, match="model_ir_se50.pth"):
        IDLoss()


# --------------------------------------------------------------------------- the loss
def test_identical_inputs_give_zero_loss() -> None:
    loss_fn = tiny_id_loss(reduction="none")
    x = images()
    loss, similarity = loss_fn.loss_and_similarity(x, x.clone())
    torch.testing.assert_close(loss, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(similarity, torch.ones(3), atol=1e-5, rtol=0)


def test_loss_range_symmetry_and_reduction() -> None:
    loss_fn = tiny_id_loss(reduction="none")
    a, b = images(), images()
    ab, ba = loss_fn(a, b), loss_fn(b, a)
    assert ab.shape == (3,)
    assert ((ab >= 0) & (ab <= 2)).all() and ab.abs().sum() > 1e-4
    torch.testing.assert_close(ab, ba)
    torch.testing.assert_close(IDLoss(network=loss_fn.network)(a, b), ab.mean())
    torch.testing.assert_close(loss_fn.similarity(a, b), 1 - ab)
    # Opposite embeddings reach the upper bound.
    embedding_a = loss_fn.embed(a)
    assert torch.allclose((embedding_a * -embedding_a).sum(1), -torch.ones(3), atol=1e-5)


def test_gradient_reaches_the_input_but_not_the_frozen_network() -> None:
    loss_fn = tiny_id_loss()
    pred = images().requires_grad_()
    target = images().requires_grad_()
    loss_fn(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None  # target is embedded without a graph by default
    assert all(p.grad is None and not p.requires_grad for p in loss_fn.network.parameters())

    both = tiny_id_loss(detach_target=False)
    pred.grad = None
    both(pred, target).backward()
    assert target.grad is not None and target.grad.abs().sum() > 0


def test_network_stays_in_inference_mode() -> None:
    loss_fn = tiny_id_loss()
    loss_fn.train()
    assert not loss_fn.training and not loss_fn.network.training
    running_mean = loss_fn.network.input_layer[1].running_mean.clone()
    loss_fn(images(), images())
    assert torch.equal(loss_fn.network.input_layer[1].running_mean, running_mean)


def test_face_crop_scales_with_image_size() -> None:
    assert face_crop_box(256, 256) == (35, 223, 32, 220)
    assert face_crop_box(1024, 1024) == (140, 892, 128, 880)
    assert face_crop_box(64, 64) == (9, 56, 8, 55)


def test_only_the_face_region_matters() -> None:
    loss_fn = tiny_id_loss()
    x = images(2)
    outside = x.clone()
    outside[..., :35, :] = 1.0
    outside[..., :, 220:] = -1.0
    torch.testing.assert_close(loss_fn.embed(outside), loss_fn.embed(x))
    inside = x.clone()
    inside[..., 100:150, 100:150] = 1.0
    assert not torch.allclose(loss_fn.embed(inside), loss_fn.embed(x))


@pytest.mark.parametrize("size", [64, 1024])
def test_other_image_sizes(size: int) -> None:
    loss_fn = tiny_id_loss(reduction="none")
    x = images(1, size)
    assert loss_fn(x, images(1, size)).shape == (1,)
    torch.testing.assert_close(loss_fn(x, x), torch.zeros(1), atol=1e-5, rtol=0)


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3, 256, 256\) and \(2, 3, 128, 128\)"):
        tiny_id_loss()(images(2), images(2, 128))


def test_facenet_backbone_loads_local_weights_at_160(tmp_path) -> None:
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    reference = InceptionResnetV1(pretrained=None, classify=False)
    state = reference.state_dict()
    state["logits.weight"] = torch.randn(10, 512)  # released files keep their classifier
    state["logits.bias"] = torch.randn(10)
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(state, path)
    loss_fn = IDLoss(weights=str(path), backbone="facenet", reduction="none")
    assert loss_fn.input_size == 160
    torch.testing.assert_close(loss_fn.network.last_linear.weight, reference.last_linear.weight)
    x = images(2, 128)
    torch.testing.assert_close(loss_fn(x, x), torch.zeros(2), atol=1e-5, rtol=0)
