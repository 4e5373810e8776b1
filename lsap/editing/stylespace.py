"""StyleSpace single-channel edits (Wu et al. 2021) and the per-channel style std.

Layers are indexed over the full S space in execution order, toRGB included, as
StyleSpace numbers them (``generator.style_layers``; 26 at 1024 px). An edit
``(layer, channel, alpha)`` adds ``alpha * sigma[layer][channel]`` to that one style
entry, with sigma the per-channel std of S over synthetic samples (no truncation).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from lsap.editing._shared import atomic_save, cache_root, fingerprint, z_batches
from lsap.io import load_weights_file

__all__ = ["STYLESPACE_PRESETS", "StyleEdit", "StyleStd", "apply_style_edits", "full_to_lsap", "lsap_to_full",
           "style_std"]

STYLE_STD_FORMAT = "lsap.style_std"
STYLE_STD_VERSION = 1


@dataclass(frozen=True)
class StyleEdit:
    """One single-channel edit: full-S ``layer``, ``channel``, strength ``alpha`` in std units."""

    layer: int
    channel: int
    alpha: float = 1.0
    domain: str = ""
    source: str = ""


_WU = "StyleSpace Analysis (Wu, Lischinski, Shechtman, CVPR 2021), FFHQ 1024 config-f"
STYLESPACE_PRESETS: dict[str, StyleEdit] = {
    "smile": StyleEdit(6, 501, domain="ffhq", source=_WU),
    "lipstick": StyleEdit(15, 45, domain="ffhq", source=_WU),
    "black_hair": StyleEdit(12, 479, domain="ffhq", source=_WU),
    "grey_hair": StyleEdit(11, 286, domain="ffhq", source=_WU),
    "goatee": StyleEdit(9, 421, domain="ffhq", source=_WU),
    "earrings": StyleEdit(8, 81, domain="ffhq", source=_WU),
}


def lsap_to_full(generator: nn.Module, lsap_index: int) -> int:
    """Full-S (StyleSpace) index of LSAP's style entry ``lsap_index`` (one per W+ entry)."""
    indices = list(generator.lsap_style_indices)
    if not 0 <= lsap_index < len(indices):
        raise ValueError(f"LSAP style index {lsap_index} out of range 0..{len(indices) - 1}")
    return int(indices[lsap_index])


def full_to_lsap(generator: nn.Module, full_index: int) -> int | None:
    """LSAP's index of full-S layer ``full_index``, or None for a toRGB LSAP leaves out."""
    num_layers = len(generator.style_layers)
    if not 0 <= full_index < num_layers:
        raise ValueError(f"full S index {full_index} out of range 0..{num_layers - 1}")
    indices = list(generator.lsap_style_indices)
    return indices.index(full_index) if full_index in indices else None


@dataclass(eq=False)
class StyleStd:
    """Per-channel std of every full-S layer (``std[l]`` is ``[channels_l]``)."""

    std: list[Tensor]
    num_samples: int
    seed: int
    generator_hash: str

    def state(self) -> dict[str, Any]:
        return {"format": STYLE_STD_FORMAT, "version": STYLE_STD_VERSION, "std": [s.cpu() for s in self.std],
                "num_samples": self.num_samples, "seed": self.seed, "generator_hash": self.generator_hash}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StyleStd:
        data = load_weights_file(path, "style std cache file")
        if not isinstance(data, dict) or data.get("format") != STYLE_STD_FORMAT \
                or data.get("version") != STYLE_STD_VERSION:
            raise ValueError(f"'{path}' is not an lsap style std file (version {STYLE_STD_VERSION})")
        return cls([torch.as_tensor(s) for s in data["std"]], int(data["num_samples"]), int(data["seed"]),
                   str(data["generator_hash"]))


