"""Pick HFGI's fusion resolution for the 32 px fashion32 generator by measurement.

HFGI's rule (64² of 1024 px, ``resolution // 16``) gives 2 px at 32 px, so each candidate
(8, 16, 32 px) trains the same budget over the shipped LSAP_E encoder (same seed, batches and
settings as configs/hfgi_fashion32.yaml) on the real Fashion-MNIST train split *without* the
validation images, then refines the first ``--eval`` images of the validation folder (real
training images held out: never the test images). The rule, fixed before any result: the
candidate with the lowest validation MSE of the refined reconstructions wins.

    python bench/fashion32_encoder_runs.py valset        # the validation folder, once
    python bench/fashion32_hfgi_fusion.py --steps 200 --eval 128 --output fusion.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lsap.data.fashion_mnist import FashionMNISTDataset
from lsap.data.fashion_samples import FashionSamplesDataset
from lsap.metrics.bootstrap import bootstrap_mean
from lsap.metrics.fidelity import quantize_uint8
from lsap.modules.hfgi import HFGI
from lsap.nets import FeatureDistance
from runs_folder import validation_folder

CANDIDATES = (8, 16, 32)


def held_out_indices(val_dir: Path) -> set[int]:
    """Training-split indices of the validation folder (files ``<train index>_<class>.png``)."""
    return {int(path.stem.split("_")[0]) for path in val_dir.glob("*.png")}


def measure(fusion: int, steps: int, val: FashionSamplesDataset, evaluate: int, held_out: set[int],
            seed: int = 0) -> dict:
    torch.manual_seed(seed)
    module = HFGI(generator={"checkpoint": "fashion32"}, embedding="fashion32_lsap", fusion_resolution=fusion,
                  loss_resolution=32, lr=5e-4, lpips=FeatureDistance())
    train = FashionMNISTDataset(split="train")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    order = order[torch.tensor([int(i) not in held_out for i in order])]
    optimizer = module.configure_optimizers()
    module.train()
    start = time.perf_counter()
    for step in range(steps):
        losses, _ = module.training_losses(train.image(order[step * 8:(step + 1) * 8]))
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / max(steps, 1)
    module.eval()
    images = torch.stack([val[i]["image"] for i in range(min(evaluate, len(val)))])
    with torch.no_grad():
        ws = module.embed(images)
        result = module.refiner.refine(module.generator, ws, images)
    refined = ((quantize_uint8(result["image"].float()) - images) ** 2).flatten(1).mean(1)
    pivot = ((quantize_uint8(result["reconstruction"].float()) - images) ** 2).flatten(1).mean(1)
    return {"fusion": fusion, "steps": steps, "images": len(images),
            "mse_refined": bootstrap_mean(refined.tolist(), resamples=1000).as_dict(),
            "mse_pivot": bootstrap_mean(pivot.tolist(), resamples=1000).as_dict(), "s_per_step": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval", type=int, default=128)
    parser.add_argument("--fusions", type=int, nargs="+", default=list(CANDIDATES))
    parser.add_argument("--val-dir", type=Path, default=validation_folder())
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.val_dir.is_dir():
        raise SystemExit(f"no validation folder {args.val_dir}: run `python bench/fashion32_encoder_runs.py valset`")
    val = FashionSamplesDataset(args.val_dir)
    held_out = held_out_indices(args.val_dir)
    results = []
    for fusion in args.fusions:
        results.append(measure(fusion, args.steps, val, args.eval, held_out))
        print(json.dumps(results[-1]), flush=True)
    best = min(results, key=lambda r: r["mse_refined"]["value"])
    print(f"chosen fusion resolution (lowest validation MSE): {best['fusion']} px", flush=True)
    if args.output:
        args.output.write_text(json.dumps({"results": results, "chosen": best["fusion"]}, indent=2))


if __name__ == "__main__":
    main()
