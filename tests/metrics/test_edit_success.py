"""Edit success against a direct per-image count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lsap.metrics.edit_success import EditSuccess


def test_edit_success_matches_a_direct_count() -> None:
    g = torch.Generator().manual_seed(0)
    w_dim, attributes = 8, 3
    decoder = torch.randn(w_dim, 12, generator=g)
    classifier = nn.Linear(12, attributes)
    direction = torch.randn(w_dim, generator=g)
    ws = torch.randn(10, w_dim, generator=g)

    def decode(w):
        return torch.tanh(w @ decoder)

    metric = EditSuccess(decode, lambda w: w + 0.5 * direction, classifier, attribute=1, sign=-1)
    metric.update(ws[:4])
    metric.update(ws[4:])
    successes, target, others = 0, 0.0, []
    with torch.no_grad():
        for w in ws:
            change = classifier(decode(w + 0.5 * direction)) - classifier(decode(w))
            successes += int(change[1] < 0)
            target += float(change[1])
            others += [abs(float(change[0])), abs(float(change[2]))]
    summary = metric.summary()
    assert summary["success_rate"] == successes / 10
    assert summary["mean_target_change"] == pytest.approx(target / 10, rel=1e-5)
    assert summary["mean_abs_other_change"] == pytest.approx(sum(others) / len(others), rel=1e-5)
    assert 0 < successes < 10  # the case is not degenerate
