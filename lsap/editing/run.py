"""``lsap edit``: edit every image of an inversion output folder and draw edit grids.

For each finished image of ``results_dir`` (any inversion; refined results render through
their refinement's state, see :mod:`lsap.editing.refinement`) and each edit, the code is
edited at every strength and rendered. Results are read and the edit folder written
through :mod:`lsap.results` (:class:`~lsap.results.InversionResults`,
:class:`~lsap.results.EditResults`, whose documentation gives the layout). Re-running skips
images whose record exists.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from lsap.editing.refinement import EditRenderer, GeneratorRenderer, refinement_renderer, render_edited
from lsap.errors import BadValueError
from lsap.model.fingerprint import generator_fingerprint
from lsap.results import EditResults, InversionRecord, InversionResults
from lsap.visualize import image_grid

__all__ = ["columns_for", "edit_results", "render_grid"]


def columns_for(strengths: Sequence[float], identity_at_zero: bool) -> list[float | None]:
    """Grid columns: the strengths in ascending order with the reconstruction (None) in the
    middle; for edits where strength 0 changes nothing, that column is the 0 column."""
    ordered = sorted(float(s) for s in strengths)
    if identity_at_zero and 0.0 in ordered:
        return [None if s == 0.0 else s for s in ordered]
    middle = len(ordered) // 2
    return ordered[:middle] + [None] + ordered[middle:]


@torch.no_grad()
def render_grid(generator: nn.Module, ws: Tensor, edits: Sequence[Any], strengths: Sequence[float],
                noise: Any = None, renderer: EditRenderer | None = None) -> tuple[list[Tensor], dict[str, Any]]:
    """Edit W / W+ codes ``[B, ...]`` with every edit at every strength.

    Images come from ``renderer`` (default: ``generator`` with ``noise``); edits read the
    renderer's generator (PTI: the tuned one). All rows share one column layout: the 0
    column is the reconstruction only when strength 0 is the identity for every edit
    (GANSpace's target mode is not).

    Returns, per image, a ``[len(edits), len(columns), C, H, W]`` image tensor (rows: edits;
    columns from :func:`columns_for`, None = the unedited reconstruction), and per edit name
    its columns and edited codes (``[B, S, num_ws, w_dim]`` or, for style edits, the list of
    full-S styles ``[B, S, channels]``).
    """
    renderer = renderer if renderer is not None else GeneratorRenderer(generator, noise)
    model = renderer.generator
    ws = model.synthesis_network.check_ws(ws)
    original = renderer.render(ws)
    rows, codes = [], {}
    columns = columns_for(strengths, all(edit.identity_at_zero for edit in edits))
    for edit in edits:
        images, edited_at = [], {}
        for s in columns:
            if s is None:
                images.append(original)
                continue
            edited = edit.edited(model, ws, s)
            edited_at[s] = edited
            images.append(render_edited(renderer, edited))
        rows.append(torch.stack(images, dim=1))  # [B, S, C, H, W]
        values = [edited_at[s] for s in sorted(edited_at)]
        if values and isinstance(values[0], Tensor):
            stacked: Any = torch.stack(values, dim=1).cpu()
        else:
            stacked = [torch.stack([v[layer] for v in values], dim=1).cpu() for layer in range(len(values[0]))] \
                if values else []
        codes[edit.name] = {"columns": columns, "strengths": sorted(edited_at), "codes": stacked}
    per_image = torch.stack(rows, dim=1)  # [B, E, S, C, H, W]
    return list(per_image.cpu()), codes


def _batch_noise(codes: Sequence[dict[str, Any]]) -> list[Tensor] | None:
    """Stored noise maps of a batch of plain codes (all or nothing), else None."""
    if not codes or any(c.get("noise") is None for c in codes):
        return None
    return [torch.cat([c["noise"][j] for c in codes]) for j in range(len(codes[0]["noise"]))]


def _per_image(codes: dict[str, Any], b: int) -> dict[str, Any]:
    """Image ``b``'s slice of :func:`render_grid`'s edited codes."""
    return {k: {"columns": v["columns"], "strengths": v["strengths"],
                "codes": v["codes"][b] if isinstance(v["codes"], Tensor) else [c[b] for c in v["codes"]]}
            for k, v in codes.items()}


def edit_results(results_dir: str | os.PathLike[str], generator: nn.Module, edits: Sequence[Any],
                 strengths: Sequence[float], output: str | os.PathLike[str] | None = None, batch_size: int = 8,
                 device: str | torch.device = "cpu", skip_done: bool = True, upscale: int = 1) -> dict[str, int]:
    """Edit every finished image of an inversion folder (see the module documentation).

    Plain inversions render in batches of ``batch_size``; each refined result renders alone,
    through its refinement's state. Returns counts: ``{"edited", "skipped", "total"}``.
    """
    if not edits:
        raise BadValueError("no edits given")
    names_seen = [e.name for e in edits]
    if len(set(names_seen)) != len(names_seen):
        raise BadValueError(f"edit names must be unique, got {names_seen}")
    if batch_size < 1:
        raise BadValueError(f"batch_size must be at least 1, got {batch_size}")
    results = InversionResults(results_dir).checked()
    device = torch.device(device)
    generator = generator.to(device).eval()
    shape = (int(generator.num_ws), int(generator.w_dim))
    out = EditResults(output if output is not None else results.root / "edits")
    records = list(results)
    todo = [r for r in records if not (skip_done and out.is_done(r.name))]
    generator_hash = generator_fingerprint(generator)
    plain = [r for r in todo if r.refinement is None]
    groups = [plain[i:i + batch_size] for i in range(0, len(plain), batch_size)]
    groups += [[r] for r in todo if r.refinement is not None]
    sorted_strengths = sorted(float(s) for s in strengths)
    warned = False
    for group in groups:
        codes = [r.load_code(shape) for r in group]
        if len(group) == 1 and group[0].refinement is not None:
            renderer = refinement_renderer(generator, group[0], codes[0])
        else:
            renderer = GeneratorRenderer(generator, _batch_noise(codes))
        made_with = {(c.get("meta") or {}).get("generator_hash") for c in codes} - {None}
        if made_with - {generator_hash} and not warned:
            warnings.warn(f"codes in '{results.root}' were inverted with another generator than the one given "
                          "(fingerprints differ)", RuntimeWarning, stacklevel=2)
            warned = True
        ws = torch.stack([c["ws"] for c in codes]).to(device=device, dtype=torch.float32)
        images, edited = render_grid(generator, ws, edits, strengths, renderer=renderer)
        for b, record in enumerate(group):
            out.write(record.name, image_grid(list(images[b]), upscale=upscale), _per_image(edited, b),
                      _edit_record(results, record, codes[b], edits, edited, sorted_strengths, out,
                                   generator_hash))
    out.write_edits_file()
    return {"edited": len(todo), "skipped": len(records) - len(todo), "total": len(records)}


def _edit_record(results: InversionResults, record: InversionRecord, code: dict[str, Any], edits: Sequence[Any],
                 edited: dict[str, Any], strengths: list[float], out: EditResults,
                 generator_hash: str) -> dict[str, Any]:
    """The JSON record of one edited image (what was edited, how, and where the files are)."""
    return {
        "name": record.name, "results_dir": str(results.root),
        "code": str(record.code_path), "refinement": record.refinement,
        "pti_delta": str(record.delta_path) if record.refinement == "pti" else None,
        "method": record.refinement or (code.get("meta") or {}).get("method") or record.method,
        "strengths": strengths,
        "edits": [dict(e.describe(), columns=edited[e.name]["columns"]) for e in edits],
        "grid": str(out.grid_path(record.name)), "codes": str(out.code_path(record.name)),
        "generator_hash": generator_hash,
    }
