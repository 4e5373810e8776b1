"""How much an LSAP_O result depends on its batch-mates, on this machine.

Inverts the first ``--images`` shipped Fashion-MNIST images with the fashion32 generator
(the settings of configs/optimize_fashion32.yaml) once as one batch and once image by
image, and prints the largest difference of the codes, the reconstructions and the MSE,
with the wall time of each. ``--no-mkldnn`` repeats both with oneDNN convolutions off (the
native CPU kernels), to see whether the kernel choice is the cause.

    OMP_NUM_THREADS=2 python bench/batch_independence.py --images 4 --steps 300
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lsap.data.fashion_samples import FashionSamplesDataset
from lsap.modules import LSAP_O


def invert(model: LSAP_O, images: torch.Tensor, names: list[str], batch_size: int):
    start = time.perf_counter()
    parts = [model.invert(images[i:i + batch_size], names[i:i + batch_size])
             for i in range(0, len(names), batch_size)]
    seconds = time.perf_counter() - start
    return (torch.cat([p.ws for p in parts]), torch.cat([p.image for p in parts]),
            torch.cat([p.losses["mse"] for p in parts]), seconds)


def compare(model: LSAP_O, images: torch.Tensor, names: list[str], batch_sizes: list[int]) -> dict:
    runs = {b: invert(model, images, names, b) for b in batch_sizes}
    reference = runs[batch_sizes[0]]
    row: dict = {"seconds": {str(b): round(r[3], 1) for b, r in runs.items()}}
    for b in batch_sizes[1:]:
        ws, image, mse, _ = runs[b]
        row[f"batch {batch_sizes[0]} vs {b}"] = {
            "max_abs_ws": float((ws - reference[0]).abs().max()),
            "max_abs_image": float((image - reference[1]).abs().max()),
            "max_rel_mse": float(((mse - reference[2]).abs() / reference[2]).max()),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--no-mkldnn", action="store_true", help="also measure with oneDNN convolutions off")
    args = parser.parse_args()
    data = FashionSamplesDataset(limit=args.images)
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    names = [data[i]["name"] for i in range(len(data))]
    model = LSAP_O({"checkpoint": "fashion32"}, lpips=None, space="w+", num_steps=args.steps, lambda_lpips=0.0,
                   lambda_mse=1.0, anchor_samples=20_000, loss_resolution=32, seed=0, progress=False)
    batch_sizes = [len(names), 1]
    report = {"images": len(names), "steps": args.steps, "threads": torch.get_num_threads(),
              "default": compare(model, images, names, batch_sizes)}
    if args.no_mkldnn:
        with torch.backends.mkldnn.flags(enabled=False):
            report["mkldnn_off"] = compare(model, images, names, batch_sizes)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
