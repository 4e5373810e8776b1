"""Face detection for alignment: the MTCNN wrapper and the choice of one face per image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, Sequence, get_args

import numpy as np
from PIL import Image

from lsap.align.geometry import FaceTooSmallError, NoFaceFoundError, align_face, ffhq_quad
from lsap.data.images import to_rgb8

if TYPE_CHECKING:
    import torch

__all__ = ["FaceDetection", "FaceDetector", "FaceSelection", "MTCNNFaceDetector", "detect_and_align", "select_face"]

FaceSelection = Literal["largest", "most_confident"]

# MTCNN's P-net sees 12 px windows; asking for smaller faces upsamples the whole image.
_MTCNN_SMALLEST_DETECTABLE = 12
_MTCNN_DEFAULT_DETECTABLE = 20


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
        rgb = to_rgb8(image)
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
    rgb = to_rgb8(image)
    face = select_face(detector.detect(rgb), select=select, min_face_size=min_face_size)
    quad, _ = ffhq_quad(face.landmarks)
    aligned = align_face(rgb, face.landmarks, output_size, transform_size, enable_padding)
    return aligned, face, quad
