"""The generator's style space: S^N anchors, the style alignment shared by the NSCD metric and
loss, and style statistics over seeded samples (the loop both are built on, the per-channel
style std of StyleSpace edits). Metrics, losses and editing depend on this package; it
depends on nothing of theirs."""

from lsap.model.fingerprint import generator_fingerprint
from lsap.style.alignment import StyleAlignment, check_styles, resolve_anchors
from lsap.style.anchors import (
    ANCHORS_FORMAT,
    ANCHORS_FORMAT_VERSION,
    DEFAULT_BATCH_SIZE,
    DEFAULT_NUM_SAMPLES,
    Anchors,
    LayerSelection,
    anchors_cache_path,
    compute_anchors,
    default_cache_dir,
)
from lsap.style.statistics import StyleStd, sampled_styles, style_std, style_std_cache_path

__all__ = [
    "ANCHORS_FORMAT",
    "ANCHORS_FORMAT_VERSION",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_NUM_SAMPLES",
    "Anchors",
    "LayerSelection",
    "StyleAlignment",
    "StyleStd",
    "anchors_cache_path",
    "check_styles",
    "compute_anchors",
    "default_cache_dir",
    "generator_fingerprint",
    "resolve_anchors",
    "sampled_styles",
    "style_std",
    "style_std_cache_path",
]
