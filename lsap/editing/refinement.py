"""Rendering edited codes through a refinement's state (the refinement-state protocol).

A refinement (PTI, HFGI, SAM, ...) makes a result whose reconstruction is not ``G(ws)``
alone: PTI tunes the weights, HFGI fuses aligned detail into the features, SAM adds
feature offsets under masks. To edit such a result, editing edits ``ws`` as usual and asks
the refinement to render the edited codes. The protocol:

* a results record names its refinement (:attr:`lsap.results.InversionRecord.refinement`,
  from ``meta["refinement"]``); None means a plain inversion, rendered by the generator;
* :data:`REFINEMENT_LOADERS` maps that name to a loader as a ``"module:function"`` string,
  imported only when a result of that refinement is edited (so lsap.editing imports no
  refinement module, and no refinement module needs lsap.editing);
* the loader is called as ``loader(generator, record, code)`` with the frozen base
  generator (already on its device, in eval mode), the :class:`~lsap.results.InversionRecord`
  and its checked code file (``record.load_code(...)``: the unedited ``ws`` and ``noise``).
  It reads whatever the refinement stored as untrusted data (lsap's safe loaders only;
  its per-image files at ``record.state_path("<folder>")``, its settings in ``record.meta``)
  and returns an :class:`EditRenderer` for that one image;
* ``renderer.render(ws)`` turns edited W+ codes ``[S, num_ws, w_dim]`` (S edits of that
  image) into images ``[S, C, H, W]``; with the unedited code it must reproduce the
  refinement's own reconstruction (each implementer tests this). ``renderer.generator``
  is the generator whose style layers edits read (PTI: the tuned one); a renderer that
  also has ``render_styles(styles)`` supports StyleSpace edits (full-S styles, as
  :meth:`Generator.synthesis_from_styles` takes them).

A new refinement adds one line to :data:`REFINEMENT_LOADERS` (e.g. ``"hfgi":
"lsap.refine.hfgi_editing:load_edit_renderer"``) and writes its loader in its own module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from torch import Tensor, nn

from lsap.errors import BadValueError
from lsap.model.delta import apply_delta

if TYPE_CHECKING:
    from lsap.results import InversionRecord

__all__ = ["REFINEMENT_LOADERS", "EditRenderer", "GeneratorRenderer", "load_pti_renderer", "refinement_renderer",
           "render_edited"]

#: Refinement name (a record's ``meta["refinement"]``) -> ``"module:function"`` of its loader.
REFINEMENT_LOADERS: dict[str, str] = {
    "pti": "lsap.editing.refinement:load_pti_renderer",
    "sam": "lsap.refine.sam:load_edit_renderer",
    "hfgi": "lsap.refine.hfgi_editing:load_edit_renderer",
}


class EditRenderer(Protocol):
    generator: nn.Module

    def render(self, ws: Tensor) -> Tensor:
        """Edited W+ codes ``[S, num_ws, w_dim]`` -> images ``[S, C, H, W]``."""
        ...


@dataclass
class GeneratorRenderer:
    """Codes rendered by a generator with fixed noise maps (``[B or 1, 1, r, r]`` each, or
    None for the generator's own constant noise): plain inversions and PTI."""

    generator: nn.Module
    noise: Sequence[Tensor] | None = None

    def _noise(self, ws: Tensor) -> list[Tensor] | None:
        return None if self.noise is None else [n.to(device=ws.device, dtype=ws.dtype) for n in self.noise]

    def render(self, ws: Tensor) -> Tensor:
        return self.generator.synthesis(ws, noise=self._noise(ws))

    def render_styles(self, styles: list[Tensor]) -> Tensor:
        return self.generator.synthesis_from_styles(styles, noise=self._noise(styles[0]))


def load_pti_renderer(generator: nn.Module, record: InversionRecord, code: dict[str, Any]) -> GeneratorRenderer:
    """PTI: the generator with this image's tuned-weights delta added (refused when the
    delta was made for other weights), with the delta's noise maps, else the code's."""
    delta = record.load_delta()
    device = next(generator.parameters()).device
    tuned = apply_delta(generator, delta).to(device).eval()
    noise = delta.get("noise") if delta.get("noise") is not None else code.get("noise")
    return GeneratorRenderer(tuned, noise)


def _loader(refinement: str) -> Callable[..., EditRenderer]:
    target = REFINEMENT_LOADERS.get(refinement)
    if target is None:
        raise BadValueError(f"results made by the refinement '{refinement}' cannot be edited: lsap knows how to "
                            f"render edits through {sorted(REFINEMENT_LOADERS)} only")
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def refinement_renderer(generator: nn.Module, record: InversionRecord, code: dict[str, Any]) -> EditRenderer:
    """The renderer of one result: its refinement's (see the module documentation), or the
    generator itself with the code's noise for a plain inversion."""
    refinement = record.refinement
    if refinement is None:
        return GeneratorRenderer(generator, code.get("noise"))
    return _loader(refinement)(generator, record, code)


def render_edited(renderer: EditRenderer, edited: Tensor | list[Tensor], refinement: str | None = None) -> Tensor:
    """Images of edited codes: W+ tensors through ``render``, full-S styles (StyleSpace
    edits) through ``render_styles`` where the renderer has it."""
    if isinstance(edited, Tensor):
        return renderer.render(edited)
    render_styles = getattr(renderer, "render_styles", None)
    if render_styles is None:
        raise BadValueError(f"StyleSpace edits cannot be rendered through the refinement "
                            f"'{refinement or type(renderer).__name__}': edit its results along W+ directions")
    return render_styles(edited)
