"""LSAP_O throughput: images per minute at the full 1000-step schedule, per batch size.

A few optimisation steps are timed (after a warm-up run that also absorbs the fixed
per-batch costs) and extrapolated to 1000 steps. Every step does what a real run does:
synthesis, LPIPS(AlexNet; random backbone weights cost the same as ImageNet ones), MSE,
the NSCD loss, the noise regulariser, backward, Adam and the noise renormalisation.

CPU (a small random generator):
    python bench/bench_lsap_o.py --device cpu --resolution 64 --steps 5 --out bench/lsap_o_cpu.json
GPU (config-f architecture at 1024 px, random weights; the same cost as FFHQ's):
    python bench/bench_lsap_o.py --device cuda --resolution 1024 --config-f --steps 10
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from lsap.losses import LPIPSLoss
from lsap.model import GeneratorSource
from lsap.modules import LSAP_O

FULL_SCHEDULE_STEPS = 1000


def source_for(resolution: int, config_f: bool) -> GeneratorSource:
    if config_f:
        return GeneratorSource(seed=0, resolution=resolution, w_avg_samples=2000)
    # Small: 8 mapping layers, 128 channels up to 32 px then halving (64 px: 128, 64).
    return GeneratorSource(seed=0, resolution=resolution, channel_base=4096, channel_max=128, w_avg_samples=2000)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batch(model: LSAP_O, batch: int, steps: int, device: torch.device) -> float:
    """Seconds per optimisation step for a batch of ``batch`` images."""
    resolution = model.generator.resolution
    images = torch.rand(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch)) * 2 - 1
    images = images.to(device)
    keys = [f"{i:06d}" for i in range(batch)]
    model.num_steps = 1
    model.invert(images, keys)  # warm-up (allocator, kernels) and the fixed per-batch costs
    synchronize(device)
    start = time.perf_counter()
    model.invert(images, keys)
    synchronize(device)
    one_step = time.perf_counter() - start
    model.num_steps = steps + 1
    start = time.perf_counter()
    model.invert(images, keys)
    synchronize(device)
    return (time.perf_counter() - start - one_step) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--config-f", action="store_true", help="full config-f channel widths (512 up to 32 px)")
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per batch size")
    parser.add_argument("--space", choices=["w", "w+"], default="w+")
    parser.add_argument("--impl", default="ref", help="op implementation of the generator: ref or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    lpips = LPIPSLoss(allow_random_backbone=True, reduction="none")
    model = LSAP_O(source_for(args.resolution, args.config_f), lpips=lpips, space=args.space, lambda_mse=0.1,
                   anchor_samples=2000, w_std_samples=2000, anchor_cache_dir=tempfile.mkdtemp(prefix="lsap-anchors-"),
                   progress=False).to(device)
    model.generator.impl = args.impl
    _ = (model.nscd_loss, model.w_std)  # prepared outside the timed region

    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        seconds = time_batch(model, batch, args.steps, device)
        per_image = seconds * FULL_SCHEDULE_STEPS / batch
        row = {"batch": batch, "seconds_per_step": seconds, "seconds_per_image": per_image,
               "images_per_minute": 60.0 / per_image}
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.reset_peak_memory_stats(device)
        rows.append(row)
        print(row, flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print()
    print(f"LSAP_O {args.space}, {args.resolution} px ({'config-f' if args.config_f else 'small'} random generator), "
          f"LPIPS at {min(256, args.resolution)} px, {FULL_SCHEDULE_STEPS} steps per image, on {device.type} "
          f"({name}, {torch.get_num_threads()} threads), impl={args.impl}, torch {torch.__version__}")
    print()
    print("| batch | s / step | s / image | images / min |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['seconds_per_step']:.3f} | {r['seconds_per_image']:.1f} | "
              f"{r['images_per_minute']:.3f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"settings": {**vars(args), "device_name": name,
                                                           "threads": torch.get_num_threads(),
                                                           "torch": torch.__version__}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
