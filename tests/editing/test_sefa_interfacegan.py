"""SeFa against an independent eigendecomposition; InterFaceGAN recovers a planted direction."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lsap.editing import compute_sefa, fit_boundary, project_out, read_labels


def test_sefa_eigenvectors_match_eigh_of_stacked_weights(small_generator):
    g = small_generator
    layers = (2, 3, 4, 5)
    result = compute_sefa(g, "2:6", num_components=5)
    assert result.layers == layers
    stacked = []
    for i in layers:  # W+ entry i -> the style layer that reads it
        layer = g.style_layers[g.lsap_style_indices[i]]
        affine = g.synthesis_network.get_submodule(layer.name).affine
        stacked.append(affine.weight.double() * affine.weight_gain)
    a = torch.cat(stacked)
    values, vectors = torch.linalg.eigh(a.T @ a)
    top = vectors[:, values.argsort(descending=True)[:5]].T
    torch.testing.assert_close(result.eigenvalues.double(), values.sort(descending=True).values[:5], rtol=1e-5,
                               atol=1e-6)
    # Same vectors up to sign.
    cos = (result.components.double() * top).sum(1).abs()
    torch.testing.assert_close(cos, torch.ones(5, dtype=torch.float64), atol=1e-5, rtol=0)
    # The top direction changes the chosen layers' styles more than any other unit vector tried.
    gain = (a @ result.components[0].double()).norm()
    for _ in range(20):
        v = torch.randn(512, dtype=torch.float64)
        assert (a @ (v / v.norm())).norm() <= gain + 1e-9
    d = result.direction(0)
    ws = torch.zeros(1, g.num_ws, 512)
    edited = d.apply(ws, 1.0)
    assert torch.count_nonzero(edited.abs().sum(-1)) == len(layers)


@pytest.mark.parametrize("method", ["svm", "logistic"])
def test_interfacegan_recovers_planted_direction(method):
    gen = torch.Generator().manual_seed(0)
    d = 32
    truth = torch.randn(d, generator=gen)
    truth /= truth.norm()
    codes = torch.randn(2000, d, generator=gen) * 2 + 0.5
    margin = codes @ truth - 0.3
    labels = (margin + 0.1 * torch.randn(2000, generator=gen) > 0).float()
    b = fit_boundary(codes, labels, method=method, seed=1)
    angle = math.degrees(math.acos(min(1.0, float(b.normal @ truth))))
    assert angle < 5.0, f"angle to the planted direction {angle:.2f} deg"
    assert b.accuracy is not None and b.accuracy > 0.95 and b.num_test == 600
    # Scores instead of labels: top/bottom ratio become the classes.
    s = fit_boundary(codes, margin, method=method, chosen_ratio=0.3, seed=1)
    assert math.degrees(math.acos(min(1.0, float(s.normal @ truth)))) < 8.0


def test_project_out_is_orthogonal_and_matches_single_condition_formula():
    n, c1, c2 = torch.randn(3, 16).unbind()
    c1 = c1 / c1.norm()
    one = project_out(n, c1)
    manual = n - (n @ c1) * c1
    torch.testing.assert_close(one, manual / manual.norm())
    two = project_out(n, c1, c2)
    assert abs(float(two @ c1)) < 1e-5 and abs(float(two @ c2)) < 1e-5 and abs(float(two.norm()) - 1) < 1e-5
    with pytest.raises(ValueError, match="span"):
        project_out(c1, c1)


def test_read_labels_csv_and_json(tmp_path):
    (tmp_path / "l.csv").write_text("name,smile\na/001.png,1\n002.jpg,0\n")
    assert read_labels(tmp_path / "l.csv") == {"a/001": 1.0, "002": 0.0}
    (tmp_path / "l.json").write_text(json.dumps({"x.png": 0.25}))
    assert read_labels(tmp_path / "l.json") == {"x": 0.25}
    (tmp_path / "bad.csv").write_text("name,label\na,yes\n")
    with pytest.raises(ValueError, match="not a number"):
        read_labels(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("name,label\n")
    with pytest.raises(ValueError, match="no labels"):
        read_labels(tmp_path / "empty.csv")


def test_sampled_scores_are_the_classifier_on_clamped_constant_noise_images(small_generator):
    """sample_scored_codes against the loop written out: lsap's z stream, no truncation,
    constant noise, images clamped to [-1, 1]; one column or every column."""
    from lsap.editing.interfacegan import sample_scored_codes
    from lsap.model.sampling import sample_z

    g = small_generator.eval()
    torch.manual_seed(0)
    head = torch.nn.Linear(3, 4)

    def classifier(images):
        return head(images.mean(dim=(2, 3)) * 5)  # scaled so that clamping matters

    with torch.no_grad():
        ws = torch.cat([g.mapping(z) for z in sample_z(10, g.z_dim, 3, 4)])
        expected = classifier(g.synthesis(ws, noise_mode="const").clamp(-1, 1))
    codes, every = sample_scored_codes(g, classifier, 10, seed=3, batch_size=4, all_scores=True)
    torch.testing.assert_close(codes, ws)
    torch.testing.assert_close(every, expected)
    _, third = sample_scored_codes(g, classifier, 10, seed=3, batch_size=5, score_index=2)
    torch.testing.assert_close(third, expected[:, 2])
