"""The encoder grid: each named encoder is one backbone class and one prediction class, so
e4e and pSp on the same backbone share every parameter and differ only in ``forward``."""

from __future__ import annotations

import inspect

import pytest
import torch

from lsap.encoders import (
    AllEntriesStyleEncoder,
    Encoder4Editing,
    GradualStyleEncoder,
    IRPyramidEncoder,
    ProgressiveStyleEncoder,
    ResNetEncoder4Editing,
    ResNetGradualStyleEncoder,
    ResNetPyramidEncoder,
)

TINY_IR = dict(num_ws=6, w_dim=16, input_size=32, blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 8, 16, 16])
TINY_RESNET = dict(num_ws=6, w_dim=16, input_size=32, resnet_depth=18)


@pytest.mark.parametrize(("e4e", "psp", "backbone", "settings"), [
    (Encoder4Editing, GradualStyleEncoder, IRPyramidEncoder, TINY_IR),
    (ResNetEncoder4Editing, ResNetGradualStyleEncoder, ResNetPyramidEncoder, TINY_RESNET),
])
def test_e4e_and_psp_share_the_backbone_and_heads(e4e, psp, backbone, settings) -> None:
    assert issubclass(e4e, ProgressiveStyleEncoder) and issubclass(e4e, backbone)
    assert issubclass(psp, AllEntriesStyleEncoder) and issubclass(psp, backbone)
    torch.manual_seed(0)
    progressive = e4e(**settings)
    torch.manual_seed(0)
    every_entry = psp(**settings)
    assert progressive.state_dict().keys() == every_entry.state_dict().keys()
    for key, value in progressive.state_dict().items():
        assert torch.equal(value, every_entry.state_dict()[key]), key
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        codes = every_entry(images)
        # e4e: w0 from head 0, every later entry w0 + its own head: the pSp codes re-based.
        expected = torch.cat([codes[:, :1], codes[:, :1] + codes[:, 1:]], dim=1)
        torch.testing.assert_close(progressive(images), expected)
        progressive.progressive_stage = 0
        torch.testing.assert_close(progressive(images), codes[:, :1].expand(-1, 6, -1))


def test_the_backbone_signature_is_the_schema() -> None:
    ir = list(inspect.signature(IRPyramidEncoder.__init__).parameters)[1:]
    assert ir == ["num_ws", "w_dim", "input_size", "input_channels", "num_layers", "use_se", "blocks_per_stage",
                  "stage_channels", "stem_channels", "coarse_end", "middle_end", "backbone_weights"]
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(Encoder4Editing, "encoder")
    config = parser.parse_object({"encoder": {**TINY_IR, "progressive_stage": 2}})
    encoder = parser.instantiate(config).encoder
    assert isinstance(encoder, Encoder4Editing) and encoder.progressive_stage == 2 and encoder.num_ws == 6
    with pytest.raises(TypeError):
        GradualStyleEncoder(**TINY_IR, progressive_stage=2)
