"""Images/s of full StyleGAN2 training steps (G step + D step, R1 at its lazy interval).

    PYTHONPATH=. python bench/bench_stylegan2_step.py --threads 2 --batch 32 \
        --config "z=256,map=4,cmax=128,dmax=64" --config "z=256,map=4,cmax=64,dmax=64"

Each --config: z (= w_dim), map (mapping layers), cmax / dmax (G / D channel_max),
cbase (G and D channel_base, default 16384). Runs ``steps`` steps after ``warmup`` on
random real images (the cost does not depend on the data) and prints one JSON line per config.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lsap.model import Discriminator, Generator
from lsap.modules.stylegan2 import AdamConfig, RegularizationConfig, StyleGAN2


def parse(spec: str) -> dict[str, int]:
    out = {"z": 256, "map": 4, "cmax": 128, "dmax": 64, "cbase": 16384}
    for item in spec.split(","):
        key, value = item.split("=")
        out[key.strip()] = int(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", action="append", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--r1-interval", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for spec in args.config:
        c = parse(spec)
        g = Generator(resolution=args.resolution, z_dim=c["z"], w_dim=c["z"], mapping_layers=c["map"],
                      channel_base=c["cbase"], channel_max=c["cmax"])
        d = Discriminator(resolution=args.resolution, channel_base=c["cbase"], channel_max=c["dmax"])
        module = StyleGAN2(g, d, AdamConfig(), RegularizationConfig(r1_gamma=0.05, r1_interval=args.r1_interval))
        elapsed = timed_fit(module, args.batch, args.resolution, args.warmup, args.steps)
        g_bytes = sum(t.numel() for t in g.state_dict().values()) * 4
        print(json.dumps({"config": c, "batch": args.batch, "threads": args.threads, "steps": args.steps,
                          "images_per_s": round(args.steps * args.batch / elapsed, 1),
                          "s_per_step": round(elapsed / args.steps, 4), "G_MB_fp32": round(g_bytes / 1e6, 2),
                          "G_params": sum(p.numel() for p in g.parameters()),
                          "D_params": sum(p.numel() for p in d.parameters())}), flush=True)


class _Timer(Callback):
    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


def timed_fit(module: StyleGAN2, batch: int, resolution: int, warmup: int, steps: int) -> float:
    """Seconds of ``steps`` training steps after ``warmup`` ones, through a real Trainer."""
    real = torch.rand((warmup + steps) * batch, 3, resolution, resolution) * 2 - 1
    loader = DataLoader(TensorDataset(real), batch_size=batch, drop_last=True)
    timer = _Timer(warmup)
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=warmup + steps, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[timer])
    trainer.fit(module, loader)
    return timer.end - timer.start


if __name__ == "__main__":
    main()
