"""Shared test helpers: small seeded generators and the reference fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lsap.model import Generator, GeneratorSource

FIXTURES = Path(os.environ.get("LSAP_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def small_source(resolution: int = 32, seed: int = 0) -> GeneratorSource:
    """A generator small enough for unit tests on two CPU cores."""
    return GeneratorSource(seed=seed, resolution=resolution, mapping_layers=2, channel_base=1024, channel_max=32,
                           w_avg_samples=1000)


@pytest.fixture
def small_generator() -> Generator:
    return small_source().build()


@pytest.fixture
def fixtures_dir() -> Path:
    if not (FIXTURES / "rosinality_64px_small.pt").is_file():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (set LSAP_FIXTURES)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
