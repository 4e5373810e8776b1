"""bench/documented_edit.py: the classifier's readings of a results folder's reconstructions and
stored edit codes, on a hand-made folder whose images are fashion32 renderings of its codes."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from conftest import load_bench_script
from lsap.evaluation.evaluators import load_classifier_spec
from lsap.evaluation.inputs import read_image
from lsap.model.checkpoints import builtin_generator_path, load_generator
from lsap.results import EditResults, InversionResults

documented_edit = load_bench_script("documented_edit")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three images, two of class 0 and one of class 3; each edit's codes are the image's own
    code at -3 and a different code at +3."""
    root = tmp_path_factory.mktemp("results")
    generator = load_generator(builtin_generator_path("fashion32")).eval()
    results, edits = InversionResults(root), EditResults(root / "edits")
    torch.manual_seed(0)
    with torch.no_grad():
        ws = generator.mapping(torch.randn(6, generator.z_dim), truncation_psi=0.7)
        images = generator.synthesis(ws, noise_mode="const").clamp(-1, 1)
    for i, name in enumerate(["0000_0", "0001_0", "0002_3"]):
        results.write_code(name, {"ws": ws[i]})
        results.write_image(name, images[i].expand(3, -1, -1))
        results.write_record({"name": name, "key": name, "losses": {}, "nscd": None, "meta": {}})
        codes = torch.stack([ws[i], ws[i + 3]])
        edits.write(name, torch.zeros(3, 4, 4), {"tshirt_to_shirt": {"columns": [-3.0, 3.0],
                                                                      "strengths": [-3.0, 3.0], "codes": codes}},
                    {"edits": []})
    return root, ws, images


def _reading(classifier, image):
    return int(classifier(image[None]).argmax(1))


def test_counts_are_the_classifiers_readings_of_the_source_class(folder):
    root, ws, images = folder
    names, counts = documented_edit.readings(root, "tshirt_to_shirt", 0, "fashion32")
    assert names == ["0000_0", "0001_0"]
    classifier = load_classifier_spec("fashion32")
    generator = load_generator(builtin_generator_path("fashion32")).eval()
    results = InversionResults(root)
    with torch.no_grad():
        # independently: the saved PNGs for the reconstruction, the renderings for the edits
        expected_recon = Counter(_reading(classifier, read_image(results.image_path(n))) for n in names)
        minus = Counter(_reading(classifier, images[i].expand(3, -1, -1)) for i in (0, 1))
        plus = Counter(_reading(classifier, generator.synthesis(ws[i + 3][None], noise_mode="const")
                                .clamp(-1, 1)[0]) for i in (0, 1))
    assert counts == {"reconstruction": expected_recon, "-3": minus, "+3": plus}
    assert all(sum(c.values()) == 2 for c in counts.values())


def test_other_class_and_missing_edit_are_named(folder):
    root, _, _ = folder
    names, counts = documented_edit.readings(root, "tshirt_to_shirt", 3, "fashion32")
    assert names == ["0002_3"] and sum(counts["reconstruction"].values()) == 1
    with pytest.raises(SystemExit, match="no image of class 5"):
        documented_edit.readings(root, "tshirt_to_shirt", 5, "fashion32")
    with pytest.raises(SystemExit, match="no 'sneaker_to_boot' edit"):
        documented_edit.readings(root, "sneaker_to_boot", 0, "fashion32")


def test_markdown_has_a_row_per_column_and_a_column_per_class_seen():
    table = documented_edit.markdown({"reconstruction": Counter({0: 2, 6: 1}), "+3": Counter({6: 3})}, 3)
    lines = table.splitlines()
    assert lines[0] == "| column | T-shirt/top | Shirt |"
    assert lines[2] == "| reconstruction | 2 | 1 |" and lines[3] == "| +3 | 0 | 3 |"
    assert lines[-1] == "3 images."
