"""Image folders as datasets: scanning, robust decoding and the per-domain presets.

Every item is a dict::

    {"image": float32 [3, R, R] in [-1, 1], "path": str, "name": str, "index": int}

(``name``: the output name, the path relative to the folder without its extension; see
:func:`lsap.results.output_name`)

plus, for presets whose content does not fill the canvas (``car``)::

    {"mask": float32 [1, R, R] (1 inside the content box),
     "content_box": int64 [4] = (top, left, bottom, right), bottom/right exclusive}

Unreadable files never stop a run. They are found twice:

* when the dataset is built, by a verification pass (see ``VerifyMode``); such files are
  left out, listed in ``dataset.skipped`` and named in one warning;
* when an item is loaded, a file that fails (it changed on disk, or the verification
  pass could not see the damage) is recorded in ``skipped`` and the next valid item is
  returned instead, so a long run keeps going.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_warn
from PIL import Image, ImageOps
from torch.utils.data import Dataset, get_worker_info

from lsap.errors import BadValueError, MissingInputError
from lsap.images import from_uint8
from lsap.model.sampling import derive_seed
from lsap.results import output_name

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm",
)
"""File name endings (case-insensitive) that the folder scan treats as images."""

VerifyMode = Literal["none", "quick", "full"]
"""How thoroughly files are checked when a dataset is built.

* ``"none"``: only empty files are left out; everything else is caught at load time.
* ``"quick"`` (default): PIL parses the header and runs ``Image.verify()`` (for PNG this
  checks every chunk's CRC up to IEND, so truncated PNGs are caught). ``verify()`` does
  not look at JPEG entropy data, so a JPEG that does not end with its end-of-image marker
  is fully decoded to decide. No pixels are decoded otherwise.
* ``"full"``: every file is fully decoded and converted once (slowest, catches all).
"""

#: Canvas value outside a preset's content box, in 8-bit RGB. Black, as in the padded
#: car datasets that public car generators were trained on.
CANVAS_FILL_RGB: tuple[int, int, int] = (0, 0, 0)
#: Background that transparent pixels are composited onto. White, because the colour
#: stored under fully transparent pixels is arbitrary (often black) and cut-out images
#: are usually meant to be seen on a light background.
ALPHA_BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)


#: Item key listing, as a JSON ``[[path, reason], ...]`` string ("" when none), the files that
#: failed to load while fetching that item. DataLoader workers are separate processes, so
#: this is how their failures reach the main process (see ``InversionWriter``).
LOAD_FAILURES_KEY = "load_failures"


class SkippedImagesWarning(UserWarning):
    """Files in an image folder could not be read and were left out."""


# ----- presets -------------------------------------------------------------------------
@dataclass(frozen=True)
class ContentBox:
    """Region of the canvas that holds image content; rows ``top:bottom``, columns
    ``left:right`` (end-exclusive)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.top, self.left, self.bottom, self.right], dtype=torch.int64)

    def mask(self, resolution: int) -> torch.Tensor:
        """float32 ``[1, resolution, resolution]``: 1 inside the box, 0 outside."""
        mask = torch.zeros(1, resolution, resolution)
        mask[:, self.top:self.bottom, self.left:self.right] = 1.0
        return mask


PresetName = Literal["face", "car", "church"]
"""Preset names as config values (``preset: car``); ``DomainPreset(name)`` gives the preset."""


class DomainPreset(str, Enum):
    """How images of a domain are brought to the generator's canvas.

    * ``face``: resized to R x R (aligned face crops are square; other inputs are stretched).
    * ``car``: scaled to cover a 4:3 content box (512 x 384 at R = 512, proportionally at
      other R), centre-cropped to it and pasted centred on a black R x R canvas, as the
      public car generators expect. Items carry the box and a mask so losses can be
      restricted to the content.
    * ``church``: shorter side resized to R, then centre-cropped to R x R.
    """

    FACE = "face"
    CAR = "car"
    CHURCH = "church"

    @property
    def default_resolution(self) -> int:
        return {DomainPreset.FACE: 256, DomainPreset.CAR: 512, DomainPreset.CHURCH: 256}[self]

    def content_box(self, resolution: int) -> ContentBox | None:
        """The content region at ``resolution``, or None where content fills the canvas."""
        if self is not DomainPreset.CAR:
            return None
        height = int(round(resolution * 384 / 512))
        top = (resolution - height) // 2
        return ContentBox(top=top, left=0, bottom=top + height, right=resolution)

    def apply(self, image: Image.Image, resolution: int) -> Image.Image:
        """RGB PIL image of any size -> RGB PIL image of ``resolution`` x ``resolution``."""
        if self is DomainPreset.FACE:
            return _resize(image, resolution, resolution)
        if self is DomainPreset.CHURCH:
            return _cover_and_crop(image, resolution, resolution)
        box = self.content_box(resolution)
        assert box is not None
        canvas = Image.new("RGB", (resolution, resolution), CANVAS_FILL_RGB)
        canvas.paste(_cover_and_crop(image, box.width, box.height), (box.left, box.top))
        return canvas


