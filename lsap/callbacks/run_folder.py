"""One writer at a time in a results folder: a lock file.

The lock file records the writer's process id and host. A lock whose process has ended
on this host (a run killed with ``kill -9``) is stale and is taken over; a live one, or one
from another host, stops the second run with one line saying whose it is.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsap.errors import OutputError
from lsap.io import atomic_write, output_error

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lsap.lock"


# ----- the lock --------------------------------------------------------------------------------
def _process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    if start is not None:
        current = _process_start(pid)
        return current is None or current == start
    return True


class RunLock:
    """An exclusive lock on a results folder, held by one process.

    ``acquire`` creates ``FOLDER/.lsap.lock`` atomically (complete or absent, never half
    written); ``release`` removes it when this process holds it. A lock left by a process
    that no longer runs on this host is replaced.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.held = False

    def holder(self) -> dict[str, Any] | None:
        """The lock file's content (``{}`` when unreadable), ``None`` when there is none."""
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _is_stale(self, holder: Mapping[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        return not _alive(holder["pid"], holder.get("start"))

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        text = json.dumps(me)
        for _ in range(3):
            staged = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}")
            atomic_write(staged, lambda f: f.write(text), mode="w")
            try:
                os.link(staged, self.path)  # fails if a lock exists: atomic test-and-set
                self.held = True
                return self
            except FileExistsError:
                holder = self.holder()
                if holder is not None and self._is_stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                if holder is None:
                    continue
                raise OutputError(self._busy_message(holder)) from None
            except OSError as error:
                raise output_error(self.path, error) from None
            finally:
                staged.unlink(missing_ok=True)
        raise OutputError(self._busy_message(self.holder() or {}))

    def _busy_message(self, holder: Mapping[str, Any]) -> str:
        who = (f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
               if holder else "an unreadable lock")
        return (f"another lsap run is writing to '{self.path.parent}' ({who}): wait for it to finish or use "
                f"another output folder; if no such run exists any more, delete '{self.path}'")

    def release(self) -> None:
        if not self.held:
            return
        holder = self.holder()
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
