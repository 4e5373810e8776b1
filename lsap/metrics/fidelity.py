"""Reconstruction fidelity: MSE, PSNR, SSIM, MS-SSIM, LPIPS and identity similarity.

Every metric scores each (reconstruction, input) pair and keeps float64 running sums of
the per-image values, their squares and the count (all ``dist_reduce_fx="sum"``), so a
distributed run gives the single-process mean and standard deviation up to float64
rounding. ``scores(pred, target)`` returns the per-image values without touching the
state; ``update`` = ``accumulate(scores(...))``.

Conventions. Images are float tensors ``[B, 3, H, W]`` in [-1, 1]. The peak-to-peak
range of that scale is 2, so the conventional PSNR is ``10 log10(4 / MSE)``
(``convention="default"``). GANInverter's benchmark script divides 2 by the MSE instead
(``convention="ganinverter"``, 3.01 dB lower) and quantises both images to 8 bits at
256 x 256 first; :func:`prepare_pair` applies that preprocessing. The reported std is the
population standard deviation (``ddof=0``), as numpy's default in that script.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)

from lsap.images import quantize_uint8, to_uint8

__all__ = [
    "CONVENTIONS",
    "IDSimilarity",
    "LPIPSMetric",
    "MSE",
    "MSSSIM",
    "PSNR",
    "PerImageMetric",
    "SSIM",
    "Convention",
    "check_images",
    "mse_per_image",
    "prepare_pair",
    "psnr_per_image",
    "quantize_uint8",
    "ssim_per_image",
    "msssim_per_image",
]

Convention = Literal["default", "ganinverter"]
CONVENTIONS: tuple[str, ...] = ("default", "ganinverter")
#: Squared peak-to-peak range used in the PSNR numerator, per convention ([-1, 1] images).
PSNR_PEAK_SQUARED = {"default": 4.0, "ganinverter": 2.0}
GANINVERTER_SIZE = 256
DATA_RANGE = 2.0  # of [-1, 1] images


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def check_images(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 4 or pred.shape[1] not in (1, 3) or pred.shape != target.shape:
        raise ValueError(f"expected two image batches [B, C, H, W] of the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def prepare_pair(pred: Tensor, target: Tensor, convention: str = "default") -> tuple[Tensor, Tensor]:
    """Bring a (reconstruction, input) pair to the comparison the convention asks for.

    ``default``: the input is resized (bilinear, antialiased) to the reconstruction's size
    when they differ; values stay float. ``ganinverter``: both are resized to 256 x 256 and
    quantised to 8 bits.
    """
    check_convention(convention)
    pred, target = pred.float(), target.float()
    if convention == "ganinverter":
        size = (GANINVERTER_SIZE, GANINVERTER_SIZE)
        if pred.shape[-2:] != size:
            pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=False, antialias=True)
        if target.shape[-2:] != size:
            target = F.interpolate(target, size=size, mode="bilinear", align_corners=False, antialias=True)
        return quantize_uint8(pred), quantize_uint8(target)
    if target.shape[-2:] != pred.shape[-2:]:
        target = F.interpolate(target, size=pred.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return pred, target


# ----- functional cores (per image, float64) ------------------------------------------------
def mse_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each pair over channels and pixels, ``[B]`` float64."""
    check_images(pred, target)
    return (pred.double() - target.double()).square().flatten(1).mean(dim=1)


def psnr_per_image(pred: Tensor, target: Tensor, convention: str = "default") -> Tensor:
    """``10 log10(peak^2 / MSE)`` per pair; ``peak^2`` is 4 (default) or 2 (ganinverter).
    Identical images give ``inf``."""
    peak_squared = PSNR_PEAK_SQUARED[check_convention(convention)]
    return 10 * torch.log10(peak_squared / mse_per_image(pred, target))


