"""StyleSpace: one edit changes one channel's style only; sigma; index mapping; caching."""

from __future__ import annotations

import math

import pytest
import torch

from lsap.editing import STYLESPACE_PRESETS, StyleEdit, apply_style_edits, full_to_lsap, lsap_to_full, style_std
from lsap.model import Generator


def test_edit_changes_only_its_channel(small_generator):
    g = small_generator
    ws = g.mapping(torch.randn(2, g.z_dim))
    styles = g.styles(ws)
    sigma = style_std(g, num_samples=500, seed=1)
    layer = 4
    edit = StyleEdit(layer=layer, channel=3, alpha=2.0)
    out = apply_style_edits(styles, [edit], sigma)
    for i, (a, b) in enumerate(zip(styles, out)):
        diff = (b - a).abs() > 0
        if i == layer:
            assert diff[:, 3].all() and not diff[:, [c for c in range(a.shape[1]) if c != 3]].any()
            torch.testing.assert_close(b[:, 3] - a[:, 3], (2.0 * sigma[layer][3]).expand(2))
        else:
            assert not diff.any()
    # Applied through G_S: the image changes, and alpha 0 gives the unedited image.
    img = g.synthesis_from_styles(styles)
    assert not torch.allclose(g.synthesis_from_styles(out), img)
    torch.testing.assert_close(g.synthesis_from_styles(apply_style_edits(styles, [edit], sigma, 0.0)), img)


def test_style_std_against_direct_computation_and_cache(small_generator, tmp_path):
    g = small_generator
    sigma = style_std(g, num_samples=600, seed=3, batch_size=256, cache_dir=tmp_path)
    assert len(sigma) == len(g.style_layers)
    from lsap.model.sampling import sample_z

    z = torch.cat(list(sample_z(600, g.z_dim, 3)))
    direct = [s.double().std(0) for s in g.styles(g.mapping(z))]
    for a, b in zip(sigma, direct):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    cached = style_std(g, num_samples=600, seed=3, cache_dir=tmp_path)
    for a, b in zip(sigma, cached):
        assert torch.equal(a, b)


def test_index_mapping_matches_design_closed_form_at_1024():
    g = Generator(resolution=1024, z_dim=8, w_dim=8, mapping_layers=1, channel_max=2)
    assert len(g.style_layers) == 26 and g.num_ws == 18
    assert lsap_to_full(g, 0) == 0 and lsap_to_full(g, 17) == 25
    for i in range(1, 17):
        assert lsap_to_full(g, i) == i + math.ceil(i / 2)
    for i in range(18):
        assert full_to_lsap(g, lsap_to_full(g, i)) == i
    # toRGB layers except the last have no LSAP index.
    rgb = [i for i, layer in enumerate(g.style_layers) if layer.kind == "torgb"]
    assert [full_to_lsap(g, i) for i in rgb[:-1]] == [None] * (len(rgb) - 1)
    # The FFHQ presets name conv layers with a channel that exists at 1024 config-f.
    full = Generator(resolution=1024, z_dim=8, w_dim=8, mapping_layers=1).style_layers
    for preset in STYLESPACE_PRESETS.values():
        assert preset.channel < full[preset.layer].channels and preset.source


def test_out_of_range_edit_is_refused(small_generator):
    styles = small_generator.styles(torch.randn(1, 512))
    sigma = [torch.ones(s.shape[1]) for s in styles]
    with pytest.raises(ValueError, match="out of range"):
        apply_style_edits(styles, [StyleEdit(99, 0)], sigma)
    with pytest.raises(ValueError, match="out of range"):
        apply_style_edits(styles, [StyleEdit(0, 10_000)], sigma)
