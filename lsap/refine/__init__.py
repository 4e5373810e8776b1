"""Refinements that start from any pivot (an embedding's W+ code) and add what the code
alone cannot reconstruct: HFGI's distortion-consultation features and SAM's per-block
feature offsets. PTI, which tunes the generator's weights, lives in :mod:`lsap.modules.pti`.
"""

from lsap.refine.invertibility import InvertibilityNet, load_invertibility_net, train_invertibility
from lsap.refine.sam import load_state, render_edit, render_state_file
from lsap.refine.segments import FaceParserSegmenter, LabelMapSegmenter, SuperpixelSegmenter

__all__ = ["FaceParserSegmenter", "InvertibilityNet", "LabelMapSegmenter", "SuperpixelSegmenter",
           "load_invertibility_net", "load_state", "render_edit", "render_state_file", "train_invertibility"]
