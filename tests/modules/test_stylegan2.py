"""StyleGAN2 training module: losses, lazy regularisation, EMA, mixing, resume, DDP."""

from __future__ import annotations

import copy
import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lsap.model import Discriminator, Generator, load_generator
from lsap.modules import StyleGAN2
from lsap.modules.stylegan2 import AdamConfig, EmaConfig, RegularizationConfig, adam_hparams, ema_beta, real_images

RES = 16


def make_module(**kwargs) -> StyleGAN2:
    torch.manual_seed(0)
    g = Generator(resolution=RES, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=16)
    d = Discriminator(resolution=RES, channel_base=256, channel_max=16)
    kwargs.setdefault("regularization", RegularizationConfig(r1_gamma=1.0, r1_interval=2))
    return StyleGAN2(g, d, **kwargs)


def loader(n: int = 16, batch: int = 4) -> DataLoader:
    real = torch.rand(n, 3, RES, RES, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return DataLoader(TensorDataset(real), batch_size=batch)


def trainer(tmp_path: Path, max_steps: int, callbacks=()) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks))


def test_lazy_regularisation_corrects_lr_and_betas() -> None:
    lr, betas = adam_hparams(0.002, 0.0, 0.99, 16)
    c = 16 / 17
    assert lr == pytest.approx(0.002 * c) and betas == pytest.approx((0.0, 0.99**c))
    assert adam_hparams(0.002, 0.5, 0.99, None) == (0.002, (0.5, 0.99))
    module = make_module(adam=AdamConfig(g_lr=0.001, d_lr=0.003),
                         regularization=RegularizationConfig(r1_gamma=1, r1_interval=4, pl_weight=2, pl_interval=8))
    opt_g, opt_d = module.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.001 * 8 / 9)
    assert opt_g.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (8 / 9))
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.003 * 4 / 5)
    assert opt_d.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    # Without the penalty there is nothing to correct.
    opt_g, _ = make_module(regularization=RegularizationConfig(r1_gamma=1, pl_weight=0)).configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.0025)


def test_ema_beta_half_life_and_ramp() -> None:
    cfg = EmaConfig(half_life_images=1000, ramp=None)
    assert ema_beta(1000, 0, cfg) == pytest.approx(0.5)
    assert ema_beta(32, 0, cfg) ** (1000 / 32) == pytest.approx(0.5)
    ramped = EmaConfig(half_life_images=1000, ramp=0.1)
    assert ema_beta(10, 100, ramped) == pytest.approx(0.5)  # half-life min(1000, 0.1 * 100) = 10
    assert ema_beta(10, 1e6, ramped) == pytest.approx(0.5 ** (10 / 1000))


def test_update_ema_formula() -> None:
    module = make_module(ema=EmaConfig(half_life_images=8, ramp=None))
    with torch.no_grad():
        for p in module.generator.parameters():
            p.add_(torch.randn_like(p))
        module.generator.mapping_network.w_avg.fill_(3.0)
    before = copy.deepcopy(module.generator_ema.state_dict())
    beta = module.update_ema(4)
    assert beta == pytest.approx(0.5 ** 0.5)
    for name, p in module.generator.named_parameters():
        expected = p + beta * (before[name] - p)
        assert torch.allclose(module.generator_ema.get_parameter(name), expected, atol=1e-6)
    assert torch.all(module.generator_ema.w_avg == 3.0)


def test_r1_equals_direct_autograd() -> None:
    module = make_module()
    real = torch.randn(5, 3, RES, RES)
    penalty, _ = module.r1_penalty(real)
    x = real.clone().requires_grad_(True)
    out = module.discriminator(x)
    direct = []
    for i in range(5):  # one sample at a time: an independent computation
        (g,) = torch.autograd.grad(out[i, 0], x, retain_graph=True)
        direct.append(g[i].square().sum())
    assert torch.allclose(penalty, torch.stack(direct), rtol=1e-4)
    # It is differentiable with respect to D's weights (create_graph).
    penalty.sum().backward()
    assert module.discriminator.from_rgb.weight.grad is not None


