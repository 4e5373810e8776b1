"""The seeded z sampler: one z sequence per seed, whatever the batching."""

from __future__ import annotations

import torch

from lsap.model.sampling import derive_seed, item_z, rebatch, sample_z, z_blocks


def test_the_z_sequence_does_not_depend_on_the_batch_size() -> None:
    whole = torch.cat(list(sample_z(2500, 8, seed=3)))
    assert whole.shape == (2500, 8) and whole.dtype == torch.float32
    for batch_size in (1, 7, 1000, 4096):
        batches = list(sample_z(2500, 8, seed=3, batch_size=batch_size))
        assert all(b.shape[0] == batch_size for b in batches[:-1])
        assert torch.equal(torch.cat(batches), whole)
    assert not torch.equal(torch.cat(list(sample_z(2500, 8, seed=4))), whole)


def test_blocks_and_items_are_plain_seeded_draws() -> None:
    # An independent computation: one generator, blocks drawn one after the other.
    rng = torch.Generator().manual_seed(5)
    expected = torch.cat([torch.randn(3, 4, generator=rng), torch.randn(2, 4, generator=rng)])
    assert torch.equal(torch.cat(list(z_blocks(5, 4, seed=5, block_size=3))), expected)
    assert torch.equal(torch.cat(list(rebatch(iter([expected[:1], expected[1:]]), 2))), expected)
    assert torch.equal(item_z(4, 9), torch.randn(4, generator=torch.Generator().manual_seed(9)))
    assert derive_seed("a", 1) == derive_seed("a", 1) != derive_seed("a", 2)
    assert 0 <= derive_seed("x") < 2**63