def _resize(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image
    # PIL's bicubic widens its kernel when shrinking, so downscaling is antialiased.
    return image.resize((width, height), Image.Resampling.BICUBIC)


def _cover_and_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale (keeping aspect) so the image covers width x height, then centre-crop."""
    src_w, src_h = image.size
    scale = max(width / src_w, height / src_h)
    new_w, new_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    image = _resize(image, new_w, new_h)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


# ----- decoding ------------------------------------------------------------------------
def to_rgb8(image: Image.Image, background: tuple[int, int, int] = ALPHA_BACKGROUND_RGB) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (always returns a new image).

    * 16-bit grayscale (``I;16*``) is scaled by 255/65535. 32-bit ``I`` holds 16-bit data
      in practice (older PIL opens 16-bit PNGs so): values above 255 are treated as 16-bit,
      otherwise as 8-bit. ``F`` is taken as [0, 1] if its largest finite value is <= 1,
      else [0, 255]. NaN becomes 0 and infinities the ends of the range.
    * Modes with alpha (RGBA, LA, PA, palette with transparency) are composited onto
      ``background`` (white by default).
    * Palette, 1-bit, grayscale, CMYK, YCbCr go through PIL's own conversion.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        largest = float(finite.max()) if finite.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and largest > 255):
            values = values * (255.0 / 65535.0)
        elif mode == "F" and largest <= 1.0:
            values = values * 255.0
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
        mode = "L"
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Fully decode an image file to 8-bit RGB, applying its EXIF orientation (the one image
    loader of lsap: data sets, evaluation and face alignment read files through it).

    Raises whatever PIL raises for unreadable files (``OSError`` and subclasses for most,
    ``SyntaxError``/``ValueError``/``EOFError`` for some damaged headers).
    """
    with Image.open(path) as image:
        image.load()  # decode now, inside the file's lifetime, so truncation raises here
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - damaged EXIF should not cost a decodable image
            pass
        return to_rgb8(image)


def _jpeg_has_end_marker(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64))
        tail = handle.read()
    # Some writers pad after the end-of-image marker; ignore such trailing filler.
    return tail.rstrip(b"\x00\r\n \t").endswith(b"\xff\xd9")


