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

# Each public name once, beside its submodule; imported on first use so that `lsap --help`
# (which imports lsap.editing.cli) does not pay for torch metrics and friends.
from lsap._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".directions": ("STD_SAMPLES", "Direction", "load_direction", "parse_layers", "save_direction"),
    ".edits": ("DirectionEdit", "GANSpaceEdit", "StyleSpaceEdit", "available_directions", "direction_names",
               "resolve_edit"),
    ".refinement": ("REFINEMENT_LOADERS", "EditRenderer", "GeneratorRenderer", "refinement_renderer"),
    ".ganspace": ("GANSPACE_PRESETS", "GANSpace", "compute_ganspace", "load_ganspace", "save_ganspace"),
    ".interfacegan": ("Boundary", "fit_boundary", "project_out", "read_labels"),
    ".run": ("edit_results", "render_grid"),
    ".sefa": ("SeFa", "compute_sefa", "load_sefa", "save_sefa"),
    ".stylespace": ("STYLESPACE_PRESETS", "StyleEdit", "apply_style_edits", "full_to_lsap", "lsap_to_full",
                    "style_std"),
})
