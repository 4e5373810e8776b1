"""CurricularFace IR-101 for the ID metric (GANInverter's choice), read from a local state dict.

CurricularFace's released backbone (``CurricularFace_Backbone.pth``) is a plain IR network
of depth 100 (units 3, 13, 30, 3; no squeeze-excitation) with the same module layout as the
ArcFace IR-SE50 of pSp / e4e (``input_layer``, ``body.N.res_layer`` / ``shortcut_layer``,
``output_layer``), 112 x 112 input, 512-d output. So it is built here as
:class:`lsap.nets.irse.ArcFaceIRSE` with the layout inferred from the file. Its last
BatchNorm1d may be stored without affine parameters; that is loaded as weight 1, bias 0
(the same function).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from lsap.io import load_weights_file
from lsap.nets.irse import ArcFaceIRSE, infer_ir_architecture, load_state_dict_checked, strip_module_prefix

CURRICULARFACE_DESCRIPTION = ("CurricularFace IR-101 face-recognition weights (CurricularFace_Backbone.pth, "
                              "released with HuangYG123/CurricularFace)")
FINAL_NORM = "output_layer.4"


def load_curricularface(path: str | os.PathLike[str]) -> nn.Module:
    """Build the IR network a CurricularFace (or any IR / IR-SE 112 px) state dict describes and load it."""
    raw = load_weights_file(path, CURRICULARFACE_DESCRIPTION)
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise ValueError(f"'{path}' should hold a state dict ({CURRICULARFACE_DESCRIPTION}), "
                         f"found {type(raw).__name__}")
    state = strip_module_prefix(raw)
    layout = infer_ir_architecture(state)
    embedding = state.get("output_layer.3.weight")
    if embedding is None:
        raise ValueError(f"'{path}' has no output_layer.3.weight: not an IR face-recognition network")
    net = ArcFaceIRSE(use_se=layout.use_se, blocks_per_stage=layout.blocks_per_stage,
                      stage_channels=layout.stage_channels, stem_channels=layout.stem_channels,
                      embedding_dim=int(embedding.shape[0]))
    if f"{FINAL_NORM}.weight" not in state:  # BatchNorm1d(affine=False)
        state[f"{FINAL_NORM}.weight"] = torch.ones(int(embedding.shape[0]))
        state[f"{FINAL_NORM}.bias"] = torch.zeros(int(embedding.shape[0]))
    load_state_dict_checked(net, state, source=str(path), description=CURRICULARFACE_DESCRIPTION)
    return net.eval().requires_grad_(False)
