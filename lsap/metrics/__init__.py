"""Metrics of latent alignment: the S^N anchors and NSCD."""

from lsap.metrics.anchors import (
    Anchors,
    LayerSelection,
    anchors_cache_path,
    compute_anchors,
    default_cache_dir,
    generator_fingerprint,
)
from lsap.metrics.nscd import NSCD
from lsap.metrics.style_alignment import StyleAlignment

__all__ = [
    "NSCD",
    "Anchors",
    "LayerSelection",
    "StyleAlignment",
    "anchors_cache_path",
    "compute_anchors",
    "default_cache_dir",
    "generator_fingerprint",
]
