"""Aligning a folder tree: never stops on a bad file, resumes by skipping outputs that
already exist, and writes ``align_report.json`` listing every skipped file with its reason."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, get_args

import numpy as np
from PIL import Image

from lsap.align.detection import (
    _MTCNN_DEFAULT_DETECTABLE,
    FaceDetector,
    FaceSelection,
    MTCNNFaceDetector,
    detect_and_align,
)
from lsap.align.geometry import FaceAlignmentError
from lsap.data.images import load_rgb
from lsap.io import atomic_write

if TYPE_CHECKING:
    import torch

__all__ = ["IMAGE_EXTENSIONS", "REPORT_FILENAME", "AlignReport", "AlignedImage", "SkippedImage", "align_folder",
           "main_align"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}
)

REPORT_FILENAME = "align_report.json"


@dataclass
class AlignedImage:
    """An input with an aligned output. Detection fields are None when unknown (resumed)."""

    path: str
    output: str
    box: list[float] | None = None
    score: float | None = None
    landmarks: list[list[float]] | None = None
    quad: list[list[float]] | None = None


@dataclass
class SkippedImage:
    path: str
    reason: str
    detail: str


@dataclass
class AlignReport:
    """Outcome of :func:`align_folder`; paths are relative to the input/output folders."""

    input_dir: str
    output_dir: str
    output_size: int
    min_face_size: float
    select: str
    aligned: list[AlignedImage] = field(default_factory=list)
    already_aligned: list[AlignedImage] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return len(self.aligned) + len(self.already_aligned) + len(self.skipped)

    @property
    def num_aligned(self) -> int:
        return len(self.aligned)

    @property
    def num_already_aligned(self) -> int:
        return len(self.already_aligned)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(item.reason for item in self.skipped).items()))

    def counts(self) -> dict[str, Any]:
        return {
            "images": self.num_images,
            "aligned": self.num_aligned,
            "already_aligned": self.num_already_aligned,
            "skipped": self.num_skipped,
            "skipped_by_reason": self.skipped_by_reason,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_dir": self.input_dir,
            "output_dir": self.output_dir,
            "settings": {
                "output_size": self.output_size,
                "min_face_size": self.min_face_size,
                "select": self.select,
            },
            "counts": self.counts(),
            "aligned": [asdict(item) for item in self.aligned],
            "already_aligned": [asdict(item) for item in self.already_aligned],
            "skipped": [asdict(item) for item in self.skipped],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))

    def summary(self) -> str:
        reasons = ", ".join(f"{reason}={count}" for reason, count in self.skipped_by_reason.items())
        skipped = f"{self.num_skipped} skipped" + (f" ({reasons})" if reasons else "")
        return (
            f"aligned {self.num_aligned} of {self.num_images} images, "
            f"{self.num_already_aligned} already aligned, {skipped}; "
            f"report: {Path(self.output_dir) / REPORT_FILENAME}"
        )


def _find_images(input_dir: Path, excluded_dir: Path) -> list[Path]:
    """Image files under ``input_dir`` (sorted, relative), ignoring anything in ``excluded_dir``."""
    found: list[Path] = []
    excluded = excluded_dir.resolve()
    for root, dirnames, filenames in os.walk(input_dir):
        root_path = Path(root)
        # Prune the output folder when it is nested in the input folder.
        dirnames[:] = sorted(name for name in dirnames if (root_path / name).resolve() != excluded)
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append((root_path / name).relative_to(input_dir))
    return found


def _output_paths(relative_inputs: Sequence[Path]) -> dict[Path, Path]:
    """Mirror each input as ``<stem>.png``; same-stem siblings keep their extension in the name."""
    stems = Counter(path.with_suffix("") for path in relative_inputs)
    return {
        path: (path.with_name(path.name + ".png") if stems[path.with_suffix("")] > 1 else path.with_suffix(".png"))
        for path in relative_inputs
    }


def _previous_entries(report_path: Path) -> dict[str, dict[str, Any]]:
    """Aligned entries of an earlier report, keyed by input path (empty if unusable)."""
    try:
        previous = json.loads(report_path.read_text(encoding="utf-8"))
        entries = list(previous.get("aligned", [])) + list(previous.get("already_aligned", []))
        return {str(entry["path"]): entry for entry in entries if isinstance(entry, dict) and "path" in entry}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _save_png(image: Image.Image, target: Path) -> None:
    # Atomic, so an interrupted run never leaves a truncated PNG that resume trusts.
    atomic_write(target, lambda f: image.save(f, format="PNG"))


def align_folder(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    output_size: int = 1024,
    min_face_size: float = 40.0,
    select: FaceSelection = "largest",
    device: str | torch.device = "cpu",
    detector: FaceDetector | None = None,
    transform_size: int | None = None,
    enable_padding: bool = True,
    overwrite: bool = False,
    show_progress: bool = False,
) -> AlignReport:
    """Align every image under ``input_dir`` (recursively) into ``output_dir`` as PNGs.

    Output paths mirror the input tree with a ``.png`` suffix. Bad inputs never stop the
    run: unreadable files, images without a usable face, faces smaller than
    ``min_face_size`` pixels (longer box side) and degenerate landmarks are listed with a
    reason in the returned report and in ``output_dir/align_report.json``. Existing outputs
    are kept and counted as already aligned unless ``overwrite`` is set.

    Args:
        detector: face detector; defaults to MTCNN on ``device``.
    """
    if select not in get_args(FaceSelection):
        raise ValueError(f"select must be one of {get_args(FaceSelection)}, got {select!r}")
    source_root = Path(input_dir)
    target_root = Path(output_dir)
    if not source_root.is_dir():
        raise FileNotFoundError(f"input directory not found: {source_root}")
    if source_root.resolve() == target_root.resolve():
        raise ValueError("output_dir must differ from input_dir")
    target_root.mkdir(parents=True, exist_ok=True)

    report = AlignReport(
        input_dir=str(source_root),
        output_dir=str(target_root),
        output_size=output_size,
        min_face_size=min_face_size,
        select=select,
    )
    report_path = target_root / REPORT_FILENAME
    previous = _previous_entries(report_path)
    inputs = _find_images(source_root, target_root)
    outputs = _output_paths(inputs)

    pending: list[Path] = []
    for relative in inputs:
        if not overwrite and (target_root / outputs[relative]).is_file():
            earlier = previous.get(relative.as_posix(), {})
            report.already_aligned.append(
                AlignedImage(
                    path=relative.as_posix(),
                    output=outputs[relative].as_posix(),
                    box=earlier.get("box"),
                    score=earlier.get("score"),
                    landmarks=earlier.get("landmarks"),
                    quad=earlier.get("quad"),
                )
            )
        else:
            pending.append(relative)

    if pending and detector is None:
        detection_floor = min(_MTCNN_DEFAULT_DETECTABLE, max(int(min_face_size), 1))
        detector = MTCNNFaceDetector(device=device, min_detectable_size=detection_floor)

    progress: Any = pending
    if show_progress and pending:
        from tqdm import tqdm

        progress = tqdm(pending, desc="align", unit="img", file=sys.stderr)

    for relative in progress:
        key = relative.as_posix()
        try:
            image = load_rgb(source_root / relative)
        except Exception as error:  # any decoder failure means "cannot read", never a crash
            report.skipped.append(SkippedImage(key, "unreadable", f"{type(error).__name__}: {error}"))
            continue
        try:
            assert detector is not None
            aligned, face, quad = detect_and_align(
                image, detector, output_size, min_face_size, select, transform_size, enable_padding
            )
            _save_png(aligned, target_root / outputs[relative])
        except FaceAlignmentError as error:
            report.skipped.append(SkippedImage(key, error.reason, str(error)))
            continue
        except Exception as error:  # keep going: one odd image must not stop a folder
            logger.warning("failed to align %s", key, exc_info=True)
            report.skipped.append(SkippedImage(key, "error", f"{type(error).__name__}: {error}"))
            continue
        report.aligned.append(
            AlignedImage(
                path=key,
                output=outputs[relative].as_posix(),
                box=[float(value) for value in face.box],
                score=float(face.score),
                landmarks=np.asarray(face.landmarks, dtype=np.float64).tolist(),
                quad=quad.tolist(),
            )
        )

    for item in report.skipped:
        logger.info("skipped %s: %s (%s)", item.path, item.reason, item.detail)
    report.write_json(report_path)
    return report


def main_align(
    input_dir: str,
    output_dir: str,
    output_size: int = 1024,
    min_face_size: int = 40,
    select: str = "largest",
    device: str = "cpu",
) -> int:
    """Command-line entry: align a folder, print a one-line summary, return the exit code.

    Returns 0 when the folder was processed (even if some images were skipped; see the
    report) and 2 for unusable arguments such as a missing input folder.
    """
    if select not in get_args(FaceSelection):
        print(f"lsap align: --select must be one of {get_args(FaceSelection)}, got {select!r}", file=sys.stderr)
        return 2
    try:
        report = align_folder(
            input_dir,
            output_dir,
            output_size=output_size,
            min_face_size=min_face_size,
            select=select,  # type: ignore[arg-type]
            device=device,
            show_progress=True,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"lsap align: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0
