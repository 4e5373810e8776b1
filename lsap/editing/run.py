"""``lsap edit``: edit every image of an inversion output folder and draw edit grids.

For each finished image of ``results_dir`` (LSAP_E, LSAP_O or PTI output; PTI images
render with their tuned weights) and each edit, the code is edited at every strength and
rendered. Per image this writes::

    <output>/codes/<name>.pt     {"name", "strengths", "edits": {edit: W+ [S, num_ws, w_dim] or styles}}
    <output>/grids/<name>.png    rows: edits; columns: strengths, the reconstruction in the middle
    <output>/records/<name>.json what was done (the record goes last: it marks the image finished)
    <output>/edits.jsonl         every record, one per line (rebuilt at the end of each run)

Re-running skips images whose record exists.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from lsap.editing._shared import apply_delta, atomic_save, fingerprint, list_results, read_code, result_files
from lsap.io import atomic_write
from lsap.visualize import image_grid, to_uint8

__all__ = ["EditRun", "columns_for", "edit_results", "render_grid"]


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
                noise: Any = None) -> tuple[list[Tensor], dict[str, Any]]:
    """Edit W / W+ codes ``[B, ...]`` with every edit at every strength.

    All rows share one column layout: the 0 column is the reconstruction only when strength 0
    is the identity for every edit (GANSpace's target mode is not).

    Returns, per image, a ``[len(edits), len(columns), C, H, W]`` image tensor (rows: edits;
    columns from :func:`columns_for`, None = the unedited reconstruction), and per edit name
    its columns and edited codes (``[B, S, num_ws, w_dim]`` or, for style edits, the list of
    full-S styles ``[B, S, channels]``).
    """
    ws = generator.synthesis_network.check_ws(ws)
    original = generator.synthesis(ws, noise=noise)
    rows, codes = [], {}
    columns = columns_for(strengths, all(edit.identity_at_zero for edit in edits))
    for edit in edits:
        images, edited_at = [], {}
        for s in columns:
            if s is None:
                images.append(original)
                continue
            edited = edit.edited(generator, ws, s)
            edited_at[s] = edited
            images.append(edit.render(generator, edited, noise))
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


def _noise_of(entries: Sequence[dict[str, Any]], device: torch.device) -> list[Tensor] | None:
    """Stored noise maps of a batch (all or nothing), else None (the generator's own noise)."""
    if not entries or any(e.get("noise") is None for e in entries):
        return None
    return [torch.cat([e["noise"][j] for e in entries]).to(device) for j in range(len(entries[0]["noise"]))]


class EditRun:
    """The files of one ``lsap edit`` output folder."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = Path(output)

    def record_path(self, name: str) -> Path:
        return self.output / "records" / f"{name}.json"

    def grid_path(self, name: str) -> Path:
        return self.output / "grids" / f"{name}.png"

    def code_path(self, name: str) -> Path:
        return self.output / "codes" / f"{name}.pt"

    def is_done(self, name: str) -> bool:
        return self.record_path(name).is_file()

    def write(self, name: str, grid: Tensor, codes: dict[str, Any], record: dict[str, Any]) -> None:
        atomic_save({"name": name, "edits": codes}, self.code_path(name))
        picture = Image.fromarray(to_uint8(grid).permute(1, 2, 0).numpy())
        atomic_write(self.grid_path(name), lambda f: picture.save(f, format="PNG"))
        text = json.dumps(record, sort_keys=True) + "\n"
        atomic_write(self.record_path(name), lambda f: f.write(text), mode="w")

    def merge(self) -> list[dict[str, Any]]:
        folder = self.output / "records"
        records = [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))] if folder.is_dir() else []
        records.sort(key=lambda r: r["name"])
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        atomic_write(self.output / "edits.jsonl", lambda f: f.write(text), mode="w")
        return records


def edit_results(results_dir: str | os.PathLike[str], generator: nn.Module, edits: Sequence[Any],
                 strengths: Sequence[float], output: str | os.PathLike[str] | None = None, batch_size: int = 8,
                 device: str | torch.device = "cpu", skip_done: bool = True, upscale: int = 1) -> dict[str, int]:
    """Edit every finished image of an inversion folder (see the module documentation).

    Returns counts: ``{"edited", "skipped", "total"}``.
    """
    if not edits:
        raise ValueError("no edits given")
    names_seen = [e.name for e in edits]
    if len(set(names_seen)) != len(names_seen):
        raise ValueError(f"edit names must be unique, got {names_seen}")
    device = torch.device(device)
    generator = generator.to(device).eval()
    run = EditRun(output if output is not None else Path(results_dir) / "edits")
    names = list_results(results_dir)
    todo = [n for n in names if not (skip_done and run.is_done(n))]
    generator_hash = fingerprint(generator)
    plain, tuned = [], []
    for name in todo:
        code_file, delta_file = result_files(results_dir, name)
        (tuned if delta_file is not None else plain).append((name, code_file, delta_file))
    groups: list[tuple[nn.Module, list[tuple[str, Path, Path | None]]]] = [
        (generator, plain[i:i + batch_size]) for i in range(0, len(plain), batch_size)]
    for item in tuned:  # each PTI image has its own weights
        groups.append((generator, [item]))
    warned = False
    for base, items in groups:
        entries = [read_code(code_file) for _, code_file, _ in items]
        model, method = base, None
        if items[0][2] is not None:
            model, delta = apply_delta(base, items[0][2])
            model = model.to(device).eval()
            if delta.get("noise") is not None:
                entries[0]["noise"] = delta["noise"]
            method = "pti"
        made_with = {(e.get("meta") or {}).get("generator_hash") for e in entries} - {None}
        if made_with - {generator_hash} and not warned:
            warnings.warn(f"codes in '{results_dir}' were inverted with another generator than the one given "
                          "(fingerprints differ)", RuntimeWarning, stacklevel=2)
            warned = True
        ws = torch.stack([e["ws"] for e in entries]).to(device=device, dtype=torch.float32)
        images, codes = render_grid(model, ws, edits, strengths, _noise_of(entries, device))
        for b, (name, code_file, delta_file) in enumerate(items):
            rows = [row for row in images[b]]
            grid = image_grid(rows, upscale=upscale)
            per_image = {k: {"columns": v["columns"], "strengths": v["strengths"],
                             "codes": v["codes"][b] if isinstance(v["codes"], Tensor) else [c[b] for c in v["codes"]]}
                         for k, v in codes.items()}
            record = {
                "name": name, "results_dir": str(results_dir), "code": str(code_file),
                "pti_delta": str(delta_file) if delta_file is not None else None,
                "method": method or (entries[b].get("meta") or {}).get("method"),
                "strengths": sorted(float(s) for s in strengths),
                "edits": [dict(e.describe(), columns=codes[e.name]["columns"]) for e in edits],
                "grid": str(run.grid_path(name)), "codes": str(run.code_path(name)),
                "generator_hash": generator_hash,
            }
            run.write(name, grid, per_image, record)
    run.output.mkdir(parents=True, exist_ok=True)
    run.merge()
    return {"edited": len(todo), "skipped": len(names) - len(todo), "total": len(names)}
