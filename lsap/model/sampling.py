"""Seeded latent sampling: the one way lsap draws z, so every z sequence is reproducible.

z is always drawn on the CPU in float32 from a ``torch.Generator`` and moved afterwards, so
neither the device nor a batch size changes which z are used. Streams come in fixed
blocks (:func:`z_blocks`), regrouped into any batch size by :func:`rebatch`; single items
have their own seed (:func:`item_z`), derived from names with :func:`derive_seed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

__all__ = ["Z_BLOCK", "derive_seed", "item_z", "rebatch", "sample_z", "z_blocks"]

# Block size of seeded z streams: changing it changes which z a seed gives.
Z_BLOCK = 1024


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends on all ``parts``; unrelated inputs give unrelated seeds
    (unlike ``seed + i``, where runs with neighbouring seeds share most items)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def z_blocks(num_samples: int, z_dim: int, seed: int, block_size: int = Z_BLOCK) -> Iterator[Tensor]:
    """``num_samples`` seeded z ``[n, z_dim]`` (CPU, float32), drawn ``block_size`` at a time."""
    rng = torch.Generator(device="cpu").manual_seed(seed)
    drawn = 0
    while drawn < num_samples:
        block = torch.randn(min(block_size, num_samples - drawn), z_dim, generator=rng, dtype=torch.float32)
        drawn += block.shape[0]
        yield block


def rebatch(blocks: Iterable[Tensor], batch_size: int) -> Iterator[Tensor]:
    """The rows of ``blocks`` regrouped into batches of ``batch_size`` (the last may be smaller)."""
    pending: list[Tensor] = []
    pending_rows = 0
    for block in blocks:
        pending.append(block)
        pending_rows += block.shape[0]
        while pending_rows >= batch_size:
            joined = torch.cat(pending)
            yield joined[:batch_size]
            rest = joined[batch_size:]
            pending, pending_rows = ([rest] if rest.shape[0] else []), rest.shape[0]
    if pending_rows:
        yield torch.cat(pending)


def sample_z(num_samples: int, z_dim: int, seed: int, batch_size: int | None = None) -> Iterator[Tensor]:
    """The seeded z stream of ``seed`` in batches of ``batch_size`` (default: one block at a
    time); the same z sequence for any ``batch_size``."""
    blocks = z_blocks(num_samples, z_dim, seed)
    return blocks if batch_size is None else rebatch(blocks, batch_size)


def item_z(z_dim: int, seed: int) -> Tensor:
    """One z ``[z_dim]`` (CPU, float32) from its own seed (e.g. ``derive_seed(name, index)``)."""
    return torch.randn(int(z_dim), generator=torch.Generator().manual_seed(seed))
