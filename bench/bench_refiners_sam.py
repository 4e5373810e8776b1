"""Refinement speed: SAM against PTI, side by side in one run, at 32 px and 256 px.

Per resolution, one target image and a ``w_avg`` pivot; each method runs ``--steps`` of its
optimisation (SAM: W+ plus masked offsets at the default blocks, SLIC segments, the layer
selection; PTI: Adam on all synthesis weights of a per-image generator copy) and the time
per step is the best of ``--repeats`` runs, in CPU seconds of the process (the machine is
shared: CPU time with ``--threads 1`` measures the work, not the queue). Seconds per image are the time of the set-up
(segments, selection / generator copy) plus ``steps x`` the time per step at each method's
default number of steps (SAM 1001, PTI 350, no early stop). Both use MSE only at the
generator's resolution (no perceptual network is measured), batch 1, CPU, ``--threads``.

* 32 px: the shipped fashion32 generator (blocks 4 and 8; the shipped invertibility net).
* 256 px: a seeded random config-f-width generator (channel_base 32768, channel_max 512;
  blocks 4..32; an untrained invertibility net of the shipped net's size: same cost).

    python bench/bench_refiners_sam.py [--threads 2] [--steps 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lsap.model import GeneratorSource
from lsap.modules import PTI, SAM
from lsap.refine.invertibility import InvertibilityNet, save_invertibility_net
from lsap.refine.sam import default_blocks

SAM_STEPS, PTI_STEPS = 1001, 350


def sources() -> dict[int, GeneratorSource]:
    return {32: GeneratorSource(checkpoint="fashion32"), 256: GeneratorSource(seed=0, resolution=256)}


def best_time(run, repeats: int) -> float:
    """Best CPU time of this process over ``repeats`` runs (with one thread: the compute
    itself, whatever else shares the machine; with more, the sum over threads)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def measure(resolution: int, source: GeneratorSource, steps: int, repeats: int, folder: Path) -> dict:
    blocks = default_blocks(resolution)
    invertibility: str
    if resolution == 32:
        invertibility = "fashion32"
    else:
        invertibility = str(folder / f"inv_{resolution}.safetensors")
        save_invertibility_net(InvertibilityNet(len(blocks) + 1, 32, 32, blocks), invertibility)
    common = {"pivots_dir": str(folder / "none"), "lpips": None, "loss_resolution": None, "progress": False,
              "anchor_samples": 1000, "anchor_cache_dir": str(folder / "anchors")}
    sam = SAM(source, invertibility=invertibility, blocks=blocks, num_steps=steps, mvg_samples=5000, **common)
    pti = PTI(source, num_steps=steps, lambda_lpips=0.0, early_stop_lpips=None, **common)
    G = sam.generator
    with torch.no_grad():
        image = G(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    pivot = G.w_avg[None, None].expand(1, G.num_ws, -1).clone()
    _ = sam.mvg  # the MVG statistics are made once per run, not per image

    masks_holder = {}

    def sam_setup():
        masks_holder["masks"] = sam.select(image, ["x"])[1]

    setup_sam = best_time(sam_setup, repeats)
    run_sam = best_time(lambda: sam.refine(image, pivot, masks_holder["masks"]), repeats)
    pti_setup = best_time(lambda: pti._working_copy(), repeats)
    run_pti = best_time(lambda: pti.tune(image, pivot, "x"), repeats)
    per_step_sam, per_step_pti = run_sam / steps, (run_pti - pti_setup) / steps
    return {
        "resolution": resolution, "blocks": blocks, "measured_steps": steps,
        "sam_seconds_per_step": per_step_sam, "pti_seconds_per_step": per_step_pti,
        "sam_setup_seconds": setup_sam, "pti_setup_seconds": pti_setup,
        "sam_seconds_per_image": setup_sam + SAM_STEPS * per_step_sam,
        "pti_seconds_per_image": pti_setup + PTI_STEPS * per_step_pti,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in args.resolutions:
            rows.append(measure(resolution, sources()[resolution], args.steps, args.repeats, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| resolution | SAM CPU s/step | PTI CPU s/step | SAM CPU s/image ({SAM_STEPS} steps) | "
          f"PTI CPU s/image ({PTI_STEPS} steps) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['resolution']} px | {r['sam_seconds_per_step']:.4f} | {r['pti_seconds_per_step']:.4f} | "
              f"{r['sam_seconds_per_image']:.1f} | {r['pti_seconds_per_image']:.1f} |")
    print(f"\n(threads {args.threads}, {args.steps} measured steps, best of {args.repeats}; batch 1, MSE only)")


if __name__ == "__main__":
    main()
