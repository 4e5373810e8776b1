"""FID of two image folders (what ``lsap fid`` prints and ``lsap evaluate`` reports)."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from lsap.data.images import scan_image_files
from lsap.evaluation.inputs import read_image_uint8
from lsap.metrics.fid import FID, FeatureExtractor, file_sha256, load_feature_extractor


def _feed(metric: FID, files: list[str], real: bool, batch_size: int, device: torch.device, label: str) -> None:
    for start in tqdm(range(0, len(files), batch_size), desc=f"FID {label}", unit="batch", leave=False):
        images = [read_image_uint8(f) for f in files[start:start + batch_size]]
        # The feature networks resize inside, so folders of mixed sizes go in per-size groups.
        for shape in dict.fromkeys(image.shape for image in images):
            metric.update(torch.stack([i for i in images if i.shape == shape]).to(device), real=real)


@torch.no_grad()
def folder_fid(real: str | Path | list[str], fake: str | Path | list[str], inception: str | None = None,
               device: str = "cpu", batch_size: int = 32, real_stats: str | None = None,
               extractor: FeatureExtractor | None = None) -> dict:
    """FID between the images of ``real`` and ``fake`` (folders, searched recursively, or file lists).

    ``real_stats``: a file of real-image feature statistics; read when it exists (``real`` is
    then not read), written after computing them otherwise.
    Images may differ in size (the feature network resizes). Returns ``{"fid", "num_real", "num_fake", ...}``.
    """
    target = torch.device(device)
    extractor = extractor if extractor is not None else load_feature_extractor(inception, device=target)
    weights = getattr(extractor, "weights_path", None)
    feature_hash = file_sha256(weights) if weights else ""
    metric = FID(extractor).to(target)
    fake_files = fake if isinstance(fake, list) else scan_image_files(fake)
    if len(fake_files) < 2:
        raise ValueError(f"FID needs at least 2 fake images, found {len(fake_files)} in {fake}")
    stats = Path(real_stats) if real_stats else None
    if stats is not None and stats.is_file():
        metric.load_real_stats(stats, feature_hash)
    else:
        real_files = real if isinstance(real, list) else scan_image_files(real)
        if len(real_files) < 2:
            raise ValueError(f"FID needs at least 2 real images, found {len(real_files)} in {real}")
        _feed(metric, real_files, True, batch_size, target, "real")
        if stats is not None:
            metric.save_real_stats(stats, feature_hash)
    _feed(metric, fake_files, False, batch_size, target, "fake")
    return {"fid": float(metric.compute()), "num_real": int(metric.real_features_num_samples),
            "num_fake": int(metric.fake_features_num_samples), "feature_network": extractor.source,
            "weights": weights, "weights_sha256": feature_hash}
