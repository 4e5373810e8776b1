"""The shipped files stay small and each is described in the README's shipped-files table."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from lsap.io import ASSETS_DIR

REPO = Path(__file__).resolve().parents[2]
MB = 1_000_000
MAX_FILE, MAX_TOTAL = 15 * MB, 60 * MB


def _assets() -> list[Path]:
    return sorted(p for p in ASSETS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_each_asset_and_all_of_them_stay_within_the_size_limits():
    sizes = {p.relative_to(ASSETS_DIR).as_posix(): p.stat().st_size for p in _assets()}
    too_big = {name: size for name, size in sizes.items() if size > MAX_FILE}
    assert not too_big, f"assets over {MAX_FILE // MB} MB: {too_big}"
    assert sum(sizes.values()) <= MAX_TOTAL, f"lsap/assets holds {sum(sizes.values()) / MB:.1f} MB"


def test_every_asset_has_a_line_in_the_shipped_files_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Shipped files", 1)[1].split("\n## ", 1)[0]
    # First cell of each row: one or more `path` patterns (globs such as `dir/*`).
    patterns = [p for row in section.splitlines() if row.startswith("| `")
                for p in re.findall(r"`([^`]+)`", row.split("|")[1])]
    assert patterns, "no shipped-files table found"
    undescribed = [p.relative_to(REPO).as_posix() for p in _assets()
                   if p.name != "README.md"
                   and not any(fnmatch.fnmatch(p.relative_to(REPO).as_posix(), pat) for pat in patterns)]
    assert not undescribed, f"assets without a README line: {undescribed}"
