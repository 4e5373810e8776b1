"""Statistics of a generator's style space over seeded synthetic samples.

:func:`sampled_styles` is the one sampling loop: z from lsap's seeded z stream
(:func:`lsap.model.sampling.sample_z`, the same z for any batch size or device), mapped to w
without truncation, the same w fed to every style layer. The generator runs in eval mode
(so sampling never updates its ``w_avg``) under ``no_grad``, and every submodule's mode is
restored afterwards. The S^N anchors (:mod:`lsap.style.anchors`) and the per-channel style
std (:func:`style_std`, for StyleSpace edits) are both built on it and cached through
:mod:`lsap.cache`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsap import cache
from lsap.io import load_weights_file
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.sampling import Z_BLOCK, sample_z

__all__ = ["STYLE_STD_FORMAT", "STYLE_STD_VERSION", "StyleStd", "sampled_styles", "statistic_cache_path",
           "style_std", "style_std_cache_path"]

STYLE_STD_FORMAT = "lsap.style_std"
STYLE_STD_VERSION = 1


def statistic_cache_path(cache_folder: str | os.PathLike[str], stem: str, format_name: str, version: int,
                         fingerprint: str, num_samples: int, seed: int) -> Path:
    """The cache file of a sampled statistic: ``<stem>-M<n>-seed<s>-<key>.pt``, keyed by the
    format and its version, the generator fingerprint, ``num_samples``, ``seed`` and the z
    block size (batch size is not part of the key: it does not change the samples)."""
    return cache.cache_file(cache_folder, f"{stem}-M{num_samples}-seed{seed}", format_name, f"v{version}", fingerprint,
                      f"M={num_samples}", f"seed={seed}", f"block={Z_BLOCK}")


def sampled_styles(generator: nn.Module, num_samples: int, seed: int, batch_size: int) -> Iterator[list[Tensor]]:
    """The full-S styles (one ``[b, channels]`` tensor per ``generator.style_layers`` entry)
    of ``num_samples`` seeded samples, ``batch_size`` at a time, on the generator's device."""
    reference = next(iter(generator.parameters()), None)
    if reference is None:
        raise ValueError("the generator has no parameters")
    device, dtype = reference.device, reference.dtype
    modes = {module: module.training for module in generator.modules()}
    generator.eval()
    try:
        with torch.no_grad():
            for z in sample_z(num_samples, int(generator.z_dim), seed, batch_size):
                yield list(generator.styles(generator.mapping(z.to(device=device, dtype=dtype))))
    finally:
        for module, mode in modes.items():
            module.train(mode)


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


def style_std_cache_path(cache_folder: str | os.PathLike[str], generator_hash: str, num_samples: int,
                         seed: int) -> Path:
    return statistic_cache_path(cache_folder, "style-std", STYLE_STD_FORMAT, STYLE_STD_VERSION, generator_hash,
                                num_samples, seed)


def _sample_style_std(generator: nn.Module, num_samples: int, seed: int, batch_size: int) -> list[Tensor]:
    sums = [torch.zeros(layer.channels, dtype=torch.float64) for layer in generator.style_layers]
    squares = [torch.zeros_like(s) for s in sums]
    for styles in sampled_styles(generator, num_samples, seed, batch_size):
        for total, square, s in zip(sums, squares, styles):
            s = s.double().cpu()
            total += s.sum(0)
            square += s.square().sum(0)
    n = num_samples
    return [((sq - t * t / n) / max(n - 1, 1)).clamp_min(0).sqrt().float() for t, sq in zip(sums, squares)]


def style_std(generator: nn.Module, num_samples: int = 100_000, seed: int = 0, batch_size: int = 4096,
              cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True) -> list[Tensor]:
    """Per-channel std of each full-S layer's style over ``num_samples`` seeded samples of w
    (no truncation), one ``[channels]`` tensor per ``generator.style_layers`` entry.

    Cached through :mod:`lsap.cache` like the anchors, keyed by the generator's fingerprint,
    ``num_samples`` and ``seed`` (default folder ``$LSAP_CACHE_DIR/style_std`` or
    ``~/.cache/lsap/style_std``); a damaged file is recomputed with a warning.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    generator_hash = generator_fingerprint(generator)
    path = None
    if use_cache:
        folder = cache_dir if cache_dir is not None else cache.cache_dir("style_std")
        path = style_std_cache_path(folder, generator_hash, num_samples, seed)
    result = cache.cached(
        path,
        compute=lambda: StyleStd(_sample_style_std(generator, num_samples, seed, batch_size), num_samples, seed,
                                 generator_hash),
        load=StyleStd.load,
        save=lambda value, target: cache.save_torch(value.state(), target),
        matches=lambda value: (value.generator_hash, value.num_samples, value.seed) == (generator_hash, num_samples,
                                                                                         seed),
        what="style std",
    )
    return result.std
