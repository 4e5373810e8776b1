"""The reference fixtures ship with the tests, small, and exactly as their README describes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_every_fixture_is_listed_with_its_checksum_and_matches():
    readme = (FIXTURES / "README.md").read_text()
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.MULTILINE))
    on_disk = {p.name for p in FIXTURES.glob("*.pt")}
    assert on_disk and set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name
        assert f"`{name}`" in readme, f"{name} has no row saying how it was made"


def test_the_fixtures_stay_small():
    total = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert total < 12 * 2**20, f"tests/fixtures holds {total / 2**20:.1f} MiB"