def test_style_mixing_uses_two_codes() -> None:
    module = make_module(style_mixing_prob=1.0)
    module._rng = torch.Generator().manual_seed(3)
    ws = module.mixed_ws(4)
    num_ws = module.generator.num_ws
    changes = [i for i in range(1, num_ws) if not torch.equal(ws[:, i], ws[:, i - 1])]
    assert len(changes) == 1, "exactly one cutoff"
    cutoff = changes[0]
    assert torch.all(ws[:, :cutoff] == ws[:, :1]) and torch.all(ws[:, cutoff:] == ws[:, cutoff:cutoff + 1])
    module = make_module(style_mixing_prob=0.0)
    module._rng = torch.Generator().manual_seed(3)
    ws = module.mixed_ws(4)
    assert torch.all(ws == ws[:, :1])


def test_batches_of_any_layout() -> None:
    x = torch.zeros(2, 3, 4, 4)
    assert real_images(x) is x and real_images((x, torch.zeros(2))) is x and real_images({"image": x}) is x
    with pytest.raises(TypeError, match="image"):
        real_images({"img": x})


def test_one_step_changes_g_and_d_and_ema_follows_the_rule(tmp_path: Path) -> None:
    module = make_module(ema=EmaConfig(half_life_images=20, ramp=None))
    g0 = copy.deepcopy(module.generator.state_dict())
    d0 = copy.deepcopy(module.discriminator.state_dict())
    ema0 = copy.deepcopy(module.generator_ema.state_dict())
    trainer(tmp_path, 1).fit(module, loader())
    assert int(module.images_seen) == 4
    g1, d1 = module.generator.state_dict(), module.discriminator.state_dict()
    assert any(not torch.equal(g0[k], g1[k]) for k in g0), "G trained"
    assert any(not torch.equal(d0[k], d1[k]) for k in d0), "D trained"
    beta = 0.5 ** (4 / 20)
    for name, _ in module.generator.named_parameters():
        expected = g1[name] + beta * (ema0[name] - g1[name])
        assert torch.allclose(module.generator_ema.state_dict()[name], expected, atol=1e-6), name
    assert torch.equal(module.generator_ema.w_avg, module.generator.w_avg)


