"""Low-level StyleGAN2 operations.

Every op takes ``impl``: ``"ref"`` is pure PyTorch (runs everywhere, differentiable,
gradcheck-able) and ``"cuda"`` is an accelerated path that is built lazily on first use
with a CUDA tensor and falls back to ``"ref"`` with one warning when it cannot be used.
Each op file owns its path choice and its plugin; ``_build`` (the shared, lazy build
helper) imports no op file. Importing this package never compiles anything.
"""

from lsap.ops.bias_act import bias_act
from lsap.ops.impl import IMPLS, resolve_impl
from lsap.ops.modulated_conv import modulated_conv2d
from lsap.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "IMPLS",
    "bias_act",
    "downsample2d",
    "filter2d",
    "modulated_conv2d",
    "resolve_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
