"""The registry of ``lsap`` commands: one :class:`Command` per command, nothing else.

Each entry names its target as a ``"module:function"`` string, imported only when that
command runs (so ``lsap --help`` and ``lsap CMD --help`` stay fast), a one-line help shown
by ``lsap --help``, and the argv folding the command needs before jsonargparse parses it.
The function's typed signature and docstring are its options; they are declared nowhere else.

To add a command, add one entry to :data:`COMMANDS` (or to a group's ``subcommands``)::

    Command("sam-train", "lsap.refine.sam_train:train_command",
            "Train SAM's invertibility network on a folder of pivots.",
            list_options={"layers": int})
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = ["COMMANDS", "LIGHTNING_COMMANDS", "Command", "find_command", "load_target"]


@dataclass(frozen=True)
class Command:
    """One ``lsap`` command.

    Attributes:
        name: what people type after ``lsap``.
        help: one whole sentence, shown by ``lsap --help``.
        target: ``"module:function"`` run by jsonargparse (its signature is the options);
            empty for a group of ``subcommands`` and for the Lightning commands.
        list_options: options that take space-separated values (``--strengths -3 0 3``),
            each with the type its values are converted with.
        positional_list: gather every positional argument into the one list parameter
            (``lsap compare A B C``).
        fold: optional ``"module:function"`` turning argv into argv, for folding that the two
            fields above cannot say (e.g. bare boolean flags); runs after them.
        subcommands: for a group such as ``lsap directions``.
        lightning: a LightningCLI subcommand (``fit``, ``predict`` ...), configured by ``--config``.
    """

    name: str
    help: str
    target: str = ""
    list_options: Mapping[str, type] = field(default_factory=dict)
    positional_list: bool = False
    fold: str = ""
    subcommands: tuple[Command, ...] = ()
    lightning: bool = False

    def prepare_argv(self, argv: list[str]) -> list[str]:
        """Fold the shell-style argv into what jsonargparse reads (raises BadValueError on a
        value that does not convert)."""
        from lsap.argv import fold_list_options, fold_positionals

        if self.list_options:
            argv = fold_list_options(argv, dict(self.list_options))
        if self.positional_list:
            argv = fold_positionals(argv)
        if self.fold:
            argv = load_target(self.fold)(argv)
        return argv


def load_target(spec: str) -> Callable[..., Any]:
    """Import ``"module:function"`` and return the function."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


_LIGHTNING_HELP = {
    "fit": "Train the model a config describes (LSAP_E, StyleGAN2, ...): lsap fit --config CONFIG.",
    "validate": "Run the validation loop of a config's model and data once and print its metrics.",
    "test": "Run the test loop of a config's model and data once and print its metrics.",
    "predict": "Invert images (LSAP_E, LSAP_O, PTI, ...) and write a results folder: "
               "lsap predict --config CONFIG.",
}

LIGHTNING_COMMANDS = tuple(Command(name, text, lightning=True) for name, text in _LIGHTNING_HELP.items())

COMMANDS: tuple[Command, ...] = (
    *LIGHTNING_COMMANDS,
    Command("edit", "Edit every image of a results folder along directions and write edit grids.",
            "lsap.editing.cli:edit", list_options={"direction": str, "strengths": float}),
    Command("directions", "Find edit directions: GANSpace, SeFa or InterFaceGAN.", subcommands=(
        Command("ganspace", "GANSpace: PCA of W over seeded samples.", "lsap.editing.cli:directions_ganspace"),
        Command("sefa", "SeFa: closed-form factorization of the style layers' weights.",
                "lsap.editing.cli:directions_sefa"),
        Command("interfacegan", "InterFaceGAN: a linear boundary between labelled codes.",
                "lsap.editing.cli:directions_interfacegan", list_options={"condition": str}),
    )),
    Command("evaluate", "Evaluate a results folder with every metric its weights allow.",
            "lsap.evaluation.cli:evaluate_command", fold="lsap.evaluation.cli:evaluate_argv"),
    Command("fid", "FID between two image folders.", "lsap.evaluation.cli:fid_command"),
    Command("compare", "Print several metrics.json side by side as one markdown table.",
            "lsap.evaluation.cli:compare_command", positional_list=True),
    Command("convert", "Convert a generator checkpoint to lsap's own format (.safetensors or .pt).",
            "lsap.convert:convert"),
    Command("anchors", "Compute (and cache) the S^N anchors of a generator.", "lsap.style.cli:anchors_command"),
    Command("align", "Detect faces and align each to the FFHQ crop.", "lsap.align.cli:align_command"),
    Command("sam-invertibility", "Train SAM's invertibility network for a generator of your own.",
            "lsap.refine.invertibility:train_invertibility_command", list_options={"blocks": int}),
)


def find_command(name: str, commands: tuple[Command, ...] = COMMANDS) -> Command | None:
    """The entry called ``name``, or None."""
    return next((c for c in commands if c.name == name), None)
