"""SAM (Parmar et al., CVPR 2022): spatially-adaptive multi-layer refinement of a pivot.

The pure pieces, with no Lightning in them:

* **Blocks.** Feature offsets ``F_k`` live at the outputs of chosen synthesis blocks
  (``point="block"`` of :data:`lsap.model.generator.FeatureHook`, before the toRGB). The
  paper uses 16..128 of a 1024 px generator, i.e. ``R/64..R/8``; :func:`default_blocks`
  applies that rule to any resolution and, where it leaves fewer than two blocks (32 px:
  only 4), takes the two coarsest blocks instead (fashion32: 4 and 8).
* **Latent layers.** Layer 0 is W+ alone (the most editable); layer ``k >= 1`` is the
  ``k``-th block, coarse to fine. :func:`select_layers` picks, per segment, the coarsest
  layer whose segment-averaged predicted error is at most ``tau`` (the finest layer when
  none is), and :func:`selection_masks` turns the selection into one soft mask per block.
* **Injection.** :func:`offset_hook` adds ``m_k * F_k`` to block ``k``'s output (what the
  optimisation does); :func:`capture_hook` reads block outputs; :func:`blend_hook` renders
  an edit: ``h <- h * (1 - m) + F * m`` with ``F`` the unedited block features.
* **Regularisers.** :class:`MVGPrior` (the Mahalanobis distance of ``leaky_relu(w, 5)``
  under sampled statistics) and :func:`delta_regularizer` (``sum_i ||w_i - w_0||``).
* **State files.** ``sam/<name>.pt``: the refined W+ code, the offsets (float16 by
  default) and masks, and the generator's fingerprint (:func:`make_state`,
  :func:`load_state`, :func:`render_state`, :func:`render_edit`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.io import atomic_write, load_weights_file
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.generator import FeatureHook, Generator
from lsap.model.sampling import z_blocks

__all__ = [
    "STATE_DIR",
    "STATE_FORMAT",
    "MVGPrior",
    "blend_hook",
    "block_channels",
    "capture_hook",
    "default_blocks",
    "edit_features",
    "delta_regularizer",
    "SAMEditRenderer",
    "load_edit_renderer",
    "load_state",
    "make_state",
    "offset_hook",
    "render_edit",
    "render_state",
    "render_state_file",
    "resize_mask",
    "save_state",
    "select_layers",
    "state_tensors",
    "selection_masks",
]

#: Folder of the per-image SAM state files inside a results folder.
STATE_DIR = "sam"
STATE_FORMAT = "lsap-sam-state-1"
OffsetDtype = Literal["float16", "float32"]
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


# ----- blocks ---------------------------------------------------------------------------------
def block_resolutions(generator: Generator) -> list[int]:
    """Resolutions of the synthesis blocks, 4..R."""
    return [4 * 2**j for j in range(len(generator.synthesis_network.to_rgbs))]


def default_blocks(resolution: int) -> list[int]:
    """Blocks of the feature offsets: the paper's ``R/64..R/8`` (16..128 at 1024 px); when
    that leaves fewer than two blocks, the two coarsest (4 and 8)."""
    if resolution < 8 or resolution & (resolution - 1):
        raise BadValueError(f"the generator resolution must be a power of two >= 8, got {resolution}")
    blocks = [4 * 2**j for j in range(int(resolution).bit_length()) if 4 * 2**j <= resolution]
    chosen = [r for r in blocks if resolution // 64 <= r <= resolution // 8]
    return chosen if len(chosen) >= 2 else [4, 8]


def block_channels(generator: Generator, blocks: Sequence[int]) -> dict[int, int]:
    """Channels of each chosen block's output."""
    available = block_resolutions(generator)
    out = {}
    for r in blocks:
        if r not in available:
            raise BadValueError(f"SAM block {r} is not a block of this {generator.resolution} px generator "
                                f"(blocks: {available})")
        conv = generator.synthesis_network.convs[0 if r == 4 else 2 * available.index(r)]
        out[r] = int(conv.weight.shape[0])
    return out


