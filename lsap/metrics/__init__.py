"""Metrics: NSCD (latent alignment), fidelity, FID, LEC, edit success.

The S^N anchors and :class:`StyleAlignment` live in :mod:`lsap.style`; they are re-exported
here because NSCD is defined by them (``from lsap.metrics import NSCD, compute_anchors``).
"""

from lsap.metrics.nscd import NSCD
from lsap.style import (
    Anchors,
    LayerSelection,
    StyleAlignment,
    anchors_cache_path,
    compute_anchors,
    default_cache_dir,
    generator_fingerprint,
)

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
