"""InterFaceGAN boundaries: a linear classifier on (code, label) pairs, its unit normal.

Labels are binary, or scores from which the highest and lowest ``chosen_ratio`` of the
codes become positives and negatives (as InterFaceGAN does). The fit is a linear SVM
(squared hinge loss) or a logistic regression with an L2 penalty, solved full-batch by
L-BFGS in torch on a standardised copy of the data; ``accuracy`` is measured on a seeded
held-out split.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import torch
from torch import Tensor, nn

from lsap.model.sampling import sample_z
from lsap.editing.directions import Direction

__all__ = ["Boundary", "fit_boundary", "load_classifier", "project_out", "read_labels", "sample_scored_codes"]

FitMethod = Literal["svm", "logistic"]


@dataclass(eq=False)
class Boundary:
    normal: Tensor  # [w_dim], unit
    bias: float  # the hyperplane is normal . w + bias = 0 (in the original units)
    accuracy: float | None  # on the held-out pairs
    train_accuracy: float
    num_train: int
    num_test: int

    def direction(self, name: str = "interfacegan", generator_hash: str | None = None,
                  meta: Mapping[str, Any] | None = None) -> Direction:
        return Direction(self.normal.clone(), name=name, generator_hash=generator_hash,
                         meta={"method": "interfacegan", "accuracy": self.accuracy,
                               "train_accuracy": self.train_accuracy, "num_train": self.num_train,
                               "num_test": self.num_test, **(meta or {})})


def project_out(direction: Tensor, *conditions: Tensor) -> Tensor:
    """InterFaceGAN's conditional editing: the unit component of ``direction`` orthogonal to
    every condition direction (so moving along it leaves those attributes' scores unchanged)."""
    n = direction.double().reshape(-1)
    if conditions:
        basis, _ = torch.linalg.qr(torch.stack([c.double().reshape(-1) for c in conditions], dim=1))
        n = n - basis @ (basis.T @ n)
    norm = n.norm()
    if norm < 1e-8:
        raise ValueError("the direction lies in the span of the conditions: nothing is left after projecting them out")
    return (n / norm).to(direction.dtype).reshape(direction.shape)


def _binarise(labels: Tensor, chosen_ratio: float) -> tuple[Tensor, Tensor]:
    """(positions, 0/1 labels) of the codes used for fitting."""
    unique = torch.unique(labels)
    if unique.numel() <= 2 and bool(((unique == 0) | (unique == 1)).all()):
        return torch.arange(labels.numel()), labels.float()
    if not 0 < chosen_ratio <= 0.5:
        raise ValueError(f"chosen_ratio must be in (0, 0.5], got {chosen_ratio}")
    k = max(1, int(labels.numel() * chosen_ratio))
    order = labels.argsort(descending=True)
    pos, neg = order[:k], order[-k:]
    return torch.cat([pos, neg]), torch.cat([torch.ones(k), torch.zeros(k)])


def fit_boundary(codes: Tensor, labels: Tensor, method: FitMethod = "svm", test_fraction: float = 0.3,
                 chosen_ratio: float = 0.02, regularization: float = 1e-3, seed: int = 0,
                 max_iter: int = 200) -> Boundary:
    """Fit a linear boundary separating labelled codes ``[N, w_dim]`` (W+ codes ``[N, num_ws,
    w_dim]`` are averaged over their entries) and return its unit normal (pointing to the
    positive side) and held-out accuracy."""
    if codes.ndim == 3:
        codes = codes.mean(dim=1)
    if codes.ndim != 2 or labels.shape != (codes.shape[0],):
        raise ValueError(f"codes must be [N, w_dim] with one label each, got {tuple(codes.shape)} and "
                         f"{tuple(labels.shape)}")
    keep, y = _binarise(labels.double().cpu(), chosen_ratio)
    x = codes.double().cpu()[keep]
    if y.min() == y.max():
        raise ValueError("all labels are equal: a boundary needs both classes")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    num_test = int(round(len(y) * test_fraction)) if len(y) > 2 else 0
    test, train = order[:num_test], order[num_test:]
    mean, scale = x[train].mean(0), x[train].std(0).clamp_min(1e-8)
    xs = (x - mean) / scale
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    signs = y[train].double() * 2 - 1
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure() -> Tensor:
        optimizer.zero_grad()
        margin = signs * (xs[train] @ weight + bias)
        if method == "svm":
            data = torch.clamp(1 - margin, min=0).square().mean()
        elif method == "logistic":
            data = nn.functional.softplus(-margin).mean()
        else:
            raise ValueError(f"method must be 'svm' or 'logistic', got {method!r}")
        loss = data + 0.5 * regularization * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    w_orig = weight.detach() / scale  # back to the codes' own units
    b_orig = float(bias.detach() - (w_orig * mean).sum())
    norm = float(w_orig.norm())
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("the fit found no boundary (zero or non-finite normal)")

    def accuracy(idx: Tensor) -> float | None:
        if idx.numel() == 0:
            return None
        predicted = (x[idx] @ w_orig + b_orig > 0).double()
        return float((predicted == y[idx]).double().mean())

    return Boundary(normal=(w_orig / norm).float(), bias=b_orig / norm, accuracy=accuracy(test),
                    train_accuracy=float(accuracy(train)), num_train=int(train.numel()), num_test=int(num_test))


def read_labels(path: str | os.PathLike[str], column: str | None = None) -> dict[str, float]:
    """Image name -> label or score from a JSON object or a CSV (``name`` column, or the first,
    and ``column`` or the second). Names are matched without their extension."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"labels file not found: '{file}'")
    if file.suffix == ".json":
        data = json.loads(file.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"'{file}' must hold a JSON object of name -> label")
        items = data.items()
    else:
        with file.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise ValueError(f"'{file}' is empty")
        header = rows[0]
        has_header = not _is_number(header[-1])
        name_col = header.index("name") if has_header and "name" in header else 0
        value_col = header.index(column) if has_header and column in header else (1 if name_col == 0 else 0)
        items = [(r[name_col], r[value_col]) for r in rows[int(has_header):] if r]
    labels = {}
    for name, value in items:
        if not _is_number(value):
            raise ValueError(f"'{file}': label of '{name}' is not a number: {value!r}")
        labels[str(Path(str(name)).with_suffix("")).replace(os.sep, "/")] = float(value)
    if not labels:
        raise ValueError(f"'{file}' holds no labels")
    return labels


def _is_number(text: Any) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def load_classifier(spec: str, **kwargs: Any) -> Callable[[Tensor], Tensor]:
    """The user's classifier ``pkg.mod:ClassOrFactory``: imported (this runs the user's own code,
    by their explicit request) and called with ``kwargs`` to build it. It takes images
    ``[B, C, H, W]`` in [-1, 1] and returns scores ``[B]`` (or ``[B, K]``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"classifier must look like 'package.module:ClassOrFactory', got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attribute)
    classifier = factory(**kwargs)
    if isinstance(classifier, nn.Module):
        classifier.eval()
    return classifier


@torch.no_grad()
def sample_scored_codes(generator: nn.Module, classifier: Callable[[Tensor], Tensor], num_samples: int,
                        seed: int = 0, batch_size: int = 64, score_index: int | None = None,
                        all_scores: bool = False) -> tuple[Tensor, Tensor]:
    """``(w [N, w_dim], scores)``: seeded samples of w (lsap's z stream, no truncation) and the
    classifier's scores of their images (constant noise, clamped to [-1, 1] as a viewer sees
    them). ``scores`` is ``[N]`` (column ``score_index``, default 0, of a 2-D output) or, with
    ``all_scores``, every column ``[N, K]``."""
    ref = next(iter(generator.parameters()))
    codes, scores = [], []
    for z in sample_z(num_samples, int(generator.z_dim), seed, batch_size):
        w = generator.mapping(z.to(device=ref.device, dtype=ref.dtype))
        score = torch.as_tensor(classifier(generator.synthesis(w, noise_mode="const").clamp(-1, 1)))
        if score.ndim == 2 and not all_scores:
            score = score[:, score_index or 0]
        codes.append(w.cpu())
        scores.append((score if all_scores else score.reshape(-1)).float().cpu())
    return torch.cat(codes), torch.cat(scores)

