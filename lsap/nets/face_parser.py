"""BiSeNet face parser (19 CelebAMask-HQ classes) loaded from a user-supplied weights file.

The network is laid out so that its ``state_dict()`` has exactly the tensor names and shapes
of the widely used release ``79999_iter.pth`` (published with zllrunning/face-parsing.PyTorch):
a ResNet-18 context path (``cp.resnet.*``) with two attention refinement modules
(``cp.arm16``, ``cp.arm32``), a global-context branch (``cp.conv_avg``) and two heads
(``cp.conv_head32``, ``cp.conv_head16``); a feature fusion module (``ffm``) over the 1/8
backbone features and the refined context; and three classifier heads (``conv_out`` the main
one, ``conv_out16`` and ``conv_out32`` the auxiliary ones used in training).

Nothing is downloaded: the network is built with PyTorch's default initialisation and every
tensor, the backbone's included, comes from the weights file. The file is read with
:func:`lsap.io.load_weights_file` (``weights_only=True``), so a file that would need code to be
rebuilt is refused.

Inference (:meth:`BiSeNetFaceParser.parse`): lsap images in [-1, 1] are mapped to [0, 1],
resized to the parser's 512 px, normalised with the ImageNet mean and std, and the argmax of
the main head is resized back to the requested size by nearest neighbour.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.errors import BadValueError, MissingInputError
from lsap.io import WeightsMismatchError, load_weights_file, strip_module_prefix
from lsap.nets.irse import load_state_dict_checked

__all__ = [
    "FACE_PARSER_CLASSES",
    "FACE_PARSER_RESOLUTION",
    "FACE_PARSER_WEIGHTS_DESCRIPTION",
    "BiSeNetFaceParser",
    "load_face_parser",
]

#: The 19 CelebAMask-HQ classes, in the order of the release's output channels.
FACE_PARSER_CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
#: The input size the release was trained at.
FACE_PARSER_RESOLUTION = 512
FACE_PARSER_WEIGHTS_DESCRIPTION = "BiSeNet face-parser weights (79999_iter.pth of zllrunning/face-parsing.PyTorch)"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class _ConvBNReLU(nn.Module):
    """Bias-free convolution, batch norm, ReLU (tensors ``conv.*``, ``bn.*``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class _BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 projection (``downsample.0``/``.1``) where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + branch)


class _ResNet18Features(nn.Module):
    """ResNet-18 without its classifier; returns the 1/8, 1/16 and 1/32 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, channels = [], 64
        for out_channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(_BasicBlock(channels, out_channels, stride),
                                        _BasicBlock(out_channels, out_channels, 1)))
            channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        eighth = self.layer2(x)
        sixteenth = self.layer3(eighth)
        return eighth, sixteenth, self.layer4(sixteenth)


class _AttentionRefinement(nn.Module):
    """Features re-weighted per channel by a sigmoid of their globally pooled projection."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        features = self.conv(x)
        weights = torch.sigmoid(self.bn_atten(self.conv_atten(features.mean((2, 3), keepdim=True))))
        return features * weights


class _ContextPath(nn.Module):
    """Backbone plus the top-down refinement of its 1/32 and 1/16 features."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = _ResNet18Features()
        self.arm16 = _AttentionRefinement(256, 128)
        self.arm32 = _AttentionRefinement(512, 128)
        self.conv_head32 = _ConvBNReLU(128, 128, 3)
        self.conv_head16 = _ConvBNReLU(128, 128, 3)
        self.conv_avg = _ConvBNReLU(512, 128, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        eighth, sixteenth, thirty_second = self.resnet(x)
        context = self.conv_avg(thirty_second.mean((2, 3), keepdim=True))  # [B, 128, 1, 1], broadcast below
        top = self.arm32(thirty_second) + context
        top = self.conv_head32(F.interpolate(top, size=sixteenth.shape[-2:], mode="nearest"))
        middle = self.arm16(sixteenth) + top
        middle = self.conv_head16(F.interpolate(middle, size=eighth.shape[-2:], mode="nearest"))
        return eighth, middle, top


class _FeatureFusion(nn.Module):
    """Concatenation, a 1x1 projection, and a squeeze-excitation style residual re-weighting."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convblk = _ConvBNReLU(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, 1, bias=False)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        features = self.convblk(torch.cat([spatial, context], dim=1))
        weights = torch.sigmoid(self.conv2(F.relu(self.conv1(features.mean((2, 3), keepdim=True)))))
        return features * weights + features