def check_blocks(generator: Generator, blocks: Sequence[int] | None) -> list[int]:
    """``blocks`` (default :func:`default_blocks`), sorted coarse to fine and checked."""
    chosen = sorted(int(b) for b in (blocks if blocks is not None else default_blocks(generator.resolution)))
    if not chosen or len(set(chosen)) != len(chosen):
        raise BadValueError(f"SAM needs distinct blocks, got {list(blocks or [])}")
    block_channels(generator, chosen)
    return chosen


# ----- hooks ----------------------------------------------------------------------------------
def offset_hook(offsets: Mapping[int, Tensor], masks: Mapping[int, Tensor],
                inner: FeatureHook | None = None) -> FeatureHook:
    """``h_k <- h_k + m_k * F_k`` at each block ``k`` of ``offsets`` (``[B, C, r, r]``,
    masks ``[B, 1, r, r]``); ``inner`` runs first (e.g. another refinement's hook)."""

    def hook(point: str, resolution: int, features: Tensor) -> Tensor:
        if inner is not None:
            features = inner(point, resolution, features)  # type: ignore[arg-type]
        if point == "block" and resolution in offsets:
            features = features + masks[resolution] * offsets[resolution].to(features.dtype)
        return features

    return hook


def capture_hook(store: dict[int, Tensor], blocks: Sequence[int], inner: FeatureHook | None = None) -> FeatureHook:
    """Record the output of each block in ``blocks`` into ``store`` (after ``inner``)."""
    wanted = set(blocks)

    def hook(point: str, resolution: int, features: Tensor) -> Tensor:
        if inner is not None:
            features = inner(point, resolution, features)  # type: ignore[arg-type]
        if point == "block" and resolution in wanted:
            store[resolution] = features
        return features

    return hook


def blend_hook(features: Mapping[int, Tensor], masks: Mapping[int, Tensor]) -> FeatureHook:
    """The editing rule: ``h <- h * (1 - m) + F * m`` at each block of ``features``."""

    def hook(point: str, resolution: int, h: Tensor) -> Tensor:
        if point == "block" and resolution in features:
            m = masks[resolution].to(h.dtype)
            h = h * (1 - m) + features[resolution].to(h.dtype) * m
        return h

    return hook


# ----- layer selection ------------------------------------------------------------------------
def select_layers(maps: Tensor, segments: Tensor, tau: float) -> Tensor:
    """Per pixel, the latent layer its segment uses.

    Args:
        maps: predicted errors ``[B, L, H, W]``, layer 0 = W+ (coarsest) .. L-1 (finest).
        segments: integer segment labels ``[B, H, W]`` (any non-negative ids).
        tau: the largest segment-averaged error a layer may have to be chosen.

    Returns ``[B, H, W]`` (long): the coarsest layer whose mean error over the pixel's
    segment is ``<= tau``, or the finest layer when none is.
    """
    if maps.ndim != 4 or segments.ndim != 3 or maps.shape[0] != segments.shape[0]:
        raise BadValueError(f"maps must be [B, L, H, W] and segments [B, H, W], got {tuple(maps.shape)} and "
                            f"{tuple(segments.shape)}")
    if maps.shape[-2:] != segments.shape[-2:]:
        maps = F.interpolate(maps, size=segments.shape[-2:], mode="bilinear", align_corners=False)
    batch, layers = maps.shape[:2]
    labels = segments.long().flatten(1)  # [B, N]
    if (labels < 0).any():
        raise BadValueError("segment labels must be non-negative")
    count = int(labels.max()) + 1
    flat = maps.float().flatten(2)  # [B, L, N]
    sums = torch.zeros(batch, layers, count, device=maps.device).scatter_add_(
        2, labels[:, None].expand(-1, layers, -1), flat)
    sizes = torch.zeros(batch, count, device=maps.device).scatter_add_(1, labels, torch.ones_like(flat[:, 0]))
    means = sums / sizes.clamp_min(1)[:, None]  # [B, L, K]
    ok = means <= tau
    ok[:, -1] = True  # the finest layer is the fall-back
    chosen = ok.float().argmax(dim=1)  # first True = coarsest acceptable layer, [B, K]
    return chosen.gather(1, labels).view_as(segments).long()


