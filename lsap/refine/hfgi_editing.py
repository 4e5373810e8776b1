"""Editing HFGI results (the refinement-state protocol of :mod:`lsap.editing.refinement`).

HFGI's conditions are not stored: they are a function of the input image, its code and the
refiner. An HFGI run (with :class:`~lsap.callbacks.hfgi_writer.HFGIWriter`) therefore keeps,
per image, the input exactly as the module refined it (``hfgi_inputs/<name>.png``, 8-bit:
the module refines the 8-bit input, so the file reproduces it bit for bit), and its records'
``meta`` name the refiner (``hfgi_refiner``: a refiner file or built-in name). Editing then
applies HFGI's rule (:meth:`~lsap.refine.hfgi.HFGIRefiner.edit`): the distortion against
the unedited reconstruction, aligned by ADA to the edited image, fused into ``G(edited)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lsap.errors import BadFileError, MissingInputError
from lsap.images import from_uint8, to_uint8
from lsap.io import atomic_write
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.generator import Generator
from lsap.refine.hfgi import HFGIRefiner, load_hfgi_refiner

__all__ = ["INPUTS_DIR", "HFGIEditRenderer", "input_file_of", "load_edit_renderer", "read_input", "write_input"]

INPUTS_DIR = "hfgi_inputs"


def input_file_of(record: Any) -> Path:
    """``hfgi_inputs/<name>.png`` of a results record (beside its ``codes/<name>.pt``)."""
    name = str(record.name)
    root = Path(record.code_path).parents[len(Path(name).parts)]
    return root / INPUTS_DIR / f"{name}.png"


def write_input(path: Path, image: Tensor) -> None:
    """Write a ``[C, R, R]`` input in [-1, 1] as an 8-bit PNG (exact for 8-bit inputs)."""
    array = np.ascontiguousarray(to_uint8(image.cpu()).permute(1, 2, 0).numpy())
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array, "L" if array.shape[-1] == 1 else "RGB")
    atomic_write(path, lambda f: picture.save(f, format="PNG"))


def read_input(path: Path) -> Tensor:
    """The stored input ``[1, C, H, W]`` in [-1, 1] (C = 3, or 1 for grey files), at the size
    the module refined it (e.g. 256 px faces under a 1024 px generator)."""
    if not path.is_file():
        raise MissingInputError(f"HFGI input '{path}' not found: HFGI results are edited from the input they refined, "
                                "which lsap.callbacks.hfgi_writer.HFGIWriter writes (re-run the refinement with it)")
    try:
        with Image.open(path) as picture:
            array = np.asarray(picture.convert("RGB") if picture.mode not in ("L", "RGB") else picture)
    except OSError as error:
        raise BadFileError(f"cannot read HFGI input '{path}': {error}") from None
    tensor = torch.from_numpy(array.copy())
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return from_uint8(tensor)[None]


class HFGIEditRenderer:
    """Edits of one HFGI result: ``render(edited_ws)`` applies HFGI's editing rule with the
    image's stored input and unedited code; the unedited code gives the refined reconstruction."""

    def __init__(self, generator: Generator, refiner: HFGIRefiner, image: Tensor, ws: Tensor) -> None:
        self.generator, self.refiner = generator, refiner
        device = generator.w_avg.device
        self.refiner.to(device).eval()
        self.image = image.to(device, torch.float32)
        self.ws = ws.to(device, torch.float32)
        with torch.no_grad():
            self.reconstruction = generator.synthesis(self.ws, noise_mode="const")

    def render(self, ws: Tensor) -> Tensor:
        batch = ws.shape[0]
        with torch.no_grad():
            return self.refiner.edit(self.generator, self.ws.expand(batch, -1, -1), ws.to(self.ws.device),
                                     self.image.expand(batch, -1, -1, -1),
                                     reconstruction=self.reconstruction.expand(batch, -1, -1, -1))["image"]


def load_edit_renderer(generator: Generator, record: Any, code: Mapping[str, Any]) -> HFGIEditRenderer:
    """The editing loader of HFGI results (``REFINEMENT_LOADERS["hfgi"]``)."""
    meta = dict(getattr(record, "meta", None) or {})
    spec = meta.get("hfgi_refiner")
    if not spec:
        raise MissingInputError(f"the HFGI result '{record.name}' names no refiner file (meta['hfgi_refiner']): it was "
                                "refined with an unsaved refiner; export it (bench/export_fashion32_hfgi.py) and re-run "
                                "the refinement with model.init_args.refiner_checkpoint set")
    refiner, refiner_meta = load_hfgi_refiner(spec)
    made_for = refiner_meta.get("generator_hash")
    if made_for is not None and made_for != generator_fingerprint(generator):
        raise BadFileError(f"HFGI refiner '{spec}' was trained for another generator than the one being edited")
    image = read_input(input_file_of(record))
    return HFGIEditRenderer(generator, refiner, image, code["ws"][None].float())
