"""The ``lsap`` command: dispatches to the commands of :mod:`lsap.commands`.

``lsap fit|validate|test|predict --config CONFIG`` is a LightningCLI: the model and the
data are chosen in the config by ``class_path`` / ``init_args`` and their typed
``__init__`` signatures are the whole configuration schema. The other commands are plain
functions whose signatures jsonargparse turns into their options.

Bad input ends the command with one line, ``lsap: error: <cause>``, and exit status 2: an
:class:`lsap.errors.InputError` (raised where lsap reads the input), a missing or unreadable
file, a refused pickle, or an option the parser refuses. Anything else is a bug and keeps its
traceback. ``--debug`` (anywhere on the command line) or ``LSAP_DEBUG=1`` shows the full
traceback of input errors too.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any, NoReturn

from lsap.argv import underscore_options
from lsap.commands import COMMANDS, LIGHTNING_COMMANDS, Command, find_command, load_target
from lsap.errors import InputError

__all__ = ["main"]

DEBUG_FLAG = "--debug"
HELP_FLAGS = ("-h", "--help")

# The built-in errors that mean bad input wherever they come from: a path that is missing or
# cannot be opened, and a pickle refused by the safe loader. Everything else lsap detects is an InputError.
USER_INPUT_ERRORS = (InputError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                     pickle.UnpicklingError)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str) -> NoReturn:
    print(f"lsap: error: {_one_line(message)}", file=sys.stderr)
    raise SystemExit(2)


def input_error_in_chain(error: BaseException) -> BaseException | None:
    """The user-input error that ``error`` is or was raised from (jsonargparse and Lightning wrap
    what a class's ``__init__`` or a hook raised), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, USER_INPUT_ERRORS):
            return current
        current = current.__cause__ or current.__context__
    return None


def overview() -> str:
    """The text of ``lsap --help``: every command with its one-line help."""
    width = max(len(c.name) for c in COMMANDS)
    lines = ["usage: lsap COMMAND [OPTIONS]   (lsap COMMAND --help shows a command's options)", "",
             "lsap: LSAP GAN inversion for StyleGAN2 (encoder and optimisation inversion, PTI, editing, evaluation).",
             "", "commands:"]
    for command in COMMANDS:
        lines.append(f"  {command.name.ljust(width)}  {command.help}")
        for sub in command.subcommands:
            lines.append(f"  {' ' * width}    {sub.name}: {sub.help}")
    lines += ["", "Bad input ends with one line, 'lsap: error: <cause>', and exit status 2; --debug shows the traceback."]
    return "\n".join(lines)


def _run_plain(command: Command, args: list[str]) -> Any:
    from jsonargparse import CLI

    from lsap.cli_errors import ParserError, plain_parse_error

    prog = f"lsap {command.name}"
    if command.subcommands:
        sub = find_command(args[0], command.subcommands) if args else None
        if sub is not None:
            args = args[:1] + sub.prepare_argv(args[1:])
        components: Any = {s.name: load_target(s.target) for s in command.subcommands}
    else:
        args = command.prepare_argv(args)
        components = load_target(command.target)
    try:
        return CLI(components, args=args, as_positional=True, prog=prog, exit_on_error=False)
    except ParserError as error:
        _fail(plain_parse_error(error, components, args, prog))


def _run_lightning(argv: list[str] | None) -> None:
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        save_config_kwargs={"overwrite": True},
        # Each subcommand's description is its registry help (Lightning's own is cut at the first line).
        parser_kwargs={"exit_on_error": False, "description": overview(),
                       **{c.name: {"exit_on_error": False, "description": c.help} for c in LIGHTNING_COMMANDS}},
    )


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("LSAP_DEBUG", "") not in ("", "0")
    if DEBUG_FLAG in argv:
        argv = [a for a in argv if a != DEBUG_FLAG]
        if from_command_line:
            sys.argv = [sys.argv[0], *argv]
    if not argv or argv[0] in HELP_FLAGS:
        print(overview())
        return
    command = find_command(argv[0])
    if command is None:
        from difflib import get_close_matches

        close = get_close_matches(argv[0], [c.name for c in COMMANDS], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        _fail(f"unknown command '{argv[0]}'{hint} (lsap --help lists them)")
    try:
        if command.lightning:
            # LightningCLI reads sys.argv itself; passing it too would only earn a warning.
            _run_lightning(None if from_command_line else argv)
            return
        result = _run_plain(command, underscore_options(argv[1:]))
    except Exception as error:
        from lsap.cli_errors import ParserError, lightning_parse_error

        if isinstance(error, ParserError) and command.lightning:
            _fail(lightning_parse_error(error, command.name))
        cause = input_error_in_chain(error)
        if cause is None or debug:
            raise
        _fail(str(cause) or type(cause).__name__)
    if isinstance(result, int) and result:
        raise SystemExit(result)


if __name__ == "__main__":
    main()
