"""lsap: Latent Space Alignment Inversion Paradigm (LSAP) for StyleGAN2.

Faithful *and* editable GAN inversion: a StyleGAN2 generator with its style space, the
normalised style-space cosine distance (NSCD) as metric and loss, encoder (LSAP_E) and
optimisation (LSAP_O) embeddings as Lightning modules, and PTI refinement.
"""

from lsap.model import Generator, GeneratorSource, load_generator, save_generator

__version__ = "0.1.0"

__all__ = ["Generator", "GeneratorSource", "__version__", "load_generator", "save_generator"]
