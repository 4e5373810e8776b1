"""ID similarity: CurricularFace-layout files load; missing weights name the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsap.metrics.fidelity import IDSimilarity, LPIPSMetric
from lsap.nets.irse import ArcFaceIRSE


def test_curricularface_layout_loads_and_scores(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ArcFaceIRSE(use_se=False, blocks_per_stage=(1, 2, 1, 1), stage_channels=(8, 16, 24, 32),
                      stem_channels=8, embedding_dim=16).eval()
    affine = ("output_layer.4.weight", "output_layer.4.bias")
    state = {f"module.{k}": v for k, v in net.state_dict().items() if k not in affine}
    # CurricularFace stores its last BatchNorm1d without affine parameters.
    torch.save(state, tmp_path / "CurricularFace_Backbone.pth")
    net.output_layer[4].weight.data.fill_(1)
    net.output_layer[4].bias.data.zero_()
    metric = IDSimilarity(weights=str(tmp_path / "CurricularFace_Backbone.pth"), backbone="curricularface")
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(metric.scores(images, images), torch.ones(2, dtype=torch.float64), atol=1e-5)
    # The loaded network is the saved one: same embeddings as the original module.
    faces = torch.rand(2, 3, 112, 112) * 2 - 1
    torch.testing.assert_close(metric.network.network(faces), net(faces))
    other = torch.flip(images, dims=[0])
    assert metric.scores(images, other).max() < 1


@pytest.mark.parametrize("make, name", [
    (lambda p: IDSimilarity(weights=str(p / "model_ir_se50.pth")), "model_ir_se50.pth"),
    (lambda p: IDSimilarity(weights=str(p / "CurricularFace_Backbone.pth"), backbone="curricularface"),
     "CurricularFace_Backbone.pth"),
    (lambda p: LPIPSMetric(backbone_weights=str(p / "alexnet-owt-7be5be79.pth")), "alexnet-owt-7be5be79.pth"),
])
def test_missing_weights_name_the_file(tmp_path: Path, make, name: str) -> None:
    with pytest.raises(FileNotFoundError, match=name):
        make(tmp_path)


class DarkMeansNoFace:
    """A detector stand-in: finds a face unless the image is mostly dark."""

    def detect(self, image):
        import numpy as np

        return [] if np.asarray(image).mean() < 100 else ["face"]


def test_failed_detections_are_counted_and_left_out(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ArcFaceIRSE(blocks_per_stage=(1, 1, 1, 1), stage_channels=(8, 16, 24, 32), embedding_dim=16).eval()
    from lsap.losses.identity import IDLoss

    metric = IDSimilarity(network=IDLoss(network=net, network_input_size=112, reduction="none"),
                          face_detector=DarkMeansNoFace())
    bright = torch.rand(3, 3, 64, 64) * 0.5 + 0.4
    dark = -torch.rand(1, 3, 64, 64) * 0.5 - 0.4
    pred = torch.cat([bright, dark])
    target = torch.cat([bright.flip(0), bright[:1]])
    metric.update(pred, target)
    summary = metric.summary()
    assert summary["count"] == 3 and summary["no_face_or_nonfinite"] == 1
    expected = metric.network.similarity(bright, bright.flip(0)).double().mean()
    assert summary["mean"] == pytest.approx(float(expected), rel=1e-6)
