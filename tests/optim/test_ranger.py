"""Tests for the Lookahead wrapper and the Ranger optimiser."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import pytest
import torch

from lsap.optim import Lookahead, Ranger


def _quadratic_step(optimizer: torch.optim.Optimizer, param: torch.Tensor, target: torch.Tensor) -> None:
    optimizer.zero_grad()
    (param - target).square().sum().backward()
    optimizer.step()


def test_defaults_follow_the_official_configuration() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = Ranger([param])
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.95, 0.999) and group["eps"] == 6.1e-5
    assert group["lookahead_k"] == 6 and group["lookahead_alpha"] == 0.5
    assert group["gradient_centralization"] is True
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert isinstance(optimizer.optimizer, torch.optim.RAdam)
    assert optimizer.param_groups is optimizer.optimizer.param_groups


def test_minimises_a_quadratic() -> None:
    torch.manual_seed(0)
    target = torch.randn(8) * 3
    param = torch.nn.Parameter(torch.zeros(8))
    optimizer = Ranger([param], lr=0.1)
    for _ in range(1000):
        _quadratic_step(optimizer, param, target)
    torch.testing.assert_close(param.detach(), target, atol=1e-4, rtol=0)


def test_lookahead_synchronises_every_k_steps() -> None:
    # A linear loss has a constant gradient, so RAdam's moments do not depend on the parameter
    # values and the fast trajectory of Ranger is RAdam's, restarted from the slow weights.
    k, alpha = 3, 0.25
    slope = torch.tensor([1.0, -2.0, 0.5])
    start = torch.tensor([0.3, -0.1, 2.0])
    ranger_param = torch.nn.Parameter(start.clone())
    radam_param = torch.nn.Parameter(start.clone())
    ranger = Ranger([ranger_param], lr=0.1, k=k, alpha=alpha)
    radam = torch.optim.RAdam([radam_param], lr=0.1, betas=(0.95, 0.999), eps=6.1e-5)
    slow = start.clone()
    radam_at_sync = start.clone()
    for step in range(1, 4 * k + 1):
        for optimizer, param in ((ranger, ranger_param), (radam, radam_param)):
            optimizer.zero_grad()
            (param * slope).sum().backward()
            optimizer.step()
        fast = slow + (radam_param.detach() - radam_at_sync)
        if step % k == 0:
            slow = slow + alpha * (fast - slow)
            radam_at_sync = radam_param.detach().clone()
            torch.testing.assert_close(ranger_param.detach(), slow)
            torch.testing.assert_close(ranger.state[ranger_param]["lookahead_slow"], slow)
        else:
            torch.testing.assert_close(ranger_param.detach(), fast)
    assert not torch.allclose(ranger_param.detach(), radam_param.detach())


def test_gradient_centralisation_applies_to_matrices_only() -> None:
    torch.manual_seed(1)
    target = torch.randn(4, 5)
    for centralise in (True, False):
        matrix = torch.nn.Parameter(torch.zeros(4, 5))
        vector = torch.nn.Parameter(torch.zeros(5))
        optimizer = Ranger([matrix, vector], lr=0.05, gradient_centralization=centralise)
        optimizer.zero_grad()
        ((matrix - target).square().sum() + (vector - target[0]).square().sum()).backward()
        raw_matrix_grad = 2 * (matrix.detach() - target)
        optimizer.step()
        # The first moment after one step is (1 - beta1) times the gradient RAdam was given.
        seen_matrix_grad = optimizer.state[matrix]["exp_avg"] / 0.05
        seen_vector_grad = optimizer.state[vector]["exp_avg"] / 0.05
        torch.testing.assert_close(seen_vector_grad, 2 * (vector.detach().new_zeros(5) - target[0]))
        if centralise:
            expected = raw_matrix_grad - raw_matrix_grad.mean(dim=1, keepdim=True)
        else:
            expected = raw_matrix_grad
        torch.testing.assert_close(seen_matrix_grad, expected)


def _model_and_data() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    return model, torch.randn(16, 4), torch.randn(16, 2)


def _train(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int
) -> list[list[torch.Tensor]]:
    trajectory = []
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        trajectory.append([p.detach().clone() for p in model.parameters()])
    return trajectory


def test_state_dict_round_trip_reproduces_the_trajectory() -> None:
    model, x, y = _model_and_data()
    optimizer = Ranger(model.parameters(), lr=0.01, k=4)
    _train(model, optimizer, x, y, steps=6)  # mid-cycle: the step counters matter
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    saved_state = optimizer.state_dict()["state"]
    assert all("lookahead_slow" in entry and "exp_avg" in entry for entry in saved_state.values())

    reference = _train(model, optimizer, x, y, steps=9)

    buffer.seek(0)
    checkpoint = torch.load(buffer, map_location="cpu", weights_only=True)
    restored_model, _, _ = _model_and_data()
    restored_model.load_state_dict(checkpoint["model"])
    restored = Ranger(restored_model.parameters(), lr=0.01, k=4)
    restored.load_state_dict(checkpoint["optimizer"])
    assert restored.param_groups is restored.optimizer.param_groups
    assert restored.state is restored.optimizer.state
    replay = _train(restored_model, restored, x, y, steps=9)
    for expected, actual in zip(reference, replay, strict=True):
        for expected_tensor, actual_tensor in zip(expected, actual, strict=True):
            assert torch.equal(expected_tensor, actual_tensor)


def test_losing_the_slow_weights_changes_the_trajectory() -> None:
    # Guards the round-trip test: the slow weights really influence what follows.
    model, x, y = _model_and_data()
    optimizer = Ranger(model.parameters(), lr=0.01, k=4)
    _train(model, optimizer, x, y, steps=6)
    state = optimizer.state_dict()
    # deepcopy both together so that the copied optimiser holds the copied model's parameters.
    reference_model, reference_optimizer = copy.deepcopy((model, optimizer))
    reference = _train(reference_model, reference_optimizer, x, y, steps=3)
    for entry in state["state"].values():
        entry["lookahead_slow"] = entry["lookahead_slow"] + 0.1
    damaged_model = copy.deepcopy(model)
    damaged = Ranger(damaged_model.parameters(), lr=0.01, k=4)
    damaged.load_state_dict(state)
    replay = _train(damaged_model, damaged, x, y, steps=3)
    assert torch.equal(reference[0][0], replay[0][0])  # before the next synchronisation
    assert not torch.equal(reference[-1][0], replay[-1][0])  # after it


def test_works_with_a_learning_rate_scheduler() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = Ranger([param], lr=0.1, k=100, gradient_centralization=False)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for _ in range(3):
            _quadratic_step(optimizer, param, torch.full((3,), 10.0))
            scheduler.step()
    assert optimizer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert scheduler.get_last_lr() == [pytest.approx(1e-4)]
    # The scheduled learning rate is the one the inner update uses: a zero rate freezes the parameter.
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    before = param.detach().clone()
    _quadratic_step(optimizer, param, torch.full((3,), 10.0))
    assert torch.equal(param.detach(), before)


def test_closure_add_param_group_and_validation() -> None:
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = Ranger([param], lr=0.1, k=2)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = param.square().sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == pytest.approx(2.0)
    assert param.detach().max() < 1.0

    extra = torch.nn.Parameter(torch.ones(2))
    optimizer.add_param_group({"params": [extra], "lr": 0.2})
    assert len(optimizer.optimizer.param_groups) == 2
    new_group = optimizer.param_groups[1]
    assert new_group["lookahead_k"] == 2 and new_group["betas"] == (0.95, 0.999)
    optimizer.zero_grad()
    (param.square().sum() + extra.square().sum()).backward()
    optimizer.step()
    assert extra.detach().max() < 1.0 and "lookahead_slow" in optimizer.state[extra]

    with pytest.raises(ValueError, match="k"):
        Ranger([torch.nn.Parameter(torch.zeros(1))], k=0)
    with pytest.raises(ValueError, match="alpha"):
        Ranger([torch.nn.Parameter(torch.zeros(1))], alpha=1.5)
    with pytest.raises(TypeError, match="Optimizer"):
        Lookahead(object())  # type: ignore[arg-type]


def test_lookahead_wraps_other_optimisers() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = Lookahead(torch.optim.SGD([param], lr=0.5), k=2, alpha=0.5)

    def sgd_step() -> None:
        optimizer.zero_grad()
        (-param.sum()).backward()  # constant gradient -1: each fast step adds 0.5
        optimizer.step()

    sgd_step()
    torch.testing.assert_close(param.detach(), torch.full((2,), 0.5))
    sgd_step()  # fast weights reach 1.0, then synchronise to 0 + 0.5 * (1.0 - 0) = 0.5
    torch.testing.assert_close(param.detach(), torch.full((2,), 0.5))
    sgd_step()
    torch.testing.assert_close(param.detach(), torch.full((2,), 1.0))


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_lightning_resume_reproduces_uninterrupted_training(tmp_path: Path) -> None:
    lightning = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Regression(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

        def training_step(self, batch, batch_index):
            inputs, targets = batch
            return torch.nn.functional.mse_loss(self.net(inputs), targets)

        def configure_optimizers(self):
            optimizer = Ranger(self.parameters(), lr=0.01)  # k = 6: a 10-step epoch ends mid-cycle
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    generator = torch.Generator().manual_seed(1)
    inputs, targets = torch.randn(40, 4, generator=generator), torch.randn(40, 2, generator=generator)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=4)
    options = dict(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, max_epochs=3
    )

    uninterrupted = Regression()
    checkpoints = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1)
    lightning.Trainer(callbacks=[checkpoints], **options).fit(uninterrupted, loader)
    resumed = Regression()
    trainer = lightning.Trainer(enable_checkpointing=False, **options)
    trainer.fit(resumed, loader, ckpt_path=str(tmp_path / "epoch=0-step=10.ckpt"))
    assert isinstance(trainer.optimizers[0], Ranger)
    for expected, actual in zip(uninterrupted.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(expected, actual)
