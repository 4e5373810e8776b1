"""Editing inverted codes: published direction files and computing directions for any generator.

* :func:`load_direction` / :class:`Direction` (InterFaceGAN-style W / W+ directions),
* :func:`load_ganspace` / :class:`GANSpace` (e4e's GANSpace edits) and :func:`compute_ganspace`,
* StyleSpace single-channel edits with :func:`style_std`,
* :func:`compute_sefa` and :func:`fit_boundary` (InterFaceGAN) for a generator's own domain,
* :func:`edit_results`, behind ``lsap edit``, reading and writing through :mod:`lsap.results`.

Strength unit: :meth:`Direction.std_along` / :meth:`Direction.in_std_units` ("k standard
deviations of sampled w along the direction"), used by ``lsap edit --std_units``,
evaluation and bench.

Refined results (PTI, HFGI, SAM, ...) are edited through the refinement-state protocol of
:mod:`lsap.editing.refinement`: a record names its refinement, a table of
``"module:function"`` strings (:data:`REFINEMENT_LOADERS`) finds its loader,
``loader(generator, record, code)`` returns a renderer whose ``render(edited_ws)`` gives
the images (and, optionally, ``render_styles(styles)`` for StyleSpace edits).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names -> defining module; loaded on first use so that `lsap --help` (which imports
# lsap.editing.cli) does not pay for torch metrics and friends.
_EXPORTS = {
    "STD_SAMPLES": "directions", "Direction": "directions", "load_direction": "directions",
    "parse_layers": "directions", "save_direction": "directions",
    "DirectionEdit": "edits", "GANSpaceEdit": "edits", "StyleSpaceEdit": "edits", "available_directions": "edits",
    "direction_names": "edits", "resolve_edit": "edits",
    "REFINEMENT_LOADERS": "refinement", "EditRenderer": "refinement", "GeneratorRenderer": "refinement",
    "refinement_renderer": "refinement",
    "GANSPACE_PRESETS": "ganspace", "GANSpace": "ganspace", "compute_ganspace": "ganspace",
    "load_ganspace": "ganspace", "save_ganspace": "ganspace",
    "Boundary": "interfacegan", "fit_boundary": "interfacegan", "project_out": "interfacegan",
    "read_labels": "interfacegan",
    "edit_results": "run", "render_grid": "run",
    "SeFa": "sefa", "compute_sefa": "sefa", "load_sefa": "sefa", "save_sefa": "sefa",
    "STYLESPACE_PRESETS": "stylespace", "StyleEdit": "stylespace", "apply_style_edits": "stylespace",
    "full_to_lsap": "stylespace", "lsap_to_full": "stylespace", "style_std": "stylespace",
}

if TYPE_CHECKING:
    from lsap.editing.directions import STD_SAMPLES, Direction, load_direction, parse_layers, save_direction
    from lsap.editing.edits import (
        DirectionEdit,
        GANSpaceEdit,
        StyleSpaceEdit,
        available_directions,
        direction_names,
        resolve_edit,
    )
    from lsap.editing.refinement import REFINEMENT_LOADERS, EditRenderer, GeneratorRenderer, refinement_renderer
    from lsap.editing.ganspace import GANSPACE_PRESETS, GANSpace, compute_ganspace, load_ganspace, save_ganspace
    from lsap.editing.interfacegan import Boundary, fit_boundary, project_out, read_labels
    from lsap.editing.run import edit_results, render_grid
    from lsap.editing.sefa import SeFa, compute_sefa, load_sefa, save_sefa
    from lsap.editing.stylespace import (
        STYLESPACE_PRESETS,
        StyleEdit,
        apply_style_edits,
        full_to_lsap,
        lsap_to_full,
        style_std,
    )


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"lsap.editing.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lsap.editing' has no attribute {name!r}")


__all__ = [
    "GANSPACE_PRESETS",
    "REFINEMENT_LOADERS",
    "STD_SAMPLES",
    "STYLESPACE_PRESETS",
    "Boundary",
    "Direction",
    "DirectionEdit",
    "EditRenderer",
    "GANSpace",
    "GANSpaceEdit",
    "GeneratorRenderer",
    "SeFa",
    "StyleEdit",
    "StyleSpaceEdit",
    "apply_style_edits",
    "available_directions",
    "compute_ganspace",
    "compute_sefa",
    "direction_names",
    "edit_results",
    "fit_boundary",
    "full_to_lsap",
    "load_direction",
    "load_ganspace",
    "load_sefa",
    "lsap_to_full",
    "parse_layers",
    "project_out",
    "read_labels",
    "refinement_renderer",
    "render_grid",
    "resolve_edit",
    "save_direction",
    "save_ganspace",
    "save_sefa",
    "style_std",
]
