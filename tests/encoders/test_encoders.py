"""e4e / pSp encoders, IR-SE and ResNet backbones, published-checkpoint loading."""

from __future__ import annotations

import os
import re

import pytest
import torch
import torchvision

from lsap.encoders import (
    Encoder4Editing,
    GradualStyleEncoder,
    ResNetEncoder4Editing,
    ResNetGradualStyleEncoder,
    infer_encoder_config,
    load_encoder_checkpoint,
    save_e4e_checkpoint,
)
from lsap.io import UnsafeCheckpointError
from lsap.nets import ArcFaceIRSE, ResNetBackbone, WeightsMismatchError

TINY_IR = dict(blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 16, 32, 64])


def tiny_e4e(num_ws: int = 10, w_dim: int = 32, input_size: int = 64, **kwargs) -> Encoder4Editing:
    return Encoder4Editing(num_ws=num_ws, w_dim=w_dim, input_size=input_size, **TINY_IR, **kwargs)


def randomise_batchnorm(module: torch.nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode outputs depend on loading them."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.BatchNorm2d):
            sub.running_mean.uniform_(-0.2, 0.2)
            sub.running_var.uniform_(0.5, 1.5)


def conv_count(head: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in head.modules())


pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("num_ws", [1, 4, 6, 10, 14, 16, 18])
@pytest.mark.parametrize("encoder_cls", [Encoder4Editing, GradualStyleEncoder])
def test_output_shape_for_any_num_ws(num_ws: int, encoder_cls: type) -> None:
    encoder = encoder_cls(num_ws=num_ws, w_dim=24, input_size=64, **TINY_IR)
    codes = encoder(torch.randn(2, 3, 64, 64))
    assert codes.shape == (2, num_ws, 24)
    assert len(encoder.styles) == num_ws


@pytest.mark.parametrize("input_size", [32, 48, 64, 128])
def test_output_shape_for_input_sizes(input_size: int) -> None:
    encoder = tiny_e4e(num_ws=10, input_size=input_size)
    assert encoder(torch.randn(1, 3, input_size, input_size)).shape == (1, 10, 32)


def test_full_size_e4e_layout_matches_published_structure() -> None:
    with torch.device("meta"):
        encoder = Encoder4Editing()
    state = encoder.state_dict()
    assert len(encoder.styles) == 18
    # Heads read 16², 32², 64² maps of a 256 input: 4, 5, 6 stride-2 convs.
    assert [conv_count(h) for h in encoder.styles] == [4] * 3 + [5] * 4 + [6] * 11
    assert state["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert len([k for k in state if re.fullmatch(r"body\.\d+\.res_layer\.1\.weight", k)]) == 24
    assert state["latlayer1.weight"].shape == (512, 256, 1, 1)
    assert state["latlayer2.weight"].shape == (512, 128, 1, 1)
    assert state["styles.0.convs.0.weight"].shape == (512, 512, 3, 3)
    assert state["styles.17.convs.10.weight"].shape == (512, 512, 3, 3)
    assert state["styles.17.linear.weight"].shape == (512, 512)
    assert "body.0.shortcut_layer.0.weight" not in state  # 64 -> 64: sub-sampling shortcut
    assert state["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)


@pytest.mark.parametrize("num_ws", [14, 16, 18])
def test_split_is_three_and_seven_for_published_sizes(num_ws: int) -> None:
    with torch.device("meta"):
        encoder = Encoder4Editing(num_ws=num_ws)
    assert (encoder.coarse_end, encoder.middle_end) == (3, 7)
    assert [encoder.level_of(i) for i in range(num_ws)] == [0] * 3 + [1] * 4 + [2] * (num_ws - 7)


def test_split_is_clipped_for_small_generators() -> None:
    six = tiny_e4e(num_ws=6)
    assert (six.coarse_end, six.middle_end) == (3, 6)
    assert hasattr(six, "latlayer1") and not hasattr(six, "latlayer2")
    two = tiny_e4e(num_ws=2)
    assert (two.coarse_end, two.middle_end) == (2, 2)
    assert not hasattr(two, "latlayer1")


def test_wrong_input_shape_names_expected_and_actual() -> None:
    encoder = tiny_e4e(input_size=64)
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\].*\(2, 3, 32, 32\)"):
        encoder(torch.randn(2, 3, 32, 32))


# --------------------------------------------------------------------------- progressive
def test_stage_zero_broadcasts_a_single_code() -> None:
    encoder = tiny_e4e(num_ws=10, progressive_stage=0).eval()
    codes = encoder(torch.randn(2, 3, 64, 64))
    assert torch.equal(codes, codes[:, :1].expand_as(codes))


@pytest.mark.parametrize("stage", [1, 3, 7, 9])
def test_stage_masks_deltas_beyond_it(stage: int) -> None:
    encoder = tiny_e4e(num_ws=10).eval()
    images = torch.randn(2, 3, 64, 64)
    full = encoder(images)
    encoder.progressive_stage = stage
    partial = encoder(images)
    # Entries up to the stage carry their delta (same as with every delta on) ...
    torch.testing.assert_close(partial[:, : stage + 1], full[:, : stage + 1])
    assert (partial[:, 1 : stage + 1] - partial[:, :1]).abs().amax() > 1e-4
    # ... later ones are exactly w0.
    assert torch.equal(partial[:, stage + 1 :], partial[:, :1].expand(-1, 10 - stage - 1, -1))


def test_progressive_stage_default_validation_and_clipping() -> None:
    encoder = tiny_e4e(num_ws=10)
    assert encoder.progressive_stage == 9
    encoder.progressive_stage = 100
    assert encoder.progressive_stage == 9
    with pytest.raises(ValueError, match="non-negative"):
        encoder.progressive_stage = -1


def test_inactive_heads_receive_no_gradient() -> None:
    encoder = tiny_e4e(num_ws=10, progressive_stage=2)
    encoder(torch.randn(2, 3, 64, 64)).square().sum().backward()
    for index, head in enumerate(encoder.styles):
        grads = [p.grad for p in head.parameters()]
        if index <= 2:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)
    assert encoder.input_layer[0].weight.grad is not None


def test_psp_predicts_every_entry_independently() -> None:
    encoder = GradualStyleEncoder(num_ws=10, w_dim=32, input_size=64, **TINY_IR).eval()
    codes = encoder(torch.randn(2, 3, 64, 64))
    assert (codes[:, 1:] - codes[:, :1]).abs().amax(dim=-1).min() > 1e-4


# ------------------------------------------------------------------------------ ResNet
@pytest.mark.parametrize("input_channels", [1, 3])
@pytest.mark.parametrize("encoder_cls", [ResNetEncoder4Editing, ResNetGradualStyleEncoder])
def test_resnet_encoders(encoder_cls: type, input_channels: int) -> None:
    encoder = encoder_cls(num_ws=10, w_dim=32, input_size=64, input_channels=input_channels, resnet_depth=18)
    assert encoder(torch.randn(2, input_channels, 64, 64)).shape == (2, 10, 32)
    assert not hasattr(encoder.backbone, "layer4")


def test_resnet_backbone_loads_torchvision_and_moco_files(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    plain = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), plain)
    backbone = ResNetBackbone(depth=18, num_stages=3, weights_path=str(plain))
    torch.testing.assert_close(backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)

    moco = tmp_path / "moco.pth.tar"
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in reference.state_dict().items()}}, moco)
    four_channel = ResNetBackbone(depth=18, input_channels=4, num_stages=2, weights_path=str(moco))
    assert four_channel.conv1.weight.shape == (64, 4, 7, 7)
    torch.testing.assert_close(four_channel.conv1.weight[:, 3], reference.conv1.weight[:, 0] * 0.75)
    torch.testing.assert_close(four_channel.layer2[1].bn2.weight, reference.layer2[1].bn2.weight)