def ssim_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM per pair, ``[B]`` float64: torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 2,
    borders reflection-padded, averaged over the whole image)."""
    check_images(pred, target)
    values = structural_similarity_index_measure(pred.double(), target.double(), data_range=DATA_RANGE,
                                                 reduction="none")
    return values.reshape(-1)


def msssim_min_size(kernel_size: int = 11, scales: int = 5) -> int:
    return (kernel_size - 1) * 2 ** (scales - 1) + 1


def msssim_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """MS-SSIM per pair (5 scales, standard weights), ``[B]`` float64. Needs images of at
    least 161 pixels a side."""
    check_images(pred, target)
    need = msssim_min_size()
    if min(pred.shape[-2:]) < need:
        raise ValueError(f"MS-SSIM needs images of at least {need}x{need} pixels (5 scales of an 11-pixel "
                         f"window), got {tuple(pred.shape[-2:])}")
    values = multiscale_structural_similarity_index_measure(pred.double(), target.double(), data_range=DATA_RANGE,
                                                            reduction="none", normalize="relu")
    return values.reshape(-1)


# ----- metric classes --------------------------------------------------------------------------
class PerImageMetric(Metric):
    """Mean and population std of a per-image score, DDP-exact through float64 sums.

    Subclasses implement :meth:`scores`. Non-finite scores (e.g. PSNR of identical images,
    an identity embedding that failed) are counted in ``num_nonfinite`` and left out of the
    mean and std, never silently: :meth:`summary` reports the count.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool | None = None
    name: str = "metric"

    total: Tensor
    total_squared: Tensor
    num_images: Tensor
    num_nonfinite: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total_squared", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_nonfinite", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def accumulate(self, values: Tensor) -> None:
        """Add per-image values ``[B]`` to the running sums."""
        values = values.detach().to(device=self.total.device, dtype=torch.float64).reshape(-1)
        finite = torch.isfinite(values)
        kept = values[finite]
        self.total += kept.sum()
        self.total_squared += kept.square().sum()
        self.num_images += kept.numel()
        self.num_nonfinite += (~finite).sum()

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.accumulate(self.scores(pred, target))

    def _mean_std(self) -> tuple[Tensor, Tensor]:
        if self.num_images == 0:
            nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.total.device)
            return nan, nan
        mean = self.total / self.num_images
        variance = (self.total_squared / self.num_images - mean.square()).clamp_min(0)
        return mean, variance.sqrt()

    def compute(self) -> Tensor:
        """Mean over finite per-image values (NaN when there are none)."""
        return self._mean_std()[0]

    def summary(self) -> dict[str, float | int]:
        """``{"mean", "std", "count", "nonfinite"}`` over every process (population std)."""
        with self.sync_context(should_sync=self.sync_on_compute):
            mean, std = self._mean_std()
            count, nonfinite = int(self.num_images), int(self.num_nonfinite)
        return {"mean": float(mean), "std": float(std), "count": count, "nonfinite": nonfinite}


