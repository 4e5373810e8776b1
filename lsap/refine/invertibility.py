"""SAM's invertibility network: per latent layer, a map of how badly that layer alone can
reconstruct each region of an image.

Latent layers are those of :mod:`lsap.refine.sam`: layer 0 is W+ alone, layer ``k >= 1``
adds a free feature offset at the ``k``-th chosen block (coarse to fine).

* :class:`InvertibilityNet`: a small fully convolutional net (a two-scale encoder-decoder)
  with one 3x3 head per latent layer, predicting ``[B, L, H, W]`` error maps.
* :func:`single_layer_targets`: the training targets. Each image is inverted once per
  latent layer, optimising only that layer's latents (layer 0: the W+ code; layer ``k``:
  the W+ code and block ``k``'s offset), from ``w_avg``; the target is the spatial
  distance map (``distance.spatial``, or the per-pixel squared error without one) between
  the result and the image.
* :func:`train_invertibility`: targets for synthetic images of a generator, then MSE
  training; the file is a safetensors file whose settings ride in its metadata (plain data).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.errors import BadFileError, MissingInputError
from lsap.io import builtin_asset_path
from lsap.model import Generator, GeneratorSource
from lsap.model.sampling import z_blocks
from lsap.refine.sam import block_channels, check_blocks, offset_hook

__all__ = [
    "BUILTIN_INVERTIBILITY",
    "FILE_FORMAT",
    "InvertibilityNet",
    "load_invertibility_net",
    "save_invertibility_net",
    "single_layer_targets",
    "spatial_distance",
    "train_invertibility",
    "train_invertibility_command",
]

FILE_FORMAT = "lsap-sam-invertibility-1"
#: Built-in names of shipped invertibility nets (relative to ``lsap/assets``).
BUILTIN_INVERTIBILITY = {"fashion32": "refine/sam_fashion32_invertibility.safetensors"}


class InvertibilityNet(nn.Module):
    """Fully convolutional error-map predictor with one head per latent layer.

    Args:
        num_layers: latent layers (W+ plus one per block).
        width: channels of the first scale (the second has twice as many).
        input_resolution: images are resized to this before the net; maps come back at
            the input's size.
        blocks: the generator blocks of layers 1..L-1 (stored with the weights).
    """

    def __init__(self, num_layers: int, width: int = 32, input_resolution: int = 32,
                 blocks: Sequence[int] = ()) -> None:
        super().__init__()
        if num_layers < 1 or width < 1 or input_resolution < 4:
            raise ValueError(f"bad invertibility-net settings: num_layers={num_layers}, width={width}, "
                             f"input_resolution={input_resolution}")
        if blocks and len(blocks) != num_layers - 1:
            raise ValueError(f"{num_layers} layers need {num_layers - 1} blocks, got {list(blocks)}")
        self.num_layers, self.width, self.input_resolution = num_layers, width, input_resolution
        self.blocks = [int(b) for b in blocks]
        act = nn.LeakyReLU(0.2)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), act, nn.Conv2d(width, width, 3, padding=1), act)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), act,
                                  nn.Conv2d(2 * width, 2 * width, 3, padding=1), act)
        self.fuse = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), act)
        self.heads = nn.ModuleList([nn.Conv2d(width, 1, 3, padding=1) for _ in range(num_layers)])

    def settings(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers, "width": self.width, "input_resolution": self.input_resolution,
                "blocks": list(self.blocks)}

    def forward(self, images: Tensor) -> Tensor:
        """Error maps ``[B, L, H, W]`` of images ``[B, 3, H, W]`` in [-1, 1]."""
        size = images.shape[-2:]
        x = images.float()
        if x.shape[-1] != self.input_resolution:
            x = F.interpolate(x, size=(self.input_resolution, self.input_resolution), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > self.input_resolution)
        fine = self.stem(x)
        coarse = F.interpolate(self.down(fine), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        h = self.fuse(torch.cat([fine, coarse], dim=1))
        maps = torch.cat([head(h) for head in self.heads], dim=1)
        if maps.shape[-2:] != size:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return maps


def save_invertibility_net(net: InvertibilityNet, path: str | os.PathLike[str], **meta: Any) -> None:
    """Write the net's weights and settings (plus JSON-able ``meta``) as safetensors."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FILE_FORMAT, "settings": json.dumps(net.settings()), "meta": json.dumps(meta)}
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_invertibility_net(path: str | os.PathLike[str], device: torch.device | str = "cpu"
                           ) -> tuple[InvertibilityNet, dict[str, Any]]:
    """The net of a file written by :func:`save_invertibility_net` (or a built-in name,
    :data:`BUILTIN_INVERTIBILITY`), in eval mode without gradients, and its meta."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    how = "train one with `python bench/train_sam_invertibility.py` (lsap.refine.invertibility.train_invertibility)"
    resolved = Path(builtin_asset_path(path, BUILTIN_INVERTIBILITY, "SAM invertibility net", how))
    if not resolved.is_file():
        raise MissingInputError(f"SAM invertibility net not found: '{resolved}'; {how}")
    try:
        with safe_open(str(resolved), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(resolved))
    except (SafetensorError, OSError, ValueError) as error:
        raise BadFileError(f"'{resolved}' is not a safetensors file: {error}") from None
    if metadata.get("format") != FILE_FORMAT:
        raise BadFileError(f"'{resolved}' is not a SAM invertibility net (format '{metadata.get('format')}', "
                           f"expected '{FILE_FORMAT}')")
    try:
        settings = json.loads(metadata["settings"])
        meta = json.loads(metadata.get("meta", "{}"))
        net = InvertibilityNet(int(settings["num_layers"]), int(settings["width"]),
                               int(settings["input_resolution"]), [int(b) for b in settings.get("blocks", [])])
        net.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as error:
        raise BadFileError(f"SAM invertibility net '{resolved}' is damaged: {error}") from None
    return net.eval().requires_grad_(False).to(device), dict(meta)


# ----- targets --------------------------------------------------------------------------------
def spatial_distance(distance: nn.Module | None, pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel distance ``[B, 1, H, W]``: ``distance.spatial`` (a perceptual distance),
    or the squared error averaged over channels when ``distance`` is ``None``."""
    if distance is None:
        return (pred - target).square().mean(dim=1, keepdim=True)
    return distance.spatial(pred, target)