def test_resnet_backbone_rejects_wrong_weights(tmp_path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(WeightsMismatchError, match=str(path).replace("\\", "\\\\") + ".*ResNet-18"):
        ResNetBackbone(depth=18, weights_path=str(path))


# -------------------------------------------------------------- backbone initialisation
def test_ir_backbone_initialised_from_face_recognition_file(tmp_path) -> None:
    arcface = ArcFaceIRSE(embedding_dim=16, **TINY_IR)
    path = tmp_path / "tiny_ir_se.pth"
    torch.save(arcface.state_dict(), path)
    encoder = tiny_e4e(backbone_weights=str(path))
    torch.testing.assert_close(encoder.body[3].res_layer[3].weight, arcface.body[3].res_layer[3].weight)
    torch.testing.assert_close(encoder.input_layer[1].running_var, arcface.input_layer[1].running_var)

    mismatched = tmp_path / "other.pth"
    torch.save(ArcFaceIRSE(blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 16, 32, 48]).state_dict(), mismatched)
    with pytest.raises(WeightsMismatchError, match="wrong shape"):
        tiny_e4e(backbone_weights=str(mismatched))


# ------------------------------------------------------------------ published checkpoints
def _e4e_format(encoder, latent_avg, encoder_type="Encoder4Editing") -> dict:
    state = {f"encoder.{k}": v.clone() for k, v in encoder.state_dict().items()}
    state["decoder.style.1.weight"] = torch.randn(32, 32)
    state["decoder.conv1.conv.weight"] = torch.randn(1, 8, 32, 3, 3)
    return {
        "state_dict": state,
        "latent_avg": latent_avg,
        "opts": {"encoder_type": encoder_type, "start_from_latent_avg": True, "stylegan_size": 64},
    }


