"""The README's documented fashion32 edit is the one its stated rule picks from the shipped files."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from lsap.editing import available_directions, load_direction

REPO = Path(__file__).resolve().parents[2]
TEST_IMAGES = REPO / "lsap" / "assets" / "fashion_mnist_test"


def rule_pick() -> str:
    """Most frequent source class among the shipped test images (ties: the lowest class
    index), among the shipped class directions (meta ``classes`` = [source, target])."""
    counts = Counter(int(p.stem.rsplit("_", 1)[1]) for p in TEST_IMAGES.glob("*.png"))
    sources = {}
    for name, path in available_directions().items():
        classes = load_direction(path).meta.get("classes") if path.suffix in (".pt", ".npy") and name != "ganspace" \
            else None
        if classes:
            sources.setdefault(int(classes[0]), []).append(name)
    best = max(sources, key=lambda c: (counts[c], -c))
    assert len(sources[best]) == 1, sources[best]
    return sources[best][0]


def test_the_documented_edit_follows_the_rule(monkeypatch):
    monkeypatch.delenv("LSAP_DIRECTIONS_PATH", raising=False)
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^lsap edit outputs/invert_fashion32\S* .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 1, commands
    command = commands[0]
    assert "--direction " + rule_pick() + " " in command
    assert "outputs/invert_fashion32_e4e" in command and "--std_units true" in command  # e4e baseline, std units
    config = (REPO / "configs" / "invert_fashion32_e4e.yaml").read_text()
    assert "encoder_checkpoint: fashion32_e4e" in config and "output_dir: outputs/invert_fashion32_e4e" in config
