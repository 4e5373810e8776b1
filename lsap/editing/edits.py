"""Edits as one interface for grids and the ``lsap edit`` command, and the preset registry.

An :class:`Edit` renders a batch of codes at one strength. Specs name them:

* ``path/to/file.pt`` / ``.npy``: an InterFaceGAN-style direction (:func:`load_direction`);
* ``path/to/pca.pt#k`` (or ``.npz``): component k of a GANSpace or SeFa file, added as a
  direction (``#k:start:end`` uses e4e's GANSpace edit on entries start..end-1); a built-in
  GANSpace file is named the same way (``ganspace#k``: the shipped PCA's component k, one
  std of w along it per unit of strength); its bare name is refused with that hint;
* ``ganspace:NAME`` / ``ganspace:k:start:end``: e4e's GANSpace edit with a preset or explicit
  tuple, on the GANSpace file given separately;
* ``stylespace:NAME`` / ``stylespace:LAYER:CHANNEL``: a StyleSpace single-channel edit;
* ``NAME``: a built-in direction file ``lsap/assets/directions/NAME.pt`` (or ``.npy``), or a
  file of that name in the extra search folders (``$LSAP_DIRECTIONS_PATH``, ``os.pathsep``
  separated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from torch import Tensor, nn

from lsap.editing.directions import Direction, check_layers, load_direction, parse_layers
from lsap.editing.ganspace import GANSPACE_PRESETS, GANSpace, GANSpaceMode, load_ganspace
from lsap.editing.refinement import GeneratorRenderer, render_edited
from lsap.editing.sefa import is_sefa_state, sefa_from_state
from lsap.editing.stylespace import STYLESPACE_PRESETS, StyleEdit, apply_style_edits, style_std
from lsap.errors import BadValueError, MissingInputError
from lsap.io import ASSETS_DIR, load_weights_file

__all__ = ["DirectionEdit", "Edit", "GANSpaceEdit", "StyleSpaceEdit", "available_directions", "builtin_direction_dirs",
           "direction_file", "direction_names", "resolve_edit"]

ASSET_DIRECTIONS = ASSETS_DIR / "directions"
DIRECTION_SUFFIXES = (".pt", ".npy")


class Edit(Protocol):
    name: str
    identity_at_zero: bool  # strength 0 leaves the code unchanged

    def edited(self, generator: nn.Module, ws: Tensor, strength: float) -> Tensor | list[Tensor]:
        """The edited codes: W+ ``[B, num_ws, w_dim]``, or the full-S styles for StyleSpace edits."""
        ...

    def render(self, generator: nn.Module, edited: Tensor | list[Tensor], noise: Any = None) -> Tensor:
        """The edited codes rendered by ``generator`` alone (refined results render through
        :func:`lsap.editing.refinement.render_edited` instead)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def _wplus(generator: nn.Module, ws: Tensor) -> Tensor:
    return generator.synthesis_network.check_ws(ws)


@dataclass
class DirectionEdit:
    direction: Direction
    layers: tuple[int, ...] | None = None
    name: str = ""
    identity_at_zero: bool = True

    def __post_init__(self) -> None:
        self.name = self.name or self.direction.name

    def edited(self, generator: nn.Module, ws: Tensor, strength: float) -> Tensor:
        return _wplus(generator, self.direction.apply(ws, strength, self.layers))

    def render(self, generator: nn.Module, edited: Tensor, noise: Any = None) -> Tensor:
        return render_edited(GeneratorRenderer(generator, noise), edited)

    def describe(self) -> dict[str, Any]:
        return {"kind": "direction", "name": self.name, "layers": list(self.layers or self.direction.layers or []) or None,
                "source": self.direction.meta.get("source"), "unit": self.direction.meta.get("unit", "vector")}


@dataclass
class GANSpaceEdit:
    ganspace: GANSpace
    component: int
    start: int
    end: int
    mode: GANSpaceMode = "target"
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"ganspace_{self.component}_{self.start}_{self.end}"
        self.identity_at_zero = self.mode == "shift"

    def edited(self, generator: nn.Module, ws: Tensor, strength: float) -> Tensor:
        return self.ganspace.apply(_wplus(generator, ws), self.component, self.start, self.end, strength, self.mode)

    def render(self, generator: nn.Module, edited: Tensor, noise: Any = None) -> Tensor:
        return render_edited(GeneratorRenderer(generator, noise), edited)

    def describe(self) -> dict[str, Any]:
        return {"kind": "ganspace", "name": self.name, "component": self.component, "start": self.start,
                "end": self.end, "mode": self.mode, "source": self.ganspace.meta.get("source")}


