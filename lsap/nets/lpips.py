"""LPIPS (a :class:`~lsap.nets.perceptual.PerceptualDistance`) on the ``lpips`` package, offline.

The ``lpips`` package ships its calibrated linear layers (``lpips/weights/v0.1/{alex,vgg}.pth``)
but fetches its ImageNet backbone through torchvision's download mechanism. Here the backbone is
built randomly initialised and then filled from a torchvision state-dict file the user provides.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

import lpips as lpips_package
from torch import Tensor, nn

from lsap.io import WeightsMismatchError, load_weights_file
from lsap.images import Box, Reduction
from lsap.nets.perceptual import PerceptualDistance, unit_normalize

__all__ = ["LPIPSLoss", "torchvision_features_to_lpips"]

# What each backbone file is and where it is usually published (named in error messages).
_BACKBONE_SOURCES: dict[str, tuple[str, str]] = {
    "alex": (
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),
    "vgg": (
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
    ),
}


def torchvision_features_to_lpips(
    state_dict: Mapping[str, Tensor], lpips_backbone: nn.Module
) -> dict[str, Tensor]:
    """Rename a torchvision AlexNet/VGG16 state dict to the key names of an lpips backbone.

    lpips splits torchvision's ``features`` Sequential into ``slice1..sliceN`` but keeps each
    layer's original index as its name inside the slice, so ``features.3.weight`` becomes
    ``slice2.3.weight`` for AlexNet. The classifier head is not used and is ignored.

    Raises:
        WeightsMismatchError: if a backbone parameter has no counterpart in ``state_dict``.
        ValueError: if a tensor's shape differs from the backbone's.
    """
    expected = lpips_backbone.state_dict()
    renamed: dict[str, Tensor] = {}
    missing: list[str] = []
    for lpips_key, reference in expected.items():
        slice_name, layer_index, tensor_name = lpips_key.split(".", 2)
        source_key = f"features.{layer_index}.{tensor_name}"
        if source_key not in state_dict:
            missing.append(source_key)
            continue
        tensor = state_dict[source_key]
        if tensor.shape != reference.shape:
            raise WeightsMismatchError(
                f"backbone tensor {source_key!r} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(reference.shape)} (for {slice_name}.{layer_index}.{tensor_name})"
            )
        renamed[lpips_key] = tensor
    if missing:
        raise WeightsMismatchError(
            f"backbone state dict lacks {len(missing)} tensor(s) the LPIPS network needs: {missing}"
        )
    return renamed


def _unwrap_state_dict(loaded: object, path: Path) -> Mapping[str, Tensor]:
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} does not hold a state dict (found {type(loaded).__name__})")
    return loaded


class LPIPSLoss(PerceptualDistance):
    """Learned perceptual image patch similarity (LPIPS v0.1), frozen and offline.

    Inputs are image batches in [-1, 1], shape [B, 3, H, W]. The network is frozen and always in
    inference mode (calling ``.train()`` on a parent module does not switch it), but gradients flow
    to the inputs. A :class:`~lsap.nets.perceptual.PerceptualDistance`: ``per_sample`` equals the
    ``lpips`` package's output, ``spatial`` gives a per-pixel map whose mean is ``per_sample``.

    Args:
        backbone_weights: path to torchvision's ImageNet state dict for the backbone:
            ``alexnet-owt-7be5be79.pth`` for ``net="alex"``, ``vgg16-397923af.pth`` for ``"vgg"``.
        net: backbone, ``"alex"`` (used by LSAP/e4e/pSp/PTI training) or ``"vgg"``.
        reduction: ``"mean"`` gives a scalar, ``"none"`` per-sample distances of shape [B].
        box: optional (top, bottom, left, right) pixel rectangle the distance is restricted to.
        allow_random_backbone: only for tests and offline demos. With ``backbone_weights=None`` the
            backbone keeps random weights, which makes the distance meaningless as a perceptual
            measure; without this flag a missing path is an error.
        linear_weights: optional path to the calibrated linear layers; defaults to the file the
            ``lpips`` package ships (``lpips/weights/v0.1/<net>.pth``).
    """

    def __init__(
        self,
        backbone_weights: str | None = None,
        net: Literal["alex", "vgg"] = "alex",
        reduction: Reduction = "mean",
        box: Box | None = None,
        allow_random_backbone: bool = False,
        linear_weights: str | None = None,
    ) -> None:
        super().__init__(reduction=reduction, box=box)
        if net not in _BACKBONE_SOURCES:
            raise ValueError(f"net must be one of {sorted(_BACKBONE_SOURCES)}, got {net!r}")
        self.net_name = net

        file_name, published_at = _BACKBONE_SOURCES[net]
        if backbone_weights is None and not allow_random_backbone:
            raise ValueError(
                f"LPIPSLoss needs backbone_weights: the path to torchvision's ImageNet {net} weights "
                f"({file_name}, published at {published_at}). Pass allow_random_backbone=True only "
                "for tests or demos, where a meaningless random backbone is acceptable."
            )
        if backbone_weights is not None and not Path(backbone_weights).is_file():
            raise FileNotFoundError(
                f"LPIPS backbone weights not found: {backbone_weights!r}. Expected torchvision's "
                f"ImageNet {net} state dict {file_name}, usually published at {published_at} "
                "(torchvision caches it in ~/.cache/torch/hub/checkpoints/)."
            )

        # pretrained=False: we load the linear layers ourselves (weights_only); pnet_rand=True:
        # random backbone, so the package never asks torchvision to download anything.
        with warnings.catch_warnings():
            # torchvision warns that lpips still uses its deprecated ``pretrained`` argument.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models\._utils")
            self.model = lpips_package.LPIPS(
                pretrained=False, net=net, version="0.1", pnet_rand=True, verbose=False
            )

        linear_path = Path(linear_weights) if linear_weights is not None else self._packaged_linear_path(net)
        if not linear_path.is_file():
            raise FileNotFoundError(
                f"LPIPS linear-layer weights not found: {str(linear_path)!r}. They ship with the "
                f"'lpips' PyPI package as lpips/weights/v0.1/{net}.pth."
            )
        linear_state = _unwrap_state_dict(
            load_weights_file(linear_path, f"LPIPS {net} linear-layer weights"), linear_path
        )
        self.model.lins.load_state_dict(
            {key.removeprefix("lin"): value for key, value in linear_state.items()}, strict=True
        )

        if backbone_weights is not None:
            path = Path(backbone_weights)
            state = _unwrap_state_dict(load_weights_file(path, f"torchvision {net} ImageNet weights ({file_name})"), path)
            self.model.net.load_state_dict(torchvision_features_to_lpips(state, self.model.net), strict=True)

        self.model.requires_grad_(False)
        self.model.eval()

    @staticmethod
    def _packaged_linear_path(net: str) -> Path:
        return Path(str(resources.files("lpips").joinpath("weights", "v0.1", f"{net}.pth")))

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        super().check_inputs(pred, target)
        if pred.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got shape {tuple(pred.shape)}")

    def layer_maps(self, pred: Tensor, target: Tensor) -> list[Tensor]:
        features_pred = self.model.net(self.model.scaling_layer(pred))
        features_target = self.model.net(self.model.scaling_layer(target))
        maps = []
        for feat_pred, feat_target, linear in zip(features_pred, features_target, self.model.lins):
            squared_difference = (unit_normalize(feat_pred) - unit_normalize(feat_target)).square()
            # The 1x1 linear layer has one output channel, so the spatial mean equals lpips'.
            conv = linear.model[-1]
            maps.append(conv(squared_difference.to(conv.weight.dtype)).float())
        return maps

    def extra_repr(self) -> str:
        return f"net={self.net_name!r}, " + super().extra_repr()
