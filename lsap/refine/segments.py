"""Image segments for SAM's layer selection: each segment picks one latent layer.

A segmenter maps images ``[B, 3, H, W]`` in [-1, 1] (and their output names) to integer
labels ``[B, H, W]`` that cover every pixel exactly once.

* :class:`SuperpixelSegmenter`: SLIC superpixels (``scikit-image``), for any domain.
* :class:`LabelMapSegmenter`: label maps made beforehand by any tool (a face parser's
  output, for instance), one 8-bit PNG per image name.
* :class:`FaceParserSegmenter`: the BiSeNet face parser run from a user-supplied weights
  file (``79999_iter.pth``); the weights never ship with lsap and are never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.nets.face_parser import FACE_PARSER_RESOLUTION, BiSeNetFaceParser, load_face_parser

__all__ = ["FaceParserSegmenter", "LabelMapSegmenter", "Segmenter", "SuperpixelSegmenter", "relabel"]


class Segmenter:
    """Base: ``segmenter(images, names) -> LongTensor[B, H, W]``."""

    def __call__(self, images: Tensor, names: Sequence[str]) -> Tensor:
        raise NotImplementedError


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered to 0..K-1 (in increasing order of their values)."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64)


class SuperpixelSegmenter(Segmenter):
    """SLIC superpixels of each image (``skimage.segmentation.slic``).

    Args:
        num_segments: approximate number of superpixels per image.
        compactness: SLIC's balance of colour against space (higher: squarer segments).
        sigma: Gaussian smoothing before segmenting (pixels).
        resolution: segment at this size (``None``: the images' own), labels then resized
            back by nearest neighbour.
    """

    def __init__(self, num_segments: int = 16, compactness: float = 10.0, sigma: float = 0.5,
                 resolution: int | None = None) -> None:
        if num_segments < 1:
            raise BadValueError(f"num_segments must be >= 1, got {num_segments}")
        self.num_segments, self.compactness, self.sigma, self.resolution = num_segments, compactness, sigma, resolution

    def segment_one(self, image: Tensor) -> np.ndarray:
        """Labels ``[H, W]`` (0..K-1) of one image ``[3, H, W]`` in [-1, 1]."""
        from skimage.segmentation import slic  # optional heavy import, only where it is used

        array = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy().astype(np.float64)
        labels = slic(array, n_segments=self.num_segments, compactness=self.compactness, sigma=self.sigma,
                      start_label=0, channel_axis=-1, enforce_connectivity=True)
        return relabel(labels)

    def __call__(self, images: Tensor, names: Sequence[str]) -> Tensor:
        size = images.shape[-2:]
        work = images
        if self.resolution is not None and images.shape[-1] != self.resolution:
            work = F.interpolate(images.float(), size=(self.resolution, self.resolution), mode="area")
        labels = torch.stack([torch.from_numpy(self.segment_one(image)) for image in work])
        if labels.shape[-2:] != size:
            labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return labels.to(images.device)


class LabelMapSegmenter(Segmenter):
    """Segments read from ``<root>/<name>.png`` (8-bit label maps, e.g. a face parser's
    classes), resized to the images by nearest neighbour.

    Args:
        root: folder of the label maps, named as the results (``<name>.png``).
    """

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def __call__(self, images: Tensor, names: Sequence[str]) -> Tensor:
        size = images.shape[-2:]
        out = []
        for name in names:
            path = self.root / f"{name}.png"
            if not path.is_file():
                raise MissingInputError(f"no label map for '{name}': expected '{path}'")
            try:
                labels = np.asarray(Image.open(path).convert("L"), dtype=np.int64)
            except OSError as error:
                raise BadFileError(f"label map '{path}' cannot be read: {error}") from None
            tensor = torch.from_numpy(relabel(labels))[None, None].float()
            out.append(F.interpolate(tensor, size=size, mode="nearest")[0, 0].long())
        return torch.stack(out).to(images.device)


class FaceParserSegmenter(Segmenter):
    """Face-parsing segments: the BiSeNet face parser (19 CelebAMask-HQ classes) run on the
    images, each image's classes renumbered 0..K-1 (:func:`relabel`).

    The weights are the user's file: lsap never ships or downloads them. People usually
    take ``79999_iter.pth`` of ``zllrunning/face-parsing.PyTorch``; it is read with
    :func:`lsap.nets.face_parser.load_face_parser` (tensors only, layout checked), once, on
    the first call, and kept on the images' device.

    Args:
        weights: path of the parser's weights file.
        resolution: the parser's input size (the release's 512 px; smaller is faster and
            coarser). Labels are resized back to the images by nearest neighbour.
    """

    # the loaded parser lives in a slot, outside vars(): the segmenter's settings (recorded
    # as hyperparameters by lsap.modules.SAM) stay the constructor's arguments
    __slots__ = ("_parser",)

    def __init__(self, weights: str, resolution: int = FACE_PARSER_RESOLUTION) -> None:
        if resolution < 32:
            raise BadValueError(f"face-parser resolution must be >= 32 px, got {resolution}")
        self.weights = Path(os.path.expanduser(weights))
        self.resolution = resolution
        self._parser: BiSeNetFaceParser | None = None

    def parser(self, device: torch.device | str | None = None) -> BiSeNetFaceParser:
        """The parser, loaded on first use, on ``device`` (if given)."""
        if self._parser is None:
            self._parser = load_face_parser(self.weights)
        if device is not None:
            self._parser = self._parser.to(device)
        return self._parser

    def __call__(self, images: Tensor, names: Sequence[str]) -> Tensor:
        labels = self.parser(images.device).parse(images, resolution=self.resolution)
        return torch.stack([torch.from_numpy(relabel(one.cpu().numpy())) for one in labels]).to(images.device)
