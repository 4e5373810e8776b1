"""The README's Python snippets run as written against the shipped ``fashion32`` generator,
substituting only the placeholders the README documents (see "Using it")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lsap.cli import main
from lsap.results import InversionResults

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PLACEHOLDERS = ("stylegan2-ffhq-config-f.pt", "outputs/NAME", "a/001")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_documents_every_placeholder_it_uses():
    text = README.read_text()
    usage = text[text.index("## Using it"):]
    intro = usage[:usage.index("###")]
    for placeholder in PLACEHOLDERS:
        assert f"`{placeholder}`" in intro, placeholder
    assert python_blocks(text), "the README has Python snippets"


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    """A real results folder: the documented fashion32 inversion on two shipped images."""
    out = tmp_path_factory.mktemp("readme") / "invert"
    config = (ROOT / "configs" / "invert_fashion32.yaml").read_text().replace("outputs/invert_fashion32", str(out))
    path = out.parent / "invert.yaml"
    path.write_text(config)
    main(["predict", "--config", str(path), "--data.init_args.limit", "2"])
    return out


def test_readme_snippets_run(results_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing a snippet writes lands in the checkout
    name = next(iter(InversionResults(results_dir))).name
    substitutes = {"stylegan2-ffhq-config-f.pt": "fashion32", "outputs/NAME": str(results_dir), "a/001": name}
    namespace: dict[str, object] = {}
    blocks = python_blocks(README.read_text())
    for number, block in enumerate(blocks, 1):
        for placeholder, value in substitutes.items():
            block = block.replace(placeholder, value)
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as error:  # name the block, keep the cause
            raise AssertionError(f"README python block {number} fails: {error!r}\n{block}") from error
    assert "metric" in namespace and "ws" in namespace