def check_image_file(path: str, mode: VerifyMode = "quick") -> str | None:
    """Return None if ``path`` looks readable under ``mode``, else a short reason."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        if mode == "none":
            return None
        if mode == "full":
            load_rgb(path)
            return None
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
        if image_format == "JPEG" and not _jpeg_has_end_marker(path):
            load_rgb(path)
        return None
    except Exception as error:  # noqa: BLE001 - any failure means "unreadable", with its reason
        return _describe(error)


def _describe(error: BaseException) -> str:
    text = str(error).strip() or "no details"
    return f"{type(error).__name__}: {text}"


def scan_image_files(root: str | os.PathLike) -> list[str]:
    """All files under ``root`` with an image extension, recursively, in a fixed order
    (sorted by path relative to ``root``). Hidden files and folders (leading ``.``, e.g.
    macOS ``._*`` resource forks) are ignored. Symlinked folders are followed once."""
    root = os.fspath(root)
    found: list[tuple[str, str]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink cycle or a folder linked twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            found.append((Path(os.path.relpath(path, root)).as_posix(), path))
    found.sort()
    return [path for _, path in found]


# ----- dataset -------------------------------------------------------------------------
class ImageFolderDataset(Dataset):
    """Images found recursively under ``root``, shaped for one domain preset.

    Args:
        root: folder to scan (recursively).
        preset: domain preset (``face``, ``car``, ``church``).
        resolution: output size R; default: the preset's native size (256 / 512 / 256).
        hflip_probability: chance of a horizontal flip per item (0 for evaluation; the
            training pipeline uses 0.5). Flips come from a ``torch.Generator`` seeded from
            ``seed`` and, inside DataLoader workers, the worker's seed (which the loader
            draws anew each epoch from its own seeded RNG), so runs are reproducible under
            ``seed_everything`` and flips differ between epochs.
        seed: seed of the flip stream.
        verify: checking done at build time, see ``VerifyMode``.
        scan_workers: threads used by the build-time check (it is I/O bound).
        max_listed_skips: how many skipped files the warning names before summarising.

    Attributes:
        paths: the readable files, in item order.
        skipped: ``(path, reason)`` for every file left out, at build time or later.
        content_box: the preset's content box at this resolution, or None.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        preset: DomainPreset | PresetName = "face",
        resolution: int | None = None,
        hflip_probability: float = 0.0,
        seed: int = 0,
        verify: VerifyMode = "quick",
        scan_workers: int = 8,
        max_listed_skips: int = 10,
    ):
        self.root = os.fspath(root)
        self.preset = DomainPreset(preset)
        self.resolution = int(resolution) if resolution is not None else self.preset.default_resolution
        if self.resolution < 1:
            raise BadValueError(f"resolution must be positive, got {self.resolution}")
        if not 0.0 <= hflip_probability <= 1.0:
            raise BadValueError(f"hflip_probability must be in [0, 1], got {hflip_probability}")
        if verify not in ("none", "quick", "full"):
            raise BadValueError(f"verify must be 'none', 'quick' or 'full', got {verify!r}")
        self.hflip_probability = float(hflip_probability)
        self.seed = int(seed)
        self.content_box = self.preset.content_box(self.resolution)
        self._mask = self.content_box.mask(self.resolution) if self.content_box is not None else None

        if not os.path.exists(self.root):
            raise MissingInputError(f"image folder '{self.root}' does not exist")
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"'{self.root}' is not a folder (expected a folder of images)")
        candidates = scan_image_files(self.root)
        if not candidates:
            raise BadValueError(
                f"no images found in '{self.root}' (searched recursively for {', '.join(IMAGE_EXTENSIONS)})"
            )
        with ThreadPoolExecutor(max_workers=max(1, scan_workers)) as pool:
            reasons = list(pool.map(lambda p: check_image_file(p, verify), candidates))
        self.paths: list[str] = [p for p, r in zip(candidates, reasons) if r is None]
        self.skipped: list[tuple[str, str]] = [(p, r) for p, r in zip(candidates, reasons) if r is not None]
        if not self.paths:
            raise BadValueError(
                f"none of the {len(candidates)} image files in '{self.root}' could be read; "
                + _summarise(self.skipped, max_listed_skips)
            )
        if self.skipped:
            rank_zero_warn(
                f"skipped {len(self.skipped)} of {len(candidates)} image files in '{self.root}' that could not "
                f"be read: {_summarise(self.skipped, max_listed_skips)}. The full list is in `.skipped`.",
                category=SkippedImagesWarning,
            )
        self.names: list[str] = [output_name(p, self.root) for p in self.paths]
        self._failed: set[int] = set()  # indices that failed at load time (in this process)
        self._flip_rng: torch.Generator | None = None
        self._flip_rng_owner: tuple[int, int | None] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __getitem__(self, index: int) -> dict[str, object]:
        count = len(self.paths)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {count} images")
        index %= count
        failures: list[tuple[str, str]] = []
        for offset in range(count):
            candidate = (index + offset) % count
            if candidate in self._failed:
                continue
            path = self.paths[candidate]
            try:
                image = load_rgb(path)
            except Exception as error:  # noqa: BLE001 - a bad file must not end a long run
                failures.append(self._record_load_failure(candidate, error))
                continue
            item = self._make_item(image, candidate)
            item[LOAD_FAILURES_KEY] = json.dumps(failures) if failures else ""
            return item
        raise RuntimeError(f"every image in '{self.root}' failed to load; see `.skipped`")

    def _record_load_failure(self, index: int, error: BaseException) -> tuple[str, str]:
        path, reason = self.paths[index], _describe(error)
        self._failed.add(index)
        self.skipped.append((path, reason))
        warnings.warn(
            f"skipping unreadable image '{path}' ({reason}); the next valid image is used instead",
            SkippedImagesWarning,
            stacklevel=3,
        )
        return path, reason

    def _make_item(self, image: Image.Image, index: int) -> dict[str, object]:
        image = self.preset.apply(image, self.resolution)
        array = np.asarray(image, dtype=np.uint8)
        tensor = from_uint8(torch.from_numpy(array.copy()).permute(2, 0, 1))
        if self.hflip_probability > 0 and torch.rand((), generator=self._flip_generator()) < self.hflip_probability:
            tensor = tensor.flip(-1)  # content boxes are left-right symmetric, so they still hold
        item: dict[str, object] = {"image": tensor, "path": self.paths[index], "name": self.names[index],
                                   "index": index}
        if self.content_box is not None and self._mask is not None:
            item["mask"] = self._mask.clone()
            item["content_box"] = self.content_box.as_tensor()
        return item

    def _flip_generator(self) -> torch.Generator:
        # One stream per process: reseeded when this object finds itself in a new
        # DataLoader worker (workers get a fresh seed every epoch unless persistent).
        worker = get_worker_info()
        owner = (os.getpid(), worker.seed if worker is not None else None)
        if self._flip_rng is None or self._flip_rng_owner != owner:
            self._flip_rng = torch.Generator().manual_seed(derive_seed("hflip", self.seed, owner[1]))
            self._flip_rng_owner = owner
        return self._flip_rng

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_flip_rng"], state["_flip_rng_owner"] = None, None  # rebuilt lazily where used
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root='{self.root}', preset={self.preset.value}, resolution={self.resolution}, "
            f"images={len(self.paths)}, skipped={len(self.skipped)}, hflip_probability={self.hflip_probability})"
        )


def _summarise(skipped: list[tuple[str, str]], limit: int) -> str:
    listed = "; ".join(f"{path} ({reason})" for path, reason in skipped[:limit])
    rest = len(skipped) - limit
    return listed + (f"; and {rest} more" if rest > 0 else "")
