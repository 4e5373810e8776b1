"""HFGI networks: shapes, the fusion hook, the warp, the editing rule, refiner files, and the
published release layout."""

from __future__ import annotations

import argparse

import pytest
import torch

from lsap.errors import BadFileError, UnsafeFileError
from lsap.model import Generator
from lsap.refine.hfgi import (
    FusionHook,
    HFGIRefiner,
    default_fusion_resolution,
    fusion_channels,
    load_hfgi_refiner,
    random_perspective,
    save_hfgi_refiner,
)
from lsap.refine.hfgi_checkpoint import load_published_hfgi

from conftest import small_source


@pytest.mark.parametrize("resolution, channels, fusion, size", [(32, 64, 8, 32), (256, 512, 16, 256),
                                                                 (1024, 512, 64, 256)])
def test_ada_and_consultation_shapes(resolution, channels, fusion, size):
    # Shapes only, on the meta device (nothing is computed); config-f widths at 256 and 1024.
    with torch.device("meta"):
        generator = Generator(resolution, channel_base=32768 if resolution > 32 else 2048,
                              channel_max=512 if resolution > 32 else 64)
        refiner = HFGIRefiner.for_generator(generator)
        assert refiner.fusion_resolution == default_fusion_resolution(resolution) == fusion
        assert refiner.input_size == size and refiner.residue.channels == channels
        images = torch.empty(2, 6, size, size)
        aligned = refiner.grid_align(images)
        scale, shift = refiner.residue(aligned)
    assert aligned.shape == (2, 3, size, size)
    assert scale.shape == shift.shape == (2, channels, fusion, fusion)


def test_release_widths_and_fusion_rule():
    assert [default_fusion_resolution(r) for r in (16, 32, 128, 256, 512, 1024)] == [8, 8, 8, 16, 32, 64]
    refiner = HFGIRefiner()
    assert refiner.grid_align.widths == (16, 32, 48, 64) and refiner.residue.widths == (32, 48, 64)
    with pytest.raises(ValueError, match="divisible by 8"):
        HFGIRefiner(input_size=36)


def test_fusion_with_zero_conditions_changes_nothing_and_fuses_once():
    generator = small_source().build()
    ws = generator.mapping(torch.randn(2, generator.z_dim))
    for resolution in (8, 16, 32):
        channels = fusion_channels(generator, resolution)
        zeros = torch.zeros(2, channels, resolution, resolution)
        hook = FusionHook(resolution, zeros, zeros)
        with torch.no_grad():
            plain = generator.synthesis(ws)
            fused = generator.synthesis(ws, feature_hook=hook)
        assert torch.equal(plain, fused) and hook.calls == 1
        shifted = FusionHook(resolution, zeros, torch.full_like(zeros, 0.5))
        with torch.no_grad():
            assert not torch.allclose(generator.synthesis(ws, feature_hook=shifted), plain)
    with pytest.raises(ValueError, match="features"):
        generator.synthesis(ws, feature_hook=FusionHook(8, torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)))


def test_fusion_is_h_times_one_plus_scale_plus_shift():
    scale, shift = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    features = torch.randn(1, 4, 8, 8)
    hook = FusionHook(8, scale, shift)
    torch.testing.assert_close(hook("up", 8, features), features + features * scale + shift)
    assert hook("block", 8, features) is features and hook("up", 16, features) is features


