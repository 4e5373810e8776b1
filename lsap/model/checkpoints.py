"""Generator checkpoints: load the formats people already have, write lsap's own.

Readable sources (the architecture is inferred from the weights):

* rosinality ``.pt``: ``{"g_ema": state_dict, "latent_avg": [512]?}`` (also a bare state dict);
* NVlabs stylegan2-ada-pytorch ``.pkl`` (``G_ema``), read without running its embedded code,
  or an NVlabs state dict (``{"G_ema_state_dict": ...}`` or bare);
* e4e / pSp / GANInverter encoder checkpoints: their ``decoder`` (a rosinality generator);
* lsap's own file: safetensors or weights-only ``.pt`` with the architecture and ``w_avg``.

Nothing is ever executed from a file: ``.pt`` files go through ``torch.load(weights_only=True)``
and pickles through :mod:`lsap.model.safe_pickle`.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from lsap.io import (
    CheckpointError,
    atomic_write,
    builtin_asset_path,
    load_weights_file,
    missing_file_error,
    strip_module_prefix,
)
from lsap.model.generator import Generator
from lsap.model.safe_pickle import PersistentObject, UnsafeCheckpointError, safe_load_pickle

FORMAT_NAME = "lsap.generator"
FORMAT_VERSION = 1
#: A Lightning checkpoint of ``lsap.modules.StyleGAN2`` stores G_ema's architecture under
#: this key and its weights under ``state_dict["generator_ema.*"]``.
TRAINING_CONFIG_KEY = "lsap_generator_config"
#: Generators shipped with lsap, loadable by name: ``load_generator("fashion32")``.
BUILTIN_GENERATORS = {"fashion32": "fashion32.safetensors"}


# ----------------------------------------------------------------------------------------
# Reading files


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> Any:
    """Read a ``.pt`` / ``.pth`` / ``.ckpt`` / ``.pkl`` / ``.safetensors`` file safely.

    ``what`` describes the file in error messages ("StyleGAN2 generator", ...).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, what)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} '{path}' is empty (0 bytes)")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, what)
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK") or path.suffix in (".pt", ".pth", ".ckpt"):
        return _torch_load(path, what)
    return _read_pickle(path, what)


def _torch_load(path: Path, what: str) -> Any:
    try:
        return load_weights_file(path, what)
    except CheckpointError:
        if zipfile.is_zipfile(path):
            raise
        # Not a torch zip archive: perhaps a plain pickle with a .pt name.
        return _read_pickle(path, what)


