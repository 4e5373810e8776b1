"""Face identity: unit-norm embeddings of a frozen face-recognition network, and their cosine.

Faces (official recipe): ArcFace IR-SE50 (``model_ir_se50.pth``). The face region of an
aligned 256x256 FFHQ-style image, rows 35:223 and columns 32:220 (scaled proportionally for
other sizes), is average-pooled to 112x112 and embedded (512-d, unit norm).

Alternative: facenet-pytorch ``InceptionResnetV1`` on a 160x160 pool of the same crop,
built without any download and loaded from a local state dict.

The recognition network is frozen and always in inference mode; gradients flow to the
images only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.nets.irse import (
    ARCFACE_INPUT_SIZE,
    ARCFACE_WEIGHTS_DESCRIPTION,
    WeightsMismatchError,
    load_arcface,
    load_state_dict_checked,
    load_weights_file,
    strip_module_prefix,
)

__all__ = [
    "FACE_CROP_256",
    "FACENET_INPUT_SIZE",
    "FACENET_WEIGHTS_DESCRIPTION",
    "FaceIdentity",
    "face_crop_box",
    "load_facenet",
]

IDBackbone = Literal["arcface", "facenet"]

# (top, bottom, left, right) of the face region in an aligned 256x256 image.
FACE_CROP_256 = (35, 223, 32, 220)
FACENET_INPUT_SIZE = 160
FACENET_WEIGHTS_DESCRIPTION = (
    "FaceNet InceptionResnetV1 weights (facenet-pytorch state dict, e.g. 20180402-114759-vggface2.pt "
    "from the facenet-pytorch releases)"
)


def face_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The 256-pixel face crop scaled to an image of ``height`` x ``width``."""
    top, bottom, left, right = FACE_CROP_256
    return (
        round(top * height / 256),
        round(bottom * height / 256),
        round(left * width / 256),
        round(right * width / 256),
    )


def load_facenet(path: str | os.PathLike[str]) -> nn.Module:
    """Build facenet-pytorch ``InceptionResnetV1`` (no download) and load a local state dict."""
    # Imported here: the package is only needed for this alternative backbone.
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    raw = load_weights_file(path, FACENET_WEIGHTS_DESCRIPTION)
    if not isinstance(raw, Mapping):
        raise WeightsMismatchError(
            f"'{path}' should hold a state dict ({FACENET_WEIGHTS_DESCRIPTION}), found {type(raw).__name__}"
        )
    net = InceptionResnetV1(pretrained=None, classify=False)
    # The classifier over training identities ("logits") is not part of the embedding.
    load_state_dict_checked(
        net,
        strip_module_prefix(raw),
        source=str(path),
        description=FACENET_WEIGHTS_DESCRIPTION,
        ignore_unexpected=("logits.",),
    )
    return net.eval().requires_grad_(False)


class FaceIdentity(nn.Module):
    """A frozen face-recognition network: unit-norm identity embeddings and their cosine.

    Args:
        weights: path of the recognition weights: ``model_ir_se50.pth`` for
            ``backbone="arcface"``, a facenet-pytorch state dict for ``"facenet"``.
        backbone: ``"arcface"`` (official) or ``"facenet"``.
        crop_face: cut the aligned-face region before pooling (turn off for images that
            are already tight face crops).
        detach_target: embed the target without building a graph (it is a real image).
        network: an already-built embedding network used instead of loading ``weights``
            (custom or test networks); it must map ``[B, 3, S, S]`` to ``[B, D]``.
        network_input_size: ``S`` for ``network`` (default 112).

    Images are ``[B, 3, H, W]`` in [-1, 1].
    """

    def __init__(
        self,
        weights: str | None = None,
        backbone: IDBackbone = "arcface",
        crop_face: bool = True,
        detach_target: bool = True,
        network: nn.Module | None = None,
        network_input_size: int | None = None,
    ) -> None:
        super().__init__()
        if backbone not in ("arcface", "facenet"):
            raise ValueError(f"backbone must be 'arcface' or 'facenet', got {backbone!r}")
        if network is not None:
            self.network = network
            self.input_size = network_input_size or ARCFACE_INPUT_SIZE
        elif weights is None:
            description = ARCFACE_WEIGHTS_DESCRIPTION if backbone == "arcface" else FACENET_WEIGHTS_DESCRIPTION
            raise ValueError(f"{type(self).__name__} needs `weights`: the path of the {description}")
        elif backbone == "arcface":
            self.network = load_arcface(weights)
            self.input_size = ARCFACE_INPUT_SIZE
        else:
            self.network = load_facenet(weights)
            self.input_size = FACENET_INPUT_SIZE
        self.network.eval().requires_grad_(False)
        self.backbone = backbone if network is None else "custom"
        self.crop_face = crop_face
        self.detach_target = detach_target

    def train(self, mode: bool = True) -> FaceIdentity:
        # Frozen network: batch-norm statistics and dropout must stay in inference mode.
        return super().train(False)

    def embed(self, images: Tensor) -> Tensor:
        """Unit-norm identity embeddings ``[B, D]`` of images ``[B, 3, H, W]`` in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects RGB images [B, 3, H, W], got {tuple(images.shape)}")
        if self.crop_face:
            top, bottom, left, right = face_crop_box(images.shape[-2], images.shape[-1])
            images = images[..., top:bottom, left:right]
        faces = F.adaptive_avg_pool2d(images, (self.input_size, self.input_size))
        return F.normalize(self.network(faces).float(), dim=1)

    def similarity(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-sample cosine similarity ``[B]`` in [-1, 1] (the ID metric)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        if self.detach_target:
            with torch.no_grad():
                target_embedding = self.embed(target)
        else:
            target_embedding = self.embed(target)
        return (self.embed(pred) * target_embedding).sum(dim=1)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.similarity(pred, target)

    def extra_repr(self) -> str:
        return (
            f"backbone={self.backbone!r}, input_size={self.input_size}, crop_face={self.crop_face}, "
            f"detach_target={self.detach_target}"
        )
