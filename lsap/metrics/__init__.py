"""Metrics of latent alignment: the S^N anchors and NSCD."""

from lsap.metrics.anchors import (
    Anchors,
    LayerSelection,
    anchors_cache_path,
    compute_anchors,
    default_cache_dir,
    generator_fingerprint,
)
from lsap.metrics.nscd import NSCD, StyleAffines, nscd_distances, style_cosines

__all__ = [
    "NSCD",
    "Anchors",
    "LayerSelection",
    "StyleAffines",
    "anchors_cache_path",
    "compute_anchors",
    "default_cache_dir",
    "generator_fingerprint",
    "nscd_distances",
    "style_cosines",
]
