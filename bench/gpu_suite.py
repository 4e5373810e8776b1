"""One-shot GPU suite: ``python bench/gpu_suite.py OUTDIR``.

On a CUDA machine (sized for about 8 minutes on one H200) it runs, in order:

1. ``pytest -m cuda`` (the accelerated ops against the reference);
2. the generator benchmark (synthesis forward + backward, W+, const noise) at 256 and
   1024 px for every impl (ref, cuda) x fused (True, False) x precision (fp32,
   bf16 autocast) x compile (off, on) variant;
3. an LSAP_E training step at 1024 px (e4e IR-SE50 encoder, random weights, batch 8),
   fp32 vs bf16;
4. LSAP_O at 1024 px for batch 1, 4 and 16 (seconds per optimisation step);

recording time and peak GPU memory for each, and writes ``OUTDIR/gpu_suite.json`` and
``OUTDIR/gpu_suite.md``. A global time budget (``--budget-s``) skips what does not fit,
and says so in the results. Without CUDA it runs the same code as a short CPU smoke run
(tiny sizes, no pytest, no compile) so CI keeps the suite working.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> dict:
    """Seconds per call (after warm-up) and peak memory of the timed calls."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    _sync(device)
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    out = {"s": (time.perf_counter() - start) / iters, "warmup_s": warmup_s}
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_case(results: list, budget: Budget, min_left: float, name: str, fn: Callable[[], dict]) -> None:
    row: dict[str, Any] = {"case": name}
    if budget.left() < min_left:
        row["skipped"] = "time budget"
    else:
        try:
            row.update(fn())
        except Exception as exc:  # one failing case must not lose the others
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            row["traceback"] = traceback.format_exc()[-2000:]
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    results.append(row)
    print(json.dumps({k: v for k, v in row.items() if k != "traceback"}), flush=True)


def run_pytest(budget: Budget) -> dict:
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                              "tests/ops"], cwd=ROOT, capture_output=True, text=True,
                             timeout=max(30.0, min(240.0, budget.left() - 60)))
        return {"rc": out.returncode, "s": time.perf_counter() - start, "tail": out.stdout[-3000:] + out.stderr[-1000:]}
    except subprocess.TimeoutExpired:
        return {"rc": None, "s": time.perf_counter() - start, "tail": "timed out"}


def bench_generator(device, resolution, batch, impl, fused, precision, compiled, warmup, iters, tiny) -> dict:
    from lsap.model import Generator

    torch.manual_seed(0)
    kw = dict(channel_base=256, channel_max=16, z_dim=16, w_dim=16, mapping_layers=2) if tiny else {}
    g = Generator(resolution=resolution, impl=impl, fused_modconv=fused, **kw).to(device)
    synthesis = torch.compile(g.synthesis) if compiled else g.synthesis
    ws = torch.randn(batch, g.num_ws, g.w_dim, device=device, requires_grad=True)

    def step():
        with autocast(device, precision):
            img = synthesis(ws, noise_mode="const")
        img.float().square().mean().backward()

    out = measure(step, device, warmup, iters)
    out["images_per_s"] = batch / out["s"]
    return out


def bench_lsap_e(device, precision, batch, tiny, warmup, iters, cache_dir) -> dict:
    from lsap.encoders import Encoder4Editing
    from lsap.model import GeneratorSource
    from lsap.modules import LSAP_E

    torch.manual_seed(0)
    if tiny:
        source = GeneratorSource(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=512,
                                 channel_max=32, w_avg_samples=500)
        encoder = Encoder4Editing(num_ws=8, w_dim=32, input_size=32, blocks_per_stage=[1, 1, 1, 1],
                                  stage_channels=[8, 16, 32, 32])
        loss_res, anchors = 32, 300
    else:  # config-f 1024 px generator and the e4e IR-SE50 encoder, random weights
        source = GeneratorSource(resolution=1024, w_avg_samples=10_000)
        encoder = Encoder4Editing(num_ws=18, input_size=256)
        loss_res, anchors = 256, 10_000
    module = LSAP_E(generator=source, encoder=encoder, loss_resolution=loss_res, anchor_samples=anchors,
                    anchor_cache_dir=str(cache_dir), progressive_start=0, progressive_every=1).to(device)
    g = module.generator
    with torch.no_grad():
        images = g.synthesis(g.mapping(torch.randn(batch, g.z_dim, device=device))).clamp(-1, 1)
    batch_dict = {"image": images}
    opt = torch.optim.Adam(module.encoder.parameters(), lr=1e-4)

    def step():
        with autocast(device, precision):
            ws = module.encode(images)
            losses = module.training_losses(batch_dict, ws, module.decode(ws), active=g.num_ws)
        opt.zero_grad(set_to_none=True)
        losses["total"].float().backward()
        opt.step()

    out = measure(step, device, warmup, iters)
    out["images_per_s"] = batch / out["s"]
    return out