def test_penalties_run_at_their_intervals(tmp_path: Path) -> None:
    module = make_module(regularization=RegularizationConfig(r1_gamma=1, r1_interval=3, pl_weight=1, pl_interval=2))
    calls = {"r1": [], "pl": []}
    r1, pl = module.r1_penalty, module.path_length_penalty

    def count_r1(real):
        calls["r1"].append(int(module.images_seen) // 4)  # the step being run
        return r1(real)

    def count_pl(n):
        calls["pl"].append(int(module.images_seen) // 4)
        return pl(n)

    module.r1_penalty, module.path_length_penalty = count_r1, count_pl
    trainer(tmp_path, 4).fit(module, loader())
    assert calls == {"r1": [0, 3], "pl": [0, 2]}
    assert float(module.pl_mean) > 0


class _Snapshot(Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.images = int(pl_module.images_seen)
        self.opt_states = [copy.deepcopy(o.state_dict()) for o in trainer.optimizers]
        self.ema = copy.deepcopy(pl_module.generator_ema.state_dict())


def test_resume_restores_counters_optimisers_and_ema(tmp_path: Path) -> None:
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=2, save_last=True)
    first = make_module()
    trainer(tmp_path, 2, [ckpt_cb]).fit(first, loader())
    saved = torch.load(tmp_path / "ck" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2

    snap = _Snapshot()
    resumed = make_module()
    t = trainer(tmp_path, 3, [snap])
    t.fit(resumed, loader(), ckpt_path=tmp_path / "ck" / "last.ckpt")
    assert snap.step == 2 and snap.images == 8
    for got, want in zip(snap.opt_states, saved["optimizer_states"]):
        assert got["param_groups"][0]["lr"] == want["param_groups"][0]["lr"]
        for key, state in want["state"].items():
            for name in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(got["state"][key][name], state[name]), name
    for name, value in snap.ema.items():
        assert torch.equal(value, first.generator_ema.state_dict()[name]), name
    assert t.global_step == 3 and int(resumed.images_seen) == 12


def test_latents_depend_only_on_the_step() -> None:
    a, b = make_module(), make_module()
    a._rng = torch.Generator().manual_seed(a._step_seed(5))
    b._rng = torch.Generator().manual_seed(b._step_seed(5))
    assert torch.equal(a._latents(3), b._latents(3))
    assert a._step_seed(5) != a._step_seed(6)


def test_convert_exports_g_ema(tmp_path: Path) -> None:
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    module = make_module()
    trainer(tmp_path, 2, [ckpt_cb]).fit(module, loader())
    from lsap.convert import convert

    out = convert(str(tmp_path / "ck" / "last.ckpt"), str(tmp_path / "g.safetensors"))
    g = load_generator(out)
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.allclose(g(z), module.generator_ema.eval()(z), atol=1e-6)


def _write_fake_fashion(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (count, 28, 28)),
             "train-labels-idx1-ubyte.gz": np.arange(count) % 10,
             "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (4, 28, 28)),
             "t10k-labels-idx1-ubyte.gz": np.arange(4)}
    root.mkdir(parents=True, exist_ok=True)
    for name, array in files.items():
        header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        with gzip.open(root / name, "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())


TINY_CONFIG = """
seed_everything: 0
trainer:
  accelerator: cpu
  max_steps: 2
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{save_last: true, every_n_train_steps: 1}}
model:
  class_path: lsap.modules.StyleGAN2
  init_args:
    generator:
      class_path: lsap.model.Generator
      init_args: {{resolution: 32, z_dim: 16, w_dim: 16, mapping_layers: 1, channel_base: 128, channel_max: 8}}
    discriminator:
      class_path: lsap.model.Discriminator
      init_args: {{resolution: 32, channel_base: 128, channel_max: 8}}
    regularization: {{r1_gamma: 0.1, r1_interval: 2}}
    augment: {{policy: [translation, cutout, color], probability: 0.5, adaptive: true, adjust_interval: 1}}
data:
  class_path: lsap.data.FashionMNISTDataModule
  init_args: {{root: {root}, batch_size: 4}}
"""


@pytest.mark.slow
def test_two_process_ddp_fit_from_the_cli(tmp_path: Path) -> None:
    _write_fake_fashion(tmp_path / "fashion", 16)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(root=tmp_path / "fashion"))
    root = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "lsap", "fit", "--config", str(config),
                           "--trainer.default_root_dir", str(root), "--trainer.devices", "2",
                           "--trainer.strategy", "ddp_find_unused_parameters_true"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(next(root.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert int(ckpt["state_dict"]["images_seen"]) == 2 * 4 * 2, "images counted over both processes"


def test_trains_on_an_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    from lsap.data import ImageDataModule

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = ImageDataModule(train_dir=str(folder), resolution=RES, batch_size=4, num_workers=0, verify="none")
    module = make_module()
    trainer(tmp_path, 2).fit(module, datamodule=data)
    assert int(module.images_seen) == 8


def test_bf16_mixed_step_is_finite(tmp_path: Path) -> None:
    module = make_module(regularization=RegularizationConfig(r1_gamma=1.0, r1_interval=1))
    t = Trainer(accelerator="cpu", devices=1, max_steps=1, precision="bf16-mixed", logger=False,
                enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    t.fit(module, loader())
    for key in ("loss/G", "loss/D", "loss/r1"):
        assert torch.isfinite(t.callback_metrics[key]), key
    assert all(p.dtype == torch.float32 for p in module.generator.parameters()), "weights stay fp32"
