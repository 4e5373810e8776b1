"""Throughput of the StyleGAN2 generator's synthesis network, per implementation.

Measures images/s of ``synthesis(ws)`` forward, and forward + backward w.r.t. ``ws``
(generator weights frozen, as in latent optimisation), for a randomly initialised
config-f generator, fp32, ``noise_mode="const"``:

* ``ref``: the pure-PyTorch ops;
* ``cuda``: the custom CUDA kernels (CUDA devices only);
* ``compiled``: ``torch.compile`` of the reference synthesis.

Warm-up iterations (which include any kernel build or compilation) are not timed; on
GPU every timed region ends with ``torch.cuda.synchronize()``. Prints a markdown table
and writes JSON to ``--out``. See bench/README.md.

    python bench/bench_generator.py --out bench_generator.json
    python bench/bench_generator.py --quick --out /tmp/quick.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from typing import Any, Callable

import torch

from lsap.model import Generator

IMPLS = ("ref", "cuda", "compiled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="path of the JSON results")
    p.add_argument("--devices", nargs="+", default=None,
                   help="devices to run on (default: cpu, plus cuda when available)")
    p.add_argument("--resolutions", nargs="+", type=int, default=None,
                   help="default: 256 and 1024 on GPU, 256 on CPU")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--batch", type=int, default=None, help="default 8 (2 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations (default 3; 1 with --quick)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 10; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="small batch and few iterations: a sanity run")
    p.add_argument("--cuda-modconv", choices=("grouped", "batched"), default="grouped",
                   help="convolution layout of the cuda modulated conv (lsap.ops._cuda.MODCONV_STRATEGY)")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode for the 'compiled' impl")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.batch = args.batch or (2 if args.quick else 8)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.iters = args.iters or (2 if args.quick else 10)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per iteration, warm-up excluded."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _short(exc: BaseException, limit: int = 160) -> str:
    msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _cuda_ops_status() -> str | None:
    """Why the cuda impl cannot run (None when its kernels build)."""
    from lsap.ops import _build

    reasons = []
    for name in _build.PLUGIN_SOURCES:
        if _build.get_plugin(name) is None:
            reasons.append(f"{name} build failed ({_build.build_failure(name)})")
    return "; ".join(reasons) or None


def bench_one(g: Generator, device: torch.device, impl: str, args: argparse.Namespace,
              reference: torch.Tensor) -> dict[str, Any]:
    row: dict[str, Any] = {"device": str(device), "resolution": g.resolution, "impl": impl, "batch": args.batch}
    if impl == "cuda":
        if device.type != "cuda":
            row["status"] = "n/a: the cuda impl needs a CUDA device"
            return row
        reason = _cuda_ops_status()
        if reason:
            row["status"] = f"n/a: {reason}"
            return row
        from lsap.ops import _cuda

        _cuda.MODCONV_STRATEGY = args.cuda_modconv
        row["cuda_modconv"] = args.cuda_modconv

    g.impl = "cuda" if impl == "cuda" else "ref"
    synth = g.synthesis
    if impl == "compiled":
        synth = torch.compile(g.synthesis, mode=args.compile_mode)

    gen = torch.Generator().manual_seed(args.seed)
    ws = torch.randn(args.batch, g.num_ws, g.w_dim, generator=gen).to(device)
    ws_grad = ws.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return synth(ws, noise_mode="const")

    def forward_backward():
        img = synth(ws_grad, noise_mode="const")
        (grad,) = torch.autograd.grad(img.square().mean(), ws_grad)
        return grad

    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        out = forward()
        _sync(device)
        row["first_call_s"] = round(time.perf_counter() - t0, 3)  # includes build / compilation
        row["max_abs_diff_vs_ref"] = float((out.float() - reference).abs().max())
        t_fwd = _time(forward, device, args.warmup, args.iters)
        t_fb = _time(forward_backward, device, args.warmup, args.iters)
    except Exception as exc:  # report and keep going (e.g. torch.compile unsupported here)
        row["status"] = f"n/a: {_short(exc)}"
        row["traceback"] = traceback.format_exc(limit=3)
        return row
    finally:
        g.impl = "ref"
    row.update(
        status="ok",
        forward_s_per_iter=t_fwd,
        forward_backward_s_per_iter=t_fb,
        forward_img_per_s=args.batch / t_fwd,
        forward_backward_img_per_s=args.batch / t_fb,
    )
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def environment(args: argparse.Namespace) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }
    if torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| device | res | impl | batch | fwd img/s | fwd+bwd img/s | first call (s) | max abs diff vs ref |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("status") == "ok":
            fwd, fb = f"{r['forward_img_per_s']:.2f}", f"{r['forward_backward_img_per_s']:.2f}"
            diff = f"{r['max_abs_diff_vs_ref']:.2e}"
            first = f"{r['first_call_s']:.1f}"
        else:
            fwd, fb, first, diff = r.get("status", "n/a"), "", "", ""
        lines.append(f"| {r['device']} | {r['resolution']} | {r['impl']} | {r['batch']} | {fwd} | {fb} | {first} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for dev_name in args.devices:
        device = torch.device(dev_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"skipping {dev_name}: no CUDA device", file=sys.stderr)
            continue
        resolutions = args.resolutions or ([256, 1024] if device.type == "cuda" else [256])
        for res in resolutions:
            torch.manual_seed(args.seed)
            g = Generator(resolution=res, channel_base=32768, channel_max=512).to(device).eval().requires_grad_(False)
            ws = torch.randn(args.batch, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(args.seed))
            with torch.no_grad():
                reference = g.synthesis(ws.to(device), noise_mode="const").float()
            for impl in args.impls:
                print(f"[bench] {dev_name} {res}px {impl} batch={args.batch} ...", file=sys.stderr, flush=True)
                row = bench_one(g, device, impl, args, reference)
                rows.append(row)
                print(f"[bench]   -> {row.get('status')} "
                      f"{'' if row.get('status') != 'ok' else '%.2f / %.2f img/s' % (row['forward_img_per_s'], row['forward_backward_img_per_s'])}",
                      file=sys.stderr, flush=True)
            del g, reference
            if device.type == "cuda":
                torch.cuda.empty_cache()
    result = {
        "benchmark": "generator",
        "args": {k: v for k, v in vars(args).items()},
        "environment": environment(args),
        "results": rows,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
    print(markdown(rows))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
