"""The ``lsap align`` command (registered in :mod:`lsap.commands`)."""

from __future__ import annotations

__all__ = ["align_command"]


def align_command(input_dir: str, output_dir: str, output_size: int = 1024, min_face_size: int = 40,
                  select: str = "largest", device: str = "cpu") -> int:
    """Detect faces (MTCNN) and align each to the FFHQ crop; writes the aligned PNGs and align_report.json.

    Args:
        input_dir: folder of in-the-wild images (searched recursively).
        output_dir: where aligned PNGs and align_report.json go.
        output_size: side of the aligned square images.
        min_face_size: faces smaller than this many pixels are skipped and reported.
        select: which face of an image with several: "largest" or "most_confident".
        device: device for the detector, e.g. "cpu" or "cuda".
    """
    from lsap.align.folder import main_align

    return main_align(input_dir, output_dir, output_size=output_size, min_face_size=min_face_size, select=select,
                      device=device)
