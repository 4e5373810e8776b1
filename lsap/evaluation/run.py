"""One loaded evaluation run: the pairs, their images and codes, read from disk once.

Every evaluator of ``lsap evaluate`` works on an :class:`EvaluationRun`. Images are held as
uint8 (the files' own levels, so converting a batch to [-1, 1] is exact and costs nothing
on disk); unreadable files (0-byte, not an image, a decompression bomb) are skipped and
counted with their reasons, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from lsap.data.images import scan_image_files
from lsap.errors import BadFileError, MissingInputError
from lsap.evaluation.inputs import (
    RealFit,
    Reconstruction,
    fit_real,
    pair_with_inputs,
    read_reconstructions,
    read_uint8,
)
from lsap.images import from_uint8

__all__ = ["EvaluationRun", "UnreadableImages", "read_uint8_files"]


@dataclass
class UnreadableImages:
    """Files that could not be decoded, with the reason for each (``path -> reason``)."""

    files: dict[str, str] = field(default_factory=dict)

    def add(self, path: str | Path, error: BaseException) -> None:
        self.files[str(path)] = f"{type(error).__name__}: {' '.join(str(error).split()) or 'no details'}"

    def __len__(self) -> int:
        return len(self.files)


def read_uint8_files(paths: list[str] | list[Path], unreadable: UnreadableImages) -> dict[str, Tensor]:
    """The readable ones of ``paths`` as uint8 images (by path); the others go to ``unreadable``."""
    images: dict[str, Tensor] = {}
    for path in paths:
        try:
            images[str(path)] = read_uint8(path)
        except Exception as error:  # noqa: BLE001 - PIL raises many types for damaged files
            unreadable.add(path, error)
    return images


@dataclass
class EvaluationRun:
    """A results folder paired with its inputs, loaded once.

    Attributes:
        results_dir, real_dir: the two folders.
        reconstructions: every reconstruction of the folder (FID uses them all).
        pairs: the readable ``(reconstruction, input path)`` pairs, sorted by name.
        images: uint8 images by path: reconstructions and every readable input.
        codes: W+ codes ``[num_ws, w_dim]`` by name (lsap folders only).
        noise: the code files' optimised noise maps by name (None where a file has none).
        unmatched_results, unmatched_real: names without a partner.
        unreadable: files skipped because they could not be decoded.
        real_fit: how inputs are brought to the reconstructions' size.
        real_files: the readable input files (FID uses them all).
    """

    results_dir: Path
    real_dir: Path
    reconstructions: list[Reconstruction]
    pairs: list[tuple[Reconstruction, Path]]
    images: dict[str, Tensor]
    codes: dict[str, Tensor]
    unmatched_results: list[str]
    unmatched_real: list[str]
    unreadable: UnreadableImages
    real_fit: RealFit = "resize"
    real_files: list[str] = field(default_factory=list)
    noise: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, results_dir: str | Path, real_dir: str | Path, real_fit: RealFit = "resize") -> "EvaluationRun":
        from lsap.results import load_code

        results_dir, real_dir = Path(results_dir), Path(real_dir)
        if not real_dir.is_dir():
            raise MissingInputError(f"real data folder not found: '{real_dir}'")
        reconstructions = read_reconstructions(results_dir)
        pairing = pair_with_inputs(reconstructions, real_dir)
        unreadable = UnreadableImages()
        real_files = scan_image_files(real_dir)
        images = read_uint8_files([str(r.image_path) for r in reconstructions] + real_files, unreadable)
        pairs = [(item, path) for item, path in pairing.pairs
                 if str(item.image_path) in images and str(path) in images]
        codes: dict[str, Tensor] = {}
        noise: dict[str, Any] = {}
        for item, _ in pairs:
            if item.code_path is not None:
                code = load_code(item.code_path)
                codes[item.name], noise[item.name] = code["ws"], code.get("noise")
        shapes = {tuple(c.shape) for c in codes.values()}
        if len(shapes) > 1:
            raise BadFileError(f"the codes of '{results_dir}' have different shapes {sorted(shapes)}: "
                               "they do not come from one inversion run")
        return cls(results_dir, real_dir, reconstructions, pairs, images, codes, pairing.unmatched_results,
                   pairing.unmatched_real, unreadable, real_fit,
                   [f for f in real_files if f in images], noise)

    @property
    def names(self) -> list[str]:
        return [item.name for item, _ in self.pairs]

    @property
    def size(self) -> int:
        """The reconstructions' size (of the first pair)."""
        return int(self.images[str(self.pairs[0][0].image_path)].shape[-1])

    def reconstruction(self, item: Reconstruction) -> Tensor:
        return from_uint8(self.images[str(item.image_path)])

    def real(self, path: Path, size: int | None = None) -> Tensor:
        return fit_real(from_uint8(self.images[str(path)]), size or self.size, self.real_fit, path)

    def batches(self, batch_size: int, pairs: list | None = None) -> Iterator[list[tuple[Reconstruction, Path]]]:
        items = self.pairs if pairs is None else pairs
        for start in range(0, len(items), batch_size):
            yield items[start:start + batch_size]

    def code_shape(self) -> tuple[int, ...] | None:
        return next((tuple(c.shape) for c in self.codes.values()), None)

    def with_codes(self) -> list[tuple[Reconstruction, Path]]:
        return [(item, path) for item, path in self.pairs if item.name in self.codes]

    def counts(self) -> dict[str, Any]:
        return {"pairs": len(self.pairs), "reconstructions": len(self.reconstructions),
                "unmatched_results": len(self.unmatched_results), "unmatched_real": len(self.unmatched_real),
                "unreadable": len(self.unreadable)}
