"""StyleSpace single-channel edits (Wu et al. 2021) and the per-channel style std.

Layers are indexed over the full S space in execution order, toRGB included, as
StyleSpace numbers them (``generator.style_layers``; 26 at 1024 px). An edit
``(layer, channel, alpha)`` adds ``alpha * sigma[layer][channel]`` to that one style
entry, with sigma the per-channel std of S over synthetic samples (no truncation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from lsap.style.statistics import StyleStd, style_std

__all__ = ["STYLESPACE_PRESETS", "StyleEdit", "StyleStd", "apply_style_edits", "full_to_lsap", "lsap_to_full",
           "style_std"]


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
