"""PTI delta files: what changed, round trips, refusals, and no Lightning needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import small_source

from lsap.io import CheckpointError
from lsap.model import generator_fingerprint
from lsap.model.delta import apply_delta, load_delta, make_delta, save_delta


def tuned_copy(generator):
    """A copy with one synthesis tensor changed by a known amount."""
    tuned = apply_delta(generator, make_delta(generator, generator))  # a plain copy: the delta is empty
    name = next(n for n in tuned.state_dict() if n.startswith("synthesis_network.") and n.endswith("weight"))
    with torch.no_grad():
        tuned.state_dict()[name].add_(0.25)
    return tuned, name


def test_a_delta_holds_only_what_changed_and_reproduces_the_tuned_generator(tmp_path: Path) -> None:
    generator = small_source(resolution=16).build()
    tuned, name = tuned_copy(generator)
    delta = make_delta(generator, tuned, dtype="float32")
    assert list(delta["deltas"]) == [name]
    assert delta["generator_hash"] == generator_fingerprint(generator)
    save_delta(delta, tmp_path / "sub" / "a.pt")
    rebuilt = apply_delta(generator, tmp_path / "sub" / "a.pt")
    for key, value in tuned.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    # The original is untouched, and applying into an existing copy gives the same weights.
    assert not torch.equal(generator.state_dict()[name], tuned.state_dict()[name])
    again = apply_delta(generator, load_delta(tmp_path / "sub" / "a.pt"), into=rebuilt)
    assert again is rebuilt and torch.equal(again.state_dict()[name], tuned.state_dict()[name])


def test_bad_deltas_are_refused_naming_the_file(tmp_path: Path) -> None:
    generator = small_source(resolution=16).build()
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_delta(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt' is not an lsap PTI delta"):
        load_delta(tmp_path / "other.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"cut\.pt"):
        load_delta(tmp_path / "cut.pt")
    foreign = make_delta(small_source(resolution=16, seed=1).build(), small_source(resolution=16, seed=1).build())
    with pytest.raises(ValueError, match="another generator"):
        apply_delta(generator, foreign)
    with pytest.raises(ValueError, match="dtype"):
        make_delta(generator, generator, dtype="int8")  # type: ignore[arg-type]


def test_applying_deltas_needs_no_lightning() -> None:
    code = "import sys, lsap.model.delta, lsap.results; print('lightning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
