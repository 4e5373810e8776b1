"""ReStyle (Alaluf et al., ICCV 2021): an iterative encoder over W+.

Step ``t`` feeds ``cat(x, ŷ_t)`` (6 channels; ``ŷ_t`` the current reconstruction resized to
the encoder's input size) to an ordinary e4e or pSp encoder built with
``input_channels=6``, whose output is a *residual* added to the current code:

    w_0 = latent_avg,  ŷ_0 = G(latent_avg)
    w_{t+1} = w_t + E(cat(x, ŷ_t)),  ŷ_{t+1} = G(w_{t+1})

so ``N`` steps cost ``N`` encoder calls and ``N`` generator calls (the start image is
computed once per call). Shipped fashion32 encoders: ``BUILTIN_RESTYLE_ENCODERS``; their files
use the e4e / pSp layout (``lsap.encoders.save_e4e_checkpoint``) with ``opts["restyle_steps"]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lsap.io import builtin_asset_path
from lsap.losses.reconstruction import to_resolution
from lsap.model.generator import Generator

__all__ = ["BUILTIN_RESTYLE_ENCODERS", "LoadedReStyle", "ReStyleInversion", "load_restyle_encoder", "restyle_invert"]

#: ReStyle encoders shipped with lsap: fashion32, e4e losses without and with NSCD.
BUILTIN_RESTYLE_ENCODERS = {"fashion32_restyle_e4e": "encoders/fashion32_restyle_e4e.pt",
                            "fashion32_restyle_lsap": "encoders/fashion32_restyle_lsap.pt"}


@dataclass
class ReStyleInversion:
    """Codes and images of every step: ``ws[t]`` / ``images[t]`` for ``t = 0..N`` (0: the start)."""

    ws: list[Tensor]
    images: list[Tensor]

    @property
    def final_ws(self) -> Tensor:
        return self.ws[-1]

    @property
    def final_image(self) -> Tensor:
        return self.images[-1]


def _check_encoder(encoder: nn.Module, generator: Generator) -> None:
    channels = getattr(encoder, "input_channels", None)
    if channels != 6:
        raise ValueError(f"a ReStyle encoder reads cat(image, reconstruction): build it with input_channels=6 "
                         f"(got input_channels={channels})")
    if getattr(encoder, "num_ws", None) != generator.num_ws:
        raise ValueError(f"encoder predicts num_ws={getattr(encoder, 'num_ws', None)} entries, the generator has "
                         f"{generator.num_ws}")


def restyle_invert(encoder: nn.Module, generator: Generator, images: Tensor, latent_avg: Tensor, num_steps: int = 5,
                   start_image: Tensor | None = None, grad_steps: int | None = None,
                   noise_mode: str = "const") -> ReStyleInversion:
    """Run ``num_steps`` ReStyle steps on ``images`` ``[B, 3, R, R]`` (in [-1, 1]).

    Args:
        encoder: e4e / pSp encoder with ``input_channels=6`` (returns residuals).
        latent_avg: ``[num_ws, w_dim]`` or ``[w_dim]``, the start code.
        start_image: ``G(latent_avg)`` ``[1, 3, R, R]`` if already known (saves one render).
        grad_steps: keep gradients through the last ``grad_steps`` steps only (earlier steps
            run without them, their outputs detached); ``None``: every step.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    _check_encoder(encoder, generator)
    batch = images.shape[0]
    start = latent_avg.reshape(-1, generator.w_dim).expand(generator.num_ws, -1)[None].expand(batch, -1, -1)
    if start_image is None:
        with torch.no_grad():
            start_image = generator.synthesis(start[:1], noise_mode=noise_mode)
    size = encoder.input_size
    target = to_resolution(images.float(), size)
    ws, image = start, start_image.expand(batch, -1, -1, -1)
    all_ws, all_images = [ws], [image]
    first_grad = 0 if grad_steps is None else max(0, num_steps - grad_steps)
    for step in range(num_steps):
        with torch.set_grad_enabled(torch.is_grad_enabled() and step >= first_grad):
            residual = encoder(torch.cat((target, to_resolution(image.clamp(-1, 1), size)), 1))
            ws = ws.detach() + residual if step == first_grad else ws + residual
            image = generator.synthesis(ws, noise_mode=noise_mode)
        all_ws.append(ws)
        all_images.append(image)
    return ReStyleInversion(all_ws, all_images)


@dataclass
class LoadedReStyle:
    encoder: nn.Module
    latent_avg: Tensor
    num_steps: int
    opts: dict[str, Any]


def builtin_restyle_path(name: str | os.PathLike[str]) -> str | os.PathLike[str]:
    return builtin_asset_path(name, BUILTIN_RESTYLE_ENCODERS, "ReStyle encoder",
                              "train it (configs/restyle_fashion32_lsap.yaml, then bench/export_fashion32_restyle.py)")


def load_restyle_encoder(path: str | os.PathLike[str], input_size: int | None = None) -> LoadedReStyle:
    """Read a ReStyle encoder file (e4e / pSp layout with 6 input channels) or a built-in name."""
    from lsap.encoders.checkpoints import load_encoder_checkpoint

    loaded = load_encoder_checkpoint(builtin_restyle_path(path), input_size=input_size)
    if loaded.encoder.input_channels != 6:
        raise ValueError(f"'{path}' holds a {loaded.encoder.input_channels}-channel encoder, not a ReStyle encoder "
                         "(6 input channels: image and current reconstruction)")
    if loaded.latent_avg is None:
        raise ValueError(f"'{path}' stores no latent_avg, ReStyle's start code")
    return LoadedReStyle(loaded.encoder.float().eval(), loaded.latent_avg.float(),
                         int(loaded.opts.get("restyle_steps", 5)), loaded.opts)
