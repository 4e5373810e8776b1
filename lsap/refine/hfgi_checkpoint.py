"""Read the published HFGI checkpoint (``ckpt.pt`` of the HFGI release) without running code.

The release's training script saves ``{"state_dict": net.state_dict(), "opts": vars(opts),
"latent_avg": ...}`` where the network holds

* ``encoder.*``    an e4e encoder (IR-SE50, 18 style heads, 256 px input);
* ``decoder.*``    the StyleGAN2 generator in rosinality's layout (1024 px, config-f);
* ``residue.*``    the consultation encoder (:class:`~lsap.refine.hfgi.ConsultationEncoder`);
* ``grid_align.*`` ADA (:class:`~lsap.refine.hfgi.DistortionAligner`);

and ``latent_avg`` ``[18, 512]``. The file is read with :func:`lsap.io.load_weights_file`
(``weights_only``; ``opts`` may be an ``argparse.Namespace``). ADA and the consultation
encoder are built at once (their layout is inferred from the tensors); the encoder and the
generator are large, so they are built on request (:meth:`PublishedHFGI.build_encoder`,
:meth:`PublishedHFGI.build_generator`) through lsap's e4e and generator loaders.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lsap.errors import BadFileError
from lsap.io import load_weights_file, strip_module_prefix
from lsap.refine.hfgi import HFGIRefiner

__all__ = ["PublishedHFGI", "load_published_hfgi"]

_DESCRIPTION = ("an HFGI release checkpoint (dict with 'state_dict' holding 'encoder.*', 'decoder.*', 'residue.*', "
                "'grid_align.*', plus 'latent_avg' and 'opts'; the HFGI authors distribute it as ckpt.pt)")


def _sub_dict(state: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _shape(state: Mapping[str, torch.Tensor], key: str, file: Path) -> tuple[int, ...]:
    if key not in state or not isinstance(state[key], torch.Tensor):
        raise BadFileError(f"'{file}' lacks '{key}': not {_DESCRIPTION}")
    return tuple(state[key].shape)


def infer_refiner_config(aligner: Mapping[str, torch.Tensor], consultation: Mapping[str, torch.Tensor],
                         file: Path, input_size: int, fusion_resolution: int) -> dict[str, Any]:
    """:class:`HFGIRefiner` arguments from the ``grid_align.*`` / ``residue.*`` tensors."""
    aligner_widths = [_shape(aligner, "conv_layer1.0.weight", file)[0]] + [
        _shape(aligner, f"conv_layer{k}.0.res_layer.1.weight", file)[0] for k in (2, 3, 4)]
    consultation_widths = [_shape(consultation, "conv_layer1.0.weight", file)[0]] + [
        _shape(consultation, f"conv_layer{k}.0.res_layer.1.weight", file)[0] for k in (2, 3)]
    channels = _shape(consultation, "condition_scale3.2.weight", file)[0]
    return {"fusion_channels": channels, "fusion_resolution": fusion_resolution, "input_size": input_size,
            "aligner_widths": aligner_widths, "consultation_widths": consultation_widths}


@dataclass
class PublishedHFGI:
    """What the release file provides: the refiner (built, weights loaded, eval mode) and the
    raw encoder / decoder state dicts, ``latent_avg`` and ``opts``."""

    refiner: HFGIRefiner
    encoder_state_dict: dict[str, torch.Tensor]
    decoder_state_dict: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None
    opts: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def build_encoder(self) -> torch.nn.Module:
        """The e4e encoder (lsap's :class:`~lsap.encoders.Encoder4Editing`, layout inferred)."""
        from lsap.encoders.checkpoints import build_encoder_from_state_dict

        return build_encoder_from_state_dict(self.encoder_state_dict, "e4e", source=str(self.path)).eval()

    def build_generator(self) -> torch.nn.Module:
        """The generator (rosinality layout converted by lsap's generator loader)."""
        from lsap.model.checkpoints import generator_from_state_dict

        latent = self.latent_avg[0] if self.latent_avg is not None and self.latent_avg.ndim == 2 else self.latent_avg
        return generator_from_state_dict(self.decoder_state_dict, latent_avg=latent)


def load_published_hfgi(path: str | os.PathLike[str], fusion_resolution: int = 64, input_size: int = 256) -> PublishedHFGI:
    """Load an HFGI release file. The release fuses at 64² (``i == 7`` in its generator) and
    computes distortions at 256 px; pass other values only for a retrained file."""
    file = Path(path).expanduser()
    data = load_weights_file(file, _DESCRIPTION, extra_safe_globals=(argparse.Namespace,))
    if not isinstance(data, Mapping) or not isinstance(data.get("state_dict"), Mapping):
        found = sorted(map(str, data))[:8] if isinstance(data, Mapping) else type(data).__name__
        raise BadFileError(f"'{file}' should hold {_DESCRIPTION}; found {found}")
    state = strip_module_prefix(data["state_dict"])
    parts = {prefix: _sub_dict(state, f"{prefix}.") for prefix in ("encoder", "decoder", "residue", "grid_align")}
    empty = [prefix for prefix, part in parts.items() if not part]
    if empty:
        raise BadFileError(f"'{file}' has no {', '.join(p + '.*' for p in empty)} tensors: not {_DESCRIPTION}")
    config = infer_refiner_config(parts["grid_align"], parts["residue"], file, input_size, fusion_resolution)
    refiner = HFGIRefiner(**config)
    own = {f"grid_align.{k}": v for k, v in parts["grid_align"].items()}
    own.update({f"residue.{k}": v for k, v in parts["residue"].items()})
    expected = refiner.state_dict()
    missing = sorted(set(expected) - set(own))
    unexpected = sorted(set(own) - set(expected))
    wrong = [k for k in expected if k in own and tuple(own[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise BadFileError(f"'{file}': ADA / consultation tensors do not match the HFGI layout (inferred {config}): "
                           f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
    refiner.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in own.items()})
    opts = data.get("opts")
    opts = dict(vars(opts)) if isinstance(opts, argparse.Namespace) else dict(opts) if isinstance(opts, Mapping) else {}
    latent_avg = data.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise BadFileError(f"'{file}': latent_avg should be a tensor, found {type(latent_avg).__name__}")
    return PublishedHFGI(refiner=refiner.eval(), encoder_state_dict=parts["encoder"],
                         decoder_state_dict=parts["decoder"],
                         latent_avg=latent_avg.float() if latent_avg is not None else None, opts=opts, path=file)
