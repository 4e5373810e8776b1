"""Reading weight files without executing code from them; writing files atomically.

Every file lsap writes goes through :func:`atomic_write`, so a reader (or a resumed run)
sees either no file or a complete one. Written files get the permissions the umask allows
(as ``open`` would give them); a write that fails (read-only or full disk, no permission)
is an :class:`~lsap.errors.OutputError` naming the file, and leaves no temporary behind. A
process killed mid-write can leave one (``.NAME.XXXXXXXX.tmp``): the next run writing to
that folder removes it (:func:`remove_stale_temporaries`). Every loader in lsap goes through :func:`load_weights_file` (``torch.save`` files) or
:mod:`lsap.model.safe_pickle` (NVlabs pickles), so the rules and the error messages are
the same everywhere: a missing file names itself and what it should be, a file that would
need code execution is refused naming the global it asks for, and a damaged file says so.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Sequence

import torch

from lsap.errors import BadFileError, OutputError, UnsafeFileError


class UnsafeCheckpointError(UnsafeFileError):
    """The file can only be unpickled by importing or running code it names."""


class CheckpointError(BadFileError):
    """A weights file is damaged, or not what was expected. Every error lsap raises about a
    file's content is one of these (or :class:`UnsafeCheckpointError`) and names the file."""


class WeightsMismatchError(CheckpointError):
    """A weights file does not contain what the network expects."""


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` path components that (Distributed)DataParallel wrappers add,
    wherever they occur in a key (the one rule for every loader)."""
    return {".".join(part for part in key.split(".") if part != "module"): value for key, value in state_dict.items()}


def missing_file_error(path: str | os.PathLike[str], description: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{description} not found: '{path}' (no such file). Download it yourself and pass its path; "
        "lsap never downloads anything."
    )


#: Package data shipped with lsap (generators, encoders, directions, the classifier).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def builtin_asset_path(name: str | os.PathLike[str], builtins: Mapping[str, str], kind: str,
                       how_to_make: str) -> str | os.PathLike[str]:
    """The packaged file (relative to ``ASSETS_DIR`` in ``builtins``) of a built-in ``kind``
    name; any other value is returned as is (an existing file of that name wins). A built-in
    whose file is missing from this installation is a clear error saying ``how_to_make`` it."""
    if not (isinstance(name, str) and name in builtins and not Path(name).exists()):
        return name
    asset = ASSETS_DIR / builtins[name]
    if not asset.is_file():
        raise FileNotFoundError(f"built-in {kind} '{name}' is not in this installation ('{asset}' is missing): "
                                f"pass a checkpoint path instead, or {how_to_make}")
    return asset


def load_weights_file(
    path: str | os.PathLike[str],
    description: str,
    extra_safe_globals: Sequence[Any] = (),
) -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``.

    Args:
        path: file to read.
        description: what the file should be, used in every error message.
        extra_safe_globals: plain data classes (e.g. ``argparse.Namespace``) that may be
            rebuilt from their saved attributes; nothing else is ever imported.

    Raises:
        FileNotFoundError: the file does not exist (the message names path and content).
        UnsafeCheckpointError: the pickle needs code (a class or function) to be rebuilt.
        CheckpointError: the file is empty, truncated or not a PyTorch file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise missing_file_error(file, description)
    if file.stat().st_size == 0:
        raise CheckpointError(f"{description} '{file}' is empty (0 bytes)")
    try:
        if extra_safe_globals:
            with torch.serialization.safe_globals(list(extra_safe_globals)):
                return torch.load(file, map_location="cpu", weights_only=True)
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        global_name = re.search(r"GLOBAL ([\w.]+)", str(error))
        if global_name:
            raise UnsafeCheckpointError(
                f"refusing to load {description} '{file}': rebuilding it would import and run "
                f"'{global_name.group(1)}'. Only files of tensors and plain containers are accepted; re-save the "
                "tensors with torch.save(state_dict) in a trusted environment."
            ) from None
        raise UnsafeCheckpointError(
            f"refusing to load {description} '{file}': it is not a plain torch.save file of tensors and containers "
            f"(unpickler said: {_unpickler_reason(error)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"cannot read {description} '{file}': the file is truncated or not a PyTorch file ({error})"
        ) from None


def _unpickler_reason(error: Exception) -> str:
    """The informative paragraph of torch's weights-only error (it is mostly boilerplate)."""
    paragraphs = [p.strip() for p in str(error).split("\n\n") if p.strip()]
    informative = [p for p in paragraphs if not p.startswith(("Weights only load failed", "Check the documentation"))]
    reason = informative[-1] if informative else paragraphs[-1] if paragraphs else "unknown error"
    return " ".join(reason.split())[:300]


# Temporaries of atomic_write: ".<name>." + mkstemp's 8 random characters + ".tmp".
_TEMPORARY_PREFIX, _TEMPORARY_SUFFIX = ".", ".tmp"
TEMPORARY_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux), since
    setting it to read it would race with other threads creating files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_error(path: str | os.PathLike[str], error: BaseException) -> OutputError:
    """The one-line error of a failed write of ``path``."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return OutputError(f"cannot write '{path}': {reason}")


def _is_write_failure(error: BaseException) -> bool:
    # torch.save and friends report a failed write of the underlying file as a RuntimeError.
    if isinstance(error, OSError):
        return True
    if isinstance(error, RuntimeError):
        text = str(error)
        return any(part in text for part in ("failed writing", "file write failed", "enforce fail", "No space left"))
    return False


class _WriteRecorder:
    """A file proxy that remembers the first failed ``write``: torch.save reports such a
    failure as an unrelated RuntimeError ("unexpected pos"), and the real cause is wanted."""

    def __init__(self, file: IO[Any]) -> None:
        self._file = file
        self.failure: OSError | None = None

    def write(self, data: Any) -> Any:
        try:
            return self._file.write(data)
        except OSError as error:
            self.failure = self.failure or error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Write ``path`` atomically: ``write`` fills a temporary file in the same folder, which
    is flushed to disk and then renamed over ``path``. Parent folders are created.

    Raises:
        OutputError: the folder or the file cannot be written (read-only or full disk,
            missing permission); the message names ``path``.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f"{_TEMPORARY_PREFIX}{target.name}.",
                                             suffix=_TEMPORARY_SUFFIX)
    except OSError as error:
        raise output_error(target, error) from None
    recorder: _WriteRecorder | None = None
    try:
        os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp makes 0600 whatever the umask
        with os.fdopen(handle, mode) as file:
            recorder = _WriteRecorder(file)
            write(recorder)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OutputError):
            raise
        if recorder is not None and recorder.failure is not None:
            raise output_error(target, recorder.failure) from None
        if _is_write_failure(error):
            raise output_error(target, error) from None
        raise


def remove_stale_temporaries(folder: str | os.PathLike[str], started_before: float) -> list[Path]:
    """Delete :func:`atomic_write`'s temporaries under ``folder`` (recursively) last
    modified before ``started_before`` (a ``time.time()``): what a killed process left.
    Only names of that pattern are touched. Returns the removed paths."""
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for path in root.rglob(f"{_TEMPORARY_PREFIX}*{_TEMPORARY_SUFFIX}"):
        if not TEMPORARY_PATTERN.match(path.name) or not path.is_file() or path.is_symlink():
            continue
        try:
            if path.stat().st_mtime < started_before:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise output_error(path, error) from None
    return removed


def check_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and prove it writable by writing and removing a probe
    file (permission bits alone do not tell: root, read-only mounts, ACLs)."""
    root = Path(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=root, prefix=".lsap-write-probe.", suffix=".tmp")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise output_error(root, error) from None
    return root
