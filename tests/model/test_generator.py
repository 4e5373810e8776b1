"""Generator properties: style space, Proposition 1, code spaces, noise."""

from __future__ import annotations

import math

import pytest
import torch

from lsap.model import Generator

from conftest import small_source


@pytest.fixture
def g() -> Generator:
    return small_source(resolution=32).build().double()


def test_proposition_1_demodulated_style_scale_leaves_image_unchanged(g):
    ws = torch.randn(2, g.num_ws, g.w_dim, dtype=torch.float64) + g.w_avg
    styles = g.styles(ws)
    base = g.synthesis_from_styles(styles)
    for i, layer in enumerate(g.style_layers):
        scaled = [s * (3.7 if j == i else 1.0) for j, s in enumerate(styles)]
        img = g.synthesis_from_styles(scaled)
        diff = (img - base).abs().max().item()
        if layer.demodulated:
            # Exact up to the 1e-8 epsilon inside the demodulation rsqrt.
            assert diff < 1e-6, f"{layer.name}: {diff}"
        else:  # toRGB is not demodulated: its scale shows in the image
            assert diff > 1e-2, f"{layer.name}: {diff}"


def test_synthesis_equals_synthesis_from_styles(g):
    ws = torch.randn(3, g.num_ws, g.w_dim, dtype=torch.float64)
    torch.testing.assert_close(g.synthesis(ws), g.synthesis_from_styles(g.styles(ws)), rtol=0, atol=0)


def test_w_equals_w_plus_with_the_same_w_repeated(g):
    w = torch.randn(2, g.w_dim, dtype=torch.float64)
    torch.testing.assert_close(g.synthesis(w), g.synthesis(w[:, None].repeat(1, g.num_ws, 1)))


def test_psi_zero_gives_the_w_avg_image(g):
    z = torch.randn(2, g.z_dim, dtype=torch.float64)
    img = g(z, truncation_psi=0.0)
    avg = g.synthesis(g.w_avg[None].expand(2, -1))
    torch.testing.assert_close(img, avg)
    # A cutoff truncates only the first entries: the result is W+.
    ws = g.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
    assert ws.shape == (2, g.num_ws, g.w_dim)
    torch.testing.assert_close(ws[:, :2], g.w_avg.expand(2, 2, -1))
    torch.testing.assert_close(ws[:, 2:], g.mapping(z)[:, None].expand(-1, g.num_ws - 2, -1))


def test_noise_modes(g):
    ws = torch.randn(2, g.w_dim, dtype=torch.float64)
    torch.testing.assert_close(g.synthesis(ws, noise_mode="const"), g.synthesis(ws, noise_mode="const"))
    assert not torch.allclose(g.synthesis(ws, noise_mode="random"), g.synthesis(ws, noise_mode="random"))
    assert not torch.allclose(g.synthesis(ws, noise_mode="none"), g.synthesis(ws, noise_mode="const"))
    # Explicit maps equal to the stored ones reproduce const mode.
    torch.testing.assert_close(g.synthesis(ws, noise=g.const_noise()), g.synthesis(ws, noise_mode="const"))
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(ws, noise_mode="bogus")


def test_full_and_lsap_style_space_of_config_f_1024():
    with torch.device("meta"):
        g = Generator(resolution=1024)
    assert g.num_ws == 18
    assert len(g.style_layers) == 26
    assert sum(layer.channels for layer in g.style_layers) == 9088
    lsap = [g.style_layers[i] for i in g.lsap_style_indices]
    assert len(lsap) == 18
    assert sum(layer.channels for layer in lsap) == 6080
    assert [layer.w_index for layer in lsap] == list(range(18))
    assert lsap[-1].kind == "torgb" and all(layer.kind == "conv" for layer in lsap[:-1])


@pytest.mark.parametrize("resolution,num_ws", [(16, 6), (256, 14), (512, 16)])
def test_num_ws_per_resolution(resolution, num_ws):
    with torch.device("meta"):
        g = Generator(resolution=resolution)
    assert g.num_ws == num_ws
    assert len(g.lsap_style_indices) == num_ws


def test_lsap_styles_are_the_selected_full_styles(g):
    ws = torch.randn(2, g.num_ws, g.w_dim, dtype=torch.float64)
    full = g.styles(ws)
    for s, i in zip(g.lsap_styles(ws), g.lsap_style_indices):
        torch.testing.assert_close(s, full[i])


