"""Convert any supported generator checkpoint to lsap's own format."""

from __future__ import annotations

from pathlib import Path

from lsap.model.checkpoints import load_generator, save_generator


def convert(source: str, destination: str) -> Path:
    """Write the generator in ``source`` (rosinality ``.pt``, NVlabs ``.pkl``, an e4e / pSp /
    LSAP encoder checkpoint's decoder, the G_ema of a ``lsap fit`` StyleGAN2
    checkpoint, or an lsap file) to ``destination`` in lsap's format.

    Args:
        source: checkpoint to read; nothing in it is executed.
        destination: ``.safetensors`` (recommended) or ``.pt`` (weights-only) path to write.
    """
    dst = Path(destination)
    if dst.suffix not in (".safetensors", ".pt"):
        raise ValueError(f"destination must end in .safetensors or .pt, got '{destination}'")
    generator = load_generator(source)
    save_generator(generator, dst)
    print(f"wrote {dst}: {generator.resolution}px StyleGAN2 generator, num_ws={generator.num_ws}, "
          f"{sum(p.numel() for p in generator.parameters()) / 1e6:.1f}M parameters")
    return dst
