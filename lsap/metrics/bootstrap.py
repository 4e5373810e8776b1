"""Bootstrap confidence intervals over images.

A table number that is a mean over images (MSE, class keep, edit success) or any other
statistic of per-image values (a rank correlation, a difference of two methods' means on
the same images) gets a percentile interval from resampling the images with replacement.
Paired statistics resample the same image indices in every column, so a difference between
two methods on the same images keeps its pairing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lsap.errors import BadValueError

__all__ = ["Interval", "bootstrap_interval", "bootstrap_mean", "bootstrap_mean_difference"]


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap percentile interval (``level`` coverage)."""

    value: float
    low: float
    high: float
    level: float = 0.95
    n: int = 0

    def __contains__(self, x: float) -> bool:
        return self.low <= x <= self.high

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, digits: int = 3) -> str:
        """``"0.123 [0.101, 0.145]"``."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level, "n": self.n}


def bootstrap_interval(columns: Sequence[Sequence[float]] | np.ndarray, statistic: Callable[..., float],
                       resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic(*columns)`` over the images.

    Args:
        columns: one or more per-image value arrays of the same length n (one entry per
            image); each resample draws n image indices with replacement and applies the same
            indices to every column (paired).
        statistic: columns -> a number; it must accept numpy arrays.
        resamples: bootstrap resamples.
        level: coverage of the interval (0.95: the 2.5 % and 97.5 % percentiles).
        seed: seed of the resampling, so the same inputs give the same interval.

    NaN entries are not allowed (drop or count skipped images before calling).
    """
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    if not arrays:
        raise BadValueError("bootstrap_interval needs at least one column of per-image values")
    n = arrays[0].shape[0]
    if any(a.ndim != 1 or a.shape[0] != n for a in arrays):
        raise BadValueError(f"columns must be 1-d of one length, got shapes {[a.shape for a in arrays]}")
    if n < 2:
        raise BadValueError(f"a bootstrap interval needs at least 2 images, got {n}")
    if any(np.isnan(a).any() for a in arrays):
        raise BadValueError("per-image values contain NaN; drop (and count) those images first")
    if not 0 < level < 1:
        raise BadValueError(f"level must be in (0, 1), got {level}")
    if resamples < 10:
        raise BadValueError(f"resamples must be >= 10, got {resamples}")
    value = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for r in range(resamples):
        index = rng.integers(0, n, size=n)
        draws[r] = statistic(*(a[index] for a in arrays))
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Interval(value, float("nan"), float("nan"), level, n)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(value, float(low), float(high), level, n)


def _mean(x: np.ndarray) -> float:
    return float(x.mean())


def _mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float((a - b).mean())


def bootstrap_mean(values: Sequence[float] | np.ndarray, resamples: int = 2000, level: float = 0.95,
                   seed: int = 0) -> Interval:
    """The mean of per-image values with its bootstrap interval."""
    return bootstrap_interval([values], _mean, resamples, level, seed)


def bootstrap_mean_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                              resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """``mean(a - b)`` over the same images (paired) with its bootstrap interval."""
    return bootstrap_interval([a, b], _mean_difference, resamples, level, seed)
