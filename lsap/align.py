"""Align in-the-wild face photos to the FFHQ crop that StyleGAN2 face models were trained on.

Pipeline per image: load (any mode -> RGB), detect faces with MTCNN, pick one face, build
the FFHQ oriented crop square from five landmarks, and resample it to ``output_size``.

The crop follows the construction used to build FFHQ from its in-the-wild images: a square
centred slightly below the eyes, rotated so the eyes are level, with a side length set by
the larger of the eye distance and the eye-to-mouth distance. Areas of the square that fall
outside the photo are filled by mirror padding that is blurred and faded to the mean colour,
as FFHQ did. FFHQ took eye centres from 68-point landmarks; MTCNN's five points give them
directly (see :func:`five_point_landmarks_from_68` to use 68-point landmarks instead).

``align_folder`` walks a folder tree, never stops on a bad file, resumes by skipping
outputs that already exist, and writes ``align_report.json`` listing every skipped file
with its reason.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Sequence, get_args

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from lsap.io import atomic_write

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "LANDMARK_NAMES",
    "REPORT_FILENAME",
    "AlignReport",
    "AlignedImage",
    "DegenerateLandmarksError",
    "FaceAlignmentError",
    "FaceDetection",
    "FaceDetector",
    "FaceSelection",
    "FaceTooSmallError",
    "MTCNNFaceDetector",
    "NoFaceFoundError",
    "SkippedImage",
    "align_face",
    "align_folder",
    "detect_and_align",
    "ffhq_quad",
    "five_point_landmarks_from_68",
    "load_rgb_image",
    "main_align",
    "select_face",
    "to_rgb",
]

logger = logging.getLogger(__name__)

# MTCNN's landmark order; "left" and "right" are as seen in the image.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}
)

REPORT_FILENAME = "align_report.json"

FaceSelection = Literal["largest", "most_confident"]

# FFHQ crop constants.
_EYE_DISTANCE_FACTOR = 2.0  # half-side of the square >= 2 x eye distance
_EYE_TO_MOUTH_FACTOR = 1.8  # half-side of the square >= 1.8 x eye-to-mouth distance
_CENTRE_SHIFT_TOWARDS_MOUTH = 0.1  # crop centre = eye midpoint + 0.1 x eye-to-mouth
_BORDER_FRACTION = 0.1  # margin kept around the quad when cropping, relative to its size
_MIN_BORDER = 3
_PAD_FRACTION = 0.3  # minimum mirror padding per side once padding is needed
_BLUR_FRACTION = 0.02  # Gaussian sigma of the padding blur, relative to the quad size

# Faces whose raw "horizontal" axis is this much shorter than eye distance + eye-to-mouth
# distance have eyes and mouth in an impossible arrangement (e.g. mirrored landmark order).
_MIN_AXIS_AGREEMENT = 0.5
_MIN_EYE_DISTANCE_PX = 1.0

# MTCNN's P-net sees 12 px windows; asking for smaller faces upsamples the whole image.
_MTCNN_SMALLEST_DETECTABLE = 12
_MTCNN_DEFAULT_DETECTABLE = 20

_ROWS_PER_CHUNK = 256  # bounds temporary memory while softening large padded images


# --------------------------------------------------------------------------------------
# Errors


class FaceAlignmentError(Exception):
    """An image cannot be aligned; ``reason`` is the short code used in reports."""

    reason: ClassVar[str] = "error"


class NoFaceFoundError(FaceAlignmentError):
    reason: ClassVar[str] = "no_face"


class FaceTooSmallError(FaceAlignmentError):
    reason: ClassVar[str] = "face_too_small"


class DegenerateLandmarksError(FaceAlignmentError, ValueError):
    """Landmarks do not define a usable crop (coincident eyes, NaNs, mirrored layout...)."""

    reason: ClassVar[str] = "degenerate_landmarks"


# --------------------------------------------------------------------------------------
# Image loading


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL image to 8-bit RGB.

    16-bit and 32-bit integer images are rescaled rather than clipped (PIL's own conversion
    saturates them to white); float images in [0, 1] are scaled to [0, 255]. Transparent
    images are composited over ``background``.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        image = Image.fromarray(_high_bit_depth_to_uint8(image))
        mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _high_bit_depth_to_uint8(image: Image.Image) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    finite_max = float(np.nanmax(values)) if values.size else 0.0
    if image.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif image.mode == "F":
        scale = 255.0 if finite_max <= 1.0 else 1.0
    else:  # "I" (32-bit): 16-bit files often load this way; 8-bit data stays as is
        scale = 255.0 / 65535.0 if finite_max > 255.0 else 1.0
    values = np.nan_to_num(values * scale, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def load_rgb_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file fully (so corrupt files fail here), apply EXIF rotation, make RGB."""
    with Image.open(path) as opened:
        opened.load()
        upright = ImageOps.exif_transpose(opened)
        return to_rgb(upright).copy()