def _per_sample(distance: nn.Module | None, pred: Tensor, target: Tensor) -> Tensor:
    mse = (pred - target).square().flatten(1).mean(1)
    return mse if distance is None else mse + distance.per_sample(pred, target)


def single_layer_targets(generator: Generator, images: Tensor, blocks: Sequence[int], num_steps: int = 100,
                         learning_rate: float = 0.05, distance: nn.Module | None = None,
                         optimize_distance: bool = True) -> Tensor:
    """Target maps ``[B, L, H, W]`` for ``images`` ``[B, 3, R, R]``: layer ``l``'s map is
    the spatial distance left after optimising only layer ``l`` (see the module doc) for
    ``num_steps`` Adam steps (cosine ramp-down over the last quarter) on MSE plus, with
    ``optimize_distance``, the distance itself (off: MSE alone, cheaper; the maps still
    measure ``distance``)."""
    loss_distance = distance if optimize_distance else None
    G = generator
    device = G.w_avg.device
    images = images.to(device=device, dtype=torch.float32)
    batch = images.shape[0]
    channels = block_channels(G, blocks)
    maps = []
    for layer in range(len(blocks) + 1):
        with torch.enable_grad():
            ws = G.w_avg.detach()[None, None].repeat(batch, G.num_ws, 1).requires_grad_(True)
            params = [ws]
            offsets, masks = {}, {}
            if layer > 0:
                r = blocks[layer - 1]
                offsets[r] = torch.zeros(batch, channels[r], r, r, device=device, requires_grad=True)
                masks[r] = torch.ones(1, 1, r, r, device=device)
                params.append(offsets[r])
            optimizer = torch.optim.Adam(params, lr=learning_rate)
            for step in range(num_steps):
                t = step / num_steps
                ramp = min(1.0, (1.0 - t) / 0.25)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate * (0.5 - 0.5 * math.cos(ramp * math.pi))
                synth = G.synthesis(ws, feature_hook=offset_hook(offsets, masks))
                loss = _per_sample(loss_distance, synth, images).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            synth = G.synthesis(ws, feature_hook=offset_hook(offsets, masks))
            maps.append(spatial_distance(distance, synth, images).float())
    return torch.cat(maps, dim=1)


