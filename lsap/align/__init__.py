"""Align in-the-wild face photos to the FFHQ crop that StyleGAN2 face models were trained on.

Pipeline per image: load (any mode -> RGB, EXIF orientation applied; the loader of
:mod:`lsap.data.images`), detect faces with MTCNN and pick one (:mod:`lsap.align.detection`),
build the FFHQ oriented crop square from five landmarks and resample it to ``output_size``
(:mod:`lsap.align.geometry`). :mod:`lsap.align.folder` walks a folder tree, resumes, and
writes ``align_report.json``.
"""

from lsap.align.detection import (
    FaceDetection,
    FaceDetector,
    FaceSelection,
    MTCNNFaceDetector,
    detect_and_align,
    select_face,
)
from lsap.align.folder import (
    IMAGE_EXTENSIONS,
    REPORT_FILENAME,
    AlignedImage,
    AlignReport,
    SkippedImage,
    align_folder,
    main_align,
)
from lsap.align.geometry import (
    LANDMARK_NAMES,
    DegenerateLandmarksError,
    FaceAlignmentError,
    FaceTooSmallError,
    NoFaceFoundError,
    align_face,
    ffhq_quad,
    five_point_landmarks_from_68,
)

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
    "main_align",
    "select_face",
]