# --------------------------------------------------------------------------------------
# Geometry


def five_point_landmarks_from_68(landmarks_68: np.ndarray) -> np.ndarray:
    """Five MTCNN-order points from 68-point (dlib/iBUG) landmarks, the way FFHQ read them.

    Eye centres are the means of the six eye-contour points, mouth corners are points 48
    and 54 and the nose is the nose tip (point 30, unused by the crop).
    """
    points = np.asarray(landmarks_68, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got shape {points.shape}")
    return np.stack(
        [
            points[36:42].mean(axis=0),
            points[42:48].mean(axis=0),
            points[30],
            points[48],
            points[54],
        ]
    )


def ffhq_quad(landmarks: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, float]:
    """The FFHQ crop square for five landmarks (MTCNN order, pixel coordinates).

    Returns ``(quad, quad_size)``: ``quad`` is 4x2 with the corners that become the output's
    top-left, bottom-left, bottom-right and top-right (PIL's QUAD order); ``quad_size`` is
    its side length in source pixels.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise DegenerateLandmarksError(f"expected 5x2 landmarks, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise DegenerateLandmarksError("landmarks contain NaN or infinity")
    left_eye, right_eye, _nose, mouth_left, mouth_right = points

    eye_mid = (left_eye + right_eye) * 0.5
    eye_to_eye = right_eye - left_eye
    mouth_mid = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_mid - eye_mid
    eye_distance = float(np.hypot(*eye_to_eye))
    eye_mouth_distance = float(np.hypot(*eye_to_mouth))
    if eye_distance < _MIN_EYE_DISTANCE_PX:
        raise DegenerateLandmarksError(
            f"eyes coincide (eye distance {eye_distance:.2f} px), e.g. a profile face"
        )

    # The horizontal axis blends the eye direction with the mouth direction turned by 90
    # degrees, so a slanted eye line alone does not dictate the roll.
    mouth_dir_turned = np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    axis = eye_to_eye - mouth_dir_turned
    axis_length = float(np.hypot(*axis))
    if axis_length < _MIN_AXIS_AGREEMENT * (eye_distance + eye_mouth_distance):
        raise DegenerateLandmarksError(
            "eyes and mouth are not in a face-like arrangement (mirrored or swapped landmarks)"
        )
    half_side = max(eye_distance * _EYE_DISTANCE_FACTOR, eye_mouth_distance * _EYE_TO_MOUTH_FACTOR)
    x_half = axis / axis_length * half_side
    y_half = np.array([-x_half[1], x_half[0]])
    centre = eye_mid + eye_to_mouth * _CENTRE_SHIFT_TOWARDS_MOUTH

    quad = np.stack(
        [centre - x_half - y_half, centre - x_half + y_half, centre + x_half + y_half, centre + x_half - y_half]
    )
    return quad, 2.0 * half_side


def _integer_bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (
        int(np.floor(quad[:, 0].min())),
        int(np.floor(quad[:, 1].min())),
        int(np.ceil(quad[:, 0].max())),
        int(np.ceil(quad[:, 1].max())),
    )


def _frame_regions(
    height: int, width: int, top: int, bottom: int, left: int, right: int
) -> list[tuple[slice, slice]]:
    """Non-overlapping row-chunked rectangles covering a frame of the given band widths."""
    top = min(top, height)
    bottom_start = max(top, height - bottom)
    left = min(left, width)
    right_start = max(left, width - right)
    spans: list[tuple[int, int, slice]] = [(0, top, slice(0, width)), (bottom_start, height, slice(0, width))]
    if bottom_start > top:
        spans += [(top, bottom_start, slice(0, left)), (top, bottom_start, slice(right_start, width))]
    regions = []
    for row_start, row_stop, columns in spans:
        if columns.stop <= columns.start:
            continue
        for chunk_start in range(row_start, row_stop, _ROWS_PER_CHUNK):
            regions.append((slice(chunk_start, min(chunk_start + _ROWS_PER_CHUNK, row_stop)), columns))
    return regions


def _reflect_pad_and_soften(
    image: Image.Image, pad: tuple[int, int, int, int], quad_size: float
) -> Image.Image:
    """Mirror-pad, then blur and fade the padding towards the median colour (FFHQ style).

    ``pad`` is (left, top, right, bottom), each >= 1. The edge mask is 0 on the photo's
    edge, 1 on the padded image's edge and negative inside the photo. The blur is fully on
    in the padding and fades out a third of the padding width into the photo; the fade to
    the median colour grows linearly across the padding.
    """
    left, top, right, bottom = pad
    padded = np.pad(np.asarray(image), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    # PIL's blur works in uint8; the quantisation (< 0.5 levels) is invisible after blending.
    blurred = np.asarray(Image.fromarray(padded).filter(ImageFilter.GaussianBlur(quad_size * _BLUR_FRACTION)))
    height, width = padded.shape[:2]

    def edge_mask(rows: slice, columns: slice) -> np.ndarray:
        row_index = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None]
        column_index = np.arange(columns.start, columns.stop, dtype=np.float32)[None, :]
        horizontal = 1.0 - np.minimum(column_index / left, (width - 1 - column_index) / right)
        vertical = 1.0 - np.minimum(row_index / top, (height - 1 - row_index) / bottom)
        return np.maximum(horizontal, vertical)[..., None]

    # Both weights vanish deeper than 4/3 of the padding width from the outer edge, so
    # only that frame needs computing; the photo's interior passes through unchanged.
    frame = _frame_regions(
        height,
        width,
        top=int(np.ceil(top * 4 / 3)) + 1,
        bottom=int(np.ceil(bottom * 4 / 3)) + 1,
        left=int(np.ceil(left * 4 / 3)) + 1,
        right=int(np.ceil(right * 4 / 3)) + 1,
    )
    softened = padded.astype(np.float32)
    for rows, columns in frame:
        region = softened[rows, columns]  # a view: updated in place
        blur_weight = np.clip(edge_mask(rows, columns) * 3.0 + 1.0, 0.0, 1.0)
        region += (blurred[rows, columns] - region) * blur_weight
    del blurred
    median = np.array([np.median(softened[..., channel]) for channel in range(3)], dtype=np.float32)

    result = padded.copy()
    for rows, columns in frame:
        region = softened[rows, columns]
        fade_weight = np.clip(edge_mask(rows, columns), 0.0, 1.0)
        faded = region + (median - region) * fade_weight
        result[rows, columns] = np.clip(np.rint(faded), 0, 255).astype(np.uint8)
    return Image.fromarray(result)


def align_face(
    image: Image.Image,
    landmarks: np.ndarray | Sequence[Sequence[float]],
    output_size: int = 1024,
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> Image.Image:
    """Crop, rotate and resample ``image`` to the FFHQ alignment of the given face.

    Args:
        image: the photo (any PIL mode; converted to RGB).
        landmarks: 5x2 pixel coordinates in MTCNN order (left eye, right eye, nose, left
            mouth corner, right mouth corner; left/right as seen in the image).
        output_size: side of the square result.
        transform_size: side of the intermediate resampling before the final antialiased
            downscale; defaults to ``4 * output_size`` (FFHQ: 4096 for 1024).
        enable_padding: fill parts of the crop outside the photo with blurred mirror
            padding; when False they stay black.

    Raises:
        DegenerateLandmarksError: the landmarks do not define a usable crop.
    """
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    if transform_size is None:
        transform_size = 4 * output_size
    if transform_size < output_size:
        raise ValueError(f"transform_size ({transform_size}) must be >= output_size ({output_size})")

    image = to_rgb(image)
    quad, quad_size = ffhq_quad(landmarks)

    # Downscale very large faces first so the final resampling never minifies by > 2x.
    shrink = int(np.floor(quad_size / output_size * 0.5))
    if shrink > 1:
        reduced_size = (
            max(1, int(np.rint(image.width / shrink))),
            max(1, int(np.rint(image.height / shrink))),
        )
        image = image.resize(reduced_size, Image.Resampling.LANCZOS)
        quad = quad / shrink
        quad_size = quad_size / shrink

    # Keep only the quad's neighbourhood.
    border = max(int(np.rint(quad_size * _BORDER_FRACTION)), _MIN_BORDER)
    left, top, right, bottom = _integer_bounds(quad)
    crop = (
        max(left - border, 0),
        max(top - border, 0),
        min(right + border, image.width),
        min(bottom + border, image.height),
    )
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise DegenerateLandmarksError("the face crop lies entirely outside the image")
    if crop[2] - crop[0] < image.width or crop[3] - crop[1] < image.height:
        image = image.crop(crop)
        quad = quad - np.array(crop[:2], dtype=np.float64)

    # Pad where the quad (plus border) leaves the photo.
    left, top, right, bottom = _integer_bounds(quad)
    pad = (
        max(border - left, 0),
        max(border - top, 0),
        max(right - image.width + border, 0),
        max(bottom - image.height + border, 0),
    )
    if enable_padding and max(pad) > border - 4:
        minimum_pad = max(int(np.rint(quad_size * _PAD_FRACTION)), 1)
        pad = tuple(max(side, minimum_pad) for side in pad)
        image = _reflect_pad_and_soften(image, pad, quad_size)
        quad = quad + np.array(pad[:2], dtype=np.float64)

    # Landmarks are pixel-index coordinates; PIL's transform samples at pixel centres.
    image = image.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        tuple((quad + 0.5).flatten().tolist()),
        Image.Resampling.BILINEAR,
    )
    if output_size < transform_size:
        image = image.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return image


# --------------------------------------------------------------------------------------
# Detection


@dataclass(frozen=True, eq=False)
class FaceDetection:
    """One detected face: box (x0, y0, x1, y1), detector confidence, 5x2 landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """Face size in pixels: the longer side of the box."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


class FaceDetector(Protocol):
    """Anything that finds faces with five MTCNN-order landmarks in an RGB image."""

    def detect(self, image: Image.Image) -> list[FaceDetection]: ...


class MTCNNFaceDetector:
    """facenet-pytorch's MTCNN (weights ship inside the package, nothing is downloaded).

    Args:
        device: torch device for the three networks.
        min_detectable_size: smallest face, in pixels, the image pyramid searches for.
        thresholds: P-, R- and O-net score thresholds.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        min_detectable_size: int = _MTCNN_DEFAULT_DETECTABLE,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    ) -> None:
        import torch
        from facenet_pytorch import MTCNN

        self.min_detectable_size = max(int(min_detectable_size), _MTCNN_SMALLEST_DETECTABLE)
        self.device = torch.device(device)
        self._mtcnn = MTCNN(
            min_face_size=self.min_detectable_size,
            thresholds=list(thresholds),
            keep_all=True,
            select_largest=False,
            post_process=False,
            device=self.device,
        ).eval()

    @property
    def network(self) -> Any:
        """The MTCNN network (a ``torch.nn.Module``) the detector runs."""
        return self._mtcnn

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        rgb = to_rgb(image)
        # MTCNN's pyramid is empty (and it crashes) when the image is smaller than a face.
        if min(rgb.size) < self.min_detectable_size:
            return []
        boxes, scores, points = self._mtcnn.detect(rgb, landmarks=True)
        if boxes is None or points is None:
            return []
        return [
            FaceDetection(
                box=tuple(float(value) for value in box),  # type: ignore[arg-type]
                score=float(score),
                landmarks=np.asarray(face_points, dtype=np.float64).reshape(5, 2),
            )
            for box, score, face_points in zip(boxes, scores, points)
        ]