class _Head(nn.Module):
    """3x3 conv-bn-relu then a bias-free 1x1 classifier."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = _ConvBNReLU(in_channels, mid_channels, 3)
        self.conv_out = nn.Conv2d(mid_channels, num_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class BiSeNetFaceParser(nn.Module):
    """BiSeNet face parser; ``forward`` returns the main head's logits at the input size."""

    def __init__(self, num_classes: int = len(FACE_PARSER_CLASSES)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cp = _ContextPath()
        self.ffm = _FeatureFusion(256, 256)
        self.conv_out = _Head(256, 256, num_classes)
        self.conv_out16 = _Head(128, 64, num_classes)  # auxiliary heads: kept for the file's layout
        self.conv_out32 = _Head(128, 64, num_classes)

    def forward(self, x: Tensor, auxiliary: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Logits ``[B, num_classes, H, W]`` of normalised RGB ``x`` ``[B, 3, H, W]``; with
        ``auxiliary`` also those of the two training heads."""
        size = x.shape[-2:]
        eighth, middle, top = self.cp(x)

        def upsample(logits: Tensor) -> Tensor:
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)

        main = upsample(self.conv_out(self.ffm(eighth, middle)))
        if not auxiliary:
            return main
        return main, upsample(self.conv_out16(middle)), upsample(self.conv_out32(top))

    @torch.no_grad()
    def parse(self, images: Tensor, size: tuple[int, int] | None = None,
              resolution: int = FACE_PARSER_RESOLUTION) -> Tensor:
        """Class labels ``[B, H, W]`` (long, 0..num_classes-1) of lsap images in [-1, 1].

        Args:
            images: ``[B, 3, H, W]`` RGB in [-1, 1].
            size: size of the returned labels (default: the images' own).
            resolution: the parser's input size (512 for the release; smaller is faster and
                coarser).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise BadValueError(f"the face parser expects RGB images [B, 3, H, W], got {tuple(images.shape)}")
        parameter = next(self.parameters())
        size = tuple(images.shape[-2:]) if size is None else tuple(size)
        x = ((images.to(parameter.device, torch.float32).clamp(-1, 1) + 1) / 2)
        if tuple(x.shape[-2:]) != (resolution, resolution):
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
        mean = x.new_tensor(_IMAGENET_MEAN)[:, None, None]
        std = x.new_tensor(_IMAGENET_STD)[:, None, None]
        logits = self((x - mean) / std)
        labels = logits.argmax(1)
        if tuple(labels.shape[-2:]) != size:
            labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return labels


def load_face_parser(path: str | os.PathLike[str], device: torch.device | str | None = None) -> BiSeNetFaceParser:
    """The BiSeNet face parser with the weights of ``path``, frozen, in eval mode.

    Raises:
        MissingInputError: ``path`` does not exist.
        UnsafeCheckpointError: the file would need code execution to be read.
        CheckpointError / WeightsMismatchError: the file is damaged, or its tensors are not
            the release's layout (the message counts and names missing / unexpected ones).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingInputError(
            f"face-parser weights not found: '{file}'. People usually get the BiSeNet parser '79999_iter.pth' "
            "from zllrunning/face-parsing.PyTorch; lsap never downloads it"
        )
    raw = load_weights_file(file, FACE_PARSER_WEIGHTS_DESCRIPTION)
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise WeightsMismatchError(
            f"'{file}' should hold a state dict ({FACE_PARSER_WEIGHTS_DESCRIPTION}), found a {type(raw).__name__}")
    net = BiSeNetFaceParser()
    load_state_dict_checked(net, strip_module_prefix(raw), source=str(file),
                            description=FACE_PARSER_WEIGHTS_DESCRIPTION)
    net.eval().requires_grad_(False)
    return net if device is None else net.to(device)
