"""A results folder across runs: settings fingerprint, the lock, stale temporaries,
unwritable folders and failed writes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

import lsap.io
from lsap.callbacks import InversionWriter
from lsap.callbacks.run_folder import LOCK_FILE, RunLock
from lsap.data import SyntheticDataset
from lsap.errors import BadValueError, OutputError
from lsap.modules import LSAP_O

from conftest import small_source


def lsap_o(tmp_path: Path, **overrides) -> LSAP_O:
    settings = dict(space="w+", num_steps=1, lambda_lpips=0.0, lambda_mse=1.0, anchor_samples=300,
                    w_std_samples=300, anchor_cache_dir=str(tmp_path / "anchors"), progress=False)
    settings.update(overrides)
    return LSAP_O(small_source(16), **settings)


def predict(tmp_path: Path, module: LSAP_O, out: Path, batch_size: int = 2, count: int = 3, **writer):
    loader = torch.utils.data.DataLoader(SyntheticDataset(module.generator, count, seed=1), batch_size=batch_size)
    trainer = Trainer(accelerator="cpu", devices=1, inference_mode=False, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=[InversionWriter(str(out), **writer)])
    return trainer.predict(module, loader)


def test_other_settings_are_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    predict(tmp_path, lsap_o(tmp_path), out)
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["settings"]["model"]["hparams"]["lambda_nscd"] == 0.05
    assert "anchor_cache_dir" not in recorded["settings"]["model"]["hparams"], "paths that change nothing"
    first_codes = {p.name: p.read_bytes() for p in (out / "codes").glob("*.pt")}

    # Same settings, other batch size and progress bar, a new anchor cache path: the same run, resumed.
    again = predict(tmp_path, lsap_o(tmp_path, progress=True, anchor_cache_dir=str(tmp_path / "anchors")), out,
                    batch_size=3)
    assert sum(len(p["skipped"]) for p in again) == 3

    with pytest.raises(BadValueError) as refused:
        predict(tmp_path, lsap_o(tmp_path, lambda_nscd=0.5), out)
    message = str(refused.value)
    assert "\n" not in message and "lambda_nscd: 0.05 -> 0.5" in message and "overwrite" in message
    assert {p.name: p.read_bytes() for p in (out / "codes").glob("*.pt")} == first_codes, "nothing was touched"
    assert not (out / LOCK_FILE).exists(), "a refused run leaves no lock"

    # Another method into the same folder is refused as well.
    with pytest.raises(BadValueError, match="other settings"):
        predict(tmp_path, lsap_o(tmp_path, num_steps=2), out)

    (out / "keep.txt").write_text("mine")
    redone = predict(tmp_path, lsap_o(tmp_path, lambda_nscd=0.5), out, overwrite=True)
    assert sum(len(p["path"]) for p in redone) == 3, "every image inverted again"
    assert json.loads((out / "settings.json").read_text())["settings"]["model"]["hparams"]["lambda_nscd"] == 0.5
    assert {json.loads(p.read_text())["meta"]["lambda_nscd"] for p in (out / "records").glob("*.json")} == {0.5}
    assert (out / "keep.txt").read_text() == "mine"


def test_a_second_writer_gets_one_line_and_a_dead_ones_lock_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from lsap.callbacks.run_folder import RunLock; "
         f"RunLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        out.mkdir()
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError) as busy:
            predict(tmp_path, lsap_o(tmp_path), out)
        assert f"process {holder.pid}" in str(busy.value) and "\n" not in str(busy.value)
        assert not (out / "records").exists(), "nothing inverted"
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed (kill -9): its lock is stale, and the next run proceeds.
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    predict(tmp_path, lsap_o(tmp_path), out)
    assert len(list((out / "records").glob("*.json"))) == 3
    assert not (out / LOCK_FILE).exists(), "released at the end"


def test_lock_of_a_live_process_on_another_host_is_respected(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "x"}))
    with pytest.raises(OutputError, match="on elsewhere"):
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path / "sub") as lock:
        assert lock.held and (tmp_path / "sub" / LOCK_FILE).is_file()
    assert not (tmp_path / "sub" / LOCK_FILE).exists()


def test_stale_temporaries_are_removed_before_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "codes").mkdir(parents=True)
    stale = out / "codes" / ".000001.pt.ab12_xyz.tmp"
    stale.write_bytes(b"half")
    old = time.time() - 60
    os.utime(stale, (old, old))
    fresh = out / ".summary.json.zz99zz99.tmp"  # newer than the run's start: not ours to judge
    fresh.write_bytes(b"")
    future = time.time() + 3600
    os.utime(fresh, (future, future))
    unrelated = out / ".notes.tmp"
    unrelated.write_bytes(b"user file")
    os.utime(unrelated, (old, old))
    predict(tmp_path, lsap_o(tmp_path), out)
    assert not stale.exists() and fresh.exists() and unrelated.exists()


def test_unwritable_folder_is_found_before_the_first_batch(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    module = lsap_o(tmp_path)
    calls = []
    monkeypatch.setattr(module, "invert", lambda *a, **k: calls.append(1))
    real_mkstemp = lsap.io.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(lsap.io.tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=f"cannot write '{out}': Read-only file system"):
        predict(tmp_path, module, out)
    assert not calls


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permission bits do not bind root")
def test_read_only_folder_by_permissions(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            predict(tmp_path, lsap_o(tmp_path), out)
    finally:
        out.chmod(0o700)


def test_full_disk_during_the_run_is_an_output_error_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    real_fdopen = lsap.io.os.fdopen

    class FullDisk:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

    def fdopen(handle, mode="r", *args, **kwargs):
        file = real_fdopen(handle, mode, *args, **kwargs)
        return FullDisk(file) if "codes" in os.readlink(f"/proc/self/fd/{handle}") else file

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell the code files apart")
    monkeypatch.setattr(lsap.io.os, "fdopen", fdopen)
    with pytest.raises(OutputError) as full:
        predict(tmp_path, lsap_o(tmp_path), out)
    assert "No space left on device" in str(full.value) and "codes" in str(full.value)
    assert not [p for p in out.rglob("*.tmp")], "no temporary left behind"


def test_atomic_write_respects_the_umask(tmp_path: Path) -> None:
    for umask, expected in ((0o027, 0o640), (0o002, 0o664)):
        previous = os.umask(umask)
        try:
            lsap.io.atomic_write(tmp_path / f"{umask}.json", lambda f: f.write("{}"), mode="w")
        finally:
            os.umask(previous)
        assert (tmp_path / f"{umask}.json").stat().st_mode & 0o777 == expected


def test_a_failed_write_keeps_the_old_file_and_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "g.pt"
    lsap.io.atomic_write(target, lambda f: f.write(b"old"))

    def fail(file):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="g.pt"):
        lsap.io.atomic_write(target, fail)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(ZeroDivisionError):  # a bug in the writer stays a bug
        lsap.io.atomic_write(target, lambda f: 1 / 0)