def style_std_cache_path(cache_dir: str | os.PathLike[str], generator_hash: str, num_samples: int, seed: int) -> Path:
    key = hashlib.sha256(f"{STYLE_STD_FORMAT}|v{STYLE_STD_VERSION}|{generator_hash}|M={num_samples}|seed={seed}"
                         .encode()).hexdigest()
    return Path(cache_dir) / f"style-std-M{num_samples}-seed{seed}-{key[:32]}.pt"


@torch.no_grad()
def _sample_style_std(generator: nn.Module, num_samples: int, seed: int, batch_size: int) -> list[Tensor]:
    ref = next(iter(generator.parameters()))
    sums = [torch.zeros(layer.channels, dtype=torch.float64) for layer in generator.style_layers]
    squares = [torch.zeros_like(s) for s in sums]
    was_training = generator.training
    generator.eval()
    try:
        for z in z_batches(num_samples, int(generator.z_dim), seed, batch_size):
            w = generator.mapping(z.to(device=ref.device, dtype=ref.dtype))
            for total, square, s in zip(sums, squares, generator.styles(w)):
                s = s.double().cpu()
                total += s.sum(0)
                square += s.square().sum(0)
    finally:
        generator.train(was_training)
    n = num_samples
    return [((sq - t * t / n) / max(n - 1, 1)).clamp_min(0).sqrt().float() for t, sq in zip(sums, squares)]


def style_std(generator: nn.Module, num_samples: int = 100_000, seed: int = 0, batch_size: int = 4096,
              cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True) -> list[Tensor]:
    """Per-channel std of each full-S layer's style over ``num_samples`` seeded samples of w
    (no truncation), one ``[channels]`` tensor per ``generator.style_layers`` entry.

    Cached on disk like the anchors, keyed by the generator's fingerprint, ``num_samples``
    and ``seed`` (default folder ``$LSAP_CACHE_DIR/style_std`` or ``~/.cache/lsap/style_std``).
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    generator_hash = fingerprint(generator)
    path = None
    if use_cache:
        path = style_std_cache_path(cache_dir if cache_dir is not None else cache_root() / "style_std",
                                    generator_hash, num_samples, seed)
        if path.is_file():
            try:
                cached = StyleStd.load(path)
                if (cached.generator_hash, cached.num_samples, cached.seed) == (generator_hash, num_samples, seed):
                    return cached.std
            except Exception as err:  # noqa: BLE001 - a damaged cache file is recomputed
                warnings.warn(f"ignoring unreadable style std cache '{path}' ({err})", RuntimeWarning, stacklevel=2)
    std = _sample_style_std(generator, num_samples, seed, batch_size)
    if path is not None:
        try:
            atomic_save(StyleStd(std, num_samples, seed, generator_hash).state(), path)
        except OSError as err:
            warnings.warn(f"could not write the style std cache '{path}' ({err})", RuntimeWarning, stacklevel=2)
    return std


def apply_style_edits(styles: Sequence[Tensor], edits: Sequence[StyleEdit], sigma: Sequence[Tensor],
                      scale: float | Tensor = 1.0) -> list[Tensor]:
    """A copy of the full-S ``styles`` with ``s[layer][:, channel] += scale * alpha * sigma[layer][channel]``
    for every edit (``scale`` is a number or one value per image). Render with
    ``generator.synthesis_from_styles``."""
    out = list(styles)
    for edit in edits:
        if not 0 <= edit.layer < len(out):
            raise ValueError(f"StyleSpace layer {edit.layer} out of range for {len(out)} full-S layers")
        s = out[edit.layer]
        if not 0 <= edit.channel < s.shape[1]:
            raise ValueError(f"channel {edit.channel} out of range for layer {edit.layer} ({s.shape[1]} channels)")
        amount = torch.as_tensor(scale, device=s.device, dtype=s.dtype) * edit.alpha * \
            sigma[edit.layer][edit.channel].to(device=s.device, dtype=s.dtype)
        s = s.clone()
        s[:, edit.channel] = s[:, edit.channel] + amount
        out[edit.layer] = s
    return out
