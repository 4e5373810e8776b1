"""Generator speed against the reference implementations, on the same config-f weights.

For each peer checkout given by path, the peer's own code builds its config-f generator
(128 px, 512 channels up to 64 px and 256 at 128 px, 8 mapping layers, fp32, no clamp)
with seeded random weights; lsap loads those weights (its NVlabs / rosinality converters),
checks that both render the same image, and the CPU forward + backward of the synthesis
network is timed for each (batch 4, W+ input, constant noise, gradients for the codes and
all weights, ``--threads`` threads). Measurements alternate between the implementations
``--repeats`` times and the best time of each is kept, so background load hits all alike.

    python bench/bench_peers.py --nvlabs ../stylegan2-ada-pytorch --rosinality ../stylegan2-pytorch

Peers not given are skipped. Nothing of a peer is copied: its modules are imported from
the given folder at run time (``importlib`` on that folder only). rosinality's ``op``
package compiles CUDA kernels when imported; its CPU paths do not use them, so the
compilation is skipped here (``torch.utils.cpp_extension.load`` is stubbed while ``op`` is
imported).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import torch

RESOLUTION = 128
BATCH = 4


def import_from(directory: Path, name: str) -> ModuleType:
    """Import top-level module or package ``name`` from ``directory`` (and only from there);
    its own ``from <name> import ...`` statements then resolve inside it."""
    package = directory / name / "__init__.py"
    if package.is_file():
        spec = importlib.util.spec_from_file_location(name, package, submodule_search_locations=[str(package.parent)])
    else:
        spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    if spec is None or spec.loader is None or not Path(spec.origin or "").is_file():
        raise FileNotFoundError(f"'{directory}' has no module '{name}': is it the right checkout?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@contextmanager
def no_extension_builds() -> Iterator[None]:
    """While active, building a C++/CUDA extension yields ``None`` instead of compiling."""
    with mock.patch("torch.utils.cpp_extension.load", lambda *args, **kwargs: None):
        yield


def nvlabs_generator(directory: Path) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], Any]:
    """NVlabs stylegan2-ada-pytorch config-f generator; returns (G, synthesis(ws), lsap G)."""
    from lsap.model.checkpoints import generator_from_state_dict

    for name in ("dnnlib", "torch_utils", "training"):
        import_from(directory, name)
    networks = importlib.import_module("training.networks")
    torch.manual_seed(0)
    init_kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=RESOLUTION, img_channels=3,
                       mapping_kwargs=dict(num_layers=8),
                       synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None))
    G = networks.Generator(**init_kwargs).eval()
    with torch.no_grad():  # non-zero noise strengths and a random w_avg, so every path matters
        for name, tensor in G.named_parameters():
            if name.endswith("noise_strength"):
                tensor.normal_(0, 0.1)
        G.mapping.w_avg.normal_()
    ours = generator_from_state_dict(G.state_dict(), nvlabs_kwargs=init_kwargs)
    return G, lambda ws: G.synthesis(ws, noise_mode="const", force_fp32=True), ours


def rosinality_generator(directory: Path) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], Any]:
    """rosinality stylegan2-pytorch config-f generator; returns (G, synthesis(ws), lsap G)."""
    from lsap.model.checkpoints import generator_from_state_dict

    with no_extension_builds():
        import_from(directory, "op")
    model = import_from(directory, "model")
    torch.manual_seed(0)
    G = model.Generator(RESOLUTION, 512, 8, channel_multiplier=2).eval()
    with torch.no_grad():
        for name, tensor in G.named_parameters():
            if name.endswith("noise.weight"):
                tensor.normal_(0, 0.1)
    latent_avg = torch.randn(512)
    ours = generator_from_state_dict(G.state_dict(), latent_avg=latent_avg)

    def synthesis(ws: torch.Tensor) -> torch.Tensor:
        return G([ws], input_is_latent=True, randomize_noise=False)[0]

    return G, synthesis, ours


PEERS: dict[str, Callable[[Path], tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], Any]]] = {
    "nvlabs": nvlabs_generator,
    "rosinality": rosinality_generator,
}


def step_time(synthesis: Callable[[torch.Tensor], torch.Tensor], ws: torch.Tensor, iters: int) -> float:
    """Best seconds of ``iters`` forward + backward passes (after one warm-up)."""
    def step() -> None:
        ws.grad = None
        synthesis(ws).square().mean().backward()

    step()
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def measure(peers: dict[str, Path], threads: int, repeats: int, iters: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    rows: dict[str, Any] = {}
    for label, directory in peers.items():
        peer, peer_synthesis, ours = PEERS[label](directory)
        ws = torch.randn(BATCH, ours.num_ws, ours.w_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            difference = float((peer_synthesis(ws) - ours.synthesis(ws, noise_mode="const")).abs().max())
        if not difference <= 1e-3:
            raise RuntimeError(f"lsap and {label} render different images from the same weights "
                               f"(max abs difference {difference:.3g}); the comparison would be meaningless")
        ws = ws.requires_grad_(True)
        best_peer, best_ours = float("inf"), float("inf")
        for _ in range(repeats):
            best_ours = min(best_ours, step_time(lambda x: ours.synthesis(x, noise_mode="const"), ws, iters))
            best_peer = min(best_peer, step_time(peer_synthesis, ws, iters))
        rows[label] = {"lsap_s": best_ours, "peer_s": best_peer, "ratio": best_ours / best_peer,
                       "max_abs_image_difference": difference, "checkout": str(directory)}
    return {"resolution": RESOLUTION, "batch": BATCH, "threads": threads, "repeats": repeats, "iters": iters,
            "torch": torch.__version__, "peers": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| peer | lsap s/iter | peer s/iter | lsap / peer | max abs image difference |", "|---|---|---|---|---|"]
    for label, row in result["peers"].items():
        lines.append(f"| {label} | {row['lsap_s']:.2f} | {row['peer_s']:.2f} | {row['ratio']:.2f}x | "
                     f"{row['max_abs_image_difference']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nvlabs", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--rosinality", type=Path, help="checkout of rosinality/stylegan2-pytorch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; the best of each is kept")
    parser.add_argument("--iters", type=int, default=2, help="timed passes per round")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    peers = {label: path for label, path in (("nvlabs", args.nvlabs), ("rosinality", args.rosinality))
             if path is not None}
    for label, path in peers.items():
        if not path.is_dir():
            parser.error(f"--{label} {path}: not a folder")
    if not peers:
        print("no peer checkout given (--nvlabs DIR, --rosinality DIR): nothing to compare")
    result = measure(peers, args.threads, args.repeats, args.iters)
    if peers:
        print(markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
