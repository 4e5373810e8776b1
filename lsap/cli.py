"""The ``lsap`` command.

``lsap fit|validate|test|predict --config CONFIG`` is a LightningCLI: the model and the
data are chosen in the config by ``class_path`` / ``init_args`` and their typed
``__init__`` signatures are the whole configuration schema. The other subcommands are
plain functions whose signatures jsonargparse turns into their options.

Bad input (a missing or damaged file, a refused pickle, a bad folder) ends the command with
one line, ``lsap: error: <cause>``, and exit status 2; ``--debug`` (anywhere on the command
line) or ``LSAP_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Callable, NoReturn

from lsap.argv import underscore_options
from lsap.editing.cli import DIRECTIONS_COMMANDS, edit
from lsap.evaluation import cli as evaluation_cli

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
DEBUG_FLAG = "--debug"

# What bad input looks like: files missing or unreadable, damaged or refused content, bad values.
_INPUT_ERRORS = (OSError, ValueError, pickle.UnpicklingError)
# Inside Lightning runs only these count as input errors (anything else is a bug and keeps its traceback).
_FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, pickle.UnpicklingError)


def _align(input_dir: str, output_dir: str, output_size: int = 1024, min_face_size: int = 40,
           select: str = "largest", device: str = "cpu") -> int:
    """Detect faces (MTCNN) and align each to the FFHQ crop.

    Args:
        input_dir: folder of in-the-wild images (searched recursively).
        output_dir: where aligned PNGs and align_report.json go.
        output_size: side of the aligned square images.
        min_face_size: faces smaller than this many pixels are skipped and reported.
        select: which face of an image with several: "largest" or "most_confident".
        device: device for the detector, e.g. "cpu" or "cuda".
    """
    from lsap.align import main_align

    return main_align(input_dir, output_dir, output_size=output_size, min_face_size=min_face_size, select=select,
                      device=device)


def _convert(source: str, destination: str) -> None:
    """Convert a generator checkpoint (rosinality .pt, NVlabs .pkl, e4e/pSp/LSAP decoder, the G_ema of a
    `lsap fit` StyleGAN2 checkpoint, lsap file)
    to lsap's own format (.safetensors or weights-only .pt), including w_avg.

    Args:
        source: checkpoint to read; nothing in it is executed.
        destination: .safetensors or .pt path to write.
    """
    from lsap.convert import convert

    convert(source, destination)


def _anchors(generator: str, output: str | None = None, num_samples: int = 100_000, seed: int = 0,
             device: str = "cpu") -> None:
    """Compute (and cache) the S^N anchors of a generator: the per-layer mean of unit-normalised
    style vectors of synthetic samples.

    Args:
        generator: generator checkpoint (any supported format).
        output: optional .pt file to also write the anchors to.
        num_samples: synthetic samples M (official: 100000).
        seed: seed of the z draws.
        device: device to compute on, e.g. "cpu" or "cuda".
    """
    from lsap.metrics import compute_anchors
    from lsap.model import load_generator

    g = load_generator(generator, device=device)
    anchors = compute_anchors(g, num_samples=num_samples, seed=seed)
    if output:
        anchors.save(output)
    norms = ", ".join(f"{a.norm():.3f}" for a in anchors.lsap)
    print(f"anchors of {generator}: {len(anchors.lsap)} LSAP layers, |mu_l| = [{norms}]")


EXTRA_COMMANDS: dict[str, Callable | dict[str, Callable]] = {
    "align": _align, "convert": _convert, "anchors": _anchors, "edit": edit, "directions": DIRECTIONS_COMMANDS,
    "evaluate": evaluation_cli.evaluate_command, "fid": evaluation_cli.fid_command,
    "compare": evaluation_cli.compare_command}


def _lightning_cli(args: list[str] | None) -> None:
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "lsap: LSAP GAN inversion. Other commands: " + ", ".join(
            f"lsap {name}" for name in EXTRA_COMMANDS)},
    )


def _file_error_in_chain(error: BaseException) -> BaseException | None:
    """The file error an exception was raised from (jsonargparse wraps what a class's
    ``__init__`` raised), if any."""
    from lsap.io import CheckpointError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (*_FILE_ERRORS, CheckpointError)):
            return current
        current = current.__cause__ or current.__context__
    return None


def _fail(cause: BaseException) -> NoReturn:
    message = " ".join(str(cause).split()) or type(cause).__name__
    print(f"lsap: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("LSAP_DEBUG", "") not in ("", "0")
    if DEBUG_FLAG in argv:
        argv = [a for a in argv if a != DEBUG_FLAG]
        if from_command_line:
            sys.argv = [sys.argv[0], *argv]
    if argv and argv[0] in EXTRA_COMMANDS:
        from jsonargparse import CLI

        command, args = EXTRA_COMMANDS[argv[0]], underscore_options(argv[1:])
        if isinstance(command, dict) and args and args[0] in command:  # subcommands own their argv too
            args = args[:1] + getattr(command[args[0]], "prepare_argv", list)(args[1:])
        args = getattr(command, "prepare_argv", list)(args)  # commands may fold space-separated lists
        try:
            result = CLI(command, args=args, as_positional=True, prog=f"lsap {argv[0]}")
        except _INPUT_ERRORS as error:
            if debug:
                raise
            _fail(error)
        if isinstance(result, int) and result:
            raise SystemExit(result)
        return
    try:
        # LightningCLI reads sys.argv itself; passing it too would only earn a warning.
        _lightning_cli(None if from_command_line else argv)
    except Exception as error:
        cause = None if debug else _file_error_in_chain(error)
        if cause is None:
            raise
        _fail(cause)


if __name__ == "__main__":
    main()
