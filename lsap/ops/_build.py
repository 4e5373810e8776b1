"""Lazy, cached build of the CUDA kernels behind ``impl="cuda"``.

Nothing here runs at import time: a plugin (one compiled extension per op) is built the
first time ``get_plugin`` is called, which the ops only do for CUDA tensors with
``impl="cuda"``. The build goes through ``torch.utils.cpp_extension.load`` (ninja +
nvcc) into a directory keyed by a hash of the op's sources, the torch / CUDA / Python
versions and the target GPU architectures::

    $TORCH_EXTENSIONS_DIR/<op>_<hash>/      when TORCH_EXTENSIONS_DIR is set
    ~/.cache/lsap/torch_extensions/<op>_<hash>/   otherwise

so a second process (or a second run) loads the cached library instead of compiling,
and a changed source or toolchain never picks up a stale one. Concurrent processes
(e.g. DDP ranks) are serialised by the lock file torch keeps in that directory.

A failed build is reported with **one** warning per op and per process naming the
cause, and is never retried in the same process: ``get_plugin`` returns ``None`` and the
op uses its reference implementation. ``LSAP_CUDA_VERBOSE=1`` shows the compiler output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from lsap.cache import cache_dir

SOURCE_DIR = Path(__file__).resolve().parent / "cuda"

# op name -> source files (in lsap/ops/cuda); headers take part in the hash.
PLUGIN_SOURCES: dict[str, tuple[str, ...]] = {
    "upfirdn2d": ("common.h", "upfirdn2d.h", "upfirdn2d.cpp", "upfirdn2d.cu"),
    "bias_act": ("common.h", "bias_act.h", "bias_act.cpp", "bias_act.cu"),
}

EXTRA_CFLAGS = ["-O3"]
EXTRA_CUDA_CFLAGS = ["-O3"]


class CudaBuildWarning(UserWarning):
    """A CUDA op could not be built; the reference implementation is used instead."""


_lock = threading.RLock()
_plugins: dict[str, Any] = {}
_failures: dict[str, str] = {}


def cache_root() -> Path:
    """Parent directory of the build directories: ``$TORCH_EXTENSIONS_DIR`` when set, else
    ``torch_extensions/`` under lsap's cache root (``$LSAP_CACHE_DIR`` or ``~/.cache/lsap``)."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return Path(env).expanduser()
    return cache_dir("torch_extensions")


def _arch_key() -> str:
    """What the compiled code targets: TORCH_CUDA_ARCH_LIST, else the visible GPUs."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env and env != "native":
        return env
    try:
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    except Exception:  # no driver / no device: the build will say why
        caps = []
    return ";".join(f"{a}.{b}" for a, b in caps) or "none"


def source_paths(name: str) -> list[Path]:
    if name not in PLUGIN_SOURCES:
        raise KeyError(f"unknown CUDA op {name!r}; known: {sorted(PLUGIN_SOURCES)}")
    return [SOURCE_DIR / s for s in PLUGIN_SOURCES[name]]


def build_hash(name: str) -> str:
    """Hash of everything the compiled library depends on."""
    h = hashlib.sha256()
    for part in (
        name, torch.__version__, str(torch.version.cuda), sys.version, sys.platform, _arch_key(),
        " ".join(EXTRA_CFLAGS), " ".join(EXTRA_CUDA_CFLAGS),
    ):
        h.update(part.encode())
        h.update(b"\0")
    for path in source_paths(name):
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def build_dir(name: str) -> Path:
    return cache_root() / f"{name}_{build_hash(name)[:20]}"


def _stage_sources(name: str, directory: Path) -> list[Path]:
    """Copy the sources into ``directory/src`` (atomically) so the cached build has
    stable paths whatever the install location; returns the compilable ones."""
    src_dir = directory / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    staged = []
    for path in source_paths(name):
        target = src_dir / path.name
        data = path.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            fd, tmp = tempfile.mkstemp(dir=src_dir, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        if target.suffix in (".cpp", ".cu"):
            staged.append(target)
    return staged


def _check_toolchain() -> None:
    from torch.utils import cpp_extension

    if torch.version.cuda is None:
        raise RuntimeError("this PyTorch build has no CUDA support")
    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (nvcc); install one or set CUDA_HOME")
    if not (Path(cpp_extension.CUDA_HOME) / "include" / "cuda_runtime.h").is_file():
        raise RuntimeError(
            f"the CUDA toolkit at {cpp_extension.CUDA_HOME} has no include/cuda_runtime.h; "
            f"set CUDA_HOME to the toolkit's root directory (the one holding bin/nvcc and include/)"
        )
    if not cpp_extension.is_ninja_available():
        raise RuntimeError("ninja is not installed (pip install ninja)")
    cxx = (os.environ.get("CXX") or "c++").split()[0]
    if shutil.which(cxx) is None:
        raise RuntimeError("no C++ compiler found (set CXX)")


def _compile(module_name: str, sources: list[Path], directory: Path, verbose: bool) -> ModuleType:
    """The low-level build (separate so tests can replace it)."""
    _check_toolchain()
    from torch.utils import cpp_extension

    return cpp_extension.load(
        name=module_name,
        sources=[str(s) for s in sources],
        build_directory=str(directory),
        extra_cflags=EXTRA_CFLAGS,
        extra_cuda_cflags=EXTRA_CUDA_CFLAGS,
        with_cuda=True,
        verbose=verbose,
    )


def _describe(exc: BaseException, limit: int = 1200) -> str:
    """Short cause of a failed build: the compiler's error lines when there are any."""
    text = f"{exc}"
    for attr in ("output", "stderr", "stdout"):
        extra = getattr(exc, attr, None)
        if isinstance(extra, bytes):
            extra = extra.decode(errors="replace")
        if isinstance(extra, str) and extra:
            text += "\n" + extra
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower()]
    picked = (errors or lines)[:6]
    msg = f"{type(exc).__name__}: " + " | ".join(picked) if picked else type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def get_plugin(name: str) -> Any | None:
    """The compiled extension of op ``name``, building it on first use; ``None`` (after
    one warning) when it cannot be built. Never retries a failed build."""
    with _lock:
        if name in _plugins:
            return _plugins[name]
        if name in _failures:
            return None
        directory: Path | None = None
        try:
            directory = build_dir(name)
            sources = _stage_sources(name, directory)
            verbose = os.environ.get("LSAP_CUDA_VERBOSE", "") not in ("", "0")
            module_name = f"lsap_{name}_{directory.name.rsplit('_', 1)[-1]}"
            plugin = _compile(module_name, sources, directory, verbose)
        except Exception as exc:  # any failure means: use the reference path
            cause = _describe(exc)
            _failures[name] = cause
            where = f" (build directory: {directory})" if directory is not None else ""
            warnings.warn(
                f"lsap: the CUDA kernel of op '{name}' could not be built: {cause}{where}. "
                f"Falling back to impl='ref' for this op for the rest of the process; pass impl='ref' "
                f"to silence this, or set LSAP_CUDA_VERBOSE=1 to see the compiler output.",
                CudaBuildWarning,
                stacklevel=3,
            )
            return None
        _plugins[name] = plugin
        return plugin


def build_failure(name: str) -> str | None:
    """Why op ``name`` failed to build in this process (``None`` if it did not fail)."""
    return _failures.get(name)


def is_built(name: str) -> bool:
    return name in _plugins


def _reset() -> None:
    """Forget built and failed plugins (tests only; a loaded library stays loaded)."""
    with _lock:
        _plugins.clear()
        _failures.clear()
