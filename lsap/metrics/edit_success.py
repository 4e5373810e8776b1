"""Attribute edit success, judged by a classifier.

For each code w, the classifier scores the decoded image before and after the edit
(``scores = classifier(decode(w))``, one column per attribute). An edit succeeds when the
target attribute's score moves the intended way (``sign``). Reported: the success rate,
the mean signed change of the target score, and the mean absolute change of every other
attribute (what the edit should leave alone; lower is better).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torchmetrics import Metric

__all__ = ["EditSuccess", "edit_score_changes"]


@torch.no_grad()
def edit_score_changes(ws: Tensor, decode: Callable[[Tensor], Tensor], edit: Callable[[Tensor], Tensor],
                       classifier: nn.Module) -> Tensor:
    """Classifier score changes ``[B, num_attributes]`` (float64) caused by the edit."""
    before = classifier(decode(ws)).double()
    after = classifier(decode(edit(ws))).double()
    if before.ndim != 2:
        raise ValueError(f"the classifier must return scores [B, num_attributes], got {tuple(before.shape)}")
    return after - before


class EditSuccess(Metric):
    """Fraction of edits that move the classifier's target score the intended way.

    ``compute()`` is the success rate; :meth:`summary` adds the mean target change and the
    mean absolute change of the other attributes. All states are float64 sums.

    Args:
        decode: W / W+ codes -> images the classifier takes.
        edit: the edit, ``ws -> ws``.
        classifier: images -> scores ``[B, num_attributes]`` (logits or probabilities).
        attribute: column of the attribute the edit should change.
        sign: +1 if the edit should raise that score, -1 if it should lower it.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, decode: Callable[[Tensor], Tensor], edit: Callable[[Tensor], Tensor], classifier: nn.Module,
                 attribute: int, sign: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {sign}")
        self.decode, self.edit, self.classifier = decode, edit, classifier
        self.attribute, self.sign = attribute, sign
        for name in ("successes", "target_change", "others_change", "num_edits", "num_others"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def accumulate(self, changes: Tensor) -> None:
        changes = changes.to(self.successes.device)
        target = changes[:, self.attribute]
        others = torch.cat([changes[:, :self.attribute], changes[:, self.attribute + 1:]], dim=1)
        self.successes += (self.sign * target > 0).sum()
        self.target_change += target.sum()
        self.others_change += others.abs().sum()
        self.num_edits += changes.shape[0]
        self.num_others += others.numel()

    def update(self, ws: Tensor) -> None:
        self.accumulate(edit_score_changes(ws, self.decode, self.edit, self.classifier))

    def compute(self) -> Tensor:
        return self.successes / self.num_edits

    def summary(self) -> dict[str, float | int]:
        with self.sync_context(should_sync=self.sync_on_compute):
            others = self.others_change / self.num_others if self.num_others > 0 else torch.tensor(float("nan"))
            return {"success_rate": float(self.successes / self.num_edits),
                    "mean_target_change": float(self.target_change / self.num_edits),
                    "mean_abs_other_change": float(others), "count": int(self.num_edits)}
