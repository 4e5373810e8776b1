"""The errors that mean "the input is wrong", as opposed to a bug in lsap.

Every user mistake lsap detects is raised as one of these at the boundary where the input
is read (a file, a shape, a value, a folder to write to), with a message that names the
file or option and the cause. The command line turns exactly these into one line,
``lsap: error: <cause>``, and exit status 2; anything else is a bug and keeps its
traceback. Each class also derives from the built-in exception a Python caller would
expect (``ValueError``, ``FileNotFoundError``, ``OSError``), so ``except ValueError`` keeps
working.
"""

from __future__ import annotations

import pickle

__all__ = [
    "BadFileError",
    "BadValueError",
    "InputError",
    "MissingInputError",
    "OutputError",
    "UnsafeFileError",
]


class InputError(Exception):
    """Base class: the input (not lsap) is at fault. The message is meant for the user."""


class BadValueError(InputError, ValueError):
    """An option, argument or setting has a value that cannot be used."""


class BadFileError(InputError, ValueError):
    """A file exists but its content is damaged, malformed or not what was expected."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder that was asked for does not exist."""


class OutputError(InputError, OSError):
    """An output cannot be written: read-only or full disk, missing permission."""


class UnsafeFileError(InputError, pickle.UnpicklingError):
    """A file could only be read by importing or running code that it names."""
