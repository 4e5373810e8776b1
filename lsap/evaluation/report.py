"""The files ``lsap evaluate`` writes and the side-by-side table of ``lsap compare``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from lsap.errors import BadFileError, MissingInputError
from lsap.io import atomic_write

METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
PER_IMAGE_JSONL = "per_image.jsonl"

#: Row order and direction of the table (True: higher is better).
TABLE_ROWS: tuple[tuple[str, bool | None], ...] = (
    ("mse", False), ("psnr", True), ("ssim", True), ("ms_ssim", True), ("lpips", False), ("id", True),
    ("fid", False), ("nscd", False), ("lec", False), ("lec_reinvert", False), ("class_edit", True),
)


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _cell(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "-"
    text = _number(entry.get("mean", entry.get("value")))
    if _number(entry.get("std")) != "-":
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
    for key in ("unmatched_results", "unmatched_real", "unreadable"):
        if counts.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {counts[key]} (names in metrics.json)")
    nscd = metrics["metrics"].get("nscd")
    if nscd and nscd.get("per_layer"):
        lines += ["", "NSCD per layer:", "", "| " + " | ".join(nscd["layers"]) + " |",
                  "|" + "---|" * len(nscd["layers"]),
                  "| " + " | ".join(_number(v) for v in nscd["per_layer"]) + " |"]
    return "\n".join(lines) + "\n"


def finite_or_null(value: Any) -> tuple[Any, int]:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN), and how
    many were replaced."""
    if isinstance(value, float):
        return (value, 0) if math.isfinite(value) else (None, 1)
    if isinstance(value, Mapping):
        out, count = {}, 0
        for key, item in value.items():
            out[key], n = finite_or_null(item)
            count += n
        return out, count
    if isinstance(value, (list, tuple)):
        items = [finite_or_null(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    return value, 0


def write_reports(output_dir: str | Path, metrics: Mapping[str, Any],
                  per_image: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Write ``metrics.json``, ``metrics.md`` and ``per_image.jsonl`` atomically, as strict JSON:
    non-finite values are written as ``null`` and counted (``nonfinite_values`` in
    ``metrics.json``: ``{"metrics": n, "per_image": m}``). Returns the report as written."""
    root = Path(output_dir)
    rows = [finite_or_null(dict(row)) for row in per_image]
    report, in_metrics = finite_or_null({k: v for k, v in metrics.items() if k != "nonfinite_values"})
    report["nonfinite_values"] = {"metrics": in_metrics, "per_image": sum(n for _, n in rows)}
    text = json.dumps(report, indent=2, sort_keys=True, allow_nan=False)
    atomic_write(root / METRICS_JSON, lambda f: f.write(text + "\n"), mode="w")
    markdown = markdown_report(report)
    atomic_write(root / METRICS_MD, lambda f: f.write(markdown), mode="w")
    lines = "".join(json.dumps(row, sort_keys=True, allow_nan=False) + "\n" for row, _ in rows)
    atomic_write(root / PER_IMAGE_JSONL, lambda f: f.write(lines), mode="w")
    return report


def read_metrics(run: str | Path) -> dict[str, Any]:
    """A ``metrics.json`` (the file or the folder holding it); a missing, malformed or truncated
    file is one clear error naming it."""
    path = Path(run)
    path = path / METRICS_JSON if path.is_dir() else path
    if not path.is_file():
        raise MissingInputError(f"no metrics.json at '{path}' (run `lsap evaluate` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BadFileError(f"'{path}' is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}; "
                           "truncated or edited by hand?): re-run `lsap evaluate`") from None
    except UnicodeDecodeError:
        raise BadFileError(f"'{path}' is not a text file: re-run `lsap evaluate`") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict) or not all(
            isinstance(entry, dict) for entry in data["metrics"].values()):
        raise BadFileError(f"'{path}' is not an lsap metrics.json (expected {{\"metrics\": {{name: {{...}}}}}}): "
                           "re-run `lsap evaluate`")
    return data


def compare_table(runs: list[str | Path]) -> str:
    """A markdown table of several ``metrics.json`` (a file or the folder holding it), one column each."""
    loaded = [(Path(run).name or str(run), read_metrics(run)) for run in runs]
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
