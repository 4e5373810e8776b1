"""Pick HFGI's fusion resolution for the 32 px fashion32 generator by measurement.

HFGI's rule (64² of 1024 px, ``resolution // 16``) gives nothing usable at 32 px (2 px), so
each candidate (8, 16, 32) trains the same short budget over the shipped LSAP_E encoder on
the real Fashion-MNIST train split (same seed, batches and settings as
configs/hfgi_fashion32.yaml), then refines the first ``--eval`` shipped test images; the
printed MSE of the refined reconstructions (against the pivot's) decides.

    nice -n 10 python bench/fashion32_hfgi_fusion.py --steps 150 --eval 64
"""

from __future__ import annotations

import argparse
import time

import torch

from lsap.data.fashion_mnist import FashionMNISTDataset
from lsap.data.fashion_samples import FashionSamplesDataset
from lsap.modules.hfgi import HFGI
from lsap.nets import FeatureDistance


def measure(fusion: int, steps: int, evaluate: int, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    module = HFGI(generator={"checkpoint": "fashion32"}, embedding="fashion32_lsap", fusion_resolution=fusion,
                  loss_resolution=32, lr=5e-4, lpips=FeatureDistance())
    train = FashionMNISTDataset(split="train")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
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
    test = FashionSamplesDataset()
    images = torch.stack([test[i]["image"] for i in range(evaluate)])
    with torch.no_grad():
        ws = module.embed(images)
        result = module.refiner.refine(module.generator, ws, images)
    mse = float(((result["image"].clamp(-1, 1) - images) ** 2).mean())
    pivot = float(((result["reconstruction"].clamp(-1, 1) - images) ** 2).mean())
    return {"fusion": fusion, "mse_refined": mse, "mse_pivot": pivot, "s_per_step": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval", type=int, default=64)
    parser.add_argument("--fusions", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for fusion in args.fusions:
        print(measure(fusion, args.steps, args.eval), flush=True)


if __name__ == "__main__":
    main()
