"""LEC against a direct loop implementation of e4e's definition."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from conftest import small_source
from lsap.metrics.lec import LEC, trimmed_mean


class TinyEncoder(nn.Module):
    def __init__(self, num_ws: int, w_dim: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.num_ws, self.w_dim = num_ws, w_dim
        self.linear = nn.Linear(3 * 8 * 8, num_ws * w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
        return self.linear(x).view(-1, self.num_ws, self.w_dim)


def test_lec_matches_a_direct_loop() -> None:
    generator = small_source(resolution=16).build().eval()
    encoder = TinyEncoder(generator.num_ws, generator.w_dim)
    direction = torch.randn(generator.w_dim, generator=torch.Generator().manual_seed(2))
    images = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    latent_avg = generator.w_avg

    def encode(x):
        return encoder(x) + latent_avg

    def decode(ws):
        return generator.synthesis(ws, noise_mode="const")

    metric = LEC(encode, decode, lambda ws: ws + 3 * direction, lambda ws: ws - 3 * direction, image_size=16)
    for start in range(0, 12, 4):
        metric.update(images[start:start + 4])

    batch_means = []
    with torch.no_grad():
        for start in range(0, 12, 4):
            distances = []
            for x in images[start:start + 4]:
                code = encoder(x[None])[0] + latent_avg
                edited = generator.synthesis((code + 3 * direction)[None], noise_mode="const")
                back = encoder(edited)[0] + latent_avg - 3 * direction
                distances.append(float(torch.sqrt(((code.double() - back.double()) ** 2).sum())))
            batch_means.append(np.mean(distances))
    values = np.array(batch_means)
    low, high = np.percentile(values, [1, 99])
    expected = values[(values >= low) & (values <= high)].mean()
    assert abs(metric.compute().item() - expected) < 1e-4 * expected
    assert metric.summary()["num_batches"] == 3


def test_trimmed_mean_drops_outer_percentiles() -> None:
    values = torch.arange(101, dtype=torch.float64)
    values[-1] = 1e6
    assert trimmed_mean(values).item() == np.mean(np.arange(1, 100))


def test_two_batches_keep_both_rather_than_none() -> None:
    assert trimmed_mean(torch.tensor([1.0, 2.0])).item() == 1.5
