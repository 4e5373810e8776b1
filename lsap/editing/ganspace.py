"""GANSpace: principal components of W, their files, e4e's edit, and computing them.

e4e's edit ``(k, start, end, strength)`` treats ``strength`` as the *target* coordinate of
the code along component k, in std units, measured on W+ entry 0:
``c = <w[0] - mean, comp_k> / std_k`` and ``w[start:end] += (strength - c) * std_k * comp_k``.
``mode="shift"`` adds ``strength * std_k * comp_k`` instead.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from lsap.editing.directions import check_finite, check_fingerprint
from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.io import atomic_write
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.sampling import sample_z
from lsap.editing.directions import Strength, _strength
from lsap.io import load_weights_file

__all__ = ["GANSPACE_PRESETS", "GANSpace", "GANSpaceMode", "GANSpacePreset", "compute_ganspace", "load_ganspace",
           "save_ganspace"]

GANSpaceMode = Literal["target", "shift"]


@dataclass(frozen=True)
class GANSpacePreset:
    """A named GANSpace edit ``(component, start, end, strength)``; end is exclusive."""

    component: int
    start: int
    end: int
    strength: float
    domain: str
    source: str


_E4E = "e4e editings/latent_editor_wrapper (ffhq_pca.pt / cars_pca.pt), after GANSpace (Harkonen et al. 2020)"
GANSPACE_PRESETS: dict[str, GANSpacePreset] = {
    "eye_openness": GANSpacePreset(54, 7, 8, 20.0, "ffhq", _E4E),
    "smile": GANSpacePreset(46, 4, 5, -20.0, "ffhq", _E4E),
    "trimmed_beard": GANSpacePreset(58, 7, 9, 20.0, "ffhq", _E4E),
    "white_hair": GANSpacePreset(57, 7, 10, -24.0, "ffhq", _E4E),
    "lipstick": GANSpacePreset(34, 10, 11, 20.0, "ffhq", _E4E),
    "car_viewpoint": GANSpacePreset(0, 0, 5, 2.0, "cars", _E4E + "; use strength -2 for the other side"),
}


@dataclass(eq=False)
class GANSpace:
    """Principal components of W.

    Attributes:
        mean: ``[w_dim]`` mean of the sampled w.
        components: ``[K, w_dim]`` unit rows, by decreasing variance.
        std: ``[K]`` standard deviation of w along each component.
        var_ratio: ``[K]`` explained-variance ratio (when known).
        generator_hash: fingerprint of the generator they were computed for (when known).
    """

    mean: Tensor
    components: Tensor
    std: Tensor
    var_ratio: Tensor | None = None
    generator_hash: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k, d = self.components.shape
        if self.mean.shape != (d,) or self.std.shape != (k,):
            raise ValueError(f"GANSpace shapes disagree: mean {tuple(self.mean.shape)}, components "
                             f"{tuple(self.components.shape)}, std {tuple(self.std.shape)}")

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    def coordinate(self, ws: Tensor, component: int) -> Tensor:
        """Coordinate of each code along ``component`` in std units, measured on entry 0 (``[B]``)."""
        w0 = ws[:, 0] if ws.ndim == 3 else ws
        comp = self.components[component].to(ws)
        return (w0 - self.mean.to(ws)) @ comp / self.std[component].to(ws)

    def apply(self, ws: Tensor, component: int, start: int, end: int, strength: Strength,
              mode: GANSpaceMode = "target") -> Tensor:
        """e4e's GANSpace edit on W+ codes ``[B, num_ws, w_dim]`` (broadcast W codes first, e.g. with
        ``generator.synthesis_network.check_ws``).

        ``mode="target"`` (e4e): move entries ``start .. end-1`` so that the coordinate along
        ``component`` measured on entry 0 becomes ``strength`` std units. ``mode="shift"``:
        add ``strength`` std units along it.
        """
        if not 0 <= component < self.num_components:
            raise ValueError(f"component {component} out of range for {self.num_components} components")
        if ws.ndim != 3 or ws.shape[-1] != self.components.shape[1]:
            raise ValueError(f"codes must be W+ [B, num_ws, {self.components.shape[1]}], got {tuple(ws.shape)}")
        if not 0 <= start < end <= ws.shape[1]:
            raise ValueError(f"entries {start}..{end - 1} out of range for codes with num_ws={ws.shape[1]}")
        s = _strength(strength, ws[:, 0]).reshape(-1)
        comp, std = self.components[component].to(ws), self.std[component].to(ws)
        if mode == "target":
            amount = s - self.coordinate(ws, component)
        elif mode == "shift":
            amount = s.expand(ws.shape[0])
        else:
            raise ValueError(f"mode must be 'target' or 'shift', got {mode!r}")
        delta = (amount * std)[:, None] * comp[None]
        out = ws.clone()
        out[:, start:end] = out[:, start:end] + delta[:, None, :]
        return out

    def check_generator(self, generator: nn.Module) -> None:
        check_fingerprint(self.generator_hash, generator, "GANSpace components")


def save_ganspace(ganspace: GANSpace, path: str | os.PathLike[str]) -> Path:
    """Write e4e's ``*_pca.pt`` format (dict ``mean [1, D]``, ``comp [K, 1, D]``, ``std [K]``)
    so e4e / PTI read it, plus ``var_ratio``, ``generator_hash`` and ``meta``."""
    state: dict[str, Any] = {
        "mean": ganspace.mean.detach().cpu().float()[None],
        "comp": ganspace.components.detach().cpu().float()[:, None, :],
        "std": ganspace.std.detach().cpu().float(),
        "format": "lsap.ganspace", "generator_hash": ganspace.generator_hash, "meta": ganspace.meta,
    }
    if ganspace.var_ratio is not None:
        state["var_ratio"] = ganspace.var_ratio.detach().cpu().float()
    atomic_write(path, lambda f: torch.save(state, f))
    return Path(path)


def _flat(value: Any, rows: bool, where: str, key: str) -> Tensor:
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value).float()
    except (TypeError, ValueError) as error:
        raise BadFileError(f"{where}: '{key}' is not numeric ({error})") from None
    check_finite(t, f"GANSpace file {where} ('{key}')")
    if rows:  # [K, 1, D] or [K, D]
        if t.ndim == 3 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim != 2:
            raise BadFileError(f"{where}: '{key}' must be [K, 1, w_dim] or [K, w_dim], got {tuple(t.shape)}")
        return t
    return t.reshape(-1)


def load_ganspace(path: str | os.PathLike[str]) -> GANSpace:
    """Read e4e / PTI ``*_pca.pt`` (dict ``mean``, ``comp``, ``std``) or GANSpace's ``.npz``
    (``lat_comp``, ``lat_mean``, ``lat_stdev``, optional ``var_ratio``); nothing is executed."""
    file = Path(path).expanduser()
    where = f"'{file}'"
    if file.suffix == ".npz":
        if not file.is_file():
            raise MissingInputError(f"GANSpace file not found: '{file}'")
        try:
            npz = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise BadFileError(f"GANSpace file {where} is not a readable .npz ({error})") from None
        with npz:
            missing = {"lat_comp", "lat_mean", "lat_stdev"} - set(npz.files)
            if missing:
                raise BadFileError(f"{where} is not a GANSpace npz: missing {sorted(missing)}")
            return GANSpace(mean=_flat(npz["lat_mean"], False, where, "lat_mean"),
                            components=_flat(npz["lat_comp"], True, where, "lat_comp"),
                            std=_flat(npz["lat_stdev"], False, where, "lat_stdev"),
                            var_ratio=_flat(npz["var_ratio"], False, where, "var_ratio")
                            if "var_ratio" in npz.files else None, meta={"source": str(file)})
    data = load_weights_file(file, "GANSpace file")
    if not isinstance(data, Mapping) or not {"mean", "comp", "std"} <= set(data):
        raise BadFileError(f"{where} is not a GANSpace file: expected a dict with 'mean', 'comp' and 'std'")
    return GANSpace(mean=_flat(data["mean"], False, where, "mean"), components=_flat(data["comp"], True, where, "comp"),
                    std=_flat(data["std"], False, where, "std"),
                    var_ratio=_flat(data["var_ratio"], False, where, "var_ratio") if "var_ratio" in data else None,
                    generator_hash=data.get("generator_hash"), meta=dict(data.get("meta") or {}, source=str(file)))


def _orient(components: Tensor) -> Tensor:
    """Fix each row's sign (largest-magnitude entry positive) so results are reproducible."""
    idx = components.abs().argmax(dim=1)
    signs = torch.sign(components.gather(1, idx[:, None]))
    return components * torch.where(signs == 0, torch.ones_like(signs), signs)


