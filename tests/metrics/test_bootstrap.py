"""Bootstrap intervals over images: properties, not fixed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from lsap.metrics.bootstrap import bootstrap_interval, bootstrap_mean, bootstrap_mean_difference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_the_mean(seed: int) -> None:
    values = np.random.default_rng(seed).exponential(size=200)
    interval = bootstrap_mean(values, resamples=500, seed=seed)
    assert interval.value == pytest.approx(values.mean())
    assert interval.low < values.mean() < interval.high
    assert interval.n == 200


def test_interval_shrinks_with_more_images() -> None:
    rng = np.random.default_rng(0)
    widths = [bootstrap_mean(rng.normal(size=n), resamples=500).half_width for n in (50, 500, 5000)]
    assert widths[0] > widths[1] > widths[2]
    # the standard error falls as 1/sqrt(n): 10x the images, about 1/3.16 of the width
    assert widths[0] / widths[1] == pytest.approx(np.sqrt(10), rel=0.35)


def test_interval_matches_the_normal_approximation() -> None:
    values = np.random.default_rng(3).normal(loc=2.0, scale=1.5, size=2000)
    interval = bootstrap_mean(values, resamples=2000)
    standard_error = values.std(ddof=1) / np.sqrt(values.size)
    assert interval.half_width == pytest.approx(1.96 * standard_error, rel=0.12)


def test_deterministic_with_seed_and_changes_without() -> None:
    values = np.random.default_rng(4).uniform(size=100)
    a, b = bootstrap_mean(values, resamples=300, seed=7), bootstrap_mean(values, resamples=300, seed=7)
    c = bootstrap_mean(values, resamples=300, seed=8)
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)


def test_constant_values_give_a_point() -> None:
    interval = bootstrap_mean(np.full(30, 0.25), resamples=100)
    assert interval.low == interval.high == interval.value == 0.25


def test_paired_difference_keeps_the_pairing() -> None:
    rng = np.random.default_rng(5)
    shared = rng.normal(scale=10.0, size=300)  # large per-image variation common to both methods
    a, b = shared + 0.1, shared + rng.normal(scale=0.01, size=300)
    paired = bootstrap_mean_difference(a, b, resamples=500)
    unpaired_width = bootstrap_mean(a, resamples=500).half_width + bootstrap_mean(b, resamples=500).half_width
    assert 0.1 in paired or paired.low > 0.09  # the true difference, tightly
    assert paired.low > 0  # the pairing separates the methods; the unpaired widths could not
    assert paired.half_width < unpaired_width / 50


def test_any_statistic() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=400)
    y = x + rng.normal(scale=0.5, size=400)
    interval = bootstrap_interval([x, y], lambda a, b: float(np.corrcoef(a, b)[0, 1]), resamples=300)
    assert interval.low < interval.value < interval.high <= 1.0
    assert interval.value == pytest.approx(np.corrcoef(x, y)[0, 1])


@pytest.mark.parametrize("bad", [[1.0], [1.0, float("nan")]])
def test_bad_input_is_a_clear_error(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        bootstrap_mean(bad)


def test_columns_of_different_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="one length"):
        bootstrap_mean_difference([1.0, 2.0, 3.0], [1.0, 2.0])
