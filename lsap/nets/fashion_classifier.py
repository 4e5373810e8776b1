"""A small Fashion-MNIST classifier: class logits and penultimate features.

It judges generated Fashion-MNIST images (is a sample a confident member of one class, are
the classes balanced) and its 128-d penultimate features give a domain-specific FID. Input:
images in [-1, 1], ``[B, 1 or 3, 28 or 32, 28 or 32]``; RGB is averaged to grey and 32 px
images (the padded generator size) are centre-cropped to the original 28 px.

The trained weights ship with lsap as ``lsap/assets/fashion_classifier.safetensors``
(trained by ``bench/train_fashion_classifier.py`` on the training split).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lsap.io import ASSETS_DIR

WEIGHTS_FILE = ASSETS_DIR / "fashion_classifier.safetensors"
FEATURE_DIM = 128
NUM_CLASSES = 10


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FashionClassifier(nn.Module):
    """Five 3x3 conv layers (32, 32, 64, 64, 128 channels, two max-pools), global average
    pooling to ``FEATURE_DIM`` features, and a linear layer to the 10 classes."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(1, w), *_block(w, w), nn.MaxPool2d(2),
            *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),
            *_block(2 * w, FEATURE_DIM), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    @staticmethod
    def prepare(images: Tensor) -> Tensor:
        """[-1, 1] images (grey or RGB, 28 or 32 px) -> grey 28 px."""
        if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[-1] not in (28, 32) \
                or images.shape[-2] != images.shape[-1]:
            raise ValueError(f"expected [B, 1 or 3, 28 or 32, 28 or 32] images, got {tuple(images.shape)}")
        x = images.float().mean(dim=1, keepdim=True)
        if x.shape[-1] == 32:
            x = x[:, :, 2:30, 2:30]
        return x

    def forward_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits [B, 10], penultimate features [B, 128])``."""
        feats = self.features(self.prepare(images))
        return self.head(self.dropout(feats)), feats

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_features(images)[0]


def load_fashion_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> FashionClassifier:
    """The trained classifier in eval mode (default: the copy shipped with lsap). Offline;
    a missing file is a FileNotFoundError naming it and how to make it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path) if path is not None else WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST classifier weights not found: '{path}'. They ship with lsap as package data; train "
            "them with `python bench/train_fashion_classifier.py` (needs the dataset-fashion-mnist package)."
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"cannot read Fashion-MNIST classifier weights '{path}': {error}") from None
    model = FashionClassifier()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval().requires_grad_(False).to(device)
