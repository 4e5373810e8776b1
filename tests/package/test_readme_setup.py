"""The README's set-up section: the default install stays the plain one, the CPU-only install
is an option with an exact, unpinned command, and the tests' needs are named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setup_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Set up"):text.index("## Using it")]


def test_the_default_install_is_plain_and_the_cpu_wheel_an_unpinned_option():
    blocks = re.findall(r"```bash\n(.*?)```", _setup_section(), flags=re.DOTALL)
    assert "--index-url" not in blocks[0] and "pip install -e ." in blocks[0]
    cpu = [b for b in blocks if "download.pytorch.org/whl/cpu" in b]
    assert len(cpu) == 1 and "pip install torch --index-url https://download.pytorch.org/whl/cpu" in cpu[0]
    assert not re.search(r"torch[=<>~]", cpu[0]), "the CPU wheel is never pinned"
    assert "cpu" not in (ROOT / "pyproject.toml").read_text().lower().split("[project.scripts]")[0]


def test_timings_are_given_separately_with_the_machine_named():
    section = _setup_section()
    assert re.search(r"install \d+ s", section) and re.search(r"demo\s+run then took \d+ s", section)
    assert "2 CPU cores, 24 GiB" in section and "idle" in section
    assert "tests/fixtures/" in section and "CUDA" in section