def _read_pickle(path: Path, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return safe_load_pickle(f)
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"refusing to load {what} '{path}': {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(f"cannot read {what} '{path}': the file is truncated or not a pickle ({e})") from None


def _read_safetensors(path: Path, what: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {what} '{path}': not a valid safetensors file ({e})") from None
    return {"__safetensors__": True, "tensors": tensors, "metadata": metadata}


# ----------------------------------------------------------------------------------------
# Loading generators


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from any supported file, or a built-in one by name
    (``BUILTIN_GENERATORS``); returns it in eval mode."""
    path = builtin_generator_path(path)
    data = read_checkpoint(path, "StyleGAN2 generator checkpoint")
    try:
        generator = generator_from_checkpoint(data)
    except CheckpointError as e:
        raise CheckpointError(f"'{path}': {e}") from None
    return generator.eval().requires_grad_(False).to(device)


def builtin_generator_path(name: str | Path) -> str | Path:
    """The packaged file of a built-in generator name; any other value is returned as is
    (an existing file of that name wins)."""
    return builtin_asset_path(name, BUILTIN_GENERATORS, "generator", f"train one (configs/stylegan2_{name}.yaml) "
                              "and convert its G_ema with `lsap convert`")


def generator_from_checkpoint(data: Any) -> Generator:
    """Build a generator from the object read from any supported checkpoint file."""
    if isinstance(data, Mapping) and data.get("__safetensors__"):
        metadata = data["metadata"]
        if metadata.get("format") != FORMAT_NAME:
            raise CheckpointError(f"safetensors file is not an lsap generator (metadata format: {metadata.get('format')!r})")
        return _from_lsap(json.loads(metadata["config"]), data["tensors"])
    if isinstance(data, Mapping) and data.get("format") == FORMAT_NAME:
        return _from_lsap(data["config"], data["state_dict"])
    if isinstance(data, Mapping) and isinstance(data.get("G_ema"), PersistentObject):
        return _from_nvlabs_object(data["G_ema"])
    if isinstance(data, PersistentObject):
        return _from_nvlabs_object(data)
    if isinstance(data, Mapping) and isinstance(data.get(TRAINING_CONFIG_KEY), Mapping):  # lsap fit StyleGAN2
        prefix = "generator_ema."
        ema = {k[len(prefix):]: v for k, v in (data.get("state_dict") or {}).items() if k.startswith(prefix)}
        return _from_lsap(data[TRAINING_CONFIG_KEY], ema)
    if isinstance(data, Mapping):
        if "g_ema" in data:
            return generator_from_state_dict(data["g_ema"], latent_avg=data.get("latent_avg"))
        if "G_ema_state_dict" in data:
            return generator_from_state_dict(data["G_ema_state_dict"], nvlabs_kwargs=data.get("init_kwargs"))
        if isinstance(data.get("decoder"), Mapping):  # GANInverter / LSAP release
            latent_avg = data.get("latent_avg")
            encoder = data.get("encoder")
            if latent_avg is None and isinstance(encoder, Mapping):
                latent_avg = next((v for k, v in encoder.items() if k.endswith("latent_avg")), None)
            return generator_from_state_dict(data["decoder"], latent_avg=latent_avg)
        if isinstance(data.get("state_dict"), Mapping) and any(k.startswith("decoder.") for k in data["state_dict"]):
            decoder = {k[len("decoder."):]: v for k, v in data["state_dict"].items() if k.startswith("decoder.")}
            return generator_from_state_dict(decoder, latent_avg=data.get("latent_avg"))
        if all(isinstance(v, torch.Tensor) for v in data.values()):
            return generator_from_state_dict(data)
    kind = type(data).__name__
    keys = list(data.keys())[:8] if isinstance(data, Mapping) else []
    raise CheckpointError(
        f"not a recognised StyleGAN2 generator checkpoint (found a {kind} with keys {keys}); expected a rosinality "
        "'.pt' with 'g_ema', an NVlabs '.pkl' with 'G_ema', an e4e/pSp/LSAP encoder checkpoint, or an lsap file"
    )


def generator_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
    nvlabs_kwargs: Mapping[str, Any] | None = None,
) -> Generator:
    """Build a generator from a rosinality or NVlabs state dict (``module.`` prefixes allowed)."""
    sd = strip_module_prefix(state_dict)
    if "synthesis.b4.const" in sd:
        return _from_nvlabs(sd, nvlabs_kwargs or {})
    if "input.input" in sd and "conv1.conv.weight" in sd:
        return _from_rosinality(sd, latent_avg)
    if "synthesis_network.const" in sd:
        raise CheckpointError("this is an lsap state dict without its architecture; save it with save_generator()")
    raise CheckpointError(
        f"not a recognised StyleGAN2 generator state dict: neither rosinality nor NVlabs keys (first keys: {list(sd)[:6]})"
    )


def _take(sd: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(f"{source} generator weights lack '{key}' (truncated or a different architecture)")
    return sd[key]


def _load_into(generator: Generator, mapped: dict[str, torch.Tensor], source: str) -> Generator:
    own = generator.state_dict()
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise CheckpointError(f"{source} weights do not cover the {generator.resolution}px architecture; missing "
                              f"{len(missing)} tensors, e.g. {missing[:3]}")
    for key, value in mapped.items():
        if key not in own:
            raise CheckpointError(f"{source} weights have an unexpected tensor '{key}'")
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source} tensor for '{key}' has shape {tuple(value.shape)}, the inferred "
                                  f"architecture expects {tuple(own[key].shape)}")
    generator.load_state_dict({k: v.float() for k, v in mapped.items()})
    return generator.eval()


def _from_rosinality(sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None) -> Generator:
    src = "rosinality"
    num_rgbs = 1 + len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
    resolution = 2 ** (num_rgbs + 1)
    mapping_layers = len({k.split(".")[1] for k in sd if re.match(r"style\.\d+\.weight$", k)})
    w_dim, z_dim = _take(sd, "style.1.weight", src).shape
    channels = {4: _take(sd, "input.input", src).shape[1]}
    for i in range(num_rgbs - 1):
        channels[2 ** (i + 3)] = _take(sd, f"convs.{2 * i}.conv.weight", src).shape[1]
    img_channels = _take(sd, "to_rgb1.conv.weight", src).shape[1]
    g = Generator(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers, channels=channels,
                  img_channels=img_channels)
    m: dict[str, torch.Tensor] = {}
    for i in range(mapping_layers):
        m[f"mapping_network.layers.{i}.weight"] = _take(sd, f"style.{i + 1}.weight", src)
        m[f"mapping_network.layers.{i}.bias"] = _take(sd, f"style.{i + 1}.bias", src)
    m["synthesis_network.const"] = _take(sd, "input.input", src)[0]
    convs = ["conv1"] + [f"convs.{i}" for i in range(g.num_ws - 2)]
    for i, name in enumerate(convs):
        p = f"synthesis_network.convs.{i}."
        m[p + "weight"] = _take(sd, f"{name}.conv.weight", src)[0]
        m[p + "affine.weight"] = _take(sd, f"{name}.conv.modulation.weight", src)
        m[p + "affine.bias"] = _take(sd, f"{name}.conv.modulation.bias", src)
        m[p + "bias"] = _take(sd, f"{name}.activate.bias", src)
        m[p + "noise_strength"] = _take(sd, f"{name}.noise.weight", src).reshape([])
        m[p + "noise_const"] = _take(sd, f"noises.noise_{i}", src).reshape(g.synthesis_network.convs[i].noise_const.shape)
    rgbs = ["to_rgb1"] + [f"to_rgbs.{i}" for i in range(num_rgbs - 1)]
    for j, name in enumerate(rgbs):
        p = f"synthesis_network.to_rgbs.{j}."
        m[p + "weight"] = _take(sd, f"{name}.conv.weight", src)[0]
        m[p + "affine.weight"] = _take(sd, f"{name}.conv.modulation.weight", src)
        m[p + "affine.bias"] = _take(sd, f"{name}.conv.modulation.bias", src)
        m[p + "bias"] = _take(sd, f"{name}.bias", src).reshape(-1)
    if latent_avg is None:
        m["mapping_network.w_avg"] = torch.zeros(w_dim)
        g = _load_into(g, m, src)
        # rosinality files without latent_avg: a fixed-seed estimate keeps loading deterministic.
        g.mapping_network.w_avg.copy_(g.mean_latent(10_000, seed=0))
        return g
    # e4e / pSp store latent_avg as [w_dim], [1, w_dim] or [num_ws, w_dim] (rows equal).
    m["mapping_network.w_avg"] = torch.as_tensor(latent_avg).reshape(-1, w_dim)[0]
    return _load_into(g, m, src)


def _from_nvlabs(sd: Mapping[str, torch.Tensor], init_kwargs: Mapping[str, Any], lr_mul: float | None = None) -> Generator:
    src = "NVlabs"
    if "mapping.embed.weight" in sd or init_kwargs.get("c_dim", 0):
        raise CheckpointError("conditional NVlabs generators (c_dim > 0) are not supported")
    resolutions = sorted(int(m.group(1)) for k in sd if (m := re.match(r"synthesis\.b(\d+)\.torgb\.weight$", k)))
    if not resolutions or resolutions[0] != 4:
        raise CheckpointError("NVlabs weights have no synthesis.b4 block")
    resolution = resolutions[-1]
    mapping_layers = len([k for k in sd if re.match(r"mapping\.fc\d+\.weight$", k)])
    z_dim = _take(sd, "mapping.fc0.weight", src).shape[1]
    w_dim = _take(sd, f"mapping.fc{mapping_layers - 1}.weight", src).shape[0]
    channels = {4: _take(sd, "synthesis.b4.const", src).shape[0]}
    for res in resolutions[1:]:
        channels[res] = _take(sd, f"synthesis.b{res}.conv1.weight", src).shape[0]
    img_channels = _take(sd, "synthesis.b4.torgb.weight", src).shape[0]
    synthesis_kwargs = dict(init_kwargs.get("synthesis_kwargs") or {})
    mapping_kwargs = dict(init_kwargs.get("mapping_kwargs") or {})
    if lr_mul is None:
        lr_mul = float(mapping_kwargs.get("lr_multiplier", 0.01))
    g = Generator(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers, mapping_lr_mul=lr_mul,
                  channels=channels, img_channels=img_channels, conv_clamp=synthesis_kwargs.get("conv_clamp"))
    m: dict[str, torch.Tensor] = {"mapping_network.w_avg": _take(sd, "mapping.w_avg", src)}
    for i in range(mapping_layers):
        m[f"mapping_network.layers.{i}.weight"] = _take(sd, f"mapping.fc{i}.weight", src)
        m[f"mapping_network.layers.{i}.bias"] = _take(sd, f"mapping.fc{i}.bias", src)
    m["synthesis_network.const"] = sd["synthesis.b4.const"]
    convs = ["b4.conv1"] + [f"b{r}.conv{c}" for r in resolutions[1:] for c in (0, 1)]
    for i, name in enumerate(convs):
        p, q = f"synthesis_network.convs.{i}.", f"synthesis.{name}."
        for ours, theirs in [("weight", "weight"), ("bias", "bias"), ("affine.weight", "affine.weight"),
                             ("affine.bias", "affine.bias"), ("noise_const", "noise_const")]:
            m[p + ours] = _take(sd, q + theirs, src)
        m[p + "noise_strength"] = _take(sd, q + "noise_strength", src).reshape([])
    for j, res in enumerate(resolutions):
        p, q = f"synthesis_network.to_rgbs.{j}.", f"synthesis.b{res}.torgb."
        for key in ("weight", "bias", "affine.weight", "affine.bias"):
            m[p + key] = _take(sd, q + key, src)
    return _load_into(g, m, src)


def _from_nvlabs_object(obj: PersistentObject) -> Generator:
    init_kwargs = obj.state.get("_init_kwargs") or {}
    fc0 = obj.find("mapping.fc0")
    lr_mul = None
    if fc0 is not None and "bias_gain" in fc0.state:
        lr_mul = float(fc0.state["bias_gain"])
    return _from_nvlabs(obj.named_tensors(), init_kwargs, lr_mul=lr_mul)


def _from_lsap(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> Generator:
    config = dict(config)
    config["channels"] = {int(k): int(v) for k, v in config["channels"].items()}
    g = Generator(**config)
    return _load_into(g, dict(state_dict), "lsap")


# ----------------------------------------------------------------------------------------
# Writing lsap's own format


def save_generator(generator: Generator, path: str | Path) -> Path:
    """Write ``generator`` (weights, ``w_avg``, noise maps and architecture) to ``path``:
    ``.safetensors`` or a weights-only ``.pt``, atomically (a failed write leaves no file and
    raises :class:`~lsap.errors.OutputError`)."""
    path = Path(path)
    config = dict(generator.config)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save as safetensors_bytes

        config_json = json.dumps({**config, "channels": {str(k): v for k, v in config["channels"].items()}})
        data = safetensors_bytes(state, metadata={"format": FORMAT_NAME, "version": str(FORMAT_VERSION),
                                                  "config": config_json})
        atomic_write(path, lambda f: f.write(data))
    else:
        content = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": config, "state_dict": state}
        atomic_write(path, lambda f: torch.save(content, f))
    return path
