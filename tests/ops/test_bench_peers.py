"""bench/bench_peers.py without peer checkouts: it skips what it is not given, imports a
peer's modules from the given folder only, and never compiles an extension for them."""

from __future__ import annotations

import sys

import pytest

from conftest import load_bench_script


@pytest.fixture(scope="module")
def bench():
    return load_bench_script("bench_peers")


def test_no_peer_given_measures_nothing(bench, capsys) -> None:
    result = bench.main(["--threads", "1"])
    assert result["peers"] == {} and result["resolution"] == 128 and result["batch"] == 4
    assert "nothing to compare" in capsys.readouterr().out


def test_a_missing_checkout_is_refused(bench, tmp_path) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--nvlabs", str(tmp_path / "absent")])


def test_peer_modules_come_from_the_given_folder(bench, tmp_path, monkeypatch) -> None:
    package = tmp_path / "peerpkg_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("from peerpkg_for_test import inner\n")
    (package / "inner.py").write_text("VALUE = 41\n")
    (tmp_path / "peermod_for_test.py").write_text("import peerpkg_for_test\nVALUE = peerpkg_for_test.inner.VALUE + 1\n")
    for name in ("peerpkg_for_test", "peerpkg_for_test.inner", "peermod_for_test"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert str(tmp_path) not in sys.path
    bench.import_from(tmp_path, "peerpkg_for_test")
    module = bench.import_from(tmp_path, "peermod_for_test")
    assert module.VALUE == 42 and module.__file__ == str(tmp_path / "peermod_for_test.py")
    assert sys.modules["peerpkg_for_test.inner"].__file__ == str(package / "inner.py")
    with pytest.raises(FileNotFoundError, match="no module 'training'"):
        bench.import_from(tmp_path, "training")
    for name in ("peerpkg_for_test", "peerpkg_for_test.inner", "peermod_for_test"):
        sys.modules.pop(name, None)


def test_extension_builds_are_skipped_while_importing_a_peer(bench) -> None:
    import torch.utils.cpp_extension as cpp_extension

    with bench.no_extension_builds():
        assert cpp_extension.load("fused", sources=["absent.cu"]) is None
    assert cpp_extension.load is not None and cpp_extension.load.__module__ == "torch.utils.cpp_extension"
