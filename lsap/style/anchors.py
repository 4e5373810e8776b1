"""Anchors of the normalised style space S^N.

For every style layer l of a generator, the anchor is

    mu_l = (1 / M) * sum_i  s_l(w_i) / ||s_l(w_i)||,      w_i = mapping(z_i),  z_i ~ N(0, I),

the mean of the unit-normalised style vectors of M synthetic samples, where every sample
feeds the same w (no truncation) to every layer. ``mu_l`` is deliberately *not*
renormalised: ``||mu_l|| <= 1`` measures how concentrated the synthetic distribution is on
that layer, and the NSCD loss's official form is scaled by it.

Anchors depend only on the generator, ``num_samples`` and ``seed``. They are computed once
per checkpoint and cached on disk under a key made of a hash of the generator (architecture
and every state-dict tensor) and those two settings, so a changed generator never reuses a
stale file.

Reproducibility: z is drawn on the CPU from a ``torch.Generator`` seeded with ``seed``, in
fixed blocks of :data:`Z_BLOCK` samples, and only then moved to the generator's device, so
neither the device nor ``batch_size`` changes which z are used; unit vectors are summed in
float64. Results from different devices or batch sizes agree to float32 rounding of the
generator's own forward pass.

Distributed training: :func:`compute_anchors` uses no collective operations. Every rank
computes (or reads from the cache) the same deterministic anchors, so it is safe to call it
on any subset of ranks and before the process group exists (for example in a
LightningModule's ``__init__``). Ranks sharing a cache directory may write the same file
at the same time; writes are atomic (temporary file + rename), so a reader sees either no
file or a complete one.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from lsap import cache
from lsap.io import CheckpointError, atomic_write, load_weights_file
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.generator import StyleLayer
from lsap.model.sampling import Z_BLOCK
from lsap.style.statistics import sampled_styles, statistic_cache_path

__all__ = [
    "ANCHORS_FORMAT",
    "ANCHORS_FORMAT_VERSION",
    "Anchors",
    "LayerSelection",
    "Z_BLOCK",
    "anchors_cache_path",
    "compute_anchors",
    "default_cache_dir",
    "generator_fingerprint",
]

ANCHORS_FORMAT = "lsap.anchors"
# Bump when the definition of the anchors or the sampling procedure changes: the version is
# part of the cache key, so old files are then ignored rather than reused.
ANCHORS_FORMAT_VERSION = 1
# z is drawn in blocks of this many samples, whatever the batch size, because torch's CPU
# normal sampler does not give the same numbers for one large draw as for several small ones.
DEFAULT_NUM_SAMPLES = 100_000
DEFAULT_BATCH_SIZE = 4096

LayerSelection = Literal["lsap", "full"]
"""Which style layers to use: ``"lsap"`` (one per W+ entry, in W+ order: every styled conv
and the last toRGB) or ``"full"`` (the full StyleSpace: every styled conv and every toRGB,
in execution order)."""


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value
class Anchors:
    """The S^N anchors mu_l of one generator, for every layer of its full style space.

    Attributes:
        full: one anchor per layer of the full S space, in ``generator.style_layers``
            order; shape ``[channels]`` each (float64 unless converted with :meth:`to`).
        layers: metadata of those layers (name, kind, W+ index, channels, ...).
        lsap_indices: indices into ``full`` / ``layers`` of LSAP's S space, one per W+
            entry in W+ order (``generator.lsap_style_indices``).
        num_ws: number of W+ entries of the generator.
        w_dim: dimension of w.
        num_samples: M, the number of synthetic samples averaged.
        seed: seed of the z draws.
        generator_hash: :func:`generator_fingerprint` of the generator they belong to.
    """

    full: list[Tensor]
    layers: tuple[StyleLayer, ...]
    lsap_indices: tuple[int, ...]
    num_ws: int
    w_dim: int
    num_samples: int
    seed: int
    generator_hash: str

    def __post_init__(self) -> None:
        if len(self.full) != len(self.layers):
            raise ValueError(f"expected one anchor per style layer ({len(self.layers)}), got {len(self.full)}")
        for anchor, layer in zip(self.full, self.layers):
            if anchor.shape != (layer.channels,):
                raise ValueError(
                    f"anchor of layer {layer.name} must have shape [{layer.channels}], got {tuple(anchor.shape)}"
                )
        if len(self.lsap_indices) != self.num_ws:
            raise ValueError(
                f"expected one LSAP layer per W+ entry ({self.num_ws}), got {len(self.lsap_indices)} indices"
            )
        if any(not 0 <= i < len(self.layers) for i in self.lsap_indices):
            raise ValueError(f"lsap_indices {list(self.lsap_indices)} out of range for {len(self.layers)} layers")

    # ----- selections ------------------------------------------------------------------
    @property
    def lsap(self) -> list[Tensor]:
        """Anchors of LSAP's S space: one per W+ entry, in W+ order."""
        return [self.full[i] for i in self.lsap_indices]

    @property
    def lsap_layers(self) -> tuple[StyleLayer, ...]:
        """Metadata of LSAP's S-space layers, in W+ order."""
        return tuple(self.layers[i] for i in self.lsap_indices)

    def indices(self, layers: LayerSelection = "lsap") -> tuple[int, ...]:
        """Indices into the full S space of a layer selection."""
        if layers == "lsap":
            return self.lsap_indices
        if layers == "full":
            return tuple(range(len(self.layers)))
        raise ValueError(f"layers must be 'lsap' or 'full', got {layers!r}")

    def select(self, layers: LayerSelection = "lsap") -> list[Tensor]:
        """The anchors of a layer selection, in that selection's order."""
        return [self.full[i] for i in self.indices(layers)]

    def layers_for(self, layers: LayerSelection = "lsap") -> tuple[StyleLayer, ...]:
        """Metadata of a layer selection, in that selection's order."""
        return tuple(self.layers[i] for i in self.indices(layers))

    def norms(self, layers: LayerSelection = "lsap") -> Tensor:
        """``||mu_l||`` per layer of a selection, shape ``[num_layers]``."""
        return torch.stack([a.norm() for a in self.select(layers)])

    # ----- conversion and files --------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Anchors:
        """A copy with the anchor tensors on ``device`` and/or in ``dtype``."""
        return dataclasses.replace(self, full=[a.to(device=device, dtype=dtype) for a in self.full])

    def state(self) -> dict[str, Any]:
        """Plain-data form (tensors, lists, str, int) that ``torch.load(weights_only=True)`` reads."""
        return {
            "format": ANCHORS_FORMAT,
            "version": ANCHORS_FORMAT_VERSION,
            "full": [a.detach().cpu() for a in self.full],
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "lsap_indices": list(self.lsap_indices),
            "num_ws": self.num_ws,
            "w_dim": self.w_dim,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "generator_hash": self.generator_hash,
        }

    @classmethod
    def from_state(cls, state: Any, where: str = "anchors state") -> Anchors:
        """Inverse of :meth:`state`; raises :class:`~lsap.io.CheckpointError` (a ``ValueError``)
        naming ``where`` on anything else."""
        if not isinstance(state, dict) or state.get("format") != ANCHORS_FORMAT:
            raise CheckpointError(f"{where} is not an lsap anchors file (expected format {ANCHORS_FORMAT!r})")
        if state.get("version") != ANCHORS_FORMAT_VERSION:
            raise CheckpointError(
                f"{where} has version {state.get('version')!r}, not the supported version {ANCHORS_FORMAT_VERSION}"
            )
        try:
            return cls(
                full=[torch.as_tensor(a) for a in state["full"]],
                layers=tuple(StyleLayer(**layer) for layer in state["layers"]),
                lsap_indices=tuple(int(i) for i in state["lsap_indices"]),
                num_ws=int(state["num_ws"]),
                w_dim=int(state["w_dim"]),
                num_samples=int(state["num_samples"]),
                seed=int(state["seed"]),
                generator_hash=str(state["generator_hash"]),
            )
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{where} is incomplete or malformed: {err}") from err

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` atomically (temporary file in the same folder, then rename)."""
        state = self.state()
        atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Anchors:
        """Read a file written by :meth:`save` (``torch.load(weights_only=True)``)."""
        return cls.from_state(load_weights_file(path, "anchors file"), where=f"anchors file '{path}'")

    def __repr__(self) -> str:
        return (
            f"Anchors(layers={len(self.layers)}, num_ws={self.num_ws}, num_samples={self.num_samples}, "
            f"seed={self.seed}, generator_hash={self.generator_hash[:12]}...)"
        )


# ----------------------------------------------------------------------------------------
# Identity of a generator and cache location


def default_cache_dir() -> Path:
    """``$LSAP_CACHE_DIR/anchors`` when that variable is set, else ``~/.cache/lsap/anchors``."""
    return cache.cache_dir("anchors")


def anchors_cache_path(cache_dir: str | os.PathLike[str], fingerprint: str, num_samples: int, seed: int) -> Path:
    """The cache file for a generator fingerprint and sampling settings (batch size is not
    part of the key: it does not change the anchors)."""
    return statistic_cache_path(cache_dir, "anchors", ANCHORS_FORMAT, ANCHORS_FORMAT_VERSION, fingerprint,
                                num_samples, seed)


# ----------------------------------------------------------------------------------------
# Computation


def compute_anchors(
    generator: nn.Module,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> Anchors:
    """Compute (or read from the cache) the S^N anchors of a generator.

    For every layer of the generator's full style space, the anchor is the mean over
    ``num_samples`` synthetic samples of the unit-normalised style vector, not renormalised.
    Each sample draws z ~ N(0, I), maps it to w without truncation and feeds that w to
    every layer. The LSAP selection (one layer per W+ entry) is ``anchors.lsap``; the full
    StyleSpace is ``anchors.full``.

    Args:
        generator: a :class:`~lsap.model.Generator` (any device and dtype). It is run in
            eval mode so that sampling never updates its ``w_avg``; its modes are restored
            afterwards and its weights are not modified.
        num_samples: M, the number of synthetic samples (the paper uses 100 000).
        seed: seed of the CPU ``torch.Generator`` that draws z. The same generator
            weights, ``num_samples`` and ``seed`` give the same anchors on any machine, up
            to float32 rounding of the generator's forward pass.
        batch_size: samples per forward pass; only affects speed and memory.
        cache_dir: folder of the on-disk cache; default :func:`default_cache_dir`
            (``$LSAP_CACHE_DIR/anchors`` or ``~/.cache/lsap/anchors``).
        use_cache: read and write the cache. Files are keyed by
            :func:`generator_fingerprint` (architecture and all weights), ``num_samples``
            and ``seed``; an unreadable or mismatching file is recomputed and replaced, and
            a cache that cannot be written only produces a warning.

    Returns:
        :class:`Anchors` on the CPU in float64. Use ``anchors.to(device)`` to move them.

    Under torch.distributed each rank computes or reads the same deterministic anchors; no
    collective operation is involved (see the module documentation).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fingerprint = generator_fingerprint(generator)
    path = None
    if use_cache:
        path = anchors_cache_path(cache_dir if cache_dir is not None else default_cache_dir(), fingerprint,
                                  num_samples, seed)
    return cache.cached(
        path,
        compute=lambda: _sample_anchors(generator, num_samples, seed, batch_size, fingerprint),
        load=Anchors.load,
        save=lambda anchors, target: anchors.save(target),
        matches=lambda anchors: (anchors.generator_hash, anchors.num_samples, anchors.seed)
        == (fingerprint, num_samples, seed),
        what="anchors",
    )


def _accumulation_dtype(device: torch.device) -> torch.dtype:
    # Apple's MPS backend has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _sample_anchors(generator: nn.Module, num_samples: int, seed: int, batch_size: int, fingerprint: str) -> Anchors:
    """Monte-Carlo estimate of the anchors (no cache)."""
    reference = next(iter(generator.parameters()), None)
    if reference is None:
        raise ValueError("the generator has no parameters")
    layers: Sequence[StyleLayer] = tuple(generator.style_layers)
    acc_dtype = _accumulation_dtype(reference.device)
    sums = [torch.zeros(layer.channels, dtype=acc_dtype, device=reference.device) for layer in layers]
    for styles in sampled_styles(generator, num_samples, seed, batch_size):
        for total, style in zip(sums, styles):
            style = style.to(acc_dtype)
            total += (style / style.norm(dim=1, keepdim=True).clamp_min(torch.finfo(acc_dtype).tiny)).sum(0)
    return Anchors(
        full=[(total / num_samples).to(device="cpu", dtype=torch.float64) for total in sums],
        layers=tuple(layers),
        lsap_indices=tuple(int(i) for i in generator.lsap_style_indices),
        num_ws=int(generator.num_ws),
        w_dim=int(generator.w_dim),
        num_samples=num_samples,
        seed=seed,
        generator_hash=fingerprint,
    )
