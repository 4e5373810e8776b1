"""What ``import lsap`` gives, and what it costs."""

from __future__ import annotations

import subprocess
import sys

import lsap


def test_import_lsap_is_light() -> None:
    code = ("import sys, lsap; heavy = [m for m in ('lightning', 'torchmetrics', 'lsap.modules', 'lsap.ops._build') "
            "if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_public_names_resolve_to_their_definitions() -> None:
    from lsap.losses import NSCDLoss
    from lsap.metrics import NSCD, compute_anchors
    from lsap.modules import LSAP_E, LSAP_O, PTI

    assert (lsap.NSCD, lsap.NSCDLoss, lsap.compute_anchors) == (NSCD, NSCDLoss, compute_anchors)
    assert (lsap.LSAP_E, lsap.LSAP_O, lsap.PTI) == (LSAP_E, LSAP_O, PTI)
    assert set(lsap.__all__) <= set(dir(lsap))
    try:
        lsap.not_a_name  # noqa: B018
    except AttributeError as error:
        assert "not_a_name" in str(error)
    else:
        raise AssertionError("unknown names must raise AttributeError")
