"""The fashion32 claim, measured: NSCD against fidelity and editability on real test images.

On the Fashion-MNIST test images shipped with lsap (256 by default), compares

* the e4e baseline encoder against the LSAP_E encoder (lsap/assets/encoders/fashion32_*.pt),
* LSAP_O in W+ with lambda_NSCD = 0, the default 0.05 and a larger value,
* PTI tuned around each LSAP_O pivot (on the first ``--pti-images`` images),

by MSE, PSNR, SSIM (``lsap.evaluation.evaluate``, inputs padded to 32 px), NSCD, the FID of
the reconstructions in the shipped classifier's penultimate features (``lsap.metrics.fid``;
Inception FID too when an Inception file is found), class-edit success (the share of
class-direction edits, e.g. sneaker -> ankle boot on sneaker images, that the classifier
reads as the target class, plus ``lsap.metrics.EditSuccess``'s target / other-class score
changes; ``lsap.evaluation.evaluators.class_edit_success``), LEC for the encoders (lsap's LEC
evaluator, as ``lsap evaluate --encoder``) and seconds per image, plus the
Spearman correlation between per-image NSCD and per-image edit success pooled over methods.

    python bench/claims_fashion32.py [--generator fashion32] [--output outputs/claims_fashion32]  # ~12-15 min, 2 cores
                                     [--num-images 256] [--pti-images 64]

Writes ``claims.json`` and ``claims.md`` (the table) to ``--output``; every run's inversion
outputs and ``lsap evaluate`` reports stay under ``--output/runs/<method>``. Fixed seeds
throughout. Smoke run: ``--generator '<GeneratorSource JSON>' --num-images 4
--allow-untrained-encoders --directions DIR`` with DIR from ``bench/fashion32_directions.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch import nn

from lsap.callbacks import InversionWriter
from lsap.data import SHIPPED_SAMPLES_DIR, FashionSamplesDataModule, FashionSamplesDataset
from lsap.editing import load_direction
from lsap.encoders import Encoder4Editing
from lsap.encoders.checkpoints import save_e4e_checkpoint
from lsap.evaluation import evaluate
from lsap.evaluation.evaluators import EvaluationContext, FIDEvaluator, LECEvaluator, class_edit_success
from lsap.evaluation.options import EvaluationOptions
from lsap.evaluation.run import EvaluationRun
from lsap.metrics.fid import ClassifierFeatures
from lsap.model import GeneratorSource
from lsap.model.checkpoints import builtin_generator_path, save_generator
from lsap.model.source import generator_from_spec
from lsap.modules import LSAP_E, LSAP_O, PTI
from lsap.nets.fashion_classifier import FEATURE_DIM, FashionClassifier, load_fashion_classifier

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "lsap" / "assets"
# The shipped encoders' architecture (configs/encoder_fashion32_*.yaml).
ENCODER_ARCH: dict[str, Any] = {"num_ws": 8, "w_dim": 256, "input_size": 32, "blocks_per_stage": [1, 1, 1, 1],
                                "stage_channels": [32, 48, 64, 96]}
# Class edits: (direction file stem, source class, target class).
CLASS_EDITS = (("sneaker_to_boot", 7, 9), ("boot_to_sneaker", 9, 7), ("pullover_to_coat", 2, 4),
               ("coat_to_pullover", 4, 2), ("tshirt_to_shirt", 0, 6), ("shirt_to_tshirt", 6, 0))
LEC_DIRECTION = "sneaker_to_boot"


def generator_file(spec: str, output: Path) -> Path:
    """A file for the generator spec (JSON GeneratorSource specs are written once to ``output``)."""
    if spec.strip().startswith("{"):
        path = output / "generator.safetensors"
        save_generator(generator_from_spec(spec), path)
        return path
    return Path(builtin_generator_path(spec))


def encoder_file(path: Path, label: str, output: Path, allow_untrained: bool, seed: int) -> tuple[Path, bool]:
    """The encoder file, or (smoke runs only) a seeded untrained encoder of the same architecture."""
    if path.is_file():
        return path, True
    if not allow_untrained:
        raise FileNotFoundError(f"encoder '{path}' not found: train it with configs/encoder_fashion32_{label}.yaml "
                                "and export it with bench/export_fashion32_encoder.py (see the README), or pass "
                                "--allow-untrained-encoders for a smoke run")
    torch.manual_seed(seed)
    untrained = output / f"untrained_{label}.pt"
    save_e4e_checkpoint(untrained, Encoder4Editing(**ENCODER_ARCH), torch.zeros(ENCODER_ARCH["w_dim"]))
    return untrained, False


def run_inversion(module: nn.Module, run_dir: Path, data: FashionSamplesDataModule, gradients: bool) -> float:
    """``trainer.predict`` with an InversionWriter into ``run_dir``; returns the wall time."""
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, inference_mode=not gradients,
                      callbacks=[InversionWriter(str(run_dir), skip_done=False)], default_root_dir=str(run_dir))
    start = time.perf_counter()
    trainer.predict(module, datamodule=data, return_predictions=False)
    return time.perf_counter() - start


def package_context(run_dir: Path, **options: Any) -> tuple[EvaluationRun, EvaluationContext]:
    """The run loaded once by lsap's evaluation (inputs padded to 32 px) and an evaluator context."""
    chosen = EvaluationOptions(real=str(SHIPPED_SAMPLES_DIR), real_fit="pad", **options)
    run = EvaluationRun.load(run_dir, chosen.real, chosen.real_fit)
    return run, EvaluationContext(chosen, torch.device(chosen.device), {name: {"name": name} for name in run.names})


