"""Command-line argument folding shared by the plain (non-Lightning) subcommands.

jsonargparse reads a list option as one JSON value (``--strengths=[-3, 0, 3]``); people type
lists the shell way (``--strengths -3 0 3``, ``lsap compare A B``). These helpers turn the
second form into the first before parsing.
"""

from __future__ import annotations

import json
from typing import Any

from lsap.errors import BadValueError

__all__ = ["fold_list_options", "fold_positionals", "underscore_options"]


def fold_list_options(argv: list[str], options: dict[str, type]) -> list[str]:
    """Fold the space-separated values after each ``--name`` in ``options`` into one JSON list,
    converting each value with the option's type (a value that does not convert is a BadValueError)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        name = argv[i][2:] if argv[i].startswith("--") else None
        if name in options:
            values = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                values.append(_convert(name, argv[i + 1], options[name]))
                i += 1
            out.append(f"--{name}={json.dumps(values)}" if values else argv[i])
        else:
            out.append(argv[i])
        i += 1
    return out


def _convert(name: str, value: str, kind: type) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise BadValueError(f"--{name}: '{value}' is not a {kind.__name__}") from None


def fold_positionals(argv: list[str]) -> list[str]:
    """Gather every positional argument (those before the first option) into one JSON list,
    for commands whose single positional parameter is a list. A value already written as a
    JSON list is left alone."""
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    positionals, rest = argv[:split], argv[split:]
    if len(positionals) == 1 and positionals[0].lstrip().startswith("["):
        return argv
    return ([json.dumps(positionals)] if positionals else []) + rest


def underscore_options(argv: list[str]) -> list[str]:
    """Accept ``--batch-size`` for ``--batch_size``: option names are Python parameter names,
    but dashes are what people type. Values (after ``=`` or in their own argument) are kept."""
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        out.append(arg)
    return out
