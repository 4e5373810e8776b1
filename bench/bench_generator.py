"""Generator speed: a baseline checkout against this one, side by side in one run.

Benchmark (the ops issue's): config-f channels at 128 px, W+ input, ``noise_mode="const"``,
batch 4, forward + backward of the synthesis network (gradients for ws and all
weights), fp32 unless stated, on CPU with ``--threads`` threads. Variants of this
checkout: fused / non-fused modulated conv, channels_last, bf16 autocast and
``torch.compile``. A second table gives training throughput of a small generator (32 px,
channel_max 128, batch 32, forward + backward, images/s).

Every measurement runs in its own subprocess (``PYTHONPATH`` = the baseline checkout or
this one); baseline and current runs alternate ``--repeats`` times and the best time of
each is kept, so background load hits both alike.

    git worktree add ../baseline-8d1bb91 8d1bb91
    python bench/bench_generator.py --baseline ../baseline-8d1bb91 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> worker settings; "baseline" only uses arguments the baseline also has.
VARIANTS = {
    "baseline": dict(),
    "auto": dict(fused=None),
    "fused": dict(fused=True),
    "non-fused": dict(fused=False),
    "non-fused, channels_last": dict(fused=False, channels_last=True),
    "non-fused, bf16 autocast": dict(fused=False, bf16=True),
    "non-fused, torch.compile": dict(fused=False, compile=True),
    "convolutions alone": dict(fused=False, floor=True),
}


def worker(cfg: dict) -> dict:
    """One measurement in this process; returns seconds per iteration (best of iters)."""
    import torch

    from lsap.model import Generator

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    kw = {} if cfg.get("fused", "absent") == "absent" else {"fused_modconv": cfg["fused"]}
    if cfg["task"] == "issue":
        g = Generator(resolution=128, **kw)
        batch = 4
    else:
        g = Generator(resolution=32, z_dim=128, w_dim=128, mapping_layers=2, channel_max=128, **kw)
        batch = 32
    if cfg.get("channels_last"):
        g = g.to(memory_format=torch.channels_last)
    synthesis = g.synthesis
    if cfg.get("compile"):
        synthesis = torch.compile(g.synthesis)
    ws = torch.randn(batch, g.num_ws, g.w_dim, requires_grad=True)
    if cfg.get("floor"):
        return _convolution_floor(synthesis, ws, cfg["iters"])

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cfg.get("bf16"))):
            img = synthesis(ws, noise_mode="const")
        img.float().square().mean().backward()

    start = time.perf_counter()
    step()  # warm-up (includes compilation)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(cfg["iters"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"s": min(times), "all_s": times, "warmup_s": warmup_s, "batch": batch}


def _convolution_floor(synthesis, ws, iters: int) -> dict:
    """The convolutions of one non-fused forward pass replayed alone (same shapes, fresh
    tensors, forward + backward for input and weight): a lower bound for any implementation
    built on PyTorch's convolutions. Also the matmul rate of this CPU, for scale."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                calls.append((args[0].shape, args[0].requires_grad, args[1].shape, args[1].requires_grad, *args[3:]))
            return func(*args, **(kwargs or {}))

    with Record():  # with autograd on, so the recorded requires_grad flags are the real ones
        synthesis(ws, noise_mode="const")
    tensors = [(torch.randn(x, requires_grad=xg), torch.randn(w, requires_grad=wg), rest)
               for x, xg, w, wg, *rest in calls]
    per_call = []
    for (x, w, (stride, padding, dilation, transposed, output_padding, groups)) in tensors:
        out = torch.ops.aten.convolution(x, w, None, stride, padding, dilation, transposed, output_padding, groups)
        spatial = x.shape[2] * x.shape[3] if transposed else out.shape[2] * out.shape[3]
        passes = 1 + x.requires_grad + w.requires_grad  # forward, input gradient, weight gradient
        per_call.append(passes * 2 * x.shape[0] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3] * spatial)

    def step() -> None:
        for x, w, (stride, padding, dilation, transposed, output_padding, groups) in tensors:
            out = torch.ops.aten.convolution(x, w, None, stride, padding, dilation, transposed, output_padding,
                                             groups)
            if out.requires_grad:
                out.backward(torch.ones_like(out))

    step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    a = torch.randn(2048, 2048)  # the matmul rate, for scale
    a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    gemm_gflops = 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9
    return {"s": min(times), "all_s": times, "batch": ws.shape[0], "convolutions": len(calls),
            "conv_gflop": sum(per_call) / 1e9, "gemm_gflops": gemm_gflops,
            "calls": [[list(x.shape), list(w.shape), rest[3], f] for (x, w, rest), f in zip(tensors, per_call)]}


def run_worker(cfg: dict, pythonpath: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(pythonpath), OMP_NUM_THREADS=str(cfg["threads"]))
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True,
                         env=env, cwd=pythonpath)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, default=None, help="checkout of the baseline commit (e.g. 8d1bb91)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=2, help="timed iterations per subprocess (best is kept)")
    p.add_argument("--repeats", type=int, default=2, help="alternating subprocess rounds (best is kept)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.baseline is None or not (args.baseline / "lsap" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline} is not an lsap checkout")

    results: dict[str, dict[str, list]] = {"issue": {}, "train": {}}
    jobs = [("issue", v) for v in args.variants] + [("train", v) for v in ("baseline", "auto")]
    for _ in range(args.repeats):
        for task, variant in jobs:
            cfg = dict(VARIANTS[variant], task=task, threads=args.threads, iters=args.iters)
            if variant == "baseline":
                cfg["fused"] = "absent"
            path = args.baseline.resolve() if variant == "baseline" else ROOT
            res = run_worker(cfg, path)
            results[task].setdefault(variant, []).append(res)
            print(f"# {task:5s} {variant:28s} {res}", file=sys.stderr, flush=True)

    def best(runs: list) -> float | None:
        ok = [r["s"] for r in runs if "s" in r]
        return min(ok) if ok else None

    base = best(results["issue"].get("baseline", []))
    print(f"\nSynthesis fwd+bwd, config-f 128 px, W+, const noise, batch 4, CPU, {args.threads} threads "
          f"(best of {args.repeats} x {args.iters}):\n")
    print("| variant | s / iter | vs baseline | all timings (s) |")
    print("|---|---:|---:|---|")
    for variant, runs in results["issue"].items():
        b = best(runs)
        every = ", ".join(f"{t:.2f}" for r in runs for t in r.get("all_s", [])) or runs[-1].get("error", "")
        ratio = f"{b / base:.2f}x" if b and base else "-"
        print(f"| {variant} | {b:.2f} | {ratio} | {every} |" if b else f"| {variant} | failed | - | {every} |")
    floor = [r for r in results["issue"].get("convolutions alone", []) if "s" in r]
    if floor:
        f = min(floor, key=lambda r: r["s"])
        print(f"\n'convolutions alone': the {f['convolutions']} convolutions of one forward pass, replayed with "
              f"fresh tensors (forward + backward): {f['conv_gflop']:.0f} GFLOP, i.e. {f['conv_gflop'] / f['s']:.0f} "
              f"GFLOP/s; this CPU's 2048x2048 float32 matmul runs at {f['gemm_gflops']:.0f} GFLOP/s.")
    print("\nTraining throughput, 32 px, channel_max 128, batch 32, fwd+bwd:\n")
    print("| variant | images/s |")
    print("|---|---:|")
    for variant, runs in results["train"].items():
        b = best(runs)
        print(f"| {variant} | {32 / b:.1f} |" if b else f"| {variant} | failed |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
