"""bench/bench_generator.py's 'convolutions alone' row replays exactly the generator's convolutions."""

from __future__ import annotations

import torch

from lsap.model import Generator
from conftest import load_bench_script


def test_convolution_floor_counts_the_modulated_convolutions():
    torch.manual_seed(0)
    g = Generator(resolution=16, z_dim=8, w_dim=8, mapping_layers=1, channel_max=16, fused_modconv=False)
    batch = 2
    ws = torch.randn(batch, g.num_ws, g.w_dim, requires_grad=True)
    result = load_bench_script("bench_generator")._convolution_floor(g.synthesis, ws, iters=1)
    assert result["s"] > 0 and result["gemm_gflops"] > 0

    # Independent count: every modulated conv (3x3, up or not) and ToRGB (1x1) is one call
    # whose input and weight both need gradients: 3 passes of 2*B*O*I*k*k MACs per pixel of
    # the low-resolution side (the output, or the input of an up-sampling transposed conv).
    expected, shapes = [], []
    for module in g.modules():
        if hasattr(module, "weight_gain") and module.weight.ndim == 4:
            o, i, k, _ = module.weight.shape
            up = getattr(module, "up", False)
            pixels = (module.resolution // 2) ** 2 if up else module.resolution ** 2
            expected.append(3 * 2 * batch * o * i * k * k * pixels)
            shapes.append([i, o, k, k] if up else [o, i, k, k])
    modulated = [flops for _, w_shape, _, flops in result["calls"] if w_shape in shapes]
    assert sorted(modulated) == sorted(expected)
    # The rest are the FIR filter passes (fixed filters: no weight gradient, depthwise).
    fir = [c for c in result["calls"] if c[1] not in shapes]
    assert fir and all(w_shape[1] == 1 for _, w_shape, _, _ in fir)
    assert result["convolutions"] == len(result["calls"]) == len(expected) + len(fir)
    assert abs(result["conv_gflop"] * 1e9 - sum(c[3] for c in result["calls"])) < 1
