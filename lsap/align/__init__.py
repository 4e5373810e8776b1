"""Align in-the-wild face photos to the FFHQ crop that StyleGAN2 face models were trained on.

Pipeline per image: load (any mode -> RGB, EXIF orientation applied; the loader of
:mod:`lsap.data.images`), detect faces with MTCNN and pick one (:mod:`lsap.align.detection`),
build the FFHQ oriented crop square from five landmarks and resample it to ``output_size``
(:mod:`lsap.align.geometry`). :mod:`lsap.align.folder` walks a folder tree, resumes, and
writes ``align_report.json``.

The names below are imported on first use, so ``lsap align --help`` does not load torch.
"""

from __future__ import annotations

from lsap._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".detection": ("FaceDetection", "FaceDetector", "FaceSelection", "MTCNNFaceDetector", "detect_and_align",
                   "select_face"),
    ".folder": ("IMAGE_EXTENSIONS", "REPORT_FILENAME", "AlignedImage", "AlignReport", "SkippedImage", "align_folder",
                "main_align"),
    ".geometry": ("LANDMARK_NAMES", "DegenerateLandmarksError", "FaceAlignmentError", "FaceTooSmallError",
                  "NoFaceFoundError", "align_face", "ffhq_quad", "five_point_landmarks_from_68"),
})
