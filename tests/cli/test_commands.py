"""The command registry (lsap.commands) and how lsap.cli turns errors into one line."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from lsap import cli
from lsap.cli import input_error_in_chain, main, overview
from lsap.commands import COMMANDS, Command, load_target
from lsap.errors import BadValueError, MissingInputError

PLAIN = [c for c in COMMANDS if not c.lightning]


def _entries():
    for command in COMMANDS:
        yield command
        yield from command.subcommands


@pytest.mark.parametrize("command", [c for c in _entries() if c.target], ids=lambda c: c.name)
def test_every_target_imports_to_a_documented_function(command):
    function = load_target(command.target)
    assert callable(function) and inspect.getdoc(function)
    assert function.__module__ != "lsap.cli", "commands live beside what they do, not inline in lsap.cli"
    assert not hasattr(function, "prepare_argv"), "argv folding is declared in lsap.commands"


def test_every_entry_has_one_whole_sentence_of_help():
    for command in _entries():
        assert command.help.endswith(".") and "\n" not in command.help, command.name
        assert bool(command.target) != bool(command.subcommands or command.lightning), command.name


def test_overview_lists_every_command_with_its_whole_help(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    assert out == overview() + "\n"
    for command in _entries():
        assert command.help in out


def raise_input_error(path: str) -> None:
    """Fails as bad input does.

    Args:
        path: anything.
    """
    raise MissingInputError(f"'{path}' does not exist\n(second line of the cause)")


def raise_bug(path: str) -> None:
    """Fails as a bug does.

    Args:
        path: anything.
    """
    raise ZeroDivisionError("division by zero")


@pytest.fixture
def registered(monkeypatch):
    extra = (Command("input-error", "Raise an input error.", f"{__name__}:raise_input_error"),
             Command("bug", "Raise a bug.", f"{__name__}:raise_bug"))
    monkeypatch.setattr(cli, "find_command", lambda name: next((c for c in extra if c.name == name), None))


def test_an_input_error_becomes_one_line_and_exit_2(registered, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["input-error", "nowhere.pt"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "lsap: error: 'nowhere.pt' does not exist (second line of the cause)\n"


def test_a_bug_keeps_its_traceback(registered):
    with pytest.raises(ZeroDivisionError):
        main(["bug", "x"])


def test_debug_keeps_the_traceback_of_an_input_error(registered):
    with pytest.raises(MissingInputError):
        main(["input-error", "x", "--debug"])


def test_an_input_error_wrapped_by_lightning_is_found_in_the_cause_chain():
    try:
        try:
            raise BadValueError("batch_size must be at least 1, got 0")
        except BadValueError as inner:
            raise RuntimeError("instantiation failed") from inner
    except RuntimeError as outer:
        assert str(input_error_in_chain(outer)) == "batch_size must be at least 1, got 0"
    try:
        try:
            1 / 0
        except ZeroDivisionError as inner:
            raise TypeError("wrapper") from inner
    except TypeError as outer:
        assert input_error_in_chain(outer) is None


def test_an_unknown_command_names_the_closest(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evalute", "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "lsap: error: unknown command 'evalute'; did you mean 'evaluate'? " \
                                      "(lsap --help lists them)\n"


def test_a_bad_list_value_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["edit", str(tmp_path), "--direction", "x", "--strengths", "-3", "0", "3x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "lsap: error: --strengths: '3x' is not a float\n"


def test_a_misspelt_option_names_the_closest(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["edit", str(tmp_path), "--strenghts", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'--strenghts'" in err and "did you mean 'strengths'?" in err
    assert "lsap edit --help" in err


@pytest.mark.parametrize("args", [["--help"], ["edit", "--help"], ["directions", "sefa", "--help"],
                                  ["compare", "--help"], ["convert", "--help"], ["align", "--help"],
                                  ["fid", "--help"], ["evaluate", "--help"], ["anchors", "--help"]])
def test_help_does_not_import_torch(args):
    """What makes help fast (the latency itself is measured by bench/bench_cli_help.py)."""
    code = ("import sys\nfrom lsap.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n" % (args,))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout


def test_subcommand_descriptions_are_whole_sentences():
    for args in (["evaluate", "--help"], ["edit", "--help"], ["directions", "--help"], ["test", "--help"]):
        done = subprocess.run([sys.executable, "-m", "lsap", *args], capture_output=True, text=True, timeout=120)
        description = done.stdout.split("\n\n")[1]
        assert " ".join(description.split()).endswith("."), (args, description)
