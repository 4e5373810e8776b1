"""StyleGAN2 training (Karras et al. 2020) as a Lightning module.

One training step, on a batch of real images:

1. G: non-saturating logistic loss ``softplus(-D(G(z)))`` with style mixing; every
   ``pl_interval`` steps (when ``pl_weight > 0``) the lazy path-length penalty.
2. D: ``softplus(D(G(z))) + softplus(-D(x))``; every ``r1_interval`` steps the lazy R1
   penalty ``gamma / 2 * ||grad_x D(x)||^2`` scaled by the interval.
3. G_ema follows G with a half-life in images (ramped up over the first images).

Lazy regularisation changes the effective Adam settings; as in the paper both the learning
rate and the betas of an optimiser whose loss gets a penalty every ``k`` steps are
corrected with ``c = k / (k + 1)``: ``lr * c`` and ``beta ** c``.

Manual optimisation: ``trainer.global_step`` counts training steps (the G main step goes
through Lightning; the D and regularisation steps call the wrapped optimiser directly), so
``max_steps`` and ``every_n_train_steps`` are in batches. Under DDP, run with
``strategy: ddp_find_unused_parameters_true``: each phase back-propagates into one network
only, and Lightning's DDP wrapper all-reduces its gradients on ``manual_backward``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from lsap.model.discriminator import Discriminator
from lsap.model.checkpoints import TRAINING_CONFIG_KEY
from lsap.model.generator import Generator
from lsap.modules.augment import AugmentConfig, DiffAugment



@dataclass
class AdamConfig:
    """Adam settings of G and D before the lazy-regularisation correction."""

    g_lr: float = 0.0025
    d_lr: float = 0.0025
    beta1: float = 0.0
    beta2: float = 0.99
    eps: float = 1e-8


@dataclass
class RegularizationConfig:
    """Lazy regularisation.

    Args:
        r1_gamma: weight gamma of the R1 penalty (0: off).
        r1_interval: R1 every this many steps (the paper: 16).
        pl_weight: weight of the path-length penalty (0: off; the paper: 2).
        pl_interval: path-length penalty every this many steps (the paper: 4).
        pl_batch_shrink: the penalty uses ``batch // pl_batch_shrink`` samples.
        pl_decay: decay of the running mean path length.
    """

    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01


@dataclass
class EmaConfig:
    """G_ema: ``beta = 0.5 ** (batch / half_life)`` with ``half_life = min(half_life_images,
    ramp * images_seen)`` when ``ramp`` is set."""

    half_life_images: float = 10_000.0
    ramp: Optional[float] = 0.05


def adam_hparams(lr: float, beta1: float, beta2: float, interval: int | None) -> tuple[float, tuple[float, float]]:
    """lr and betas corrected for a penalty applied lazily every ``interval`` steps."""
    if not interval or interval <= 0:
        return lr, (beta1, beta2)
    c = interval / (interval + 1)
    return lr * c, (beta1**c, beta2**c)


def ema_beta(batch_images: int, images_seen: float, config: EmaConfig) -> float:
    """Decay of one EMA update after ``images_seen`` images (before this batch)."""
    half_life = config.half_life_images
    if config.ramp is not None:
        half_life = min(half_life, images_seen * config.ramp)
    return 0.5 ** (batch_images / max(half_life, 1e-8))


def real_images(batch: Any) -> Tensor:
    """The image tensor of a batch: a tensor, an ``(image, label, ...)`` tuple or a dict
    with ``"image"`` (what lsap's data modules yield)."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if isinstance(batch, dict) and isinstance(batch.get("image"), Tensor):
        return batch["image"]
    raise TypeError(f"a batch must be an image tensor, an (image, label) tuple or a dict with 'image'; "
                    f"got {type(batch).__name__}")


class StyleGAN2(LightningModule):
    """Train a StyleGAN2 generator and discriminator.

    Args:
        generator: the generator to train, e.g. ``lsap.model.Generator`` by ``class_path``.
        discriminator: e.g. ``lsap.model.Discriminator``; its resolution must match G's.
        adam: learning rates and betas (see ``AdamConfig``).
        regularization: R1 and path-length settings (see ``RegularizationConfig``).
        ema: G_ema half-life and ramp (see ``EmaConfig``).
        augment: differentiable augmentation of D's inputs, None: off.
        style_mixing_prob: chance that a batch mixes two codes at a random layer.
        seed: seed of the latent draws (combined with the process rank and the step).
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        adam: AdamConfig = AdamConfig(),
        regularization: RegularizationConfig = RegularizationConfig(),
        ema: EmaConfig = EmaConfig(),
        augment: Optional[AugmentConfig] = None,
        style_mixing_prob: float = 0.9,
        seed: int = 0,
    ):
        super().__init__()
        if discriminator.resolution != generator.resolution:
            raise ValueError(f"discriminator resolution {discriminator.resolution} != generator resolution "
                             f"{generator.resolution}")
        self.automatic_optimization = False
        self.generator = generator.train().requires_grad_(True)
        self.discriminator = discriminator.train().requires_grad_(True)
        self.generator_ema = Generator(**generator.config, impl=getattr(generator, "impl", "ref"))
        self.generator_ema.load_state_dict(generator.state_dict())
        self.generator_ema.eval().requires_grad_(False)
        self.adam, self.reg, self.ema_config = adam, regularization, ema
        self.augment = DiffAugment(augment) if augment is not None else None
        self.style_mixing_prob, self.seed = style_mixing_prob, seed
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.int64))
        self.register_buffer("pl_mean", torch.zeros(()))
        self._ada_sign_sum = 0.0
        self._ada_count = 0
        self._rng: torch.Generator | None = None
        # A plain record of the run's settings; not save_hyperparameters(), whose copy in the
        # checkpoint LightningCLI would try to re-parse against the class_path schema on resume.
        self.training_settings = {
            "generator": dict(generator.config), "discriminator": dict(discriminator.config), "adam": asdict(adam),
            "regularization": asdict(regularization), "ema": asdict(ema),
            "augment": asdict(augment) if augment is not None else None,
            "style_mixing_prob": style_mixing_prob, "seed": seed,
        }

    # ----- set-up ------------------------------------------------------------------------
    def configure_optimizers(self):
        reg = self.reg
        g_lr, g_betas = adam_hparams(self.adam.g_lr, self.adam.beta1, self.adam.beta2,
                                     reg.pl_interval if reg.pl_weight > 0 else None)
        d_lr, d_betas = adam_hparams(self.adam.d_lr, self.adam.beta1, self.adam.beta2,
                                     reg.r1_interval if reg.r1_gamma > 0 else None)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=g_lr, betas=g_betas, eps=self.adam.eps)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=d_lr, betas=d_betas, eps=self.adam.eps)
        return [opt_g, opt_d]

    def on_fit_start(self) -> None:
        precision = str(getattr(self.trainer, "precision", "32"))
        if precision.startswith("16"):
            raise ValueError("StyleGAN2 training supports precision 32 or bf16-mixed (no fp16 loss scaling)")
        # Each process (and each resumed run) draws its own noise and augmentations.
        torch.manual_seed(self._step_seed(self.global_step) + 1)

    def _step_seed(self, step: int) -> int:
        return (self.seed * 1_000_003 + self.global_rank * 7919 + step * 104_729) % (2**62)

    # ----- pieces ------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _latents(self, n: int) -> Tensor:
        if self._rng is None:
            self._rng = torch.Generator(device=self.device).manual_seed(self.seed)
        return torch.randn(n, self.generator.z_dim, generator=self._rng, device=self.device)

    def mixed_ws(self, n: int) -> Tensor:
        """W+ codes for ``n`` samples; with probability ``style_mixing_prob`` the entries
        from a random cutoff on come from a second code."""
        g = self.generator
        # One mapping call, so w_avg sees both codes; in fp32, as w_avg's running mean is
        # kept in fp32 (and the mapping MLP is cheap).
        with torch.autocast(self.device.type, enabled=False):
            w = g.mapping(self._latents(2 * n))
        ws = w[:n, None].repeat(1, g.num_ws, 1)
        if self.style_mixing_prob > 0 and g.num_ws > 1:
            draw = torch.rand((), generator=self._rng, device=self.device)
            if draw < self.style_mixing_prob:
                cutoff = int(torch.randint(1, g.num_ws, (), generator=self._rng, device=self.device))
                ws[:, cutoff:] = w[n:, None]
        return ws

    def run_discriminator(self, images: Tensor) -> Tensor:
        if self.augment is not None:
            images = self.augment(images)
        return self.discriminator(images)

    def r1_penalty(self, real: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample ``||grad_x D(x)||^2`` and D's logits on ``real``."""
        real = real.detach().requires_grad_(True)
        logits = self.run_discriminator(real)
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        return grad.float().square().sum(dim=[1, 2, 3]), logits

    def path_length_penalty(self, n: int) -> Tensor:
        ws = self.mixed_ws(n)
        img = self.generator.synthesis(ws, noise_mode="random")
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(dim=2).mean(dim=1).sqrt()
        mean = lengths.mean().detach()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(mean)
            mean = mean / torch.distributed.get_world_size()
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(mean, self.reg.pl_decay))
        return (lengths - self.pl_mean).square()

    @torch.no_grad()
    def update_ema(self, batch_images: int) -> float:
        """``p_ema <- p + beta (p_ema - p)`` for every parameter; buffers (w_avg, noise) are copied."""
        beta = ema_beta(batch_images, float(self.images_seen), self.ema_config)
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)
        return beta

    # ----- training ----------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = real_images(batch)
        if real.shape[1:] != (self.generator.img_channels, self.generator.resolution, self.generator.resolution):
            raise ValueError(f"real images must be [B, {self.generator.img_channels}, {self.generator.resolution}, "
                             f"{self.generator.resolution}] to train this generator, got {tuple(real.shape)}")
        real = real.float()
        n = real.shape[0]
        step = int(self.global_step)
        opt_g, opt_d = self.optimizers()
        # Latents depend only on (seed, rank, step): a resumed run draws what an uninterrupted one would.
        self._rng = torch.Generator(device=self.device).manual_seed(self._step_seed(step))
        logs: dict[str, Tensor | float] = {}

        # G main
        self._requires_grad(generator=True)
        fake = self.generator.synthesis(self.mixed_ws(n), noise_mode="random")
        loss_g = F.softplus(-self.run_discriminator(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        logs["loss/G"] = loss_g.detach()
        # G path-length regularisation
        if self.reg.pl_weight > 0 and step % self.reg.pl_interval == 0:
            penalty = self.path_length_penalty(max(n // self.reg.pl_batch_shrink, 1))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(penalty.mean() * self.reg.pl_weight * self.reg.pl_interval)
            opt_g.optimizer.step()
            logs["loss/pl"] = penalty.mean().detach()
            logs["pl_mean"] = self.pl_mean.detach().clone()

        # D main
        self._requires_grad(generator=False)
        with torch.no_grad():
            fake = self.generator.synthesis(self.mixed_ws(n), noise_mode="random")
        logits_fake = self.run_discriminator(fake)
        logits_real = self.run_discriminator(real)
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.optimizer.step()
        logs["loss/D"] = loss_d.detach()
        logs["D/real"] = logits_real.detach().mean()
        logs["D/fake"] = logits_fake.detach().mean()
        # D R1 regularisation
        if self.reg.r1_gamma > 0 and step % self.reg.r1_interval == 0:
            r1, _ = self.r1_penalty(real)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward((r1 * (self.reg.r1_gamma / 2)).mean() * self.reg.r1_interval)
            opt_d.optimizer.step()
            logs["loss/r1"] = r1.mean().detach()
        self.generator.requires_grad_(True)

        batch_images = n * self.world_size
        self.update_ema(batch_images)
        self.images_seen += batch_images
        if self.augment is not None:
            logs["augment/p"] = self.augment.p.detach().clone()
            if self.augment.config.adaptive:
                self._adapt_augment(logits_real.detach(), batch_images)
        logs["kimg"] = float(self.images_seen) / 1000
        self.log_dict({k: v for k, v in logs.items() if k != "kimg"}, prog_bar=False, on_step=True)
        self.log("kimg", logs["kimg"], prog_bar=True, on_step=True, reduce_fx="max")
        self.log("loss_G", logs["loss/G"], prog_bar=True, on_step=True, logger=False)
        self.log("loss_D", logs["loss/D"], prog_bar=True, on_step=True, logger=False)

    def _requires_grad(self, generator: bool) -> None:
        """Let back-propagation reach only the network being stepped (saves the other's
        weight gradients; DDP marks its parameters unused)."""
        self.generator.requires_grad_(generator)
        self.discriminator.requires_grad_(not generator)

    def _adapt_augment(self, logits_real: Tensor, batch_images: int) -> None:
        self._ada_sign_sum += float(logits_real.sign().sum())
        self._ada_count += logits_real.numel()
        if (int(self.global_step)) % self.augment.config.adjust_interval:
            return
        stats = torch.tensor([self._ada_sign_sum, float(self._ada_count)], device=self.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        if stats[1] > 0:
            self.augment.adjust(float(stats[0] / stats[1]), batch_images * self.augment.config.adjust_interval)
        self._ada_sign_sum, self._ada_count = 0.0, 0

    # ----- checkpoints -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        config = dict(self.generator_ema.config)
        config["channels"] = {int(k): int(v) for k, v in config["channels"].items()}
        checkpoint[TRAINING_CONFIG_KEY] = config  # lets `lsap convert` rebuild G_ema
        checkpoint["lsap_training_settings"] = self.training_settings

    @torch.no_grad()
    def sample(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> Tensor:
        """Images of G_ema for latents ``z``."""
        return self.generator_ema(z.to(self.device), truncation_psi=truncation_psi, noise_mode=noise_mode)
