"""Convert any supported generator checkpoint to lsap's own format (the ``lsap convert`` command)."""

from __future__ import annotations

from pathlib import Path

from lsap.errors import BadValueError, OutputError

__all__ = ["convert"]

DESTINATION_SUFFIXES = (".safetensors", ".pt")


def convert(source: str, destination: str) -> Path:
    """Write the generator in ``source`` (rosinality ``.pt``, NVlabs ``.pkl``, an e4e / pSp /
    LSAP encoder checkpoint's decoder, the G_ema of a ``lsap fit`` StyleGAN2
    checkpoint, or an lsap file) to ``destination`` in lsap's format, including w_avg.

    A bad destination suffix is a BadValueError; a destination that cannot be written (read-only
    or full disk, missing folder) is an OutputError naming the file.

    Args:
        source: checkpoint to read; nothing in it is executed.
        destination: ``.safetensors`` (recommended) or ``.pt`` (weights-only) path to write.
    """
    from lsap.model.checkpoints import load_generator, save_generator

    dst = Path(destination)
    if dst.suffix not in DESTINATION_SUFFIXES:
        raise BadValueError(f"destination must end in .safetensors or .pt, got '{destination}'")
    if not dst.parent.is_dir():
        raise OutputError(f"cannot write '{dst}': its folder '{dst.parent}' does not exist")
    generator = load_generator(source)
    save_generator(generator, dst)  # a read-only or full disk is an OutputError naming dst
    print(f"wrote {dst}: {generator.resolution}px StyleGAN2 generator, num_ws={generator.num_ws}, "
          f"{sum(p.numel() for p in generator.parameters()) / 1e6:.1f}M parameters")
    return dst