@dataclass
class StyleSpaceEdit:
    edit: StyleEdit
    sigma: list[Tensor]
    name: str = ""
    identity_at_zero: bool = True

    def __post_init__(self) -> None:
        self.name = self.name or f"stylespace_{self.edit.layer}_{self.edit.channel}"

    def edited(self, generator: nn.Module, ws: Tensor, strength: float) -> list[Tensor]:
        return apply_style_edits(generator.styles(ws), [self.edit], self.sigma, strength)

    def render(self, generator: nn.Module, edited: list[Tensor], noise: Any = None) -> Tensor:
        return render_edited(GeneratorRenderer(generator, noise), edited)

    def describe(self) -> dict[str, Any]:
        return {"kind": "stylespace", "name": self.name, "layer": self.edit.layer, "channel": self.edit.channel,
                "alpha": self.edit.alpha, "source": self.edit.source or None}


def builtin_direction_dirs() -> list[Path]:
    """Folders searched for named directions: ``$LSAP_DIRECTIONS_PATH`` entries, then lsap's assets."""
    extra = [Path(p).expanduser() for p in os.environ.get("LSAP_DIRECTIONS_PATH", "").split(os.pathsep) if p]
    return extra + [ASSET_DIRECTIONS]


def available_directions() -> dict[str, Path]:
    """Name -> file of every named direction (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in builtin_direction_dirs():
        if folder.is_dir():
            for file in sorted(folder.iterdir()):
                if file.suffix in DIRECTION_SUFFIXES and file.stem not in found:
                    found[file.stem] = file
    return found


def direction_file(spec: str) -> Path | None:
    """The file a direction spec names: ``FILE`` or ``FILE#k`` (an existing file), else a
    built-in name, ``NAME`` or ``NAME#k`` (:func:`available_directions`); ``None`` when it is
    neither."""
    file_part = spec.partition("#")[0]
    path = Path(file_part).expanduser()
    return path if path.is_file() else available_directions().get(file_part)


def _is_component_file(path: Path) -> bool:
    """Whether a direction file holds several components (GANSpace or SeFa), not one direction."""
    if path.suffix == ".npz":
        return True
    if path.suffix != ".pt":
        return False
    data = load_weights_file(path, "direction file")
    return isinstance(data, dict) and "comp" in data


def direction_names() -> list[str]:
    """The built-in names as ``lsap edit --direction`` takes them: ``NAME`` for a direction,
    ``NAME#k`` for a file of components (the shipped ``ganspace#k``)."""
    return [f"{name}#k" if _is_component_file(path) else name for name, path in available_directions().items()]


def _component_file(path: Path, spec: str, generator: nn.Module, mode: GANSpaceMode, label: str) -> Any:
    """``FILE#k`` or ``FILE#k:start:end`` of a GANSpace or SeFa file."""
    parts = spec.split(":")
    try:
        k = int(parts[0])
        bounds = [int(p) for p in parts[1:]]
    except ValueError:
        raise BadValueError(f"'{label}#{spec}': expected '#k' or '#k:start:end' with whole numbers") from None
    if len(parts) not in (1, 3):
        raise BadValueError(f"'{label}#{spec}': expected '#k' or '#k:start:end'")
    data = None if path.suffix == ".npz" else load_weights_file(path, "direction file")
    if is_sefa_state(data):
        sefa = sefa_from_state(data, path)
        _check_component(k, len(sefa.components), label)
        if len(parts) == 3:
            raise BadValueError(f"'{label}#{spec}': '#k:start:end' is for GANSpace files; a SeFa component keeps "
                                "its own layers (use --layers)")
        direction = sefa.direction(k)
        direction.name, direction.meta = f"{label}_{k}", dict(direction.meta, source=str(path))
        direction.check_generator(generator)
        return DirectionEdit(direction)
    ganspace = load_ganspace(path)
    ganspace.check_generator(generator)
    _check_component(k, ganspace.num_components, label)
    if len(parts) == 3:
        check_layers(range(bounds[0], bounds[1]), int(generator.num_ws), f"{bounds[0]}:{bounds[1]}")
        if bounds[1] <= bounds[0]:
            raise BadValueError(f"'{label}#{spec}': start:end must be a non-empty range (end exclusive)")
        return GANSpaceEdit(ganspace, k, bounds[0], bounds[1], mode, name=f"{label}_{spec}")
    direction = Direction(ganspace.components[k] * ganspace.std[k], name=f"{label}_{k}",
                          generator_hash=ganspace.generator_hash, meta={"source": str(path), "unit": "std"})
    return DirectionEdit(direction)