def resize_mask(mask: Tensor, resolution: int) -> Tensor:
    """A ``[B, 1, H, W]`` mask at ``resolution`` (area average down, bilinear up)."""
    if mask.shape[-1] == resolution:
        return mask
    if mask.shape[-1] > resolution:
        return F.interpolate(mask, size=(resolution, resolution), mode="area")
    return F.interpolate(mask, size=(resolution, resolution), mode="bilinear", align_corners=False)


def selection_masks(selection: Tensor, blocks: Sequence[int]) -> dict[int, Tensor]:
    """Soft masks ``m_k`` ``[B, 1, r, r]`` of each block from a selection ``[B, H, W]``
    (layer ``i + 1`` is ``blocks[i]``; layer 0, W+ alone, gets no mask)."""
    return {r: resize_mask((selection == i + 1).float()[:, None], r) for i, r in enumerate(blocks)}


# ----- regularisers ---------------------------------------------------------------------------
class MVGPrior(nn.Module):
    """SAM's W+ "MVG" prior: per code, ``sum_i (v_i - mu)^T Sigma^-1 (v_i - mu)`` with
    ``v = leaky_relu(w, 5.0)`` (undoing the mapping network's last 0.2-slope activation)
    and ``mu``, ``Sigma`` the mean and covariance of ``v`` over ``num_samples`` seeded w."""

    def __init__(self, generator: Generator, num_samples: int = 5000, seed: int = 0, batch_size: int = 1000,
                 ridge: float = 1e-6) -> None:
        super().__init__()
        if num_samples < 2:
            raise BadValueError(f"the MVG prior needs at least 2 samples, got {num_samples}")
        device = generator.w_avg.device
        with torch.no_grad():
            vs = torch.cat([F.leaky_relu(generator.mapping_network(z.to(device)), 5.0).double()
                            for z in z_blocks(num_samples, generator.z_dim, seed, block_size=batch_size)])
        mean = vs.mean(0)
        centred = vs - mean
        cov = centred.T @ centred / (num_samples - 1)
        cov = cov + ridge * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        self.register_buffer("mean", mean.float(), persistent=False)
        self.register_buffer("precision", torch.linalg.inv(cov).float(), persistent=False)

    def forward(self, ws: Tensor) -> Tensor:
        """``[B]``: the summed Mahalanobis distances of the layers of ``ws`` ``[B, L, w_dim]``."""
        v = F.leaky_relu(ws, 5.0) - self.mean
        return torch.einsum("bld,de,ble->b", v, self.precision, v)


def delta_regularizer(ws: Tensor) -> Tensor:
    """``[B]``: ``sum_i ||w_i - w_0||`` over the layers of ``ws`` ``[B, L, w_dim]``."""
    return (ws[:, 1:] - ws[:, :1]).norm(dim=-1).sum(dim=1)


