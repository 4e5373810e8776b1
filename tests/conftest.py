"""Shared test helpers: small seeded generators and the reference fixtures."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from lsap.model import Generator, GeneratorSource

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
# The reference fixtures ship in tests/fixtures (see its README); LSAP_FIXTURES points elsewhere.
FIXTURES = Path(os.environ.get("LSAP_FIXTURES") or Path(__file__).resolve().parent / "fixtures")


def small_source(resolution: int = 32, seed: int = 0, **overrides: Any) -> GeneratorSource:
    """The one factory of test generators: small enough for unit tests on two CPU cores.
    ``overrides`` set other ``GeneratorSource`` fields (e.g. ``z_dim``, ``channel_max``)."""
    settings: dict[str, Any] = {"seed": seed, "resolution": resolution, "mapping_layers": 2, "channel_base": 1024,
                                "channel_max": 32, "w_avg_samples": 1000}
    settings.update(overrides)
    return GeneratorSource(**settings)


def load_bench_script(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` (scripts, not a package) to test its functions. Run as a
    script, a bench file finds the siblings it imports (``import claims_table``) beside it;
    here each such sibling is loaded from the bench folder and registered under its name first."""
    path = BENCH / f"{name}.py"
    for sibling in _bench_siblings(path):
        if sibling not in sys.modules:
            sys.modules[sibling] = load_bench_script(sibling)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_siblings(path: Path) -> list[str]:
    """The bench scripts that ``path`` imports (anywhere in it, lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if n != path.stem and (BENCH / f"{n}.py").is_file())


def in_repo_layout(tmp_path: Path) -> Path:
    """A working folder that sees the repository's configs/ and lsap/assets/ as the repository
    root does (the configs' relative paths), so a config runs as written and writes only here."""
    work = tmp_path / "work"
    (work / "lsap").mkdir(parents=True)
    (work / "configs").symlink_to(REPO / "configs")
    (work / "lsap" / "assets").symlink_to(REPO / "lsap" / "assets")
    return work


def run_lsap(work: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m lsap ARGS`` in ``work`` (one thread, no progress bar); skips when the run
    needs Debian's Fashion-MNIST and it is not installed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "lsap", *args, "--trainer.enable_progress_bar", "false"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode and "Fashion-MNIST not found" in done.stderr:
        pytest.skip("Fashion-MNIST (dataset-fashion-mnist) is not installed")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture
def small_generator() -> Generator:
    return small_source().build()


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def fixtures_dir() -> Path:
    """The reference fixtures (tests/fixtures, or $LSAP_FIXTURES). Absent: the test is skipped
    with the reason shown, except under CI (``CI=true``), where a missing fixture fails the test."""
    if not (FIXTURES / "rosinality_64px_small.pt").is_file():
        message = f"reference fixtures not found at {FIXTURES} (set LSAP_FIXTURES)"
        if running_in_ci():
            pytest.fail(message + "; under CI they must be present")
        pytest.skip(message)
    return FIXTURES


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny nets: thread start-up and contention cost more than they save."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Anchor caches and other lsap caches go to a temporary folder, never the user's."""
    old = os.environ.get("LSAP_CACHE_DIR")
    os.environ["LSAP_CACHE_DIR"] = str(tmp_path_factory.mktemp("lsap-cache"))
    yield
    if old is None:
        os.environ.pop("LSAP_CACHE_DIR", None)
    else:
        os.environ["LSAP_CACHE_DIR"] = old


def free_port() -> int:
    """A free TCP port on the loopback interface (for gloo process groups in tests)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_and_wait(worker, args: tuple, nprocs: int, deadline_s: float) -> None:
    """Run ``worker(rank, *args)`` in ``nprocs`` spawned processes; fail the test if they do
    not all finish within ``deadline_s`` (left-over processes are terminated)."""
    import time

    import torch.multiprocessing as mp

    context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + deadline_s
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"distributed workers did not finish within {deadline_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
