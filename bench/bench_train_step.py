"""LSAP_E training-step time, split into its parts.

Measures forward+backward of: the e4e encoder (IR-SE50, 256 input), the generator
(synthesis + pooling to 256), each image loss, the delta regulariser and the NSCD loss,
for the official shapes (batch 8, 1024 generator) by default. Random weights throughout
(timing does not depend on the values); LPIPS uses a random AlexNet backbone and the ID
loss a random IR-SE50, which cost the same as the trained ones.

    python bench/bench_train_step.py --device cpu --resolution 1024 --batch 8 --iters 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lsap.encoders import Encoder4Editing
from lsap.losses import DeltaRegularizer, IDLoss, L2Loss, LPIPSLoss, NSCDLoss
from lsap.metrics import compute_anchors
from lsap.model import Generator
from lsap.nets import ArcFaceIRSE


def timed(fn, iters: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--anchor-samples", type=int, default=2000, help="anchors do not affect the timing")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    g = Generator(resolution=args.resolution).eval().requires_grad_(False).to(device)
    encoder = Encoder4Editing(num_ws=g.num_ws).to(device)
    images = torch.rand(args.batch, 3, 256, 256, device=device) * 2 - 1
    anchors = compute_anchors(g, num_samples=args.anchor_samples, seed=0, use_cache=False)
    nscd = NSCDLoss(generator=g, anchors=anchors).to(device)
    l2 = L2Loss().to(device)
    lpips = LPIPSLoss(allow_random_backbone=True).to(device)
    identity = IDLoss(network=ArcFaceIRSE().eval().requires_grad_(False)).to(device)
    delta = DeltaRegularizer().to(device)

    ws_leaf = (torch.randn(args.batch, g.num_ws, g.w_dim, device=device) + g.w_avg).requires_grad_(True)
    pred_leaf = torch.rand(args.batch, 3, 256, 256, device=device).mul(2).sub(1).requires_grad_(True)

    def encoder_step():
        encoder(images).sum().backward()

    def generator_step():
        F.adaptive_avg_pool2d(g.synthesis(ws_leaf), 256).sum().backward()

    def loss_step(loss):
        return lambda: loss(pred_leaf, images).backward()

    rows = {
        "encoder (IR-SE50 e4e)": timed(encoder_step, args.iters, device),
        f"generator ({args.resolution}px) + pool": timed(generator_step, args.iters, device),
        "L2": timed(loss_step(l2), args.iters, device),
        "LPIPS (AlexNet)": timed(loss_step(lpips), args.iters, device),
        "ID (ArcFace IR-SE50)": timed(loss_step(identity), args.iters, device),
        "delta regulariser": timed(lambda: delta(ws_leaf).backward(), args.iters, device),
        "NSCD loss": timed(lambda: nscd(ws_leaf).backward(), args.iters, device),
    }
    total = sum(rows.values())
    print(f"LSAP_E training step, fwd+bwd, batch {args.batch}, {args.device}, generator {args.resolution}px\n")
    print("| part | ms | share |\n|---|---:|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {100 * seconds / total:.2f} % |")
    print(f"| total | {total * 1e3:.1f} | 100 % |")
    if args.out:
        args.out.write_text(json.dumps({"device": args.device, "batch": args.batch, "resolution": args.resolution,
                                        "seconds": rows}, indent=2))


if __name__ == "__main__":
    main()
