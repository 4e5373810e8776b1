"""One-line messages for options the parser refuses (a typo in a config, a missing config
file, a value of the wrong type), instead of jsonargparse's usage dump.

A refused key is named with the closest valid key and where to see all of them.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from difflib import get_close_matches
from typing import Any, Callable

__all__ = ["ParserError", "closest_key_hint", "lightning_parse_error", "plain_parse_error"]

ParserError = argparse.ArgumentError  # what jsonargparse raises with exit_on_error=False

_REFUSED_KEY = re.compile(r"""Option '([^']+)' is not accepted|No action for key "([^"]+)"|"""
                          r"""Key "([^"]+)" is not expected""")
_UNRECOGNIZED = re.compile(r"unrecognized arguments:\s*(.*)", re.IGNORECASE)
_CLASS_PATH = re.compile(r"class_path '([\w.]+)'")
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
_MISSING_FILE = re.compile(r'Parser key "([^"]+)":\s*File does not exist: (.*)')
# Lines of jsonargparse's nested messages that only restate types or dump the given value.
_NOISE = re.compile(r"^\s*(-\s*)?(Given value|Subtypes:|Errors:|Does not validate against|Expected a <class 'NoneType'>"
                    r"|tip:)")


def closest_key_hint(key: str, valid: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the valid key closest to ``key``, or ``""``."""
    close = get_close_matches(key.split(".")[-1], valid, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _parameters(function: Callable[..., Any]) -> list[str]:
    """The keyword names a function or class accepts (a class's ``**kwargs`` reach its bases)."""
    if not inspect.isclass(function):
        return [p for p in inspect.signature(function).parameters if p not in ("self", "args", "kwargs")]
    names: list[str] = []
    for cls in function.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is object:
            continue
        params = inspect.signature(init).parameters
        names += [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return list(dict.fromkeys(names))


def _summary(message: str) -> str:
    missing = _MISSING_FILE.search(message)
    if missing:
        return f"--{missing.group(1)}: file {missing.group(2).strip()} does not exist"
    kept = [line.strip() for line in message.splitlines() if line.strip() and not _NOISE.match(line)]
    return " ".join(kept)


def plain_parse_error(error: BaseException, components: Any, args: list[str], prog: str) -> str:
    """The one line for an option that ``lsap CMD`` refuses."""
    message = str(error)
    function = components
    if isinstance(components, dict):
        sub = next((a for a in args if a in components), None)
        function, prog = (components[sub], f"{prog} {sub}") if sub else (None, prog)
    unrecognized = _UNRECOGNIZED.search(message)
    if unrecognized and function is not None:
        bad = [a for a in unrecognized.group(1).split() if a.startswith("--")]
        if bad:
            key = bad[0][2:].partition("=")[0]
            return (f"{prog}: unknown option '--{key}'{closest_key_hint(key, _parameters(function))} "
                    f"({prog} --help lists all options)")
    return f"{prog}: {_summary(message)} ({prog} --help lists all options)"


def lightning_parse_error(error: BaseException, subcommand: str) -> str:
    """The one line for a config or option that ``lsap fit|validate|test|predict`` refuses."""
    message = str(error)
    prog = f"lsap {subcommand}"
    refused = _REFUSED_KEY.search(message)
    if refused:
        key = next(g for g in refused.groups() if g)
        class_path = _CLASS_PATH.search(message)
        section = _PARSER_KEY.search(message)
        where = section.group(1) if section else ""
        valid: list[str] = []
        owner = ""
        if class_path:
            owner = class_path.group(1)
            module, _, name = owner.rpartition(".")
            # Only a module jsonargparse already imported to validate the config: an error
            # message never decides what gets imported.
            loaded = sys.modules.get(module)
            valid = _parameters(getattr(loaded, name)) if loaded is not None and hasattr(loaded, name) else []
        in_what = f" of {owner}" if owner else ""
        section_text = f"{where}: " if where else ""
        return (f"{section_text}'{key}' is not an option{in_what}{closest_key_hint(key, valid)} "
                f"(all options: {prog} --config CONFIG --print_config, or {prog} --help)")
    unrecognized = _UNRECOGNIZED.search(message)
    if unrecognized:
        return f"unknown argument {unrecognized.group(1).strip()} ({prog} --help lists all options)"
    return f"{_summary(message)} ({prog} --help lists all options)"
