"""Measure how the NSCD weight of LSAP_O trades reconstruction for alignment.

Synthetic images of a small seeded random generator have known codes w*, so besides the
reconstruction error we can measure how far the recovered W+ code lands from the truth and
how aligned it is (NSCD). For every lambda_nscd the same images are inverted with the same
seed and the default projector schedule (only the number of steps is reduced).

Image loss: LPIPS(AlexNet) + MSE when ``--lpips-weights`` names torchvision's AlexNet file,
otherwise MSE only (the table says which).

    python bench/lambda_nscd.py --steps 300 --images 12 --out bench/lambda_nscd.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from lsap.data import SyntheticDataset
from lsap.losses import LPIPSLoss
from lsap.model import GeneratorSource
from lsap.modules import LSAP_O


def bench_generator(seed: int, checkpoint: str | None) -> GeneratorSource:
    if checkpoint:
        return GeneratorSource(checkpoint=checkpoint)
    # w_dim below every layer's channel count: the style affines are injective, so a W+
    # code is identifiable from the image up to the demodulation scale (Prop. 1).
    return GeneratorSource(seed=seed, resolution=32, z_dim=64, w_dim=64, mapping_layers=4, channel_base=2048,
                           channel_max=64, w_avg_samples=10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lambdas", default="0,0.01,0.02,0.05,0.1,0.5", help="comma-separated lambda_nscd values")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps per image")
    parser.add_argument("--images", type=int, default=12, help="number of synthetic images")
    parser.add_argument("--space", choices=["w", "w+"], default="w+")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random generator")
    parser.add_argument("--checkpoint", default=None, help="use this generator checkpoint instead of a random one")
    parser.add_argument("--lpips-weights", default=None, help="torchvision alexnet-owt-7be5be79.pth (optional)")
    parser.add_argument("--anchor-samples", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lambdas = [float(v) for v in args.lambdas.split(",")]
    source = bench_generator(args.seed, args.checkpoint)
    use_lpips = args.lpips_weights is not None
    cache_dir = tempfile.mkdtemp(prefix="lsap-anchors-")
    rows = []
    images = true_ws = None
    for lam in lambdas:
        lpips = LPIPSLoss(backbone_weights=args.lpips_weights, reduction="none") if use_lpips else None
        model = LSAP_O(source, lpips=lpips, space=args.space, num_steps=args.steps,
                       lambda_lpips=1.0 if use_lpips else 0.0, lambda_mse=1.0, lambda_nscd=lam,
                       anchor_samples=args.anchor_samples, anchor_cache_dir=cache_dir, progress=False)
        if images is None:
            data = SyntheticDataset(model.generator, args.images, seed=1234)
            images = torch.stack([data[i]["image"] for i in range(len(data))])
            true_ws = torch.stack([data[i]["ws"] for i in range(len(data))])
            nscd = model.nscd_loss
            with torch.no_grad():
                truth_nscd = float(nscd.alignment.distances(true_ws).mean())
        start = time.perf_counter()
        result = model.invert(images, [f"{i:06d}" for i in range(images.shape[0])])
        seconds = time.perf_counter() - start
        latent_error = (result.ws - true_ws).norm(dim=-1).mean(dim=1)  # mean over W+ entries of ||w_hat - w*||
        with torch.no_grad():
            # Direction error per style layer, blind to the scale demodulation ignores (Prop. 1).
            found, truth = nscd.alignment.styles(result.ws), nscd.alignment.styles(true_ws)
            style_error = torch.stack([1 - torch.cosine_similarity(a, b, dim=1) for a, b in zip(found, truth)], 1)
        row = {
            "lambda_nscd": lam,
            "mse": float(result.losses["mse"].mean()),
            "lpips": float(result.losses["lpips"].mean()) if use_lpips else None,
            "latent_error": float(latent_error.mean()),
            "style_error": float(style_error.mean()),
            "nscd": float(result.nscd.mean()),
            "seconds": seconds,
        }
        rows.append(row)
        print(f"lambda_nscd={lam}: {row}", flush=True)

    start_ws = source.build().w_avg.expand_as(true_ws)
    start_error = float((start_ws - true_ws).norm(dim=-1).mean())
    with torch.no_grad():
        start_style = float(torch.stack([1 - torch.cosine_similarity(a, b, dim=1) for a, b in
                                         zip(nscd.alignment.styles(start_ws), nscd.alignment.styles(true_ws))]).mean())
    loss_name = "LPIPS + MSE" if use_lpips else "MSE only (no LPIPS weights given)"
    print()
    what = f"generator {args.checkpoint}" if args.checkpoint else "a random 32 px generator (w_dim 64)"
    print(f"LSAP_O {args.space}, {args.images} synthetic images of {what}, "
          f"{args.steps} steps, image loss: {loss_name}")
    print(f"latent error = mean over W+ entries of ||w_hat - w*|| (at the start, w_avg: {start_error:.3f}); "
          f"style error = mean over LSAP layers of 1 - cos(s_l(w_hat), s_l(w*)) (at the start: {start_style:.4f}); "
          f"NSCD of the true codes: {truth_nscd:.4f}")
    print()
    header = "| lambda_nscd | MSE | " + ("LPIPS | " if use_lpips else "") + "latent error | style error | NSCD |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        lp = f"{r['lpips']:.4f} | " if use_lpips else ""
        print(f"| {r['lambda_nscd']:g} | {r['mse']:.4f} | {lp}{r['latent_error']:.3f} | {r['style_error']:.4f} | "
              f"{r['nscd']:.4f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "settings": {**vars(args), "image_loss": loss_name, "torch": torch.__version__,
                         "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
            "start_latent_error": start_error, "start_style_error": start_style, "truth_nscd": truth_nscd,
            "rows": rows,
        }, indent=2))


if __name__ == "__main__":
    main()
