"""Identity loss: 1 - cosine similarity of face-recognition embeddings.

The frozen recognition network, the face crop and the embeddings live in
:mod:`lsap.nets.identity` (:class:`~lsap.nets.identity.FaceIdentity`); this module adds the
loss and its reduction. Faces (official recipe): ArcFace IR-SE50 (``model_ir_se50.pth``);
alternative: facenet-pytorch ``InceptionResnetV1``.
"""

from __future__ import annotations

from torch import Tensor, nn

from lsap.images import Reduction, check_reduction
from lsap.nets.identity import (
    FACE_CROP_256,
    FACENET_INPUT_SIZE,
    FACENET_WEIGHTS_DESCRIPTION,
    FaceIdentity,
    IDBackbone,
    face_crop_box,
    load_facenet,
)

__all__ = [
    "FACE_CROP_256",
    "FACENET_INPUT_SIZE",
    "FACENET_WEIGHTS_DESCRIPTION",
    "IDLoss",
    "face_crop_box",
    "load_facenet",
]


class IDLoss(FaceIdentity):
    """Identity loss ``1 - cos(emb(pred), emb(target))`` with a frozen face-recognition net.

    Args:
        weights, backbone, crop_face, detach_target, network, network_input_size: the
            recognition network, see :class:`~lsap.nets.identity.FaceIdentity`.
        reduction: ``"mean"`` -> scalar loss, ``"none"`` -> per-sample loss ``[B]``.

    Images are ``[B, 3, H, W]`` in [-1, 1]. Values lie in [0, 2]; 0 for identical inputs.
    """

    def __init__(
        self,
        weights: str | None = None,
        backbone: IDBackbone = "arcface",
        reduction: Reduction = "mean",
        crop_face: bool = True,
        detach_target: bool = True,
        network: nn.Module | None = None,
        network_input_size: int | None = None,
    ) -> None:
        check_reduction(reduction)
        super().__init__(weights=weights, backbone=backbone, crop_face=crop_face, detach_target=detach_target,
                         network=network, network_input_size=network_input_size)
        self.reduction: Reduction = reduction

    def loss_and_similarity(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, per-sample similarity [B])`` from one pass of the network."""
        similarity = self.similarity(pred, target)
        loss = 1 - similarity
        return (loss.mean() if self.reduction == "mean" else loss), similarity

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """``1 - cos`` reduced per ``reduction``; use :meth:`loss_and_similarity` for both."""
        return self.loss_and_similarity(pred, target)[0]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reduction={self.reduction!r}"
