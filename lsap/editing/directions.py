"""Linear directions in W / W+ (InterFaceGAN style): loading, applying, saving.

A direction ``n`` edits a code as ``ws + strength * n``. Published files are plain
tensors (``[1, w_dim]``, ``[w_dim]`` or ``[1, num_ws, w_dim]``, sometimes saved on a CUDA
device) or ``.npy`` boundaries; lsap's own files are dicts that also carry the fingerprint
of the generator the direction was computed for.

Strength unit. A raw strength depends on how long ``n`` happens to be. lsap's comparable
unit is "k standard deviations of w along the direction": :meth:`Direction.std_along` is the
std of sampled w (lsap's seeded z stream, no truncation) projected on the unit direction,
and :meth:`Direction.in_std_units` returns the direction rescaled so that strength k moves a
code by k of those standard deviations. Evaluation, bench and ``lsap edit --std_units`` use
these two and nothing else.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lsap.errors import BadFileError, BadValueError
from lsap.io import atomic_write, load_weights_file
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.sampling import Z_BLOCK, z_blocks

__all__ = ["DIRECTION_FORMAT", "STD_SAMPLES", "Direction", "Strength", "as_wplus", "check_finite", "check_fingerprint",
           "check_layers", "layer_mask", "load_direction", "parse_layers", "save_direction"]

DIRECTION_FORMAT = "lsap.direction"
# Samples behind the strength unit (Direction.std_along): the std's relative error is ~1.6 %.
STD_SAMPLES = 2000
Strength = float | Tensor


def check_fingerprint(stored: str | None, generator: nn.Module, what: str) -> None:
    """Warn when ``what`` (a direction, GANSpace components, ...) was computed for another
    generator than ``generator`` (nothing stored: no check)."""
    if not stored:
        return
    actual = generator_fingerprint(generator)
    if stored != actual:
        warnings.warn(f"{what} was computed for another generator (fingerprint {stored[:12]}..., this generator is "
                      f"{actual[:12]}...); edits may not mean what they meant there", RuntimeWarning, stacklevel=3)


def parse_layers(spec: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"a:b"`` (b exclusive), ``"a"``, ``"a,b,c"`` or a sequence -> W+ indices; None -> all.

    An empty or reversed range (``"9:3"``, ``"4:4"``), a negative index or a repeated one is
    refused (:class:`~lsap.errors.BadValueError`): it would edit nothing, or not what it says.
    """
    if spec is None:
        return None
    if isinstance(spec, (tuple, list)):
        layers = tuple(int(i) for i in spec)
    else:
        text = str(spec).strip()
        try:
            if ":" in text:
                start, end = text.split(":", 1)
                layers = tuple(range(int(start), int(end)))
                if not layers:
                    raise BadValueError(f"layers {spec!r} is an empty range: 'a:b' means entries a..b-1, so b must "
                                        "be larger than a")
            else:
                layers = tuple(int(i) for i in text.split(","))
        except ValueError as error:
            if isinstance(error, BadValueError):
                raise
            raise BadValueError(f"layers must look like 'a:b' (end exclusive) or 'a,b,c', got {spec!r}") from None
    if not layers:
        raise BadValueError(f"layers {spec!r} names no W+ entry")
    if min(layers) < 0 or len(set(layers)) != len(layers):
        raise BadValueError(f"layers {spec!r}: W+ entries must be distinct and non-negative, got {list(layers)}")
    return layers


def check_layers(layers: Sequence[int] | None, num_ws: int, spec: object = None) -> None:
    """Refuse W+ entries beyond a generator's ``num_ws`` (one line, naming the valid range)."""
    bad = [i for i in (layers or ()) if not 0 <= i < num_ws]
    if bad:
        raise BadValueError(f"layers {spec if spec is not None else list(layers or ())!r}: entries {bad} are out of "
                            f"range; this generator's W+ has entries 0..{num_ws - 1} (use e.g. '0:{num_ws}')")


def check_finite(tensor: Tensor, what: str) -> Tensor:
    """``tensor``, refused (:class:`~lsap.errors.BadFileError`) when it holds NaN or inf."""
    if not bool(torch.isfinite(tensor).all()):
        raise BadFileError(f"{what} holds NaN or infinite values")
    return tensor


