"""SAM's pure pieces: injection, layer selection, segments, the MVG prior, editing, the
invertibility net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.refine.invertibility import (InvertibilityNet, load_invertibility_net, save_invertibility_net,
                                       single_layer_targets, train_invertibility)
from lsap.refine.sam import (MVGPrior, delta_regularizer, default_blocks, load_state, make_state, offset_hook,
                             render_edit, render_state, save_state, select_layers, selection_masks)
from lsap.refine.segments import FaceParserSegmenter, LabelMapSegmenter, SuperpixelSegmenter
from tests.conftest import small_source

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def G():
    return small_source().build().eval().requires_grad_(False)


def _ws(G, batch=2, seed=1):
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z)[:, None].repeat(1, G.num_ws, 1)


def test_default_blocks_follow_the_paper_rule():
    assert default_blocks(1024) == [16, 32, 64, 128]
    assert default_blocks(256) == [4, 8, 16, 32]
    assert default_blocks(32) == [4, 8]


def test_zero_offsets_or_zero_masks_leave_the_generator_unchanged(G):
    ws = _ws(G)
    plain = G.synthesis(ws)
    blocks = [4, 8, 16]
    zeros = {r: torch.zeros(2, 32, r, r) for r in blocks}
    ones = {r: torch.ones(2, 1, r, r) for r in blocks}
    assert torch.equal(G.synthesis(ws, feature_hook=offset_hook(zeros, ones)), plain)
    offsets = {r: torch.randn(2, 32, r, r) for r in blocks}
    no_mask = {r: torch.zeros(2, 1, r, r) for r in blocks}
    assert torch.equal(G.synthesis(ws, feature_hook=offset_hook(offsets, no_mask)), plain)
    # and a real offset under a real mask does change it
    assert not torch.allclose(G.synthesis(ws, feature_hook=offset_hook(offsets, ones)), plain)


def test_layer_selection_hand_worked():
    # 2x3 image, segments: A = column 0, B = column 1, C = column 2; three layers.
    segments = torch.tensor([[[0, 1, 2], [0, 1, 2]]])
    maps = torch.zeros(1, 3, 2, 3)
    # A: W+ mean 0.1 <= tau -> layer 0.
    maps[0, :, :, 0] = torch.tensor([0.1, 0.0, 0.0])[:, None]
    # B: W+ pixels 0.2 and 0.4 (mean 0.3 > tau), layer 1 pixels 0.1 and 0.3 (mean 0.2) -> layer 1.
    maps[0, 0, :, 1] = torch.tensor([0.2, 0.4])
    maps[0, 1, :, 1] = torch.tensor([0.1, 0.3])
    # C: every layer above tau -> the finest (2).
    maps[0, :, :, 2] = 0.9
    selection = select_layers(maps, segments, tau=0.225)
    assert selection.tolist() == [[[0, 1, 2], [0, 1, 2]]]
    masks = selection_masks(selection, blocks=[4, 8])
    assert set(masks) == {4, 8}
    # masks are the resized one-hot selections: layer 1 covers a third of the image
    assert masks[4].shape == (1, 1, 4, 4) and masks[8].shape == (1, 1, 8, 8)
    assert masks[4].mean().item() == pytest.approx(1 / 3, abs=0.1)


def test_layer_selection_is_per_segment_not_per_pixel():
    segments = torch.zeros(1, 4, 4, dtype=torch.long)
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0] = 16 * 0.3  # one bad pixel: the segment's mean is 0.3 > 0.225
    assert select_layers(maps, segments, 0.225).unique().tolist() == [1]
    assert select_layers(maps, segments, 0.31).unique().tolist() == [0]


def test_superpixels_cover_the_image_exactly_once():
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(3, 3, 4, 4, generator=gen) * 2 - 1  # smooth images: noise would merge into one segment
    images = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    labels = SuperpixelSegmenter(num_segments=12)(images, ["a", "b", "c"])
    assert labels.shape == (3, 32, 32) and labels.dtype == torch.long
    for one in labels:
        values = one.unique()
        assert values.tolist() == list(range(len(values)))  # labels 0..K-1, none empty
        assert len(values) > 1
        one_hot = torch.nn.functional.one_hot(one, len(values))
        assert torch.equal(one_hot.sum(-1), torch.ones(32, 32, dtype=torch.long))


def test_label_maps_and_face_parser_errors(tmp_path):
    from PIL import Image

    Image.fromarray(np.array([[0, 0, 7, 7]] * 4, dtype=np.uint8)).save(tmp_path / "x.png")
    labels = LabelMapSegmenter(str(tmp_path))(torch.zeros(1, 3, 8, 8), ["x"])
    assert labels.shape == (1, 8, 8) and labels.unique().tolist() == [0, 1]
    with pytest.raises(MissingInputError, match="y.png"):
        LabelMapSegmenter(str(tmp_path))(torch.zeros(1, 3, 8, 8), ["y"])
    with pytest.raises(MissingInputError, match="79999_iter.pth"):
        FaceParserSegmenter(str(tmp_path / "parser.pth"))(torch.zeros(1, 3, 8, 8), ["x"])


def test_mvg_prior_against_an_independent_computation(G):
    prior = MVGPrior(G, num_samples=600, seed=3, ridge=0.0)
    # independent: numpy, the same seeded z, explicit loops over codes and layers
    from lsap.model.sampling import z_blocks

    z = torch.cat(list(z_blocks(600, G.z_dim, 3, block_size=1000)))
    w = G.mapping_network(z).double().numpy()
    v = np.where(w >= 0, w, 5.0 * w)
    mean = v.mean(0)
    precision = np.linalg.inv(np.cov(v, rowvar=False))
    ws = _ws(G, batch=2, seed=5) + 0.3 * torch.randn(2, G.num_ws, G.w_dim)
    expected = []
    for code in ws.double().numpy():
        total = 0.0
        for layer in code:
            d = np.where(layer >= 0, layer, 5.0 * layer) - mean
            total += float(d @ precision @ d)
        expected.append(total)
    assert prior(ws).double().numpy() == pytest.approx(expected, rel=2e-3)


def test_delta_regularizer_is_sum_of_layer_distances():
    ws = torch.zeros(1, 3, 4)
    ws[0, 1, 0] = 3.0
    ws[0, 2, :2] = torch.tensor([3.0, 4.0])
    assert delta_regularizer(ws).item() == pytest.approx(3.0 + 5.0)


def test_edit_at_strength_zero_reproduces_the_reconstruction_with_soft_masks(G):
    ws = _ws(G, batch=1)
    offsets = {r: torch.randn(1, 32, r, r) for r in (4, 8)}
    masks = {r: torch.rand(1, 1, r, r) for r in (4, 8)}  # soft values, not only 0 / 1
    reconstruction = render_state(G, ws, offsets, masks)
    assert torch.allclose(render_edit(G, ws, ws, offsets, masks), reconstruction, atol=1e-5)
    edited = render_edit(G, ws, ws + 0.5, offsets, masks)
    assert not torch.allclose(edited, reconstruction, atol=1e-3)


def test_state_file_round_trip_and_checks(tmp_path, G):
    ws = _ws(G, batch=1)[0]
    offsets = {4: torch.randn(32, 4, 4), 8: torch.randn(32, 8, 8)}
    masks = {4: torch.rand(1, 4, 4), 8: torch.rand(1, 8, 8)}
    state = make_state(ws, offsets, masks, "abc")
    assert state["offsets"][0].dtype == torch.float16
    save_state(state, tmp_path / "s.pt")
    back = load_state(tmp_path / "s.pt", generator_hash="abc")
    assert back["blocks"] == [4, 8] and torch.equal(back["ws"], ws)
    with pytest.raises(BadFileError, match="another generator"):
        load_state(tmp_path / "s.pt", generator_hash="xyz")
    torch.save({"format": "nope"}, tmp_path / "bad.pt")
    with pytest.raises(BadFileError):
        load_state(tmp_path / "bad.pt")
    with pytest.raises(BadValueError):
        make_state(ws, offsets, masks, "abc", dtype="int8")  # type: ignore[arg-type]


def test_single_layer_targets_and_net_round_trip(tmp_path, G):
    with torch.no_grad():
        images = G(torch.randn(2, G.z_dim)).clamp(-1, 1)
    targets = single_layer_targets(G, images, [4, 8], num_steps=3)
    assert targets.shape == (2, 3, 32, 32) and (targets >= 0).all()
    net = InvertibilityNet(3, width=4, input_resolution=32, blocks=[4, 8])
    save_invertibility_net(net, tmp_path / "inv.safetensors", note="test")
    loaded, meta = load_invertibility_net(tmp_path / "inv.safetensors")
    assert meta == {"note": "test"} and loaded.blocks == [4, 8]
    assert torch.equal(loaded(images), net(images))
    with pytest.raises(MissingInputError, match="missing.safetensors"):
        load_invertibility_net(tmp_path / "missing.safetensors")


def test_training_writes_a_loadable_net_and_reuses_kept_targets(tmp_path, G):
    settings = dict(blocks=[4, 8], num_images=16, target_steps=2, target_batch=16, width=4, batch_size=8,
                    targets_file=str(tmp_path / "targets.pt"), log=False)
    facts = train_invertibility(G, str(tmp_path / "inv.safetensors"), epochs=3, **settings)
    assert (tmp_path / "inv.safetensors").is_file()
    assert facts["blocks"] == [4, 8] and len(facts["target_mean_per_layer"]) == 3
    net, meta = load_invertibility_net(tmp_path / "inv.safetensors")
    assert meta["num_images"] == 16 and net.num_layers == 3
    # the kept targets are reused by a run with the same recipe, and more epochs fit them better
    again = train_invertibility(G, str(tmp_path / "inv2.safetensors"), epochs=40, **settings)
    assert again["target_seconds"] == facts["target_seconds"]
    assert again["target_mean_per_layer"] == facts["target_mean_per_layer"]
    assert again["held_out_mse"] < again["held_out_mse_constant_baseline"] * 1.5


def test_the_lsap_command_trains_a_net_for_a_generator_file(tmp_path, capsys):
    from lsap.cli import main
    from lsap.model.checkpoints import save_generator

    source = save_generator(small_source().build(), tmp_path / "g.pt")
    out = tmp_path / "inv.safetensors"
    main(["sam-invertibility", str(source), str(out), "--blocks", "4", "8", "--distance", "null",
          "--num_images", "8", "--target_steps", "1", "--target_batch", "8", "--width", "4", "--epochs", "1",
          "--batch_size", "4"])
    net, meta = load_invertibility_net(out)
    assert net.blocks == [4, 8] and meta["distance"] == "pixel squared error" and meta["num_images"] == 8
