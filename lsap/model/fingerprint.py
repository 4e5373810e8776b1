"""The identity of a generator: a hash of its architecture and every state-dict tensor."""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

__all__ = ["generator_fingerprint"]


def generator_fingerprint(generator: nn.Module) -> str:
    """SHA-256 (hex) of a generator's class, architecture and every state-dict tensor.

    Any changed weight or buffer, shape or dtype changes the fingerprint; device does not.
    """
    digest = hashlib.sha256()
    digest.update(type(generator).__qualname__.encode())
    config = getattr(generator, "config", None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(generator.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # A uint8 view reads the raw bytes of any dtype (numpy lacks bfloat16).
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