@torch.no_grad()
def edit_metrics(run: EvaluationRun, generator: nn.Module, classifier: FashionClassifier,
                 samples: FashionSamplesDataset, directions: dict[str, Any],
                 strengths: dict[str, float]) -> tuple[dict[str, Any], dict[str, float]]:
    """Class-edit success of one run (``lsap.evaluation.evaluators.class_edit_success``, images
    chosen by their true class): per edit and pooled, and the per-image success (0/1)."""
    labels = {name: int(label) for name, label in zip(samples.names, samples.labels)}
    per_image: dict[str, float] = {}
    summary: dict[str, Any] = {}
    pooled = dict.fromkeys(("successes", "target_change", "others_change", "num_edits", "num_others"), 0.0)
    hits = total = 0
    for name, source, target in CLASS_EDITS:
        metric, reads = class_edit_success(run, generator, classifier, directions[name], strengths[name], target,
                                           source, labels)
        if not reads:
            continue
        for key in pooled:
            pooled[key] += float(getattr(metric, key))
        per_image.update({f"{image}|{name}": value for image, value in reads.items()})
        hits, total = hits + int(sum(reads.values())), total + len(reads)
        summary[name] = {"count": len(reads), "reads_target": sum(reads.values()) / len(reads),
                         "strength": strengths[name], **{k: v for k, v in metric.summary().items() if k != "count"}}
    nan = float("nan")
    summary["all"] = {"count": total, "reads_target": hits / total if total else nan,
                      "target_score_rise": pooled["successes"] / total if total else nan,
                      "mean_target_change": pooled["target_change"] / total if total else nan,
                      "mean_abs_other_change": pooled["others_change"] / pooled["num_others"]
                      if pooled["num_others"] else nan}
    return summary, per_image


def classifier_fid(run: EvaluationRun, context: EvaluationContext, classifier: FashionClassifier) -> float:
    """FID of the reconstructions in the classifier's penultimate features (lsap's FID evaluator)."""
    outcome = FIDEvaluator(ClassifierFeatures(classifier, FEATURE_DIM)).evaluate(run, context)
    return outcome.metrics["fid"]["mean"] if "fid" in outcome.metrics else float("nan")


def encoder_lec(run_dir: Path, generator_path: Path, encoder: Path, direction: Path, sigmas: float,
                batch_size: int) -> dict[str, Any]:
    """LEC of an encoder on the shipped images (lsap's LEC evaluator), the edit ``sigmas`` std of w."""
    run, context = package_context(run_dir, generator=str(generator_path), encoder=str(encoder),
                                   direction=str(direction), strength=sigmas, strength_unit="std",
                                   batch_size=batch_size)
    return LECEvaluator().evaluate(run, context).metrics["lec"]