@torch.no_grad()
def compute_ganspace(generator: nn.Module, num_samples: int = 300_000, num_components: int = 80, seed: int = 0,
                     method: Literal["exact", "randomized"] = "exact", batch_size: int = 4096,
                     oversampling: int = 10, power_iterations: int = 4) -> GANSpace:
    """PCA of w = mapping(z) over ``num_samples`` seeded z draws (no truncation).

    ``"exact"`` eigen-decomposes the float64 covariance accumulated batch by batch (memory
    independent of ``num_samples``); ``"randomized"`` runs a randomized range finder on the
    stacked samples (memory ``num_samples x w_dim``). Components are unit rows sorted by
    variance; ``var_ratio`` is each one's share of the total variance.
    """
    w_dim = int(generator.w_dim)
    # Checked before any sampling: a batch size below 1 would never finish the z stream.
    if not 1 <= num_components <= w_dim:
        raise BadValueError(f"num_components must be within 1..{w_dim}, got {num_components}")
    if num_samples < 2:
        raise BadValueError(f"num_samples must be >= 2, got {num_samples}")
    if batch_size < 1:
        raise BadValueError(f"batch_size must be >= 1, got {batch_size}")
    if method not in ("exact", "randomized"):
        raise BadValueError(f"method must be 'exact' or 'randomized', got {method!r}")
    ref = next(iter(generator.parameters()))
    was_training = generator.training
    generator.eval()
    try:
        total = torch.zeros(w_dim, dtype=torch.float64)
        outer = torch.zeros(w_dim, w_dim, dtype=torch.float64)
        stacked = []
        for z in sample_z(num_samples, int(generator.z_dim), seed, batch_size):
            w = generator.mapping(z.to(device=ref.device, dtype=ref.dtype)).double().cpu()
            total += w.sum(0)
            outer += w.T @ w
            if method == "randomized":
                stacked.append(w.float())
    finally:
        generator.train(was_training)
    mean = total / num_samples
    cov = (outer - num_samples * torch.outer(mean, mean)) / (num_samples - 1)
    total_var = float(cov.diagonal().sum())
    if method == "exact":
        values, vectors = torch.linalg.eigh(cov)
        order = values.argsort(descending=True)[:num_components]
        values, components = values[order].clamp_min(0), vectors[:, order].T
    else:  # "randomized", the only other method (checked before sampling)
        samples = torch.cat(stacked) - mean.float()
        q = min(w_dim, num_components + oversampling)
        _, s, v = torch.pca_lowrank(samples, q=q, center=False, niter=power_iterations)
        values = (s.double() ** 2 / (num_samples - 1))[:num_components]
        components = v.T[:num_components].double()
    return GANSpace(
        mean=mean.float(), components=_orient(components).float(), std=values.sqrt().float(),
        var_ratio=(values / total_var).float() if total_var > 0 else None,
        generator_hash=generator_fingerprint(generator),
        meta={"method": f"ganspace-{method}", "num_samples": num_samples, "seed": seed,
              "total_variance": total_var if math.isfinite(total_var) else None},
    )
