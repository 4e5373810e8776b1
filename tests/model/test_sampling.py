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


def test_w_stats_draws_the_seeded_z_stream_whatever_the_batch_size() -> None:
    from conftest import small_source

    g = small_source(resolution=16).build()
    z = torch.cat(list(sample_z(300, g.z_dim, seed=6)))  # an independent computation from the stream
    with torch.no_grad():
        w = g.mapping_network(z).double()
    mean = w.mean(0)
    std = ((w - mean).square().sum(1).mean()).sqrt()
    for batch_size in (7, 300, 4096):
        m, s = g.w_stats(300, seed=6, batch_size=batch_size)
        torch.testing.assert_close(m, mean.float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s, std.float(), rtol=1e-5, atol=1e-5)
