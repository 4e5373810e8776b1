"""FID of two image folders (what ``lsap fid`` prints and ``lsap evaluate`` reports)."""

from __future__ import annotations

from pathlib import Path

import torch

from lsap.data.images import scan_image_files
from lsap.errors import BadValueError, MissingInputError
from lsap.evaluation.evaluators import feed_fid
from lsap.evaluation.run import UnreadableImages, read_uint8_files
from lsap.metrics.fid import FID, FeatureExtractor, file_sha256, load_feature_extractor


def _files(source: str | Path | list[str], what: str) -> list[str]:
    if isinstance(source, list):
        return [str(f) for f in source]
    folder = Path(source)
    if not folder.is_dir():
        raise MissingInputError(f"{what} folder not found: '{folder}'")
    return scan_image_files(folder)


def _readable(files: list[str], unreadable: UnreadableImages, what: str, source: object) -> list[torch.Tensor]:
    images = list(read_uint8_files(files, unreadable).values())
    if len(images) < 2:
        raise BadValueError(f"FID needs at least 2 readable {what} images, found {len(images)} in {source}"
                            + (f" ({len(files) - len(images)} unreadable)" if len(files) > len(images) else ""))
    return images


@torch.no_grad()
def folder_fid(real: str | Path | list[str], fake: str | Path | list[str], inception: str | None = None,
               device: str = "cpu", batch_size: int = 32, real_stats: str | None = None,
               extractor: FeatureExtractor | None = None) -> dict:
    """FID between the images of ``real`` and ``fake`` (folders, searched recursively, or file lists).

    ``real_stats``: a file of real-image feature statistics; read when it exists (``real`` is
    then not read), written after computing them otherwise. Unreadable files (0-byte, not an
    image, a decompression bomb) are skipped and named in ``unreadable`` (path -> reason).
    Images may differ in size (the feature network resizes). Returns ``{"fid", "num_real",
    "num_fake", "unreadable", ...}``.
    """
    if batch_size < 1:
        raise BadValueError(f"batch_size must be at least 1, got {batch_size}")
    target = torch.device(device)
    fake_files = _files(fake, "fake image")
    stats = Path(real_stats) if real_stats else None
    from_stats = stats is not None and stats.is_file()
    real_files = [] if from_stats else _files(real, "real image")
    # The inputs are read (unreadable files skipped and counted) before the feature network is
    # looked for, so a folder without enough readable images is reported as such first.
    unreadable = UnreadableImages()
    fake_images = _readable(fake_files, unreadable, "fake", fake if not isinstance(fake, list) else "the list")
    real_images = [] if from_stats else _readable(real_files, unreadable, "real",
                                                  real if not isinstance(real, list) else "the list")
    extractor = extractor if extractor is not None else load_feature_extractor(inception, device=target)
    weights = getattr(extractor, "weights_path", None)
    feature_hash = file_sha256(weights) if weights else ""
    metric = FID(extractor).to(target)
    if from_stats:
        metric.load_real_stats(stats, feature_hash)
    else:
        feed_fid(metric, real_images, True, batch_size, target)
        if stats is not None:
            metric.save_real_stats(stats, feature_hash)
    feed_fid(metric, fake_images, False, batch_size, target)
    return {"fid": float(metric.compute()), "num_real": int(metric.real_features_num_samples),
            "num_fake": int(metric.fake_features_num_samples), "feature_network": extractor.source,
            "weights": weights, "weights_sha256": feature_hash, "num_unreadable": len(unreadable),
            "unreadable": dict(unreadable.files)}
