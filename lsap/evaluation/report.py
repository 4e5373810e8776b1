"""The files ``lsap evaluate`` writes and the side-by-side table of ``lsap compare``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from lsap.io import atomic_write

METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
PER_IMAGE_JSONL = "per_image.jsonl"

#: Row order and direction of the table (True: higher is better).
TABLE_ROWS: tuple[tuple[str, bool | None], ...] = (
    ("mse", False), ("psnr", True), ("ssim", True), ("ms_ssim", True), ("lpips", False), ("id", True),
    ("fid", False), ("nscd", False), ("lec", False),
)


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _cell(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "-"
    text = _number(entry.get("mean", entry.get("value")))
    if entry.get("std") is not None and not math.isnan(entry["std"]):
        text += f" ± {_number(entry['std'])}"
    return text


def markdown_report(metrics: Mapping[str, Any]) -> str:
    lines = [f"# Evaluation of `{metrics.get('results_dir')}`", "",
             f"Convention: **{metrics.get('convention')}** ({metrics.get('convention_note')}). "
             f"Pairs: {metrics.get('counts', {}).get('pairs')}.", "",
             "| metric | value | images |", "|---|---|---|"]
    for name, higher in TABLE_ROWS:
        entry = metrics["metrics"].get(name)
        if entry is None:
            continue
        arrow = "" if higher is None else (" ↑" if higher else " ↓")
        lines.append(f"| {name}{arrow} | {_cell(entry)} | {entry.get('count', entry.get('num_fake', '-'))} |")
    skipped = metrics.get("skipped") or {}
    if skipped:
        lines += ["", "Skipped:", *[f"- {k}: {v}" for k, v in sorted(skipped.items())]]
    counts = metrics.get("counts", {})
    for key in ("unmatched_results", "unmatched_real"):
        if counts.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {counts[key]} (names in metrics.json)")
    nscd = metrics["metrics"].get("nscd")
    if nscd and nscd.get("per_layer"):
        lines += ["", "NSCD per layer:", "", "| " + " | ".join(nscd["layers"]) + " |",
                  "|" + "---|" * len(nscd["layers"]),
                  "| " + " | ".join(_number(v) for v in nscd["per_layer"]) + " |"]
    return "\n".join(lines) + "\n"


def write_reports(output_dir: str | Path, metrics: Mapping[str, Any], per_image: list[Mapping[str, Any]]) -> None:
    """Write ``metrics.json``, ``metrics.md`` and ``per_image.jsonl`` atomically."""
    root = Path(output_dir)
    text = json.dumps(metrics, indent=2, sort_keys=True, allow_nan=True)
    atomic_write(root / METRICS_JSON, lambda f: f.write(text + "\n"), mode="w")
    markdown = markdown_report(metrics)
    atomic_write(root / METRICS_MD, lambda f: f.write(markdown), mode="w")
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in per_image)
    atomic_write(root / PER_IMAGE_JSONL, lambda f: f.write(lines), mode="w")


def compare_table(runs: list[str | Path]) -> str:
    """A markdown table of several ``metrics.json`` (a file or the folder holding it), one column each."""
    loaded = []
    for run in runs:
        path = Path(run)
        path = path / METRICS_JSON if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no metrics.json at '{path}' (run `lsap evaluate` first)")
        loaded.append((Path(run).name or str(run), json.loads(path.read_text())))
    header = "| metric | " + " | ".join(name for name, _ in loaded) + " |"
    lines = [header, "|---|" + "---|" * len(loaded)]
    names = [n for n, _ in TABLE_ROWS]
    extra = sorted({k for _, m in loaded for k in m.get("metrics", {})} - set(names))
    for name in names + extra:
        if not any(name in m.get("metrics", {}) for _, m in loaded):
            continue
        lines.append(f"| {name} | " + " | ".join(_cell(m["metrics"].get(name)) for _, m in loaded) + " |")
    lines.append("| convention | " + " | ".join(str(m.get("convention")) for _, m in loaded) + " |")
    return "\n".join(lines)