def _ganinverter_format(encoder, latent_avg, placement: str) -> dict:
    inner = {}
    for key, value in encoder.state_dict().items():
        full = f"module.encoder.{key}" if placement == "outer" else f"encoder.module.{key}"
        inner[full] = value.clone()
    inner["latent_avg"] = latent_avg
    return {
        "encoder": inner,
        "decoder": {"module.style.1.weight": torch.randn(32, 32), "module.noises.noise_0": torch.randn(1, 1, 4, 4)},
        "opts": {"encoder_type": "Encoder4Editing", "resolution": 64, "start_from_latent_avg": True},
        "global_step": 123,
    }


def test_e4e_format_round_trip(tmp_path) -> None:
    original = tiny_e4e(num_ws=10)
    randomise_batchnorm(original)
    original.eval()
    latent_avg = torch.randn(32)
    path = tmp_path / "e4e_tiny.pt"
    torch.save(_e4e_format(original, latent_avg), path)

    loaded = load_encoder_checkpoint(path)
    assert loaded.encoder_type == "e4e" and loaded.file_format == "e4e/psp"
    assert isinstance(loaded.encoder, Encoder4Editing)
    assert (loaded.num_ws, loaded.w_dim, loaded.encoder.input_size) == (10, 32, 64)
    images = torch.randn(3, 3, 64, 64)
    assert torch.equal(loaded.encoder(images), original(images))
    assert loaded.latent_avg.shape == (10, 32)
    assert torch.equal(loaded.latent_avg, latent_avg.expand(10, 32))
    assert set(loaded.decoder_state_dict) == {"style.1.weight", "conv1.conv.weight"}
    assert loaded.opts["stylegan_size"] == 64 and loaded.start_from_latent_avg


@pytest.mark.parametrize("placement", ["outer", "inner"])
def test_ganinverter_format_with_module_prefixes_round_trips(tmp_path, placement: str) -> None:
    original = tiny_e4e(num_ws=10)
    randomise_batchnorm(original)
    original.eval()
    latent_avg = torch.randn(10, 32)
    path = tmp_path / "lsap_tiny.pt"
    torch.save(_ganinverter_format(original, latent_avg, placement), path)

    loaded = load_encoder_checkpoint(path)
    assert loaded.file_format == "ganinverter" and loaded.global_step == 123
    images = torch.randn(2, 3, 64, 64)
    assert torch.equal(loaded.encoder(images), original(images))
    assert torch.equal(loaded.latent_avg, latent_avg)
    assert set(loaded.decoder_state_dict) == {"style.1.weight", "noises.noise_0"}