def layer_mask(num_ws: int, layers: Sequence[int] | None, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[num_ws, 1]`` mask of the W+ entries an edit touches."""
    mask = torch.zeros(num_ws, 1, device=device, dtype=dtype)
    if layers is None:
        return mask + 1
    check_layers(layers, num_ws)
    mask[list(layers)] = 1
    return mask


def as_wplus(ws: Tensor, num_ws: int) -> Tensor:
    """W ``[B, w_dim]`` broadcast to W+ ``[B, num_ws, w_dim]``; W+ returned as it is."""
    return ws[:, None, :].expand(-1, num_ws, -1) if ws.ndim == 2 else ws


def _strength(strength: Strength, ws: Tensor) -> Tensor:
    s = torch.as_tensor(strength, device=ws.device, dtype=ws.dtype)
    if s.ndim == 0:
        return s
    if s.shape != (ws.shape[0],):
        raise ValueError(f"strength must be a number or one per code [{ws.shape[0]}], got {tuple(s.shape)}")
    return s.reshape(-1, *([1] * (ws.ndim - 1)))


@dataclass(eq=False)
class Direction:
    """A direction ``n`` in W (``[w_dim]``, broadcast over every W+ entry) or W+ (``[num_ws, w_dim]``).

    Attributes:
        vector: the direction (not renormalised: published files are applied as saved).
        layers: W+ entries the edit is restricted to (None: all).
        name: a label for grids and records.
        generator_hash: fingerprint of the generator it was computed for, if known.
        meta: provenance (method, accuracy, source file ...).
    """

    vector: Tensor
    layers: tuple[int, ...] | None = None
    name: str = "direction"
    generator_hash: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vector.ndim not in (1, 2):
            raise ValueError(f"a direction is [w_dim] or [num_ws, w_dim], got {tuple(self.vector.shape)}")
        self.layers = parse_layers(self.layers)

    @property
    def w_dim(self) -> int:
        return int(self.vector.shape[-1])

    def apply(self, ws: Tensor, strength: Strength, layers: str | Sequence[int] | None = None) -> Tensor:
        """``ws + strength * n`` for W ``[B, w_dim]`` or W+ ``[B, num_ws, w_dim]`` codes.

        ``strength`` is a number or one value per code; ``layers`` (default: the
        direction's own) restricts the edit to those W+ entries, which turns W codes into W+.
        """
        layers = parse_layers(layers) if layers is not None else self.layers
        if ws.ndim not in (2, 3) or ws.shape[-1] != self.w_dim:
            raise ValueError(f"codes must be W [B, {self.w_dim}] or W+ [B, num_ws, {self.w_dim}], "
                             f"got {tuple(ws.shape)} for a direction of shape {tuple(self.vector.shape)}")
        n = self.vector.to(device=ws.device, dtype=ws.dtype)
        s = _strength(strength, ws)
        if n.ndim == 2:
            if ws.ndim == 2:
                ws = as_wplus(ws, n.shape[0])
            elif ws.shape[1] != n.shape[0]:
                raise ValueError(f"direction of shape {tuple(n.shape)} has {n.shape[0]} W+ entries but the codes "
                                 f"of shape {tuple(ws.shape)} have {ws.shape[1]}")
        elif layers is not None and ws.ndim == 2:
            raise ValueError(f"a layer range needs W+ codes [B, num_ws, {self.w_dim}], got W codes {tuple(ws.shape)}")
        if layers is None:
            return ws + s * n
        mask = layer_mask(ws.shape[1], layers, ws.device, ws.dtype)
        return ws + s * (mask * n)

    def unit_vector(self) -> Tensor:
        """``n / |n|`` (Frobenius norm for W+ directions)."""
        norm = self.vector.norm()
        if not norm > 0:
            raise BadValueError(f"direction '{self.name}' is zero: it has no strength unit")
        return self.vector / norm

    @torch.no_grad()
    def std_along(self, generator: nn.Module, num_samples: int = STD_SAMPLES, seed: int = 0,
                  batch_size: int = Z_BLOCK) -> float:
        """The strength unit: std (unbiased) of sampled w along the unit direction.

        w comes from lsap's seeded z stream (:func:`lsap.model.sampling.z_blocks`) through the
        mapping network, without truncation. A W+ direction ``[num_ws, w_dim]`` measures w
        broadcast to W+ along its Frobenius-unit vector, so a W direction and the same vector
        repeated on every entry give the same :meth:`in_std_units` edit. ``layers`` play no
        part: the unit describes the vector.
        """
        if num_samples < 2:
            raise BadValueError(f"std_along needs at least 2 samples, got {num_samples}")
        n = self.unit_vector().double()
        along = n if n.ndim == 1 else n.sum(dim=0)  # w broadcast over entries: w . sum_i n_i
        if along.shape[-1] != int(generator.w_dim):
            raise BadValueError(f"direction '{self.name}' has w_dim {along.shape[-1]}, the generator "
                                f"{int(generator.w_dim)}")
        device = next(generator.parameters()).device
        along = along.to(device)
        was_training = generator.training
        generator.eval()  # a mapping network in training mode would move its w_avg
        try:
            projections = [generator.mapping(z.to(device)).double() @ along
                           for z in z_blocks(num_samples, int(generator.z_dim), seed, block_size=batch_size)]
        finally:
            generator.train(was_training)
        return float(torch.cat(projections).std())

    def in_std_units(self, generator: nn.Module, num_samples: int = STD_SAMPLES, seed: int = 0) -> Direction:
        """This direction rescaled so that strength ``k`` moves a code by ``k`` standard
        deviations of w along it (:meth:`std_along`); the unit is recorded in ``meta``."""
        std = self.std_along(generator, num_samples, seed)
        meta = dict(self.meta, unit="std", std_along=std, std_samples=num_samples, std_seed=seed)
        return replace(self, vector=self.unit_vector() * std, meta=meta)

    def std_strength(self, generator: nn.Module, k: float, num_samples: int = STD_SAMPLES, seed: int = 0) -> float:
        """The raw strength (for :meth:`apply`) that moves a code by ``k`` standard deviations."""
        return float(k) * self.std_along(generator, num_samples, seed) / float(self.vector.norm())

    def check_generator(self, generator: nn.Module) -> None:
        check_fingerprint(self.generator_hash, generator, f"direction '{self.name}'")

    def state(self) -> dict[str, Any]:
        return {"format": DIRECTION_FORMAT, "version": 1, "direction": self.vector.detach().cpu()[None],
                "layers": list(self.layers) if self.layers is not None else None, "name": self.name,
                "generator_hash": self.generator_hash, "meta": self.meta}


def save_direction(direction: Direction, path: str | os.PathLike[str]) -> Path:
    """Write lsap's direction file: a dict with ``direction`` ``[1, w_dim]`` (or ``[1, num_ws,
    w_dim]``) as published files have it, plus layers, name, fingerprint and provenance."""
    state = direction.state()
    atomic_write(path, lambda f: torch.save(state, f))
    return Path(path)


def _vector_from_array(array: Tensor, where: str) -> Tensor:
    """``[1, D]`` / ``[D]`` -> ``[D]``; ``[1, N, D]`` / ``[N, D]`` -> ``[N, D]`` (rows kept)."""
    if not array.is_floating_point():
        raise BadFileError(f"{where}: a direction must hold floating-point numbers, got {array.dtype}")
    check_finite(array, f"direction file {where}")
    shape = tuple(array.shape)
    if array.ndim == 1:
        return array
    if array.ndim == 2:
        return array[0] if shape[0] == 1 else array
    if array.ndim == 3 and shape[0] == 1:
        return array[0]
    raise BadFileError(f"{where}: expected a direction of shape [1, w_dim], [w_dim] or [1, num_ws, w_dim], got {shape}")


def load_direction(path: str | os.PathLike[str], name: str | None = None,
                   layers: str | Sequence[int] | None = None) -> Direction:
    """Read a direction file without executing anything from it.

    Accepts InterFaceGAN-style ``.pt`` tensors (``[1, w_dim]``, ``[w_dim]``, ``[1, num_ws,
    w_dim]``; any saved device, read to the CPU), ``.npy`` boundaries (no pickles), and
    lsap's own direction files. ``layers`` restricts the edit to W+ entries (``"a:b"``).
    """
    file = Path(path).expanduser()
    label = name or file.stem
    if file.suffix == ".npy":
        if not file.is_file():
            raise FileNotFoundError(f"direction file not found: '{file}'")
        try:
            array = np.load(file, allow_pickle=False)
            numbers = np.asarray(array, dtype=np.float32)
        except (ValueError, OSError, EOFError, TypeError) as err:
            raise BadFileError(f"refusing direction file '{file}': it is not a readable plain numeric .npy array "
                               f"({err})") from None
        vector = _vector_from_array(torch.from_numpy(numbers), f"'{file}'")
        return Direction(vector.float(), layers=layers, name=label, meta={"source": str(file)})
    data = load_weights_file(file, "direction file")
    if isinstance(data, Tensor):
        return Direction(_vector_from_array(data.detach(), f"'{file}'").float(), layers=layers, name=label,
                         meta={"source": str(file)})
    if isinstance(data, Mapping) and data.get("format") == DIRECTION_FORMAT:
        if not isinstance(data.get("direction"), Tensor):
            raise BadFileError(f"'{file}' is an lsap direction file without a 'direction' tensor")
        vector = _vector_from_array(data["direction"], f"'{file}'").float()
        return Direction(vector, layers=layers if layers is not None else data.get("layers"),
                         name=name or data.get("name") or label, generator_hash=data.get("generator_hash"),
                         meta=dict(data.get("meta") or {}, source=str(file)))
    if isinstance(data, Mapping) and {"comp", "mean", "std"} <= set(data):
        raise BadValueError(f"'{file}' is a GANSpace file, not one direction: use 'FILE#k' for component k "
                            "(or load_ganspace)")
    raise BadFileError(f"'{file}' is not a direction: expected a tensor [1, w_dim], [w_dim] or [1, num_ws, w_dim], "
                     f"got {type(data).__name__}")
