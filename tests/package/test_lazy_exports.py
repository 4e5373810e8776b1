"""The one lazy-export helper: every listed name resolves to its submodule's object, names
are listed once, and `import lsap` loads no torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from lsap._lazy import lazy_exports

PACKAGES = ["lsap", "lsap.align", "lsap.editing", "lsap.evaluation"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        getattr(module, "not_a_name")


def test_a_name_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="exported from both"):
        lazy_exports("lsap", {"lsap.model": ("Generator",), "lsap.modules": ("Generator",)})


def test_import_lsap_loads_no_torch() -> None:
    code = "import sys, lsap, lsap.editing, lsap.evaluation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
