"""lsap: Latent Space Alignment Inversion Paradigm (LSAP) for StyleGAN2.

Faithful *and* editable GAN inversion: a StyleGAN2 generator with its style space, the
normalised style-space cosine distance (NSCD) as metric and loss, encoder (LSAP_E) and
optimisation (LSAP_O) embeddings as Lightning modules, and PTI refinement.

``import lsap`` stays light (no torch, so ``lsap --help`` answers at once): the generator,
the metric, the loss and the Lightning modules are imported on first use of
``lsap.Generator``, ``lsap.NSCD``, ``lsap.LSAP_O`` and so on.
"""

from __future__ import annotations

from lsap._lazy import lazy_exports

__version__ = "0.1.0"

_lazy_names, __getattr__, __dir__ = lazy_exports(__name__, {
    "lsap.model": ("Generator", "GeneratorSource", "load_generator", "save_generator"),
    "lsap.metrics": ("NSCD", "compute_anchors"),
    "lsap.losses": ("NSCDLoss",),
    "lsap.modules": ("LSAP_E", "LSAP_O", "PTI"),
})

__all__ = ["__version__", *_lazy_names]