def select_face(
    detections: Sequence[FaceDetection],
    select: FaceSelection = "largest",
    min_face_size: float = 0.0,
) -> FaceDetection:
    """Pick the face to align among those at least ``min_face_size`` pixels large.

    Raises:
        NoFaceFoundError: nothing was detected.
        FaceTooSmallError: every detected face is smaller than ``min_face_size``.
    """
    if select not in get_args(FaceSelection):
        raise ValueError(f"select must be one of {get_args(FaceSelection)}, got {select!r}")
    if not detections:
        raise NoFaceFoundError("no face detected")
    large_enough = [face for face in detections if face.size >= min_face_size]
    if not large_enough:
        largest = max(face.size for face in detections)
        raise FaceTooSmallError(
            f"{len(detections)} face(s) found, largest is {largest:.0f} px < min_face_size {min_face_size:g} px"
        )
    if select == "largest":
        return max(large_enough, key=lambda face: face.area)
    return max(large_enough, key=lambda face: face.score)


def detect_and_align(
    image: Image.Image,
    detector: FaceDetector,
    output_size: int = 1024,
    min_face_size: float = 40.0,
    select: FaceSelection = "largest",
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> tuple[Image.Image, FaceDetection, np.ndarray]:
    """Detect, select and align one face; returns (aligned image, face, source quad)."""
    rgb = to_rgb(image)
    face = select_face(detector.detect(rgb), select=select, min_face_size=min_face_size)
    quad, _ = ffhq_quad(face.landmarks)
    aligned = align_face(rgb, face.landmarks, output_size, transform_size, enable_padding)
    return aligned, face, quad


# --------------------------------------------------------------------------------------
# Folder processing


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
            image = load_rgb_image(source_root / relative)
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