def test_psp_checkpoint_and_explicit_type(tmp_path) -> None:
    original = GradualStyleEncoder(num_ws=6, w_dim=32, input_size=64, **TINY_IR).eval()
    checkpoint = _e4e_format(original, torch.randn(6, 32), encoder_type="GradualStyleEncoder")
    path = tmp_path / "psp.pt"
    torch.save(checkpoint, path)
    loaded = load_encoder_checkpoint(path)
    assert loaded.encoder_type == "psp" and isinstance(loaded.encoder, GradualStyleEncoder)
    images = torch.randn(2, 3, 64, 64)
    assert torch.equal(loaded.encoder(images), original(images))

    del checkpoint["opts"]["encoder_type"]
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="encoder_type"):
        load_encoder_checkpoint(path)
    assert load_encoder_checkpoint(path, encoder_type="psp").encoder_type == "psp"


def test_save_e4e_checkpoint_round_trip(tmp_path) -> None:
    original = tiny_e4e(num_ws=8, input_channels=1).eval()
    path = tmp_path / "export.pt"
    save_e4e_checkpoint(path, original, torch.zeros(32), decoder_state_dict={"style.1.weight": torch.ones(2, 2)})
    loaded = load_encoder_checkpoint(path)
    images = torch.randn(2, 1, 64, 64)
    assert torch.equal(loaded.encoder(images), original(images))
    assert loaded.opts["encoder_type"] == "Encoder4Editing" and loaded.opts["stylegan_size"] == 32


def test_infer_config_of_full_size_encoder() -> None:
    with torch.device("meta"):
        state = Encoder4Editing(num_ws=16).state_dict()
    config = infer_encoder_config(state)
    assert config["num_ws"] == 16 and config["w_dim"] == 512 and config["input_size"] == 256
    assert config["blocks_per_stage"] == [3, 4, 14, 3] and config["stage_channels"] == [64, 128, 256, 512]
    assert (config["coarse_end"], config["middle_end"], config["use_se"]) == (3, 7, True)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_pickle_that_needs_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "code_was_run"
    path = tmp_path / "hostile.pt"
    torch.save({"state_dict": {}, "opts": _RunsCodeWhenUnpickled(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="makedirs"):
        load_encoder_checkpoint(path)
    assert not marker.exists()


def test_missing_file_names_the_path(tmp_path) -> None:
    path = tmp_path / "nowhere" / "e4e_ffhq_encode.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_encoder_checkpoint(path)


def test_wrong_content_names_expected_and_found(tmp_path) -> None:
    path = tmp_path / "generator.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2)}, "latent_avg": torch.zeros(512)}, path)
    expected = r"generator\.pt.*'state_dict'.*found top-level keys \['g_ema', 'latent_avg'\]"
    with pytest.raises(WeightsMismatchError, match=expected):
        load_encoder_checkpoint(path)


def test_corrupted_encoder_gives_short_clear_error(tmp_path) -> None:
    checkpoint = _e4e_format(tiny_e4e(num_ws=10), torch.zeros(32))
    checkpoint["state_dict"]["encoder.latlayer1.weight"] = torch.zeros(64, 17, 1, 1)
    path = tmp_path / "broken.pt"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsMismatchError) as info:
        load_encoder_checkpoint(path)
    message = str(info.value)
    assert "latlayer1.weight (expected (64, 32, 1, 1), found (64, 17, 1, 1))" in message
    assert len(message) < 1200


def test_latent_avg_of_wrong_size_is_rejected(tmp_path) -> None:
    path = tmp_path / "e4e.pt"
    torch.save(_e4e_format(tiny_e4e(num_ws=10), torch.zeros(7, 32)), path)
    with pytest.raises(WeightsMismatchError, match=r"latent_avg has shape \(7, 32\)"):
        load_encoder_checkpoint(path)


def test_builtin_encoder_names_resolve_to_package_data(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsap.encoders import checkpoints
    from lsap.io import ASSETS_DIR

    monkeypatch.setitem(checkpoints.BUILTIN_ENCODERS, "nothere", "encoders/nothere.pt")
    with pytest.raises(FileNotFoundError, match="built-in encoder 'nothere'.*encoders/nothere.pt"):
        load_encoder_checkpoint("nothere")
    assert checkpoints.builtin_encoder_path("fashion32_e4e.pt") == "fashion32_e4e.pt", "other values pass through"
    for name, file in checkpoints.BUILTIN_ENCODERS.items():
        if name != "nothere":
            assert (ASSETS_DIR / file).parent == ASSETS_DIR / "encoders"
