"""Latency of ``lsap --help`` and of every command's ``--help``, each in a fresh process.

Help answers before anything heavy is imported: the registry (``lsap.commands``) names each
command's function as a ``"module:function"`` string and imports only the one asked for.
Each help runs ``--repeats`` times and the best wall time is kept (background load only
ever adds time). A process that only starts Python and imports nothing of lsap is timed
too, as the floor of what any command can reach on the machine.

    python bench/bench_cli_help.py --repeats 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from lsap.commands import COMMANDS


def help_commands() -> list[list[str]]:
    """``--help`` of lsap itself and of every command and subcommand in the registry."""
    commands = [["--help"]]
    for command in COMMANDS:
        commands.append([command.name, "--help"])
        commands += [[command.name, sub.name, "--help"] for sub in command.subcommands]
    return commands


def best_wall_time(argv: list[str], repeats: int) -> tuple[float, int]:
    best, code = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        best = min(best, time.perf_counter() - start)
    return best, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per command; the best is kept")
    args = parser.parse_args()
    floor, _ = best_wall_time([sys.executable, "-c", "pass"], args.repeats)
    print(f"| command | best of {args.repeats} (s) | exit |\n|---|---|---|")
    print(f"| python -c pass (floor) | {floor:.2f} | 0 |")
    for command in help_commands():
        seconds, code = best_wall_time([sys.executable, "-m", "lsap", *command], args.repeats)
        print(f"| lsap {' '.join(command)} | {seconds:.2f} | {code} |", flush=True)


if __name__ == "__main__":
    main()
