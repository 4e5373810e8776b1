"""Fidelity metrics against hand formulas, conventions, and accumulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lsap.metrics.fidelity import MSE, PSNR, SSIM, MSSSIM, PerImageMetric, prepare_pair, quantize_uint8, ssim_per_image


def pair(batch: int = 3, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    pred = (target + 0.2 * torch.randn(batch, 3, size, size, generator=g)).clamp(-1, 1)
    return pred, target


def hand_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """SSIM with an 11-tap Gaussian window (sigma 1.5) on images reflection-padded by 5 pixels
    (torchmetrics' border handling), averaged over the whole image and the channels."""
    k = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    k /= k.sum()
    window = np.outer(k, k)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def filt(a: np.ndarray) -> np.ndarray:
        h, w = a.shape
        out = np.empty((h - 10, w - 10))
        for i in range(h - 10):
            for j in range(w - 10):
                out[i, j] = (a[i:i + 11, j:j + 11] * window).sum()
        return out

    values = []
    for c in range(x.shape[0]):
        a, b = np.pad(x[c], 5, mode="reflect"), np.pad(y[c], 5, mode="reflect")
        mu_a, mu_b = filt(a), filt(b)
        var_a = filt(a * a) - mu_a ** 2
        var_b = filt(b * b) - mu_b ** 2
        cov = filt(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        values.append(s.mean())
    return float(np.mean(values))


def test_mse_and_psnr_match_hand_formula() -> None:
    pred, target = pair()
    mse, psnr = MSE(), PSNR()
    mse.update(pred, target)
    psnr.update(pred, target)
    per = [float(((p.double() - t.double()) ** 2).mean()) for p, t in zip(pred, target)]
    assert mse.compute().item() == pytest.approx(np.mean(per), rel=1e-12)
    assert mse.summary()["std"] == pytest.approx(np.std(per), rel=1e-9)
    assert psnr.compute().item() == pytest.approx(np.mean([10 * math.log10(4 / m) for m in per]), rel=1e-12)


def test_ganinverter_psnr_is_3db_lower_on_quantised_256() -> None:
    pred, target = pair(size=256)
    default, gi = PSNR(), PSNR(convention="ganinverter")
    qp, qt = quantize_uint8(pred), quantize_uint8(target)
    default.update(qp, qt)
    gi.update(pred, target)
    assert default.compute().item() - gi.compute().item() == pytest.approx(10 * math.log10(2), abs=1e-9)


def test_ganinverter_resizes_to_256_and_quantises() -> None:
    pred, target = pair(size=32)
    p, t = prepare_pair(pred, target, "ganinverter")
    assert p.shape[-1] == 256 and t.shape[-1] == 256
    assert torch.equal(quantize_uint8(p), p)
    levels = (p + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_ssim_matches_hand_formula() -> None:
    pred, target = pair(batch=2, size=20)
    got = ssim_per_image(pred, target)
    for i in range(2):
        assert got[i].item() == pytest.approx(hand_ssim(pred[i].double().numpy(), target[i].double().numpy()),
                                              abs=1e-6)
    assert ssim_per_image(target, target).sub(1).abs().max() < 1e-9


def test_msssim_refuses_small_images_and_is_one_for_identical() -> None:
    pred, target = pair(batch=1, size=32)
    with pytest.raises(ValueError, match="at least 161"):
        MSSSIM().update(pred, target)
    _, big = pair(batch=1, size=176)
    metric = MSSSIM()
    metric.update(big, big)
    assert metric.compute().item() == pytest.approx(1.0, abs=1e-6)


def test_nonfinite_values_are_counted_not_averaged() -> None:
    pred, target = pair(batch=2)
    metric = PSNR()
    metric.update(torch.cat([pred, target[:1]]), torch.cat([target, target[:1]]))
    summary = metric.summary()
    assert summary["count"] == 2 and summary["nonfinite"] == 1
    assert math.isfinite(summary["mean"])


def test_split_batches_equal_one_batch() -> None:
    pred, target = pair(batch=5)
    whole, split = SSIM(), SSIM()
    whole.update(pred, target)
    split.update(pred[:2], target[:2])
    split.update(pred[2:], target[2:])
    assert whole.summary() == pytest.approx(split.summary(), rel=1e-12)


def test_is_a_per_image_metric() -> None:
    assert issubclass(MSE, PerImageMetric)
