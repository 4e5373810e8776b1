"""Cost of the S^N anchors, the NSCD metric and the NSCD loss.

Measures, per device (CPU, and CUDA when available):

* the time to compute the anchors of a config-f generator (random weights) from
  ``--num-samples`` samples, and that time extrapolated linearly to the paper's M = 100 000
  (the fingerprint hash is a fixed cost and is not scaled);
* one generator forward (synthesis from W+) and forward+backward (gradient to the codes, as
  when an encoder is trained through a frozen generator) at ``--batch``;
* the NSCD loss forward and forward+backward and one NSCD metric update at the same batch;
* optionally an IR-SE50 backbone forward+backward at 256x256 as the encoder estimate;

and reports NSCD's share of an LSAP_E training step, approximately
``loss fwd+bwd / (generator fwd+bwd + encoder fwd+bwd)``.

Example::

    python bench/bench_nscd.py --num-samples 5000 --batch 2 --out nscd.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Callable

import torch

from lsap.losses.nscd import NSCDLoss
from lsap.metrics import NSCD, compute_anchors, generator_fingerprint
from lsap.model import Generator
from lsap.model.sampling import sample_z

PAPER_NUM_SAMPLES = 100_000


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def encoder_estimate(batch: int, device: torch.device, repeats: int, warmup: int) -> float | None:
    """IR-SE50 backbone forward+backward at 256x256 (the e4e encoder's bulk), or None."""
    from lsap.nets import IRSEBody

    body = IRSEBody(num_layers=50, use_se=True).to(device).train()
    images = torch.randn(batch, 3, 256, 256, device=device)

    def step() -> None:
        body.zero_grad(set_to_none=True)
        sum(f.float().mean() for f in body(images)).backward()

    return time_call(step, device, repeats, warmup)


def bench_device(args: argparse.Namespace, device: torch.device) -> dict[str, float | int | str | None]:
    torch.manual_seed(0)
    generator = Generator(resolution=args.resolution, impl=args.impl).to(device).eval().requires_grad_(False)
    result: dict[str, float | int | str | None] = {"device": str(device)}
    if device.type == "cuda":
        result["device_name"] = torch.cuda.get_device_name(device)

    start = time.perf_counter()
    generator_fingerprint(generator)
    fingerprint_s = time.perf_counter() - start
    synchronize(device)
    start = time.perf_counter()
    anchors = compute_anchors(generator, num_samples=args.num_samples, seed=0, batch_size=args.anchor_batch_size,
                              use_cache=False)
    synchronize(device)
    anchors_s = time.perf_counter() - start
    sampling_s = max(anchors_s - fingerprint_s, 0.0)
    result.update(
        anchor_samples=args.num_samples,
        anchors_measured_s=anchors_s,
        fingerprint_s=fingerprint_s,
        anchors_extrapolated_100k_s=fingerprint_s + sampling_s * PAPER_NUM_SAMPLES / args.num_samples,
    )

    if args.anchors_only:
        return result

    ws = next(sample_z(args.batch, generator.z_dim, seed=1, batch_size=args.batch)).to(device)
    with torch.no_grad():
        ws = generator.mapping(ws)[:, None].repeat(1, generator.num_ws, 1)
    codes = ws.clone().requires_grad_(True)

    def generator_forward() -> None:
        with torch.no_grad():
            generator.synthesis(ws)

    def generator_forward_backward() -> None:
        codes.grad = None
        generator.synthesis(codes).square().mean().backward()

    loss = NSCDLoss(generator=generator, anchors=anchors).to(device)
    metric = NSCD(generator=generator, anchors=anchors).to(device)

    def loss_forward() -> None:
        with torch.no_grad():
            loss(codes)

    def loss_forward_backward() -> None:
        codes.grad = None
        loss(codes).backward()

    def metric_update() -> None:
        metric.update(ws)

    timing = dict(repeats=args.repeats, warmup=args.warmup)
    result["generator_forward_s"] = time_call(generator_forward, device, **timing)
    result["generator_forward_backward_s"] = time_call(generator_forward_backward, device, **timing)
    # The NSCD parts are cheap: repeat them more for a stable median.
    cheap = dict(repeats=max(args.repeats, 20), warmup=max(args.warmup, 3))
    result["nscd_loss_forward_s"] = time_call(loss_forward, device, **cheap)
    result["nscd_loss_forward_backward_s"] = time_call(loss_forward_backward, device, **cheap)
    result["nscd_metric_update_s"] = time_call(metric_update, device, **cheap)
    result["encoder_forward_backward_s"] = (
        encoder_estimate(args.batch, device, **timing) if args.encoder_estimate else None
    )
    step = result["generator_forward_backward_s"] + (result["encoder_forward_backward_s"] or 0.0)
    result["nscd_share_vs_generator"] = result["nscd_loss_forward_backward_s"] / result["generator_forward_backward_s"]
    nscd_s = result["nscd_loss_forward_backward_s"]
    result["nscd_share_of_step"] = nscd_s / (step + nscd_s)
    return result


def format_seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    rows = [
        (f"anchors, M = {args.num_samples} (measured)", "anchors_measured_s"),
        ("anchors, M = 100 000 (extrapolated)", "anchors_extrapolated_100k_s"),
        ("  of which generator fingerprint (hash)", "fingerprint_s"),
        (f"generator forward, batch {args.batch}", "generator_forward_s"),
        (f"generator forward+backward, batch {args.batch}", "generator_forward_backward_s"),
        (f"encoder estimate (IR-SE50 256 px fwd+bwd), batch {args.batch}", "encoder_forward_backward_s"),
        (f"NSCD loss forward, batch {args.batch}", "nscd_loss_forward_s"),
        (f"NSCD loss forward+backward, batch {args.batch}", "nscd_loss_forward_backward_s"),
        (f"NSCD metric update, batch {args.batch}", "nscd_metric_update_s"),
    ]
    header = "| measurement | " + " | ".join(r["device"] for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    for label, key in rows:
        if all(key in r for r in results):
            lines.append(f"| {label} | " + " | ".join(format_seconds(r[key]) for r in results) + " |")
    if args.anchors_only:
        return "\n".join(lines)
    lines.append("| NSCD loss fwd+bwd / generator fwd+bwd | "
                 + " | ".join(f"{r['nscd_share_vs_generator']:.2e}" for r in results) + " |")
    lines.append("| NSCD share of an LSAP_E step (gen + encoder + NSCD) | "
                 + " | ".join(f"{r['nscd_share_of_step']:.2e}" for r in results) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=1024, help="generator resolution (config-f widths)")
    parser.add_argument("--num-samples", type=int, default=PAPER_NUM_SAMPLES,
                        help="anchor samples to measure (extrapolated linearly to 100 000)")
    parser.add_argument("--anchor-batch-size", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=8, help="batch of the generator / loss / metric timings")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="devices to run on (default: cpu, plus cuda when available)")
    parser.add_argument("--impl", default="ref", help="generator op implementation (see bench_generator.py)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--anchors-only", action="store_true", help="time the anchors only")
    parser.add_argument("--no-encoder-estimate", dest="encoder_estimate", action="store_false",
                        help="skip the IR-SE50 timing")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    results = [bench_device(args, torch.device(d)) for d in devices]
    print(markdown(results, args))
    if args.out:
        report = {
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "cpu_threads": torch.get_num_threads(), "machine": platform.machine()},
            "results": results,
        }
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
