"""Perceptual distances between image batches: one interface, several feature networks.

:class:`PerceptualDistance` is what every module's ``lpips`` parameter accepts. A backend
gives, for a pair of image batches, one distance map ``[B, 1, h_l, w_l]`` per feature layer;
the base class turns them into per-sample distances (optionally mask-weighted), into a
per-pixel map at the input size (``spatial``), and into a loss (``forward``).

Backends:

* :class:`lsap.nets.lpips.LPIPSLoss`: LPIPS v0.1 (AlexNet or VGG backbone from a weights file,
  the calibrated linear heads shipped in the ``lpips`` package).
* :class:`FeatureDistance`: the LPIPS recipe without learned heads on any feature network:
  features unit-normalised per channel vector, squared differences summed over channels,
  averaged over positions, layers weighted equally. Built in: ``"fashion_classifier"``, the
  conv features of the shipped Fashion-MNIST classifier. It is uncalibrated: a domain
  feature distance, not LPIPS.

The spatial map is the per-layer maps carried back to the input grid by the adjoint of area
pooling, scaled so that its mean over pixels *is* ``per_sample`` (exactly, not approximately):
each pixel receives the distances of the feature cells whose area-pooling window covers it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.images import (
    Box,
    Reduction,
    apply_box,
    check_image_pair,
    check_reduction,
    masked_spatial_mean,
    prepare_mask,
    reduce_per_sample,
    validate_box,
)

__all__ = [
    "FEATURE_NETWORKS",
    "FashionClassifierFeatures",
    "FeatureDistance",
    "PerceptualDistance",
    "area_pooling_matrix",
    "unit_normalize",
    "upsample_to",
]


def unit_normalize(features: Tensor) -> Tensor:
    """Divide each position's channel vector by its norm (+1e-10), as lpips does; float32, and
    the square root kept away from 0 so that all-zero vectors give finite gradients."""
    features = features.float()
    norm = features.square().sum(dim=1, keepdim=True).clamp_min(1e-20).sqrt()
    return features / (norm + 1e-10)


def area_pooling_matrix(size_out: int, size_in: int, device: torch.device | None = None) -> Tensor:
    """``[size_out, size_in]`` matrix of 1-D adaptive average pooling (the windows
    ``F.adaptive_avg_pool2d`` uses along one axis)."""
    matrix = torch.zeros(size_out, size_in, device=device)
    for index in range(size_out):
        start = (index * size_in) // size_out
        end = -((-(index + 1) * size_in) // size_out)
        matrix[index, start:end] = 1.0 / (end - start)
    return matrix


def upsample_to(values: Tensor, size: tuple[int, int]) -> Tensor:
    """Carry ``[B, C, h, w]`` to ``[B, C, H, W]`` by the adjoint of area pooling, scaled by
    ``HW / hw``: for every map ``m`` and weights ``x``, ``mean(upsample_to(m) * x)`` equals
    ``mean(m * adaptive_avg_pool2d(x))``, so the mean is kept exactly."""
    height, width = size
    h, w = values.shape[-2:]
    if (h, w) == (height, width):
        return values
    rows = area_pooling_matrix(h, height, values.device).to(values.dtype)
    cols = area_pooling_matrix(w, width, values.device).to(values.dtype)
    scale = (height * width) / (h * w)
    return torch.einsum("bchw,hH,wW->bcHW", values, rows, cols) * scale


class PerceptualDistance(nn.Module):
    """Base class of perceptual distances between image batches in [-1, 1].

    Subclasses implement :meth:`layer_maps`. Every distance here is frozen and always in
    inference mode (calling ``.train()`` on a parent does not switch it), while gradients flow
    to the inputs.

    Args:
        reduction: what ``forward`` returns: ``"mean"`` a scalar, ``"none"`` per-sample ``[B]``.
        box: optional (top, bottom, left, right) pixel rectangle the distance is restricted to.
    """

    def __init__(self, reduction: Reduction = "mean", box: Box | None = None) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction: Reduction = reduction
        self.box = validate_box(box)

    def layer_maps(self, pred: Tensor, target: Tensor) -> list[Tensor]:
        """One distance map ``[B, 1, h_l, w_l]`` per feature layer (summed for the distance)."""
        raise NotImplementedError

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        """Raise a ValueError for inputs this distance cannot take (subclasses add checks)."""
        check_image_pair(pred, target)

    def train(self, mode: bool = True) -> PerceptualDistance:
        # Frozen metric network: dropout and batch norm must never switch to training.
        return super().train(False)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Distance between ``pred`` and ``target`` reduced per ``reduction`` (mean of
        :meth:`per_sample` by default)."""
        return reduce_per_sample(self.per_sample(pred, target, mask), self.reduction)

    def per_sample(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Distance of each pair, ``[B]`` float32, whatever ``reduction`` is.

        Args:
            mask: optional per-pixel weights at image resolution ([H, W], [B, H, W] or
                [B, 1, H, W]); each layer's map is averaged with the mask area-pooled to it.
        """
        self.check_inputs(pred, target)
        pred, target = apply_box(pred, self.box), apply_box(target, self.box)
        weights = prepare_mask(mask, pred, self.box)
        if weights is not None:
            weights = weights.float()
        per_sample = pred.new_zeros(pred.shape[0], dtype=torch.float32)
        for layer_map in self.layer_maps(pred, target):
            per_sample = per_sample + masked_spatial_mean(layer_map.float(), weights)
        return per_sample

    def spatial(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-pixel distance ``[B, 1, H, W]`` at the input size; its mean over pixels equals
        :meth:`per_sample` (without a box; with one, pixels outside the box are 0 and the mean
        over the box equals it)."""
        self.check_inputs(pred, target)
        height, width = pred.shape[-2:]
        cropped_pred, cropped_target = apply_box(pred, self.box), apply_box(target, self.box)
        size = tuple(cropped_pred.shape[-2:])
        total = cropped_pred.new_zeros(pred.shape[0], 1, *size, dtype=torch.float32)
        for layer_map in self.layer_maps(cropped_pred, cropped_target):
            total = total + upsample_to(layer_map.float(), size)  # type: ignore[arg-type]
        if self.box is None:
            return total
        top, bottom, left, right = self.box
        return F.pad(total, (left, width - right, top, height - bottom))

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, box={self.box}"


class FashionClassifierFeatures(nn.Module):
    """The five conv-layer activations (after each ReLU) of the shipped Fashion-MNIST
    classifier, on grey images at any size (RGB is averaged to grey; no crop, so the whole
    input is covered). For 32 px inputs: 32 and 32 channels at 32 px, 64 and 64 at 16 px,
    128 at 8 px."""

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        from lsap.nets.fashion_classifier import load_fashion_classifier

        self.features = load_fashion_classifier(weights).features

    def forward(self, images: Tensor) -> list[Tensor]:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected [B, 1 or 3, H, W] images, got {tuple(images.shape)}")
        x = images.float().mean(dim=1, keepdim=True)
        outputs: list[Tensor] = []
        for layer in self.features:
            if isinstance(layer, nn.AdaptiveAvgPool2d):
                break
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                outputs.append(x)
        return outputs


# Built-in feature networks by name (what configs write as ``network: <name>``).
FEATURE_NETWORKS: dict[str, type[nn.Module]] = {"fashion_classifier": FashionClassifierFeatures}


class FeatureDistance(PerceptualDistance):
    """Deep-feature distance on any feature network, LPIPS-style without learned heads:

    ``d(x, y) = 1/L * sum_l mean_{h,w} || n(f_l(x)) - n(f_l(y)) ||^2``

    with ``n`` the per-position unit normalisation over channels (as LPIPS), so each layer's
    term lies in [0, 4] and layers weigh equally. Uncalibrated: a domain feature distance, not
    LPIPS, and not comparable across networks.

    Args:
        network: a built-in name (``"fashion_classifier"``: the shipped classifier's five conv
            layers) or a module. A module returns a sequence of feature maps ``[B, C, h, w]``,
            unless ``layers`` names the submodules whose outputs to use.
        layers: names (as in ``network.named_modules()``) of the layers to compare; only with
            a module ``network``.
        weights: weights file of a built-in network (default: the copy shipped with lsap).
        reduction, box: see :class:`PerceptualDistance`.
    """

    def __init__(
        self,
        network: str | nn.Module = "fashion_classifier",
        layers: Sequence[str] | None = None,
        weights: str | None = None,
        reduction: Reduction = "mean",
        box: Box | None = None,
    ) -> None:
        super().__init__(reduction=reduction, box=box)
        if isinstance(network, str):
            if network not in FEATURE_NETWORKS:
                raise ValueError(f"unknown feature network {network!r}; built in: {sorted(FEATURE_NETWORKS)}")
            if layers is not None:
                raise ValueError("layers selects submodules of a network module, not of a built-in network")
            self.network_name = network
            network = FEATURE_NETWORKS[network](weights)
        else:
            if weights is not None:
                raise ValueError("weights is for a built-in network; load a network module's weights yourself")
            self.network_name = type(network).__name__
        self.network = network.eval().requires_grad_(False)
        self.layers = list(layers) if layers is not None else None
        if self.layers is not None:
            known = dict(self.network.named_modules())
            unknown = [name for name in self.layers if name not in known]
            if unknown or not self.layers:
                raise ValueError(f"layers {unknown or self.layers} are not submodules of {self.network_name}")

    def features(self, images: Tensor) -> list[Tensor]:
        """The compared feature maps of ``images``, one per layer."""
        if self.layers is None:
            outputs = self.network(images)
            if isinstance(outputs, Tensor) or not all(isinstance(o, Tensor) and o.ndim == 4 for o in outputs):
                raise ValueError(
                    f"{self.network_name} must return a sequence of [B, C, h, w] feature maps; "
                    "or name its layers with `layers`"
                )
            return list(outputs)
        captured: dict[str, Tensor] = {}
        modules = dict(self.network.named_modules())
        handles = [
            modules[name].register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
            for name in self.layers
        ]
        try:
            self.network(images)
        finally:
            for handle in handles:
                handle.remove()
        return [captured[name] for name in self.layers]

    def layer_maps(self, pred: Tensor, target: Tensor) -> list[Tensor]:
        features_pred, features_target = self.features(pred), self.features(target)
        count = len(features_pred)
        return [
            (unit_normalize(fp) - unit_normalize(ft)).square().sum(dim=1, keepdim=True) / count
            for fp, ft in zip(features_pred, features_target)
        ]

    def extra_repr(self) -> str:
        return f"network={self.network_name!r}, layers={self.layers}, " + super().extra_repr()