def test_random_perspective_properties():
    images = torch.zeros(4, 3, 32, 32)
    images[:, :, 10:22, 10:22] = 1
    assert torch.equal(random_perspective(images, 0.15, p=0.0), images)
    nearly = random_perspective(images, 1e-6, p=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(nearly, images, atol=1e-3, rtol=0)
    warped = random_perspective(images, 0.3, p=1.0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(warped[0], images[0], atol=1e-2)
    assert not torch.allclose(warped[0], warped[1], atol=1e-3), "every image draws its own warp"
    again = random_perspective(images, 0.3, p=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(warped, again)


def _setup():
    torch.manual_seed(0)
    generator = small_source().build()
    refiner = HFGIRefiner.for_generator(generator, fusion_resolution=16, aligner_widths=(4, 8, 8, 8),
                                        consultation_widths=(4, 8, 8), zero_init=False).eval()
    ws = generator.mapping(torch.randn(2, generator.z_dim))[:, None].expand(-1, generator.num_ws, -1).clone()
    images = (generator.synthesis(ws) + 0.3 * torch.randn(2, 3, 32, 32)).clamp(-1, 1).detach()
    return generator, refiner, ws.detach(), images


def test_zero_init_refiner_renders_the_pivot():
    generator, _, ws, images = _setup()
    refiner = HFGIRefiner.for_generator(generator, fusion_resolution=16, aligner_widths=(4, 8, 8, 8),
                                        consultation_widths=(4, 8, 8)).eval()
    with torch.no_grad():
        result = refiner.refine(generator, ws, images)
    assert torch.equal(result["image"], result["reconstruction"])


def test_edit_at_strength_zero_is_the_refined_reconstruction():
    generator, refiner, ws, images = _setup()
    with torch.no_grad():
        refined = refiner.refine(generator, ws, images)
        edited = refiner.edit(generator, ws, ws.clone(), images)
    torch.testing.assert_close(edited["image"], refined["image"])
    assert not torch.allclose(refined["image"], refined["reconstruction"]), "the refiner must change something"


def test_editing_runs_ada_on_the_edited_image():
    generator, refiner, ws, images = _setup()
    seen = []
    handle = refiner.grid_align.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    edited_ws = ws + 2.0 * torch.randn(1, 1, ws.shape[-1])
    with torch.no_grad():
        result = refiner.edit(generator, ws, edited_ws, images)
        reconstruction = generator.synthesis(ws)
        edited_image = generator.synthesis(edited_ws)
    handle.remove()
    assert len(seen) == 1
    # ADA reads the distortion against the *unedited* reconstruction and the *edited* image.
    torch.testing.assert_close(seen[0][:, :3], images - reconstruction.clamp(-1, 1))
    torch.testing.assert_close(seen[0][:, 3:], edited_image.clamp(-1, 1))
    torch.testing.assert_close(result["edited"], edited_image)
    assert not torch.allclose(result["image"], refiner.refine(generator, ws, images)["image"].detach())


def test_refiner_file_round_trip_and_bad_files(tmp_path):
    _, refiner, _, _ = _setup()
    path = save_hfgi_refiner(tmp_path / "r.pt", refiner, meta={"generator_hash": "abc"})
    loaded, meta = load_hfgi_refiner(path)
    assert meta == {"generator_hash": "abc"} and loaded.config == refiner.config
    for key, value in refiner.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.half().to(value.dtype), rtol=0, atol=0)
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(BadFileError, match="HFGI refiner"):
        load_hfgi_refiner(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_hfgi_refiner(tmp_path / "missing.pt")


# ----- the published release ------------------------------------------------------------------
# Layout of the HFGI release's ckpt.pt, written from its training code
# (github.com/Tengfei-Wang/HFGI: training/coach.py saves {"state_dict": net.state_dict(),
# "opts": vars(opts), "latent_avg"}; models/psp.py names the parts encoder / decoder /
# residue / grid_align; models/encoders/psp_encoders.py defines ResidualEncoder (residue) and
# ResidualAligner (grid_align) from helpers.bottleneck_IR units). Spelled out here by hand, not
# from lsap's modules, so the test checks lsap against the release.

class _NotData:
    """A class the safe reader must refuse to rebuild."""


def _conv_bn_prelu(prefix, cin, cout):
    return {f"{prefix}.0.weight": (cout, cin, 3, 3), **_bn(f"{prefix}.1", cout), f"{prefix}.2.weight": (cout,)}


def _bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def _bottleneck_ir(prefix, cin, depth):
    keys = {}
    if cin != depth:  # otherwise a MaxPool2d shortcut without tensors
        keys.update({f"{prefix}.shortcut_layer.0.weight": (depth, cin, 1, 1), **_bn(f"{prefix}.shortcut_layer.1", depth)})
    keys.update({**_bn(f"{prefix}.res_layer.0", cin), f"{prefix}.res_layer.1.weight": (depth, cin, 3, 3),
                 f"{prefix}.res_layer.2.weight": (depth,), f"{prefix}.res_layer.3.weight": (depth, depth, 3, 3),
                 **_bn(f"{prefix}.res_layer.4", depth)})
    return keys


def _stage(prefix, pairs):
    keys = {}
    for i, (cin, depth) in enumerate(pairs):
        keys.update(_bottleneck_ir(f"{prefix}.{i}", cin, depth))
    return keys


def release_layout() -> dict[str, tuple[int, ...]]:
    keys = {}
    # residue = ResidualEncoder
    keys.update(_conv_bn_prelu("residue.conv_layer1", 3, 32))
    keys.update(_stage("residue.conv_layer2", [(32, 48), (48, 48), (48, 48)]))
    keys.update(_stage("residue.conv_layer3", [(48, 64), (64, 64), (64, 64)]))
    for head in ("condition_scale3", "condition_shift3"):
        keys.update({f"residue.{head}.0.weight": (512, 64, 3, 3), f"residue.{head}.0.bias": (512,),
                     f"residue.{head}.2.weight": (512, 512, 3, 3), f"residue.{head}.2.bias": (512,)})
    # grid_align = ResidualAligner (ADA)
    keys.update(_conv_bn_prelu("grid_align.conv_layer1", 6, 16))
    keys.update(_stage("grid_align.conv_layer2", [(16, 32), (32, 32), (32, 32)]))
    keys.update(_stage("grid_align.conv_layer3", [(32, 48), (48, 48), (48, 48)]))
    keys.update(_stage("grid_align.conv_layer4", [(48, 64), (64, 64), (64, 64)]))
    keys.update(_stage("grid_align.dconv_layer1", [(112, 64), (64, 32), (32, 32)]))
    keys.update(_stage("grid_align.dconv_layer2", [(64, 32), (32, 16), (16, 16)]))
    keys.update(_stage("grid_align.dconv_layer3", [(32, 16), (16, 3), (3, 3)]))
    # A few of the e4e encoder's and the 1024 px rosinality decoder's tensors (the rest are
    # read by lsap's existing e4e and generator loaders).
    keys.update({"encoder.input_layer.0.weight": (64, 3, 3, 3), "encoder.styles.0.linear.weight": (512, 512),
                 "decoder.input.input": (1, 512, 4, 4), "decoder.conv1.conv.weight": (1, 512, 512, 3, 3),
                 "decoder.convs.6.conv.weight": (1, 512, 512, 3, 3)})
    return keys


def _write_release(path, layout, generator):
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:  # distinct values per tensor, stored cheaply as a broadcast scalar
            state[key] = torch.randn((), generator=generator).expand(shape)
    opts = argparse.Namespace(encoder_type="Encoder4Editing", stylegan_size=1024, distortion_scale=0.15, aug_rate=0.9)
    torch.save({"state_dict": state, "opts": vars(opts), "latent_avg": torch.randn(18, 512)}, path)
    return state


def test_published_release_layout_loads(tmp_path):
    layout = release_layout()
    state = _write_release(tmp_path / "ckpt.pt", layout, torch.Generator().manual_seed(0))
    published = load_published_hfgi(tmp_path / "ckpt.pt")
    refiner = published.refiner
    assert refiner.fusion_resolution == 64 and refiner.input_size == 256 and refiner.residue.channels == 512
    own = refiner.state_dict()
    release_keys = {k for k in layout if k.startswith(("residue.", "grid_align."))}
    assert set(own) == release_keys
    for key in release_keys:
        assert own[key].shape == layout[key]
        torch.testing.assert_close(own[key], state[key].to(own[key].dtype))
    assert set(published.encoder_state_dict) == {"input_layer.0.weight", "styles.0.linear.weight"}
    assert "conv1.conv.weight" in published.decoder_state_dict
    assert published.latent_avg.shape == (18, 512) and published.opts["aug_rate"] == 0.9
    with torch.no_grad():  # the loaded modules run at the release's sizes (batch 1)
        aligned = refiner.grid_align(torch.zeros(1, 6, 256, 256))
    assert aligned.shape == (1, 3, 256, 256)


def test_published_release_layout_errors(tmp_path):
    layout = release_layout()
    rng = torch.Generator().manual_seed(0)
    state = _write_release(tmp_path / "ckpt.pt", layout, rng)
    state["residue.condition_scale3.9.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "extra.pt")
    with pytest.raises(BadFileError, match="unexpected"):
        load_published_hfgi(tmp_path / "extra.pt")
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("grid_align.")}},
               tmp_path / "no_ada.pt")
    with pytest.raises(BadFileError, match="grid_align"):
        load_published_hfgi(tmp_path / "no_ada.pt")
    torch.save({"state_dict": state, "opts": _NotData()}, tmp_path / "code.pt")
    with pytest.raises(UnsafeFileError):
        load_published_hfgi(tmp_path / "code.pt")
