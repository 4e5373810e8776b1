"""lsap: Latent Space Alignment Inversion Paradigm (LSAP) for StyleGAN2.

Faithful *and* editable GAN inversion: a StyleGAN2 generator with its style space, the
normalised style-space cosine distance (NSCD) as metric and loss, encoder (LSAP_E) and
optimisation (LSAP_O) embeddings as Lightning modules, and PTI refinement.

``import lsap`` stays light (no Lightning, nothing compiled): the metric, the loss and the
Lightning modules are imported on first use of ``lsap.NSCD``, ``lsap.LSAP_O`` and so on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lsap.model import Generator, GeneratorSource, load_generator, save_generator

if TYPE_CHECKING:
    from lsap.losses import NSCDLoss
    from lsap.metrics import NSCD, compute_anchors
    from lsap.modules import LSAP_E, LSAP_O, PTI

__version__ = "0.1.0"

# Public names imported on first access: name -> module that defines it.
_LAZY = {
    "NSCD": "lsap.metrics",
    "compute_anchors": "lsap.metrics",
    "NSCDLoss": "lsap.losses",
    "LSAP_E": "lsap.modules",
    "LSAP_O": "lsap.modules",
    "PTI": "lsap.modules",
}

__all__ = [
    "LSAP_E",
    "LSAP_O",
    "NSCD",
    "PTI",
    "Generator",
    "GeneratorSource",
    "NSCDLoss",
    "__version__",
    "compute_anchors",
    "load_generator",
    "save_generator",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lsap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