def test_image_shape_and_gradient_to_codes():
    g = small_source(resolution=32).build()
    ws = torch.randn(2, g.num_ws, g.w_dim, requires_grad=True)
    img = g.synthesis(ws)
    assert img.shape == (2, 3, 32, 32)
    img.square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert all(ws.grad[:, i].abs().sum() > 0 for i in range(g.num_ws)), "every W+ entry must reach the image"


def test_shape_errors_name_num_ws():
    g = small_source(resolution=32).build()
    with pytest.raises(ValueError, match=r"num_ws=18 but the generator has num_ws=8"):
        g.synthesis(torch.zeros(1, 18, 512))
    with pytest.raises(ValueError, match=r"z must have shape \[B, 512\]"):
        g.mapping(torch.zeros(1, 256))
    with pytest.raises(ValueError, match="power of two"):
        Generator(resolution=100)


def test_w_stats_are_seeded():
    g = small_source(resolution=16).build()
    m1, s1 = g.w_stats(500, seed=3)
    m2, s2 = g.w_stats(500, seed=3, batch_size=77)
    torch.testing.assert_close(m1, m2)
    torch.testing.assert_close(s1, s2)
    m3, _ = g.w_stats(500, seed=4)
    assert not torch.allclose(m1, m3)
    assert s1 > 0


def test_generator_source_is_deterministic():
    a, b = small_source(seed=5).build(), small_source(seed=5).build()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = small_source(seed=6).build()
    assert not torch.equal(a.synthesis_network.const, c.synthesis_network.const)


def test_channel_multiplier_follows_rosinality_convention():
    with torch.device("meta"):
        g2 = Generator(resolution=1024, channel_multiplier=2)
        g1 = Generator(resolution=256, channel_multiplier=1)
    assert g2.config["channels"] == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    assert g1.config["channels"] == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}


@pytest.mark.parametrize("fused", [True, False])
def test_proposition_1_holds_for_both_modconv_layouts(fused):
    g = small_source(resolution=16).build().double()
    g.fused_modconv = fused
    ws = torch.randn(2, g.num_ws, g.w_dim, dtype=torch.float64) + g.w_avg
    styles = g.styles(ws)
    base = g.synthesis_from_styles(styles)
    for i, layer in enumerate(g.style_layers):
        if layer.demodulated:
            scaled = [s * (0.3 if j == i else 1.0) for j, s in enumerate(styles)]
            assert (g.synthesis_from_styles(scaled) - base).abs().max().item() < 1e-6, layer.name


def test_fused_and_non_fused_generators_agree_with_gradients():
    gens = [small_source(resolution=16).build().double().requires_grad_(True) for _ in range(2)]
    gens[0].fused_modconv, gens[1].fused_modconv = True, False
    ws = torch.randn(3, gens[0].num_ws, gens[0].w_dim, dtype=torch.float64, requires_grad=True)
    imgs = [g.synthesis(ws) for g in gens]
    torch.testing.assert_close(imgs[0], imgs[1], rtol=1e-10, atol=1e-10)
    grads = [torch.autograd.grad(img.square().sum(), [ws, *g.synthesis_network.parameters()])
             for g, img in zip(gens, imgs)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_auto_fused_modconv_rule_is_an_argument_not_a_switch():
    from lsap.model.generator import choose_fused_modconv

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_fused_modconv(True, 8, cpu) and not choose_fused_modconv(False, 1, gpu)
    assert not choose_fused_modconv(None, 1, cpu) and not choose_fused_modconv(None, 8, cpu)
    assert choose_fused_modconv(None, 1, gpu) and not choose_fused_modconv(None, 8, gpu)


def test_feature_hook_sees_every_block_and_identity_changes_nothing(g):
    ws = g.mapping(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    seen = []

    def hook(point, resolution, features):
        seen.append((point, resolution, features.shape[-1]))
        return features

    plain = g.synthesis(ws)
    hooked = g.synthesis(ws, feature_hook=hook)
    torch.testing.assert_close(hooked, plain, rtol=0, atol=0)
    resolutions = [2**i for i in range(2, int(math.log2(g.resolution)) + 1)]
    expected = [("block", 4, 4)] + [p for r in resolutions[1:] for p in (("up", r, r), ("block", r, r))]
    assert seen == expected


def test_feature_hook_changes_reach_the_image(g):
    ws = g.mapping(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    last = g.resolution

    def shift_last_block(point, resolution, features):
        return features + 1.0 if (point, resolution) == ("block", last) else features

    assert not torch.allclose(g.synthesis(ws, feature_hook=shift_last_block), g.synthesis(ws))
