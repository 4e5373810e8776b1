"""The FFHQ crop: an oriented square from five face landmarks, mirror padding faded into it.

The crop follows the construction used to build FFHQ from its in-the-wild images: a square
centred slightly below the eyes, rotated so the eyes are level, with a side length set by
the larger of the eye distance and the eye-to-mouth distance. Areas of the square that fall
outside the photo are filled by mirror padding that is blurred and faded to the mean colour,
as FFHQ did. FFHQ took eye centres from 68-point landmarks; MTCNN's five points give them
directly (see :func:`five_point_landmarks_from_68` to use 68-point landmarks instead).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
from PIL import Image, ImageFilter

from lsap.data.images import to_rgb8

__all__ = [
    "LANDMARK_NAMES",
    "DegenerateLandmarksError",
    "FaceAlignmentError",
    "FaceTooSmallError",
    "NoFaceFoundError",
    "align_face",
    "ffhq_quad",
    "five_point_landmarks_from_68",
]

# MTCNN's landmark order; "left" and "right" are as seen in the image.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

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

    image = to_rgb8(image)
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
