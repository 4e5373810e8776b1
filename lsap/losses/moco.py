"""Feature-similarity loss with a MoCo-v2 ResNet-50, the identity-loss substitute for non-face domains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50

from lsap.io import WeightsMismatchError, load_weights_file, strip_module_prefix

from lsap.losses.reconstruction import (
    Box,
    Reduction,
    apply_box,
    check_image_pair,
    check_reduction,
    reduce_per_sample,
    validate_box,
)

__all__ = ["MoCoLoss", "moco_to_torchvision_resnet"]

_MOCO_FILE = "moco_v2_800ep_pretrain.pth.tar"
_MOCO_SOURCE = (
    "the MoCo-v2 release (https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/"
    "moco_v2_800ep_pretrain.pth.tar); pSp/e4e redistribute it as moco_v2_800ep_pretrain.pt"
)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def moco_to_torchvision_resnet(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keep the query encoder of a MoCo checkpoint, renamed to torchvision ResNet keys.

    MoCo saves ``module.encoder_q.<torchvision key>`` (the ``module.`` prefix comes from DDP and
    may be absent). The key encoder, the queue and the projection head ``fc.*`` are dropped.
    """
    renamed: dict[str, Tensor] = {}
    for key, value in strip_module_prefix(state_dict).items():
        if not key.startswith("encoder_q."):
            continue
        key = key.removeprefix("encoder_q.")
        if key.startswith("fc."):
            continue
        renamed[key] = value
    if not renamed:
        raise WeightsMismatchError(
            "no 'module.encoder_q.*' keys found: this does not look like a MoCo checkpoint "
            f"(first keys: {list(state_dict)[:5]})"
        )
    return renamed


class MoCoLoss(nn.Module):
    """1 - cosine similarity of MoCo-v2 ResNet-50 embeddings (global-pooled, 2048-d, unit norm).

    Inputs are image batches in [-1, 1], shape [B, 3, H, W]. They are resized to
    ``input_size`` and, by default, normalised with ImageNet statistics as the network saw in
    training. (pSp's recipe fed [-1, 1] images with nearest resizing: ``resize_mode="nearest"``
    and ``imagenet_normalize=False`` reproduce it.) The network is frozen and stays in inference
    mode; gradients flow to both inputs.

    Args:
        weights: path to the MoCo-v2 checkpoint (``moco_v2_800ep_pretrain.pth.tar``).
        reduction: ``"mean"`` gives a scalar, ``"none"`` per-sample losses of shape [B].
        input_size: side of the square image the network sees.
        resize_mode: interpolation used for that resize.
        imagenet_normalize: map [-1, 1] inputs to ImageNet-normalised ones before the network.
        box: optional (top, bottom, left, right) crop applied before resizing.
    """

    def __init__(
        self,
        weights: str,
        reduction: Reduction = "mean",
        input_size: int = 224,
        resize_mode: Literal["bilinear", "nearest", "area"] = "bilinear",
        imagenet_normalize: bool = True,
        box: Box | None = None,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        if input_size < 32:
            raise ValueError(f"input_size must be at least 32, got {input_size}")
        self.reduction: Reduction = reduction
        self.input_size = input_size
        self.resize_mode = resize_mode
        self.imagenet_normalize = imagenet_normalize
        self.box = validate_box(box)

        checkpoint = load_weights_file(
            weights, f"MoCo-v2 ResNet-50 checkpoint {_MOCO_FILE} (published by {_MOCO_SOURCE})"
        )
        if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
            raise ValueError(f"{weights} is not a MoCo checkpoint: expected a dict with a 'state_dict' entry")

        self.network = resnet50(weights=None)
        # Global-pooled 2048-d features: the projection head is not part of the embedding.
        self.network.fc = nn.Identity()
        self.network.load_state_dict(moco_to_torchvision_resnet(checkpoint["state_dict"]), strict=True)
        self.network.requires_grad_(False)
        self.network.eval()

        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> MoCoLoss:
        # Frozen network: batch-norm statistics must never be updated.
        return super().train(False)

    def embed(self, images: Tensor) -> Tensor:
        """Unit-norm embeddings [B, 2048] of images in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got shape {tuple(images.shape)}")
        images = apply_box(images, self.box)
        align = False if self.resize_mode == "bilinear" else None
        images = F.interpolate(
            images, size=(self.input_size, self.input_size), mode=self.resize_mode, align_corners=align
        )
        if self.imagenet_normalize:
            images = ((images + 1) / 2 - self.mean) / self.std
        return F.normalize(self.network(images).float(), dim=1)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """1 - cos(embed(pred), embed(target))."""
        check_image_pair(pred, target)
        similarity = (self.embed(pred) * self.embed(target)).sum(dim=1)
        return reduce_per_sample(1 - similarity, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"reduction={self.reduction!r}, input_size={self.input_size}, resize_mode={self.resize_mode!r}, "
            f"imagenet_normalize={self.imagenet_normalize}, box={self.box}"
        )
