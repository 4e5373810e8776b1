"""LSAP_O's lambda_NSCD, chosen on validation images (real Fashion-MNIST *training* images, never
the test images) before the claims table is made.

LSAP_O runs in W+ exactly as ``bench/claims_fashion32.py`` runs it (MSE only at 32 px,
``--lsap-o-steps`` steps, ``--anchor-samples`` S^N anchors, ``--seed``) on the first
``--images`` images of ``--val-dir`` (by name), once per ``--lambdas`` value. Each is scored
as the claims table scores its rows (``lsap evaluate``, inputs padded 28 -> 32 px): mean MSE of
the 8-bit reconstructions, mean NSCD, and class keep by the shipped classifier (the labeller;
the judge is never used here), each with a 95 % bootstrap interval over images. The rule,
fixed before any result was seen:

    RULE

    python bench/lsap_o_lambda_validation.py [--generator fashion32] [--val-dir runs/fashion_val_train]
        [--images 64] [--lambdas 0 0.02 0.05 0.1 0.2 0.5] [--output outputs/lsap_o_lambda_validation]

Writes ``lambda_validation.json`` (``"choice"`` is the chosen lambda) and
``lambda_validation.md`` to ``--output``, and the runs under ``--output/runs/lambda<value>``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from runs_folder import validation_folder


DEFAULT_LAMBDA = 0.05  # LSAP_O's default lambda_NSCD, the choice when none qualifies
RULE = ("the lambda > 0 with the lowest validation MSE among those whose mean NSCD is at most half of "
        "lambda = 0's; ties to the larger lambda; none qualifies -> 0.05, the default")
__doc__ = __doc__.replace("RULE", RULE[0].upper() + RULE[1:] + ".")
COLUMNS = (("mse", "MSE ↓", 5), ("nscd", "NSCD ↓", 4), ("keep_labeller", "class keep (labeller) ↑", 3))


def choose(scores: dict[float, dict[str, Any]]) -> dict[str, Any]:
    """``RULE`` on ``{lambda: {"mse": ..., "nscd": ...}}`` (which must hold lambda 0)."""
    import claims_table as table

    if 0.0 not in scores:
        raise SystemExit("--lambdas must include 0: the rule compares every lambda's NSCD with lambda = 0's")
    candidates = {lam: s for lam, s in scores.items() if lam > 0}
    if not candidates:
        raise SystemExit("--lambdas must include at least one lambda > 0 to choose from")
    return table.select_under_half_nscd(candidates, scores[0.0]["nscd"], fallback=DEFAULT_LAMBDA)


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"LSAP_O (W+) lambda_NSCD on {s['images']} validation images ({s['val_dir']}), "
             f"{s['steps']} steps, seed {s['seed']}.", "", f"Rule (fixed in advance): {RULE}.", "",
             "| lambda_NSCD | " + " | ".join(h for _, h, _ in COLUMNS) + " | qualifies |",
             "|" + "---|" * (len(COLUMNS) + 2)]
    for key, entry in result["lambdas"].items():
        cells = [f"{entry[c]['value']:.{d}f} [{entry[c]['low']:.{d}f}, {entry[c]['high']:.{d}f}]"
                 if entry.get(c) else "–" for c, _, d in COLUMNS]
        qualifies = result["qualifies"].get(key)
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {'–' if qualifies is None else 'yes' if qualifies else 'no'} |")
    lines += ["", f"Half of lambda = 0's mean NSCD: {result['limit']:.5g}.", "",
              f"Chosen lambda_NSCD: {result['choice']:g} "
              f"({'' if result['by_rule'] else 'none qualifies; '}{result['reason']})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="fashion32", help="built-in name, file, or GeneratorSource JSON")
    parser.add_argument("--val-dir", default=str(validation_folder()),
                        help="validation images (real training images, <train index>_<class>.png)")
    parser.add_argument("--images", type=int, default=64, help="the first N validation images (by name)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1, 0.2, 0.5])
    parser.add_argument("--lsap-o-steps", type=int, default=80, help="as the claims table's --lsap-o-steps")
    parser.add_argument("--anchor-samples", type=int, default=20_000)
    parser.add_argument("--output", default="outputs/lsap_o_lambda_validation")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of each interval")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reuse-runs", action="store_true",
                        help="keep run folders that hold all their images and were made from the same files and settings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    import claims_fashion32 as claims
    import claims_table as table
    from lsap.data import FashionSamplesDataModule, FashionSamplesDataset
    from lsap.errors import BadValueError, MissingInputError
    from lsap.metrics.bootstrap import bootstrap_mean
    from lsap.model import GeneratorSource
    from lsap.nets.fashion_classifier import load_fashion_classifier

    val_dir = Path(args.val_dir)
    if not val_dir.is_dir() or not any(val_dir.glob("*.png")):
        raise MissingInputError(f"--val-dir '{val_dir}': no validation images there (make them with "
                                "`python bench/fashion32_encoder_runs.py valset`)")
    if args.images < 2:
        raise BadValueError(f"--images must be at least 2 (bootstrap intervals), got {args.images}")
    lambdas = list(dict.fromkeys(args.lambdas))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    gfile = claims.generator_file(args.generator, output)
    source = GeneratorSource(checkpoint=str(gfile))
    real = table.first_images(val_dir, args.images, output / "val_images")
    samples = FashionSamplesDataset(real, limit=args.images)
    labels = {name: int(label) for name, label in zip(samples.names, samples.labels)}
    classifiers = {"labeller": load_fashion_classifier()}
    data = FashionSamplesDataModule(root=str(real), limit=len(samples), val_batch_size=args.batch_size)

    entries: dict[str, dict[str, Any]] = {}
    scores: dict[float, dict[str, float]] = {}
    for lam in lambdas:
        run_dir = output / "runs" / f"lambda{lam:g}"
        module = claims.lsap_o_module(source, "w+", lam, args.lsap_o_steps, args.seed, args.anchor_samples)
        seconds, _ = claims.run_inversion(module, run_dir, data, gradients=True, reuse=args.reuse_runs)
        _, per_image, _ = claims.scored_per_image(run_dir, real, gfile, args.anchor_samples, args.batch_size, labels,
                                                  classifiers)
        entry: dict[str, Any] = {"images": len(per_image), "seconds_per_image": seconds / max(1, len(samples))}
        for key, _, _ in COLUMNS:
            values = [float(v[key]) for v in per_image.values() if v.get(key) is not None]
            entry[key] = bootstrap_mean(values, resamples=args.resamples, seed=args.seed).as_dict() \
                if len(values) >= 2 else None
        entries[f"{lam:g}"] = entry
        scores[lam] = {"mse": entry["mse"]["value"], "nscd": entry["nscd"]["value"]}
        print(f"lambda {lam:g}: MSE {entry['mse']['value']:.5f}, NSCD {entry['nscd']['value']:.4f}, "
              f"class keep {entry['keep_labeller']['value']:.3f}", flush=True)
    selection = choose(scores)
    result = {"rule": RULE, **selection, "qualifies": {f"{lam:g}": q for lam, q in selection["qualifies"].items()},
              "lambdas": entries,
              "settings": {"generator": args.generator, "val_dir": str(val_dir), "images": len(samples),
                           "steps": args.lsap_o_steps, "space": "w+", "anchor_samples": args.anchor_samples,
                           "resamples": args.resamples, "seed": args.seed, "threads": args.threads},
              "seconds_total": time.perf_counter() - started}
    (output / "lambda_validation.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (output / "lambda_validation.md").write_text(text)
    print(text, end="")
    print(f"wrote {output / 'lambda_validation.json'} and {output / 'lambda_validation.md'}")


if __name__ == "__main__":
    main()