def spearman(x: list[float], y: list[float]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"rho": None, "p_value": None, "n": len(x), "note": "too few or constant values"}
    result = spearmanr(x, y)
    return {"rho": float(result.statistic), "p_value": float(result.pvalue), "n": len(x)}


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]], correlation: dict[str, Any], settings: dict[str, Any]) -> str:
    header = ("| method | images | MSE ↓ | PSNR ↑ | SSIM ↑ | NSCD ↓ | FID (classifier) ↓ | FID (Inception) ↓ "
              "| edit → target ↑ | other classes moved ↓ | LEC ↓ | s / image |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['method']} | {r['images']} | {fmt(r['mse'])} | {fmt(r['psnr'])} | {fmt(r['ssim'])} "
                     f"| {fmt(r['nscd'])} | {fmt(r['fid_classifier'])} | {fmt(r['fid_inception'])} "
                     f"| {fmt(r['edit_reads_target'], 3)} | {fmt(r['edit_other_change'], 3)} | {fmt(r['lec'])} "
                     f"| {fmt(r['seconds_per_image'], 3)} |")
    rho = correlation
    lines += ["", f"Spearman correlation of per-image NSCD and per-image edit success, pooled over methods: "
                  f"rho = {fmt(rho.get('rho'), 3)} (p = {fmt(rho.get('p_value'), 3)}, n = {rho['n']}).",
              "", "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="fashion32")
    parser.add_argument("--output", default="outputs/claims_fashion32")
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--pti-images", type=int, default=64, help="PTI runs on the first N of the images")
    parser.add_argument("--e4e-encoder", default=str(ASSETS / "encoders" / "fashion32_e4e.pt"))
    parser.add_argument("--lsap-encoder", default=str(ASSETS / "encoders" / "fashion32_lsap.pt"))
    parser.add_argument("--allow-untrained-encoders", action="store_true",
                        help="smoke runs: use seeded untrained encoders where the files are missing")
    parser.add_argument("--directions", default=str(ASSETS / "directions"))
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.05, 0.5])
    parser.add_argument("--lsap-o-steps", type=int, default=80)
    parser.add_argument("--pti-steps", type=int, default=30)
    parser.add_argument("--edit-sigmas", type=float, default=3.0,
                        help="edit strength in standard deviations of sampled w along the direction")
    parser.add_argument("--anchor-samples", type=int, default=20_000)
    parser.add_argument("--inception", default=None, help="Inception file for FID (skipped when not found)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lec-batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    runs = output / "runs"

    gfile = generator_file(args.generator, output)
    source = GeneratorSource(checkpoint=str(gfile))
    generator = source.build()
    classifier = load_fashion_classifier()
    samples = FashionSamplesDataset(limit=args.num_images)
    directions_dir = Path(args.directions)
    missing = [n for n, _, _ in CLASS_EDITS if not (directions_dir / f"{n}.pt").is_file()]
    if missing:
        raise FileNotFoundError(f"directions {missing} not found in '{directions_dir}': make them with "
                                "bench/fashion32_directions.py")
    directions = {n: load_direction(directions_dir / f"{n}.pt") for n, _, _ in CLASS_EDITS}
    for d in directions.values():
        d.check_generator(generator)
    # Strengths in the directions' own unit: k standard deviations of sampled w along each.
    strengths = {n: d.std_strength(generator, args.edit_sigmas, seed=args.seed) for n, d in directions.items()}

    def data(limit: int, batch_size: int) -> FashionSamplesDataModule:
        return FashionSamplesDataModule(limit=min(limit, args.num_images), val_batch_size=batch_size)

    methods: list[dict[str, Any]] = []
    common = {"lpips": None, "loss_resolution": 32, "anchor_samples": args.anchor_samples}
    for label, path in (("e4e", args.e4e_encoder), ("lsap", args.lsap_encoder)):
        file, trained = encoder_file(Path(path), label, output, args.allow_untrained_encoders, args.seed)
        module = LSAP_E(generator=source, encoder=Encoder4Editing(**ENCODER_ARCH), encoder_checkpoint=str(file),
                        identity=None, moco=None, **common).eval()
        name = f"encoder_{label}" + ("" if trained else "_untrained")
        seconds = run_inversion(module, runs / name, data(args.num_images, args.batch_size), gradients=False)
        lec = encoder_lec(runs / name, gfile, file, directions_dir / f"{LEC_DIRECTION}.pt", args.edit_sigmas,
                          args.lec_batch_size)
        methods.append({"method": name, "dir": runs / name, "seconds": seconds, "images": len(samples),
                        "lec": lec, "encoder": str(file)})
    pivots = []
    for lam in args.lambdas:
        name = f"lsap_o_w+_lambda{lam:g}"
        module = LSAP_O(generator=source, space="w+", num_steps=args.lsap_o_steps, lambda_lpips=0.0, lambda_mse=1.0,
                        lambda_nscd=lam, seed=args.seed, progress=False, **common)
        seconds = run_inversion(module, runs / name, data(args.num_images, args.batch_size), gradients=True)
        methods.append({"method": name, "dir": runs / name, "seconds": seconds, "images": len(samples)})
        pivots.append((lam, runs / name))
    pti_images = min(args.pti_images, args.num_images)
    for lam, pivot_dir in pivots:
        name = f"pti_on_lambda{lam:g}"
        module = PTI(generator=source, pivots_dir=str(pivot_dir), num_steps=args.pti_steps, lambda_lpips=0.0,
                     early_stop_lpips=None, progress=False, **common)
        seconds = run_inversion(module, runs / name, data(pti_images, 1), gradients=True)
        methods.append({"method": name, "dir": runs / name, "seconds": seconds, "images": pti_images})

    rows, nscd_values, success_values = [], [], []
    for method in methods:
        run_dir: Path = method["dir"]
        report = evaluate(str(run_dir), str(SHIPPED_SAMPLES_DIR), output=str(run_dir / "evaluation"),
                          inception=args.inception, generator=str(gfile), nscd_samples=args.anchor_samples,
                          real_fit="pad", pca_samples=0, batch_size=args.batch_size)
        metrics = report["metrics"]
        run, context = package_context(run_dir, batch_size=args.batch_size)
        edits, per_image_success = edit_metrics(run, generator, classifier, samples, directions, strengths)
        per_image = [json.loads(line) for line in (run_dir / "evaluation" / "per_image.jsonl").read_text().splitlines()
                     if line.strip()]
        nscd_of = {row["name"]: row.get("nscd") for row in per_image}
        for key, success in per_image_success.items():
            value = nscd_of.get(key.split("|")[0])
            if value is not None:
                nscd_values.append(float(value))
                success_values.append(success)
        lec = method.get("lec")
        rows.append({
            "method": method["method"], "images": method["images"],
            "mse": metrics.get("mse", {}).get("mean"), "psnr": metrics.get("psnr", {}).get("mean"),
            "ssim": metrics.get("ssim", {}).get("mean"), "nscd": metrics.get("nscd", {}).get("mean"),
            "fid_classifier": classifier_fid(run, context, classifier),
            "fid_inception": metrics.get("fid", {}).get("mean"),
            "edit_reads_target": edits["all"]["reads_target"],
            "edit_other_change": edits["all"]["mean_abs_other_change"],
            "lec": lec["mean"] if lec else None, "seconds_per_image": method["seconds"] / method["images"],
            "edits": edits, "lec_detail": lec, "skipped": report["skipped"], "encoder": method.get("encoder"),
        })
        print(f"{method['method']}: MSE {fmt(rows[-1]['mse'])}, NSCD {fmt(rows[-1]['nscd'])}, "
              f"edit -> target {fmt(rows[-1]['edit_reads_target'], 3)}", flush=True)
    correlation = spearman(nscd_values, success_values)
    settings = {"generator": args.generator, "images": args.num_images, "PTI images": pti_images,
                "LSAP_O steps": args.lsap_o_steps, "PTI steps": args.pti_steps,
                "lambda_NSCD": args.lambdas, "edit strength": f"{args.edit_sigmas:g} std of w along the direction",
                "anchor samples": args.anchor_samples, "seed": args.seed, "threads": args.threads}
    result = {"settings": settings, "rows": rows, "spearman_nscd_vs_edit_success": correlation,
              "edit_strengths": strengths, "seconds_total": time.perf_counter() - started}
    (output / "claims.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = markdown(rows, correlation, settings)
    (output / "claims.md").write_text(table)
    print(table, end="")
    print(f"wrote {output / 'claims.json'} and {output / 'claims.md'} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
