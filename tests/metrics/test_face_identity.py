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
    state = {f"module.{k}": v for k, v in net.state_dict().items() if k not in ("output_layer.4.weight", "output_layer.4.bias")}
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