# ----- state files ----------------------------------------------------------------------------
def make_state(ws: Tensor, offsets: Mapping[int, Tensor], masks: Mapping[int, Tensor], generator_hash: str,
               dtype: OffsetDtype = "float16", meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The state file of one image: ``ws`` ``[num_ws, w_dim]``, offsets ``[C, r, r]`` and
    masks ``[1, r, r]`` per block (offsets in ``dtype``), and the generator's fingerprint."""
    if dtype not in _DTYPES:
        raise BadValueError(f"offset dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    blocks = sorted(int(b) for b in offsets)
    return {
        "format": STATE_FORMAT,
        "generator_hash": generator_hash,
        "ws": ws.detach().float().cpu().clone(),
        "blocks": blocks,
        "offsets": [offsets[b].detach().to("cpu", _DTYPES[dtype]).clone() for b in blocks],
        "masks": [masks[b].detach().to("cpu", _DTYPES[dtype]).clone() for b in blocks],
        "meta": dict(meta or {}),
    }


def save_state(state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    atomic_write(Path(path), lambda f: torch.save(dict(state), f))


def load_state(path: str | os.PathLike[str], generator_hash: str | None = None) -> dict[str, Any]:
    """Read a SAM state file (weights only) and check it; with ``generator_hash``, refuse a
    state made for another generator."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"SAM state file not found: '{path}' (written by a SAM run's SAMWriter)")
    state = load_weights_file(path, "SAM state file")
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise BadFileError(f"'{path}' is not a SAM state file (expected format '{STATE_FORMAT}')")
    blocks, offsets, masks = state.get("blocks"), state.get("offsets"), state.get("masks")
    if not (isinstance(blocks, list) and isinstance(offsets, list) and isinstance(masks, list)
            and len(blocks) == len(offsets) == len(masks) and isinstance(state.get("ws"), Tensor)):
        raise BadFileError(f"SAM state file '{path}' is damaged (blocks, offsets and masks do not match)")
    for b, o, m in zip(blocks, offsets, masks):
        if not (isinstance(o, Tensor) and isinstance(m, Tensor) and o.ndim == 3 and m.shape == (1, b, b)
                and o.shape[-2:] == (b, b)):
            raise BadFileError(f"SAM state file '{path}' is damaged (block {b} has offsets {getattr(o, 'shape', o)} "
                               f"and mask {getattr(m, 'shape', m)})")
    if generator_hash is not None and state.get("generator_hash") not in (None, generator_hash):
        raise BadFileError(f"SAM state '{path}' was made for another generator (fingerprints differ)")
    return dict(state)


def state_tensors(state: Mapping[str, Any], device: torch.device | str = "cpu"
                  ) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
    """Offsets ``[1, C, r, r]`` and masks ``[1, 1, r, r]`` of a state, float32 on ``device``."""
    offsets = {int(b): o.float()[None].to(device) for b, o in zip(state["blocks"], state["offsets"])}
    masks = {int(b): m.float()[None].to(device) for b, m in zip(state["blocks"], state["masks"])}
    return offsets, masks


def render_state(generator: Generator, ws: Tensor, offsets: Mapping[int, Tensor], masks: Mapping[int, Tensor],
                 noise: Sequence[Tensor] | None = None) -> Tensor:
    """The refined reconstruction: ``ws`` ``[B, num_ws, w_dim]`` with the masked offsets."""
    return generator.synthesis(ws, noise=noise, feature_hook=offset_hook(offsets, masks))


def edit_features(generator: Generator, ws: Tensor, offsets: Mapping[int, Tensor], masks: Mapping[int, Tensor],
                  noise: Sequence[Tensor] | None = None) -> dict[int, Tensor]:
    """The features ``F_k`` an edit blends in: block ``k``'s output for the *unedited*
    ``ws`` (with the masked offsets of the earlier blocks) plus its full offset, so that
    ``h * (1 - m) + F * m`` equals the reconstruction's ``h + m * offset``."""
    features: dict[int, Tensor] = {}

    def hook(point: str, resolution: int, h: Tensor) -> Tensor:
        if point == "block" and resolution in offsets:
            offset = offsets[resolution].to(h.dtype)
            features[resolution] = h + offset
            h = h + masks[resolution] * offset
        return h

    generator.synthesis(ws, noise=noise, feature_hook=hook)
    return features


def render_edit(generator: Generator, ws: Tensor, edited_ws: Tensor, offsets: Mapping[int, Tensor],
                masks: Mapping[int, Tensor], noise: Sequence[Tensor] | None = None) -> Tensor:
    """An edit through SAM's state: the features of the *unedited* ``ws``
    (:func:`edit_features`) blended into the rendering of ``edited_ws`` at every masked
    block (``h <- h * (1 - m) + F * m``). ``edited_ws == ws`` gives the reconstruction."""
    features = edit_features(generator, ws, offsets, masks, noise)
    return generator.synthesis(edited_ws, noise=noise, feature_hook=blend_hook(features, masks))


def render_state_file(generator: Generator, state: Mapping[str, Any], edited_ws: Tensor | None = None,
                      noise: Sequence[Tensor] | None = None) -> Tensor:
    """Render one image's SAM state (:func:`load_state`): its reconstruction ``[1, 3, R, R]``,
    or with ``edited_ws`` ``[B, num_ws, w_dim]`` the edits through it (the editing rule)."""
    device = generator.w_avg.device
    offsets, masks = state_tensors(state, device)
    ws = state["ws"][None].to(device=device, dtype=torch.float32)
    if edited_ws is None:
        return render_state(generator, ws, offsets, masks, noise)
    batch = edited_ws.shape[0]
    offsets = {r: o.expand(batch, -1, -1, -1) for r, o in offsets.items()}
    masks = {r: m.expand(batch, -1, -1, -1) for r, m in masks.items()}
    return render_edit(generator, ws.expand(batch, -1, -1), edited_ws.to(device), offsets, masks, noise)


# ----- editing (the refinement-state protocol of lsap.editing.refinement) ---------------------
def state_file_of(record: Any) -> Path:
    """``sam/<name>.pt`` of a results record (beside its ``codes/<name>.pt``)."""
    name = str(record.name)
    root = Path(record.code_path).parents[len(Path(name).parts)]
    return root / STATE_DIR / f"{name}.pt"


class SAMEditRenderer:
    """Edits of one SAM result: every edited code is rendered with the unedited code's block
    features (with offsets) blended in under the masks (:func:`render_edit`)."""

    def __init__(self, generator: Generator, state: Mapping[str, Any]) -> None:
        self.generator = generator
        self.state = state
        device = generator.w_avg.device
        self.offsets, self.masks = state_tensors(state, device)
        self.ws = state["ws"][None].to(device=device, dtype=torch.float32)

    def _expanded(self, batch: int) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
        return ({r: o.expand(batch, -1, -1, -1) for r, o in self.offsets.items()},
                {r: m.expand(batch, -1, -1, -1) for r, m in self.masks.items()})

    def render(self, ws: Tensor) -> Tensor:
        """Edited W+ codes ``[S, num_ws, w_dim]`` -> images ``[S, 3, R, R]``."""
        return render_state_file(self.generator, self.state, edited_ws=ws)

    def render_styles(self, styles: list[Tensor]) -> Tensor:
        """Edited full-S styles (StyleSpace edits) -> images, with the same blend."""
        batch = styles[0].shape[0]
        offsets, masks = self._expanded(batch)
        features = edit_features(self.generator, self.ws.expand(batch, -1, -1), offsets, masks)
        return self.generator.synthesis_from_styles(styles, feature_hook=blend_hook(features, masks))


def load_edit_renderer(generator: Generator, record: Any, code: Mapping[str, Any]) -> SAMEditRenderer:
    """The editing loader of SAM results (``REFINEMENT_LOADERS["sam"]``): reads the
    record's state file (weights only, checked against the generator and the code)."""
    state = load_state(state_file_of(record), generator_hash=generator_fingerprint(generator))
    if not torch.equal(state["ws"].float(), code["ws"].float().cpu()):
        raise BadFileError(f"SAM state '{state_file_of(record)}' does not belong to the code of '{record.name}' "
                           "(their W+ codes differ)")
    return SAMEditRenderer(generator, state)
