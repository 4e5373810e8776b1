"""The ``lsap`` command.

``lsap fit|validate|test|predict --config CONFIG`` is a LightningCLI: the model and the
data are chosen in the config by ``class_path`` / ``init_args`` and their typed
``__init__`` signatures are the whole configuration schema. The other subcommands are
plain functions whose signatures jsonargparse turns into their options.
"""

from __future__ import annotations

import sys
from typing import Callable

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


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


EXTRA_COMMANDS: dict[str, Callable] = {"align": _align, "convert": _convert, "anchors": _anchors}


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


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        from jsonargparse import CLI

        result = CLI(EXTRA_COMMANDS[argv[0]], args=argv[1:], as_positional=True, prog=f"lsap {argv[0]}")
        if isinstance(result, int) and result:
            raise SystemExit(result)
        return
    # LightningCLI reads sys.argv itself; passing it too would only earn a warning.
    _lightning_cli(None if from_command_line else argv)


if __name__ == "__main__":
    main()
