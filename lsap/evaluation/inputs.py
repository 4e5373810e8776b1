"""Reading an inversion output folder and pairing each reconstruction with its input.

All reading of inversion outputs goes through :func:`read_reconstructions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lsap.data.images import load_rgb, scan_image_files
from lsap.errors import BadValueError, MissingInputError
from lsap.evaluation.options import RealFit
from lsap.images import from_uint8
from lsap.results import IMAGES_DIR, InversionRecord, load_results


@dataclass(frozen=True)
class Reconstruction:
    """One reconstruction: its name (input path relative to the input folder, no extension),
    its image file and, when the folder came from lsap, its code file and results record
    (which names the refinement that made it, see :mod:`lsap.editing.refinement`)."""

    name: str
    image_path: Path
    code_path: Path | None = None
    record: InversionRecord | None = field(default=None, compare=False)


@dataclass
class Pairing:
    pairs: list[tuple[Reconstruction, Path]] = field(default_factory=list)
    unmatched_results: list[str] = field(default_factory=list)
    unmatched_real: list[str] = field(default_factory=list)


def _relative_name(path: str | Path, root: Path) -> str:
    return PurePosixPath(*Path(path).relative_to(root).with_suffix("").parts).as_posix()


def read_reconstructions(results_dir: str | Path) -> list[Reconstruction]:
    """The reconstructions of a results folder, sorted by name: the finished records of an
    lsap inversion output, or else every image under ``images/`` (or the folder itself)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise MissingInputError(f"results folder not found: '{root}'")
    records = load_results(root)
    if records:
        return [Reconstruction(r.name, r.image_path, r.code_path, r) for r in records
                if r.image_path is not None]
    folder = root / IMAGES_DIR if (root / IMAGES_DIR).is_dir() else root
    return [Reconstruction(_relative_name(p, folder), Path(p)) for p in scan_image_files(folder)]


def pair_with_inputs(reconstructions: list[Reconstruction], real_dir: str | Path) -> Pairing:
    """Pair each reconstruction with the input of the same relative name (extension aside)."""
    root = Path(real_dir)
    if not root.is_dir():
        raise MissingInputError(f"real data folder not found: '{root}'")
    real = {_relative_name(p, root): Path(p) for p in scan_image_files(root)}
    pairing = Pairing()
    for item in reconstructions:
        if item.name in real:
            pairing.pairs.append((item, real[item.name]))
        else:
            pairing.unmatched_results.append(item.name)
    used = {item.name for item, _ in pairing.pairs}
    pairing.unmatched_real = sorted(set(real) - used)
    return pairing


def read_uint8(path: str | Path) -> Tensor:
    """An image file as uint8 ``[3, H, W]`` (the file's own levels; FID reads images so)."""
    return torch.from_numpy(np.array(load_rgb(path), dtype=np.uint8)).permute(2, 0, 1)


def read_image(path: str | Path) -> Tensor:
    """An image file as float ``[3, H, W]`` in [-1, 1]."""
    return from_uint8(read_uint8(path))


def fit_real(image: Tensor, size: int, fit: RealFit = "resize", path: str | Path = "input") -> Tensor:
    """A float input image ``[3, H, W]`` brought to ``size`` reconstructions: with ``fit="pad"``
    one smaller than ``size`` is centred on a ``size`` x ``size`` canvas of -1 (the extra pixel
    of an odd margin goes after), as ``lsap.data.FashionMNISTDataModule`` pads; ``resize`` is
    left to :func:`lsap.metrics.fidelity.prepare_pair`."""
    if fit not in ("resize", "pad"):
        raise BadValueError(f"real_fit must be 'resize' or 'pad', got {fit!r}")
    height, width = image.shape[-2:]
    if fit == "resize" or (height, width) == (size, size):
        return image
    if height > size or width > size:
        raise BadValueError(f"'{path}' is {width}x{height}, larger than the {size} px reconstructions: "
                            "it cannot be padded to them (use real_fit 'resize')")
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(image, (left, size - width - left, top, size - height - top), value=-1.0)


def read_real_image(path: str | Path, size: int, fit: RealFit = "resize") -> Tensor:
    """An input image as float ``[3, H, W]`` in [-1, 1], brought to ``size`` by :func:`fit_real`."""
    return fit_real(read_image(path), size, fit, path)