def bench_lsap_o(device, batch, steps, tiny, cache_dir) -> dict:
    from lsap.model import GeneratorSource
    from lsap.modules import LSAP_O

    torch.manual_seed(0)
    if tiny:
        source = GeneratorSource(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024,
                                 channel_max=32, w_avg_samples=500)
        samples = 500
    else:
        source = GeneratorSource(resolution=1024, w_avg_samples=10_000)
        samples = 10_000
    model = LSAP_O(source, space="w+", num_steps=steps, lambda_lpips=0.0, anchor_samples=samples,
                   w_std_samples=samples, anchor_cache_dir=str(cache_dir), progress=False).to(device)
    g = model.generator
    with torch.no_grad():
        images = g.synthesis(g.mapping(torch.randn(batch, g.z_dim, device=device))).clamp(-1, 1)
    names = [f"{i:06d}" for i in range(batch)]
    out = measure(lambda: model.invert(images, names), device, warmup=1, iters=1)
    out["s_per_step"] = out["s"] / steps
    return out


def markdown(report: dict) -> str:
    lines = [f"# GPU suite ({report['device']}, torch {report['torch']})", ""]
    if report.get("pytest"):
        p = report["pytest"]
        lines += [f"`pytest -m cuda`: rc={p.get('rc')} in {p.get('s', 0):.0f} s", ""]
    lines += ["| case | s / iter | images/s | peak GiB | note |", "|---|---:|---:|---:|---|"]
    for row in report["cases"]:
        s = f"{row['s']:.4f}" if "s" in row else "-"
        ips = f"{row['images_per_s']:.1f}" if "images_per_s" in row else "-"
        mem = f"{row['peak_mem_gib']:.2f}" if "peak_mem_gib" in row else "-"
        note = row.get("skipped") or row.get("error") or (f"{row['s_per_step']:.4f} s/step" if "s_per_step" in row
                                                           else "")
        lines.append(f"| {row['case']} | {s} | {ips} | {mem} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--budget-s", type=float, default=450.0, help="stop starting new cases after this long")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run even when CUDA is available")
    args = p.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda") if cuda else torch.device("cpu")
    tiny = not cuda
    budget = Budget(args.budget_s)
    cache_dir = args.outdir / "anchors"
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if cuda else "cpu (smoke)",
                              "torch": torch.__version__, "smoke": tiny, "cases": []}
    cases = report["cases"]
    if cuda:
        torch.backends.cudnn.benchmark = True
        report["pytest"] = run_pytest(budget)
        print(json.dumps({k: v for k, v in report["pytest"].items() if k != "tail"}), flush=True)

    # Generator grid: the uncompiled variants first, compiled ones last (they cost the
    # most warm-up), the small resolution before the large.
    resolutions = [(16, 2)] if tiny else [(256, 8), (1024, 4)]
    impls = ["ref"] if tiny else ["ref", "cuda"]
    compiles = [False] if tiny else [False, True]
    for compiled, (res, batch), impl, fused, precision in itertools.product(
            compiles, resolutions, impls, (True, False), ("fp32", "bf16")):
        name = f"G {res}px b{batch} impl={impl} fused={fused} {precision}{' compiled' if compiled else ''}"
        run_case(cases, budget, 20.0 if compiled else 5.0, name, lambda: bench_generator(
            device, res, batch, impl, fused, precision, compiled, warmup=1 if tiny else 3, iters=1 if tiny else 5,
            tiny=tiny))
        if not compiled and res == resolutions[-1][0] and impl == impls[-1] and fused is False \
                and precision == "bf16":
            # The module benchmarks come before the compiled generator variants.
            for prec in ("fp32", "bf16"):
                run_case(cases, budget, 10.0, f"LSAP_E step {'32' if tiny else '1024'}px b{2 if tiny else 8} {prec}",
                         lambda: bench_lsap_e(device, prec, 2 if tiny else 8, tiny, 1 if tiny else 2,
                                              1 if tiny else 3, cache_dir))
            for b in (1, 4, 16):
                run_case(cases, budget, 10.0, f"LSAP_O {'16' if tiny else '1024'}px b{b}",
                         lambda: bench_lsap_o(device, b, 2 if tiny else 10, tiny, cache_dir))

    (args.outdir / "gpu_suite.json").write_text(json.dumps(report, indent=1))
    (args.outdir / "gpu_suite.md").write_text(markdown(report))
    print(markdown(report))
    failed = [c["case"] for c in cases if "error" in c]
    return 1 if failed and tiny else 0


if __name__ == "__main__":
    sys.exit(main())
