"""Refinements that start from any pivot (an embedding's W+ code) and add what the code
alone cannot reconstruct: HFGI's distortion-consultation features and SAM's per-block
feature offsets. PTI, which tunes the generator's weights, lives in :mod:`lsap.modules.pti`.
"""

from lsap.refine.hfgi import HFGIRefiner, load_hfgi_refiner, save_hfgi_refiner
from lsap.refine.hfgi_checkpoint import load_published_hfgi
from lsap.refine.invertibility import InvertibilityNet, load_invertibility_net, train_invertibility
from lsap.refine.sam import load_state, render_edit, render_state_file
from lsap.refine.segments import FaceParserSegmenter, LabelMapSegmenter, SuperpixelSegmenter

__all__ = ["FaceParserSegmenter", "HFGIRefiner", "InvertibilityNet", "LabelMapSegmenter", "SuperpixelSegmenter",
           "load_hfgi_refiner", "load_invertibility_net", "load_published_hfgi", "load_state", "render_edit",
           "render_state_file", "save_hfgi_refiner", "train_invertibility"]
