"""The strength unit of a direction: k standard deviations of sampled w along it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsap.editing import Direction
from lsap.errors import BadValueError
from conftest import small_source


@pytest.fixture(scope="module")
def generator():
    return small_source().build().eval()


def _independent_std(generator, vector: torch.Tensor, num_samples: int, seed: int) -> float:
    """The same number by another route: one torch.randn draw, numpy for the projection."""
    z = torch.randn(num_samples, int(generator.z_dim), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        w = generator.mapping(z).double().numpy()
    n = vector.double().numpy()
    n = n / np.linalg.norm(n)
    return float(np.std(w @ n, ddof=1))


def test_std_along_matches_an_independent_computation(generator):
    n = torch.randn(int(generator.w_dim), generator=torch.Generator().manual_seed(3))
    expected = _independent_std(generator, n, 1500, seed=4)
    assert Direction(n).std_along(generator, num_samples=1500, seed=4) == pytest.approx(expected, rel=1e-6)
    # another seed gives other samples, hence a (slightly) different estimate
    assert Direction(n).std_along(generator, num_samples=1500, seed=5) != pytest.approx(expected, rel=1e-6)


def test_the_unit_does_not_depend_on_length_sign_or_batching(generator):
    n = torch.randn(int(generator.w_dim))
    base = Direction(n).std_along(generator, 600, seed=1)
    assert Direction(-7.5 * n).std_along(generator, 600, seed=1) == pytest.approx(base, rel=1e-6)
    assert Direction(n).std_along(generator, 600, seed=1, batch_size=64) == pytest.approx(base, rel=1e-6)
    # a W+ direction that repeats n on every entry makes the same edit at the same strength
    num_ws = int(generator.num_ws)
    repeated = Direction(n.repeat(num_ws, 1)).in_std_units(generator, 600, seed=1)
    single = Direction(n).in_std_units(generator, 600, seed=1)
    torch.testing.assert_close(repeated.vector, single.vector.repeat(num_ws, 1))


def test_strength_k_in_std_units_moves_codes_by_k_std(generator):
    n = 0.01 * torch.randn(int(generator.w_dim))  # far from unit length on purpose
    direction = Direction(n, name="d")
    scaled = direction.in_std_units(generator, num_samples=800)
    std = direction.std_along(generator, 800)
    assert scaled.meta["unit"] == "std" and scaled.meta["std_along"] == pytest.approx(std)
    ws = torch.randn(3, int(generator.num_ws), int(generator.w_dim))
    moved = (scaled.apply(ws, 2.5) - ws) @ (n / n.norm())
    torch.testing.assert_close(moved, torch.full_like(moved, 2.5 * std))
    # the raw strength for k std, applied to the original vector, moves the same distance
    raw = direction.std_strength(generator, 2.5, num_samples=800)
    torch.testing.assert_close(direction.apply(ws, raw), scaled.apply(ws, 2.5), rtol=1e-5, atol=1e-5)
    # rescaling an already rescaled direction changes nothing
    torch.testing.assert_close(scaled.in_std_units(generator, 800).vector, scaled.vector)


def test_std_along_leaves_a_training_generator_as_it_was():
    g = small_source().build().train()
    before = g.w_avg.clone()
    Direction(torch.randn(int(g.w_dim))).std_along(g, 300)
    assert g.training
    torch.testing.assert_close(g.w_avg, before, rtol=0, atol=0)


def test_zero_and_mismatched_directions_are_refused(generator):
    with pytest.raises(BadValueError, match="zero"):
        Direction(torch.zeros(int(generator.w_dim))).std_along(generator, 100)
    with pytest.raises(BadValueError, match="w_dim"):
        Direction(torch.ones(int(generator.w_dim) + 1)).std_along(generator, 100)
