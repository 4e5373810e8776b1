"""An independent Fashion-MNIST classifier: the judge.

lsap's shipped classifier (``lsap.nets.fashion_classifier``) labels the codes the class
directions are fitted on, picks confident samples and gives the classifier-feature FID, so
it cannot also be the only judge of whether an edit changed the garment: an edit may
exploit its features. The judge is a second classifier with another architecture (5x5 and
strided convolutions, GroupNorm, a fully connected head on a 3 x 3 map; no max-pooling, no
BatchNorm, no global average pooling) trained with another seed on the training split, and
it is **never** used to fit or select anything; only to score.

Input: images in [-1, 1], ``[B, 1 or 3, 28 or 32, 28 or 32]``, prepared as the shipped
classifier prepares them (RGB averaged to grey, 32 px centre-cropped to 28 px). The weights
ship as ``lsap/assets/fashion_judge.safetensors`` (built-in name ``"fashion_judge"``),
made by ``bench/train_fashion_classifier.py --architecture judge``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lsap.io import ASSETS_DIR, builtin_asset_path
from lsap.nets.fashion_classifier import NUM_CLASSES, FashionClassifier

BUILTIN_JUDGES = {"fashion_judge": "fashion_judge.safetensors"}
WEIGHTS_FILE = ASSETS_DIR / BUILTIN_JUDGES["fashion_judge"]
FEATURE_DIM = 128


def _conv(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2), nn.GroupNorm(8, cout), nn.SiLU()]


class FashionJudge(nn.Module):
    """28 px grey -> conv 5x5 (32) -> conv 3x3 stride 2 (64, 14 px) -> conv 3x3 stride 2
    (96, 7 px) -> conv 3x3 (96) -> adaptive average pool to 3 x 3 -> linear 864 -> 128 ->
    SiLU -> dropout -> linear to the 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv(1, 32, 5, 1), *_conv(32, 64, 3, 2), *_conv(64, 96, 3, 2), *_conv(96, 96, 3, 1),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(96 * 9, FEATURE_DIM), nn.SiLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    prepare = staticmethod(FashionClassifier.prepare)

    def forward_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits [B, 10], penultimate features [B, 128])``."""
        feats = self.features(self.prepare(images))
        return self.head(self.dropout(feats)), feats

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_features(images)[0]


def load_fashion_judge(path: str | Path | None = None, device: str | torch.device = "cpu") -> FashionJudge:
    """The trained judge in eval mode without gradients: ``None`` or ``"fashion_judge"`` is
    the copy shipped with lsap, anything else a weights file. Offline; a missing file is a
    FileNotFoundError naming it and how to make it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    how = "train it with `python bench/train_fashion_classifier.py --architecture judge` (needs dataset-fashion-mnist)"
    resolved = Path(builtin_asset_path("fashion_judge" if path is None else path, BUILTIN_JUDGES,
                                       "Fashion-MNIST judge", how))
    if not resolved.is_file():
        raise FileNotFoundError(f"Fashion-MNIST judge weights not found: '{resolved}'; {how}")
    try:
        state = load_file(str(resolved))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"cannot read Fashion-MNIST judge weights '{resolved}': {error}") from None
    model = FashionJudge()
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as error:
        raise ValueError(f"'{resolved}' does not hold FashionJudge weights: {error}") from None
    return model.eval().requires_grad_(False).to(device)