def _check_component(k: int, count: int, label: str) -> None:
    if not 0 <= k < count:
        raise BadValueError(f"'{label}' has {count} components: k must be 0..{count - 1}, got {k}")


def resolve_edit(spec: str, generator: nn.Module, layers: str | Sequence[int] | None = None,
                 ganspace: str | None = None, ganspace_mode: GANSpaceMode = "target",
                 style_std_samples: int = 100_000, seed: int = 0) -> Any:
    """Turn a direction spec (see the module documentation) into an :class:`Edit` for ``generator``."""
    chosen = parse_layers(layers)
    kind, _, rest = spec.partition(":")
    if kind == "ganspace" and rest:
        if ganspace is None:
            raise BadValueError(f"'{spec}' needs a GANSpace file (--ganspace, e.g. e4e's ffhq_pca.pt)")
        pca = load_ganspace(ganspace)
        pca.check_generator(generator)
        if rest in GANSPACE_PRESETS:
            p = GANSPACE_PRESETS[rest]
            return GANSpaceEdit(pca, p.component, p.start, p.end, ganspace_mode, name=rest)
        parts = rest.split(":")
        if len(parts) != 3:
            raise BadValueError(f"unknown GANSpace edit '{spec}': use one of {sorted(GANSPACE_PRESETS)} or "
                                "'ganspace:k:start:end'")
        return GANSpaceEdit(pca, int(parts[0]), int(parts[1]), int(parts[2]), ganspace_mode)
    if kind == "stylespace" and rest:
        if rest in STYLESPACE_PRESETS:
            edit, name = STYLESPACE_PRESETS[rest], rest
        else:
            parts = rest.split(":")
            if len(parts) != 2:
                raise BadValueError(f"unknown StyleSpace edit '{spec}': use one of {sorted(STYLESPACE_PRESETS)} or "
                                    "'stylespace:layer:channel'")
            edit, name = StyleEdit(int(parts[0]), int(parts[1])), ""
        return StyleSpaceEdit(edit, style_std(generator, style_std_samples, seed), name=name)
    path = direction_file(spec)
    if path is None:
        raise MissingInputError(
            f"direction '{spec}' is neither a file nor a known name; named directions: "
            f"{sorted(direction_names()) or 'none'} "
            f"(searched {[str(d) for d in builtin_direction_dirs()]}); presets: "
            f"{['ganspace:' + n for n in GANSPACE_PRESETS] + ['stylespace:' + n for n in STYLESPACE_PRESETS]}")
    file_part, _, component = spec.partition("#")
    # A built-in direction is called by its name; a file keeps the name stored in it.
    builtin = not Path(file_part).expanduser().is_file()
    if chosen is not None:
        check_layers(chosen, int(generator.num_ws), layers)
    if component:
        edit = _component_file(path, component, generator, ganspace_mode, file_part if builtin else path.stem)
        if chosen is not None and isinstance(edit, DirectionEdit):
            edit.layers = chosen
        return edit
    if builtin and _is_component_file(path):
        raise BadValueError(f"'{spec}' is a file of components (GANSpace / SeFa), not one direction: use "
                            f"'{spec}#k' for component k")
    direction = load_direction(path, name=spec if builtin else None)
    direction.check_generator(generator)
    check_layers(direction.layers, int(generator.num_ws), direction.layers)
    return DirectionEdit(direction, layers=chosen)