def train_invertibility(
    generator: GeneratorSource | Generator,
    output: str,
    blocks: Sequence[int] | None = None,
    num_images: int = 512,
    target_steps: int = 100,
    target_lr: float = 0.05,
    target_batch: int = 64,
    truncation_psi: float = 1.0,
    distance: nn.Module | None = None,
    optimize_distance: bool = True,
    width: int = 32,
    epochs: int = 200,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    targets_file: str | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """Train an invertibility net for ``generator`` on ``num_images`` synthetic images and
    write it to ``output``. Returns the training facts (also stored in the file's meta):
    target statistics per layer, final MSE and seconds spent. ``targets_file`` keeps the
    images and target maps (made once, read back by a later run with the same settings)."""
    G = generator if isinstance(generator, Generator) else GeneratorSource.coerce(generator).build()
    G = G.eval().requires_grad_(False)
    chosen = check_blocks(G, blocks)
    started, cpu_started = time.perf_counter(), time.process_time()
    recipe = {"blocks": chosen, "num_images": num_images, "target_steps": target_steps, "target_lr": target_lr,
              "truncation_psi": truncation_psi, "seed": seed, "optimize_distance": optimize_distance,
              "distance": f"{type(distance).__name__}({distance.extra_repr()})" if distance is not None else None}
    cached = None
    if targets_file is not None and Path(targets_file).is_file():
        from lsap.io import load_weights_file

        cached = load_weights_file(targets_file, "invertibility targets file")
        if not isinstance(cached, dict) or cached.get("recipe") != json.dumps(recipe, sort_keys=True):
            cached = None  # made with other settings: make them again
    if cached is not None:
        images_t, targets_t, target_seconds = cached["images"], cached["targets"], float(cached["seconds"])
        target_cpu = float(cached["cpu_seconds"])
    else:
        images, targets = [], []
        for i, z in enumerate(z_blocks(num_images, G.z_dim, seed, block_size=target_batch)):
            with torch.no_grad():
                image = G(z.to(G.w_avg.device), truncation_psi=truncation_psi).clamp(-1, 1)
            targets.append(single_layer_targets(G, image, chosen, target_steps, target_lr, distance,
                                                optimize_distance).cpu())
            images.append(image.cpu())
            if log:
                print(f"targets {min((i + 1) * target_batch, num_images)}/{num_images} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
        images_t, targets_t = torch.cat(images), torch.cat(targets)
        target_seconds, target_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if targets_file is not None:
            Path(targets_file).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"recipe": json.dumps(recipe, sort_keys=True), "images": images_t, "targets": targets_t,
                        "seconds": target_seconds, "cpu_seconds": target_cpu}, targets_file)

    training_cpu_started = time.process_time()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = InvertibilityNet(len(chosen) + 1, width, G.resolution, chosen)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    num_val = max(1, num_images // 8)
    train_x, train_y = images_t[num_val:], targets_t[num_val:]
    val_x, val_y = images_t[:num_val], targets_t[:num_val]
    for epoch in range(epochs):
        order = torch.randperm(train_x.shape[0], generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = F.mse_loss(net(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if log and (epoch % 25 == 0 or epoch == epochs - 1):
            with torch.no_grad():
                val = F.mse_loss(net(val_x), val_y).item()
            print(f"epoch {epoch}: train mse {loss.item():.5f}, held-out mse {val:.5f}", flush=True)
    with torch.no_grad():
        val_mse = F.mse_loss(net(val_x), val_y).item()
        baseline = F.mse_loss(train_y.mean(dim=(0, 2, 3), keepdim=True).expand_as(val_y), val_y).item()
    facts = {
        "generator_resolution": G.resolution, "blocks": chosen, "num_images": num_images,
        "target_steps": target_steps, "target_lr": target_lr, "truncation_psi": truncation_psi,
        "distance": f"{type(distance).__name__}({distance.extra_repr()})" if distance is not None
        else "pixel squared error",
        "target_loss": "mse + distance" if optimize_distance and distance is not None else "mse",
        "epochs": epochs, "seed": seed, "held_out_mse": val_mse, "held_out_mse_constant_baseline": baseline,
        "target_mean_per_layer": [float(v) for v in targets_t.mean(dim=(0, 2, 3))],
        "target_seconds": round(target_seconds, 1), "target_cpu_seconds": round(target_cpu, 1),
        "training_cpu_seconds": round(time.process_time() - training_cpu_started, 1),
    }
    save_invertibility_net(net.eval(), output, **facts)
    return facts


def train_invertibility_command(generator: str, output: str, blocks: list[int] | None = None,
                                distance: str | None = "fashion_classifier", optimize_distance: bool = False,
                                num_images: int = 512, target_steps: int = 100, target_lr: float = 0.05,
                                target_batch: int = 64, truncation_psi: float = 1.0, width: int = 32,
                                epochs: int = 200, batch_size: int = 64, learning_rate: float = 2e-3,
                                seed: int = 0, threads: int | None = None,
                                targets_file: str | None = None) -> dict[str, Any]:
    """Train SAM's invertibility net for a generator of your own (``lsap sam-invertibility``).

    Args:
        generator: checkpoint path or built-in name (e.g. fashion32).
        output: the safetensors file to write.
        blocks: offset blocks (default: the paper's R/64..R/8, or 4 and 8 px below 512 px).
        distance: the spatial distance of the targets: a built-in FeatureDistance network
            (fashion_classifier), or null for the per-pixel squared error.
        optimize_distance: optimise the single-layer inversions on MSE + distance (default:
            MSE alone, cheaper; the maps measure the distance either way).
        num_images: synthetic images to make targets for.
        target_steps: Adam steps of each single-layer inversion.
        target_lr: their learning rate.
        target_batch: images inverted together.
        truncation_psi: truncation of the synthetic images.
        width: channels of the net's first scale.
        epochs: training epochs.
        batch_size: training batch size.
        learning_rate: Adam's learning rate for the net.
        seed: seed of the images and the training.
        threads: torch CPU threads (default: torch's).
        targets_file: keep the targets here and reuse them in a later run with the same recipe.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    metric = None
    if distance is not None:
        from lsap.nets.perceptual import FeatureDistance

        metric = FeatureDistance(distance)
    facts = train_invertibility(GeneratorSource(checkpoint=generator), output, blocks, num_images, target_steps,
                                target_lr, target_batch, truncation_psi, metric, optimize_distance, width, epochs,
                                batch_size, learning_rate, seed, targets_file)
    print(json.dumps(facts, indent=2))
    return facts