class _ConventionMetric(PerImageMetric):
    def __init__(self, convention: Convention = "default", **kwargs) -> None:
        super().__init__(**kwargs)
        self.convention = check_convention(convention)

    def prepared(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return prepare_pair(pred, target, self.convention)


class MSE(_ConventionMetric):
    """Mean squared error of [-1, 1] images (lower is better)."""

    higher_is_better = False
    name = "mse"

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        return mse_per_image(*self.prepared(pred, target))


class PSNR(_ConventionMetric):
    """Peak signal-to-noise ratio in dB, per image then averaged (higher is better).
    ``convention="default"``: ``10 log10(4 / MSE)``; ``"ganinverter"``: ``10 log10(2 / MSE)``."""

    higher_is_better = True
    name = "psnr"

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        return psnr_per_image(*self.prepared(pred, target), convention=self.convention)


class SSIM(_ConventionMetric):
    """Structural similarity per image, averaged (higher is better)."""

    higher_is_better = True
    name = "ssim"

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim_per_image(*self.prepared(pred, target))


class MSSSIM(_ConventionMetric):
    """Multi-scale structural similarity per image, averaged (higher is better)."""

    higher_is_better = True
    name = "ms_ssim"

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        return msssim_per_image(*self.prepared(pred, target))


class LPIPSMetric(_ConventionMetric):
    """LPIPS distance per image (lower is better), through :class:`lsap.nets.LPIPSLoss`.

    Args:
        backbone_weights: torchvision's ImageNet weights of the backbone (AlexNet by default),
            a local file.
        net: ``"alex"`` (the benchmark's choice) or ``"vgg"``.
        convention: preprocessing of the pair (see :func:`prepare_pair`).
        network: an already-built LPIPS module used instead (tests, shared instances).
    """

    higher_is_better = False
    name = "lpips"

    def __init__(self, backbone_weights: str | None = None, net: Literal["alex", "vgg"] = "alex",
                 convention: Convention = "default", network: nn.Module | None = None, **kwargs) -> None:
        super().__init__(convention=convention, **kwargs)
        if network is None:
            from lsap.nets.lpips import LPIPSLoss

            network = LPIPSLoss(backbone_weights=backbone_weights, net=net, reduction="none")
        self.network = network.eval().requires_grad_(False)

    @torch.no_grad()
    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = self.prepared(pred, target)
        return self.network.per_sample(pred, target).double()


class IDSimilarity(_ConventionMetric):
    """Identity similarity: cosine of face-recognition embeddings (higher is better), through
    :class:`lsap.nets.identity.FaceIdentity` (ArcFace IR-SE50, FaceNet, or CurricularFace IR-101 weights from
    a local file; see :mod:`lsap.metrics.face_identity`).

    Faces are embedded from the fixed FFHQ-aligned crop (the images are aligned already).
    With a ``face_detector`` (e.g. :class:`lsap.align.MTCNNFaceDetector`), a pair where no
    face is found in the reconstruction or the input scores NaN, as GANInverter's script
    skips such images; NaN scores (and non-finite embeddings) are counted in
    ``num_nonfinite`` and reported by :meth:`summary` as ``no_face_or_nonfinite``, never
    averaged and never silently dropped.

    Args:
        weights: ``model_ir_se50.pth`` (ArcFace) or a facenet-pytorch state dict.
        backbone: ``"arcface"``, ``"facenet"`` or ``"curricularface"``.
        network: an already-built :class:`~lsap.nets.identity.FaceIdentity` (or IDLoss) used instead.
        face_detector: optional detector with ``detect(PIL image) -> list`` of faces.
    """

    higher_is_better = True
    name = "id"

    def __init__(self, weights: str | None = None,
                 backbone: Literal["arcface", "facenet", "curricularface"] = "arcface",
                 convention: Convention = "default", network: nn.Module | None = None,
                 face_detector: Any | None = None, **kwargs) -> None:
        super().__init__(convention=convention, **kwargs)
        self.face_detector = face_detector
        if network is None:
            from lsap.nets.identity import FaceIdentity

            if backbone == "curricularface":
                from lsap.metrics.face_identity import CURRICULARFACE_DESCRIPTION, load_curricularface

                if weights is None:
                    raise ValueError(f"IDSimilarity needs `weights`: the path of the {CURRICULARFACE_DESCRIPTION}")
                network = FaceIdentity(network=load_curricularface(weights), network_input_size=112)
            else:
                network = FaceIdentity(weights=weights, backbone=backbone)
        self.network = network.eval().requires_grad_(False)

    def has_face(self, images: Tensor) -> Tensor:
        """Whether the detector finds a face in each image ``[B]`` (all true without a detector)."""
        if self.face_detector is None:
            return torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
        from PIL import Image

        levels = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
        found = [len(self.face_detector.detect(Image.fromarray(array))) > 0 for array in levels]
        return torch.tensor(found, dtype=torch.bool, device=images.device)

    @torch.no_grad()
    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = self.prepared(pred, target)
        similarity = self.network.similarity(pred, target).double()
        detected = self.has_face(pred) & self.has_face(target)
        return torch.where(detected, similarity, torch.full_like(similarity, float("nan")))

    def summary(self) -> dict[str, float | int]:
        result = super().summary()
        result["no_face_or_nonfinite"] = result.pop("nonfinite")
        result["face_detector"] = type(self.face_detector).__name__ if self.face_detector is not None else None
        return result


def psnr_from_mse(mse: float, convention: str = "default") -> float:
    """PSNR of a mean MSE (what some tables report instead of the mean of per-image PSNRs)."""
    return 10 * math.log10(PSNR_PEAK_SQUARED[check_convention(convention)] / mse)
