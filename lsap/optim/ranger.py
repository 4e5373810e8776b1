"""Lookahead wrapper and the Ranger optimiser (RAdam + Lookahead + gradient centralisation).

pSp and e4e train their encoders with Ranger (version 20.4.11): RAdam with betas (0.95, 0.999),
eps 6.1e-5 and its rectification threshold of 5, Lookahead with k = 6 and alpha = 0.5, and
gradient centralisation on every parameter with more than one dimension. The official LSAP_E
configuration uses it with lr 1e-4. ``torch.optim.RAdam`` implements the same RAdam update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer, RAdam
from torch.optim.optimizer import ParamsT

__all__ = ["Lookahead", "Ranger"]

_SLOW = "lookahead_slow"
_COUNT = "lookahead_step"


class Lookahead(Optimizer):
    """Lookahead (Zhang et al., 2019) around any inner ("fast") optimiser.

    Every ``k`` updates of a parameter by the inner optimiser, its slow copy moves a fraction
    ``alpha`` towards it and the parameter is reset to the slow copy. Slow copies start at the
    parameter's value before its first update.

    The wrapper shares ``param_groups`` and ``state`` with the inner optimiser, so LR schedulers
    act on the inner learning rates, and ``state_dict()`` / ``load_state_dict()`` carry the inner
    state together with the slow weights and the per-parameter counters. ``k`` and ``alpha`` live
    in each param group as ``lookahead_k`` / ``lookahead_alpha``.
    """

    def __init__(self, optimizer: Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"lookahead k must be an integer >= 1, got {k!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"lookahead alpha must be in [0, 1], got {alpha}")
        self._lookahead_defaults: dict[str, Any] = {"lookahead_k": k, "lookahead_alpha": alpha}
        # Registers the inner groups (the same dict objects), adding the lookahead keys to them.
        super().__init__(optimizer.param_groups, dict(self._lookahead_defaults))
        self.optimizer = optimizer
        self.defaults = {**optimizer.defaults, **self._lookahead_defaults}
        # One shared view: schedulers, checkpointing and the inner update all see the same objects.
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["optimizer"] = self.optimizer
        state["_lookahead_defaults"] = self._lookahead_defaults
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        inner = self.__dict__.get("optimizer")
        if inner is not None:
            # load_state_dict() builds fresh state/group objects; hand them to the inner optimiser
            # (its own __setstate__ also upgrades older state formats in place).
            inner.__setstate__({"state": self.state, "param_groups": self.param_groups})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        inner = self.__dict__.get("optimizer")
        if inner is None:  # called by Optimizer.__init__ while registering the inner groups
            super().add_param_group(param_group)
            return
        for key, value in self._lookahead_defaults.items():
            param_group.setdefault(key, value)
        inner.add_param_group(param_group)

    def _prepare_gradients(self) -> None:
        """Hook for subclasses to transform gradients before the inner update."""

    @torch.no_grad()
    def _lookahead_update(self, updated: list[tuple[Tensor, dict[str, Any], Tensor | None]]) -> None:
        for param, group, initial_value in updated:
            state = self.state[param]
            if initial_value is not None:
                state[_SLOW] = initial_value
                state[_COUNT] = 0
            state[_COUNT] += 1
            if state[_COUNT] % group["lookahead_k"] == 0:
                slow = state[_SLOW]
                slow.add_(param - slow, alpha=group["lookahead_alpha"])
                param.copy_(slow)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._prepare_gradients()
        updated: list[tuple[Tensor, dict[str, Any], Tensor | None]] = []
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                # The slow copy is stored only after the inner step: inner optimisers initialise
                # their own state lazily when a parameter's state is still empty.
                initial = None if _SLOW in self.state.get(param, {}) else param.detach().clone()
                updated.append((param, group, initial))
        self.optimizer.step()
        self._lookahead_update(updated)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)


class Ranger(Lookahead):
    """RAdam + Lookahead + gradient centralisation, as used to train pSp/e4e/LSAP encoders.

    Args:
        params: parameters or parameter groups to optimise.
        lr: learning rate (official LSAP_E: 1e-4).
        betas: RAdam moment coefficients.
        eps: RAdam denominator term (pSp/e4e's Ranger uses 6.1e-5).
        weight_decay: decoupled weight decay (p <- p - lr * weight_decay * p), as in Ranger.
        k: Lookahead synchronisation period, in updates.
        alpha: Lookahead slow-weight step size.
        gradient_centralization: subtract from the gradient of every parameter with more than one
            dimension its mean over all but the first (output) dimension, as pSp/e4e's Ranger does.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 6.1e-5,
        weight_decay: float = 0.0,
        k: int = 6,
        alpha: float = 0.5,
        gradient_centralization: bool = True,
    ) -> None:
        inner = RAdam(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=True,
        )
        super().__init__(inner, k=k, alpha=alpha)
        self._lookahead_defaults["gradient_centralization"] = gradient_centralization
        self.defaults["gradient_centralization"] = gradient_centralization
        for group in self.param_groups:
            group.setdefault("gradient_centralization", gradient_centralization)

    @torch.no_grad()
    def _prepare_gradients(self) -> None:
        for group in self.param_groups:
            if not group.get("gradient_centralization", False):
                continue
            for param in group["params"]:
                grad = param.grad
                if grad is None or grad.ndim <= 1:
                    continue
                grad.sub_(grad.mean(dim=tuple(range(1, grad.ndim)), keepdim=True))
