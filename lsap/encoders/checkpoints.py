"""Load (and write) published encoder checkpoints without running code from them.

Two layouts are read:

* **e4e / pSp** files: ``{"state_dict": {"encoder.*", "decoder.*"}, "latent_avg", "opts"}``;
* **GANInverter** files (the authors' LSAP release, e.g. ``lsap_ffhq_r50_wp_official.pt``):
  ``{"encoder": {"encoder.*", "latent_avg"}, "decoder": <rosinality generator state dict>,
  "opts", "global_step"}``.

``module.`` components left by (Distributed)DataParallel are removed wherever they occur.
The encoder architecture is inferred from the tensors (depth and widths of the IR-SE body,
input channels, number of style heads = ``num_ws``, head depths = input size and the
coarse / middle split); e4e vs pSp comes from ``opts["encoder_type"]`` unless given.
The decoder is returned as the raw rosinality state dict for the generator code to use.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from lsap.encoders.e4e import Encoder4Editing, PyramidStyleEncoder, ProgressiveStyleEncoder
from lsap.encoders.psp import GradualStyleEncoder
from lsap.io import atomic_write, builtin_asset_path
from lsap.nets.irse import (
    WeightsMismatchError,
    infer_ir_architecture,
    load_state_dict_checked,
    load_weights_file,
    strip_module_prefix,
)

__all__ = [
    "ENCODER_TYPE_NAMES",
    "EncoderType",
    "LoadedEncoder",
    "build_encoder_from_state_dict",
    "infer_encoder_config",
    "load_encoder_checkpoint",
    "save_e4e_checkpoint",
]

EncoderType = Literal["e4e", "psp"]

# ``opts["encoder_type"]`` values used by the public code bases.
ENCODER_TYPE_NAMES: dict[str, EncoderType] = {
    "Encoder4Editing": "e4e",
    "GradualStyleEncoder": "psp",
}

_CHECKPOINT_DESCRIPTION = (
    "an encoder checkpoint: e4e/pSp format (dict with 'state_dict' holding 'encoder.*' and "
    "'decoder.*', 'latent_avg', 'opts') or GANInverter/LSAP format (dict with 'encoder', "
    "'decoder', 'opts', 'global_step')"
)


@dataclass
class LoadedEncoder:
    """What a published encoder checkpoint provides.

    Attributes:
        encoder: the built encoder with its weights, in eval mode. It returns W+ offsets
            from ``latent_avg``: ``w_plus = encoder(x) + latent_avg`` when
            ``start_from_latent_avg`` is true.
        encoder_type: ``"e4e"`` or ``"psp"``.
        latent_avg: ``[num_ws, w_dim]`` (a stored ``[w_dim]`` vector is broadcast), or
            None when the file has none.
        start_from_latent_avg: whether the model was trained to add ``latent_avg``.
        decoder_state_dict: rosinality-format generator state dict (keys ``style.*``,
            ``conv1.*``, ``convs.*``, ``to_rgbs.*``, ``noises.*`` ...), or None.
        opts: training options stored in the file (plain dict).
        file_format: ``"e4e/psp"`` or ``"ganinverter"``.
        global_step: training step stored in GANInverter files, else None.
        path: the file that was read.
    """

    encoder: PyramidStyleEncoder
    encoder_type: EncoderType
    latent_avg: torch.Tensor | None
    start_from_latent_avg: bool
    decoder_state_dict: dict[str, torch.Tensor] | None
    opts: dict[str, Any] = field(default_factory=dict)
    file_format: Literal["e4e/psp", "ganinverter"] = "e4e/psp"
    global_step: int | None = None
    path: Path | None = None

    @property
    def num_ws(self) -> int:
        return self.encoder.num_ws

    @property
    def w_dim(self) -> int:
        return self.encoder.w_dim


def _sub_dict(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def infer_encoder_config(state_dict: Mapping[str, torch.Tensor], input_size: int | None = None) -> dict[str, Any]:
    """Constructor arguments of the IR / IR-SE encoder whose weights are ``state_dict``.

    Keys are those of the encoder itself (``input_layer.*``, ``body.*``, ``styles.*``,
    ``latlayer*``). ``input_size`` is deduced from the head depths (exact for power-of-two
    sizes such as 256); pass it to override.
    """
    if any(key.startswith("backbone.") for key in state_dict):
        raise WeightsMismatchError(
            "these encoder weights use a ResNet backbone ('backbone.*' keys); only IR / IR-SE "
            "encoders (the published e4e / pSp / LSAP layout) can be rebuilt from weights alone"
        )
    arch = infer_ir_architecture(state_dict)
    head_pattern = re.compile(r"^styles\.(\d+)\.linear\.weight$")
    heads = sorted(int(m.group(1)) for key in state_dict if (m := head_pattern.match(key)))
    if not heads or heads != list(range(len(heads))):
        raise WeightsMismatchError(
            f"style heads 'styles.{{i}}.linear.weight' missing or not numbered 0..N-1 (found {heads[:8]})"
        )
    num_ws = len(heads)
    w_dim = int(state_dict["styles.0.linear.weight"].shape[0])
    conv_counts = []
    for head in heads:
        conv_pattern = re.compile(rf"^styles\.{head}\.convs\.(\d+)\.weight$")
        conv_counts.append(sum(1 for key in state_dict if conv_pattern.match(key)))
    deepest = 2 if "latlayer2.weight" in state_dict else 1 if "latlayer1.weight" in state_dict else 0
    coarse_convs = max(conv_counts) - deepest
    levels = [count - coarse_convs for count in conv_counts]
    if any(level not in range(deepest + 1) for level in levels) or levels != sorted(levels):
        raise WeightsMismatchError(
            f"style-head depths {conv_counts} do not form the coarse/middle/fine layout of an "
            "e4e / pSp encoder"
        )
    coarse_end = levels.count(0)
    middle_end = coarse_end + levels.count(1)
    if input_size is None:
        # Deepest tap has stride 2**num_stages and is halved ``coarse_convs`` times to 1x1.
        input_size = 2 ** len(arch.stage_channels) * 2**coarse_convs
    return {
        "num_ws": num_ws,
        "w_dim": w_dim,
        "input_size": input_size,
        "input_channels": arch.input_channels,
        "use_se": arch.use_se,
        "blocks_per_stage": list(arch.blocks_per_stage),
        "stage_channels": list(arch.stage_channels),
        "stem_channels": arch.stem_channels,
        "coarse_end": coarse_end,
        "middle_end": middle_end,
    }


def build_encoder_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    encoder_type: EncoderType,
    input_size: int | None = None,
    source: str = "state dict",
) -> PyramidStyleEncoder:
    """Build an e4e or pSp encoder matching ``state_dict`` and load it (strictly)."""
    config = infer_encoder_config(state_dict, input_size)
    if encoder_type == "e4e":
        encoder: PyramidStyleEncoder = Encoder4Editing(**config)
    elif encoder_type == "psp":
        encoder = GradualStyleEncoder(**config)
    else:
        raise ValueError(f"encoder_type must be 'e4e' or 'psp', got {encoder_type!r}")
    load_state_dict_checked(
        encoder, state_dict, source=source, description=f"{encoder_type} encoder weights (inferred layout {config})"
    )
    return encoder


def _plain_opts(opts: Any, path: Path) -> dict[str, Any]:
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        return dict(vars(opts))
    if isinstance(opts, Mapping):
        return dict(opts)
    raise WeightsMismatchError(f"'{path}': 'opts' should be a dict of options, found {type(opts).__name__}")


def _resolve_type(requested: EncoderType | None, opts: Mapping[str, Any], path: Path) -> EncoderType:
    if requested is not None:
        if requested not in ("e4e", "psp"):
            raise ValueError(f"encoder_type must be 'e4e' or 'psp', got {requested!r}")
        return requested
    stored = opts.get("encoder_type")
    if stored is None:
        raise ValueError(
            f"'{path}' does not record opts['encoder_type'], and e4e and pSp weights look the "
            "same; pass encoder_type='e4e' or encoder_type='psp'"
        )
    if stored not in ENCODER_TYPE_NAMES:
        raise ValueError(
            f"'{path}' holds a {stored!r} encoder; supported: {sorted(ENCODER_TYPE_NAMES)}"
        )
    return ENCODER_TYPE_NAMES[stored]


def _normalise_latent_avg(latent_avg: Any, num_ws: int, w_dim: int, path: Path) -> torch.Tensor | None:
    if latent_avg is None:
        return None
    if not isinstance(latent_avg, torch.Tensor):
        raise WeightsMismatchError(f"'{path}': latent_avg should be a tensor, found {type(latent_avg).__name__}")
    latent_avg = latent_avg.detach().float()
    if latent_avg.shape in ((w_dim,), (1, w_dim)):
        return latent_avg.reshape(1, w_dim).expand(num_ws, w_dim).clone()
    if latent_avg.shape == (num_ws, w_dim):
        return latent_avg.clone()
    raise WeightsMismatchError(
        f"'{path}': latent_avg has shape {tuple(latent_avg.shape)}, expected ({w_dim},) or "
        f"({num_ws}, {w_dim}) for an encoder with {num_ws} style heads"
    )


#: Encoders shipped with lsap, loadable by name (``load_encoder_checkpoint("fashion32_lsap")``):
#: the fashion32 pair trained with equal budgets, without and with the NSCD loss.
BUILTIN_ENCODERS = {"fashion32_e4e": "encoders/fashion32_e4e.pt", "fashion32_lsap": "encoders/fashion32_lsap.pt"}


def builtin_encoder_path(name: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """The packaged file of a built-in encoder name; any other value is returned as is."""
    return builtin_asset_path(name, BUILTIN_ENCODERS, "encoder", f"train it (configs/encoder_{name}.yaml, then "
                              "bench/export_fashion32_encoder.py)")


def load_encoder_checkpoint(
    path: str | os.PathLike[str],
    encoder_type: EncoderType | None = None,
    input_size: int | None = None,
) -> LoadedEncoder:
    """Read an e4e / pSp / GANInverter (LSAP release) checkpoint.

    Args:
        path: checkpoint file, or a built-in name (``BUILTIN_ENCODERS``).
        encoder_type: ``"e4e"`` or ``"psp"``; needed only when ``opts`` lacks ``encoder_type``.
        input_size: override the inferred input image size (default deduced, 256 for the
            public models).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs code execution to unpickle.
        WeightsMismatchError / ValueError: unexpected content (message names path,
            what was expected and what was found).
    """
    file = Path(builtin_encoder_path(path)).expanduser()
    checkpoint = load_weights_file(file, _CHECKPOINT_DESCRIPTION, extra_safe_globals=(argparse.Namespace,))
    if not isinstance(checkpoint, Mapping):
        raise WeightsMismatchError(
            f"'{file}' should hold {_CHECKPOINT_DESCRIPTION}; found a {type(checkpoint).__name__}"
        )
    global_step = None
    if isinstance(checkpoint.get("state_dict"), Mapping):
        file_format: Literal["e4e/psp", "ganinverter"] = "e4e/psp"
        state = strip_module_prefix(checkpoint["state_dict"])
        encoder_state = _sub_dict(state, "encoder.")
        decoder_state = _sub_dict(state, "decoder.") or None
        latent_avg = checkpoint.get("latent_avg")
    elif isinstance(checkpoint.get("encoder"), Mapping):
        file_format = "ganinverter"
        wrapper = strip_module_prefix(checkpoint["encoder"])
        encoder_state = _sub_dict(wrapper, "encoder.")
        latent_avg = wrapper.get("latent_avg")
        decoder = checkpoint.get("decoder")
        decoder_state = strip_module_prefix(decoder) if isinstance(decoder, Mapping) else None
        step = checkpoint.get("global_step")
        global_step = int(step) if isinstance(step, (int, float)) else None
    else:
        raise WeightsMismatchError(
            f"'{file}' should hold {_CHECKPOINT_DESCRIPTION}; found top-level keys "
            f"{sorted(map(str, checkpoint))[:10]}"
        )
    if not encoder_state:
        raise WeightsMismatchError(f"'{file}' ({file_format} layout) contains no 'encoder.*' tensors")
    opts = _plain_opts(checkpoint.get("opts"), file)
    kind = _resolve_type(encoder_type, opts, file)
    encoder = build_encoder_from_state_dict(encoder_state, kind, input_size=input_size, source=str(file))
    encoder.eval()
    return LoadedEncoder(
        encoder=encoder,
        encoder_type=kind,
        latent_avg=_normalise_latent_avg(latent_avg, encoder.num_ws, encoder.w_dim, file),
        start_from_latent_avg=bool(opts.get("start_from_latent_avg", True)),
        decoder_state_dict=decoder_state,
        opts=opts,
        file_format=file_format,
        global_step=global_step,
        path=file,
    )


def save_e4e_checkpoint(
    path: str | os.PathLike[str],
    encoder: PyramidStyleEncoder,
    latent_avg: torch.Tensor,
    decoder_state_dict: Mapping[str, torch.Tensor] | None = None,
    opts: Mapping[str, Any] | None = None,
) -> None:
    """Write an IR / IR-SE encoder in the e4e / pSp layout, readable by their tools and by
    :func:`load_encoder_checkpoint`. ``decoder_state_dict`` must be rosinality-format."""
    if encoder.backbone_kind.startswith("resnet"):
        raise ValueError("the e4e / pSp layout only describes IR / IR-SE encoders, not ResNet ones")
    if latent_avg.shape not in ((encoder.w_dim,), (encoder.num_ws, encoder.w_dim)):
        raise ValueError(
            f"latent_avg must have shape ({encoder.w_dim},) or ({encoder.num_ws}, {encoder.w_dim}), "
            f"got {tuple(latent_avg.shape)}"
        )
    state = {f"encoder.{k}": v.detach().cpu() for k, v in encoder.state_dict().items()}
    for key, value in (decoder_state_dict or {}).items():
        state[f"decoder.{key}"] = value.detach().cpu()
    stored_opts: dict[str, Any] = {
        "encoder_type": "Encoder4Editing" if isinstance(encoder, ProgressiveStyleEncoder) else "GradualStyleEncoder",
        "start_from_latent_avg": True,
        "input_nc": encoder.input_channels,
    }
    if encoder.num_ws % 2 == 0:
        resolution = 2 ** ((encoder.num_ws + 2) // 2)
        stored_opts.update(stylegan_size=resolution, output_size=resolution)
    stored_opts.update(opts or {})
    content = {"state_dict": state, "latent_avg": latent_avg.detach().cpu(), "opts": stored_opts}
    atomic_write(Path(path), lambda f: torch.save(content, f))

