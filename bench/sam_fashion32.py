"""SAM on fashion32, measured: SAM on the LSAP_O pivot, on the lambda = 0 pivot, and on the
two shipped encoders' pivots (e4e baseline, LSAP_E), on the shipped Fashion-MNIST test images.

Per pivot run (``runs/pivot_<label>``) and its SAM refinement (``runs/sam_<label>``):

* MSE, PSNR, SSIM, NSCD and the classifier-feature FID from ``lsap.evaluation.evaluate``
  (``fid_features="classifier"``, the shipped classifier; inputs padded to 32 px);
* class keep: the share of reconstructions the shipped classifier reads as the input's
  label;
* edit success: the share of class-direction edits (sneaker -> ankle boot on sneakers,
  and the other five shipped class directions, at ``--edit-sigmas`` std of w along each)
  that the classifier reads as the target class, rendered through the result's refinement
  state (``lsap.editing.refinement``: SAM blends the unedited features under its masks);
* seconds per image (wall time of the run / images).

SAM uses configs/sam_fashion32.yaml's settings (shipped invertibility net, SLIC superpixels,
blocks 4 and 8, the classifier feature distance as the perceptual term) with ``--sam-steps``.

    nice -n 10 python bench/sam_fashion32.py --num-images 64 --sam-steps 250 --threads 2

Writes ``sam_fashion32.json`` and ``sam_fashion32.md`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer

from lsap.callbacks import InversionWriter
from lsap.callbacks.sam_writer import SAMWriter
from lsap.data import SHIPPED_SAMPLES_DIR, FashionSamplesDataModule, FashionSamplesDataset
from lsap.editing import load_direction
from lsap.editing.refinement import refinement_renderer
from lsap.encoders import Encoder4Editing
from lsap.model import GeneratorSource
from lsap.modules import LSAP_E, LSAP_O, SAM
from lsap.nets import FeatureDistance
from lsap.nets.fashion_classifier import load_fashion_classifier
from lsap.refine.segments import SuperpixelSegmenter
from lsap.results import InversionResults

REPO = Path(__file__).resolve().parents[1]
DIRECTIONS = REPO / "lsap" / "assets" / "directions"
ENCODER_ARCH: dict[str, Any] = {"num_ws": 8, "w_dim": 256, "input_size": 32, "blocks_per_stage": [1, 1, 1, 1],
                                "stage_channels": [32, 48, 64, 96]}
CLASS_EDITS = (("sneaker_to_boot", 7, 9), ("boot_to_sneaker", 9, 7), ("pullover_to_coat", 2, 4),
               ("coat_to_pullover", 4, 2), ("tshirt_to_shirt", 0, 6), ("shirt_to_tshirt", 6, 0))
SAM_SETTINGS: dict[str, Any] = {"invertibility": "fashion32", "blocks": [4, 8], "threshold": 0.225,
                                "learning_rate": 0.05, "lambda_mse": 1.0, "lambda_lpips": 1.0, "lambda_mvg": 1e-8,
                                "mvg_samples": 5000, "lambda_delta": 1e-3, "lambda_features": 5.0}


def predict(module: Any, writer: InversionWriter, data: FashionSamplesDataModule, gradients: bool) -> float:
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, inference_mode=not gradients, callbacks=[writer],
                      default_root_dir=str(writer.output_dir))
    start = time.perf_counter()
    trainer.predict(module, datamodule=data, return_predictions=False)
    return time.perf_counter() - start


@torch.no_grad()
def keep_and_edits(run_dir: Path, generator: Any, classifier: Any, labels: dict[str, int],
                   directions: dict[str, Any], strengths: dict[str, float]) -> dict[str, Any]:
    """Class keep of the reconstructions and class-edit success, through each result's renderer."""
    kept = total = hits = edits = 0
    per_edit: dict[str, dict[str, float]] = {}
    for record in InversionResults(run_dir):
        code = record.load_code()
        renderer = refinement_renderer(generator, record, code)
        ws = code["ws"].float()[None]
        label = labels[record.name]
        reconstruction = renderer.render(ws).clamp(-1, 1)
        kept += int(int(classifier(reconstruction).argmax(1)) == label)
        total += 1
        for name, source, target in CLASS_EDITS:
            if label != source:
                continue
            edited = renderer.render(directions[name].apply(ws, strengths[name])).clamp(-1, 1)
            success = int(int(classifier(edited).argmax(1)) == target)
            entry = per_edit.setdefault(name, {"count": 0, "reads_target": 0})
            entry["count"] += 1
            entry["reads_target"] += success
            hits, edits = hits + success, edits + 1
    for entry in per_edit.values():
        entry["reads_target"] = entry["reads_target"] / entry["count"]
    return {"class_keep": kept / total if total else None, "edit_success": hits / edits if edits else None,
            "edits": edits, "per_edit": per_edit}


def metrics_of(run_dir: Path, anchor_samples: int, batch_size: int) -> dict[str, Any]:
    from lsap.evaluation import evaluate

    report = evaluate(str(run_dir), str(SHIPPED_SAMPLES_DIR), output=str(run_dir / "evaluation"),
                      generator="fashion32", nscd_samples=anchor_samples, real_fit="pad", pca_samples=0,
                      batch_size=batch_size, fid_features="classifier", classifier="fashion32")
    metrics = report["metrics"]

    def mean(name: str) -> Any:
        value = metrics.get(name)
        return value.get("mean") if isinstance(value, dict) else value

    return {"mse": mean("mse"), "psnr": mean("psnr"), "ssim": mean("ssim"), "nscd": mean("nscd"),
            "fid_classifier": mean("fid"), "skipped": report.get("skipped")}


def fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="outputs/sam_fashion32_bench")
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--sam-steps", type=int, default=1001)
    parser.add_argument("--lsap-o-steps", type=int, default=80)
    parser.add_argument("--lambda-nscd", type=float, default=0.05, help="the LSAP_O pivot's lambda")
    parser.add_argument("--edit-sigmas", type=float, default=3.0)
    parser.add_argument("--anchor-samples", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pivots", nargs="+", default=["lsap_o", "lsap_o_lambda0", "e4e", "lsap_e"])
    parser.add_argument("--pivots-only", action="store_true",
                        help="only make the pivot runs (a later run skips their finished images)")
    parser.add_argument("--invertibility", default="fashion32", help="invertibility net (file or built-in name)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    SAM_SETTINGS["invertibility"] = args.invertibility
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    runs = output / "runs"
    source = GeneratorSource(checkpoint="fashion32")
    generator = source.build().eval().requires_grad_(False)
    classifier = load_fashion_classifier()
    samples = FashionSamplesDataset(limit=args.num_images)
    labels = {name: int(label) for name, label in zip(samples.names, samples.labels)}
    directions = {n: load_direction(DIRECTIONS / f"{n}.pt") for n, _, _ in CLASS_EDITS}
    strengths = {n: d.std_strength(generator, args.edit_sigmas) for n, d in directions.items()}
    common = {"loss_resolution": 32, "anchor_samples": args.anchor_samples}

    def data(batch_size: int) -> FashionSamplesDataModule:
        return FashionSamplesDataModule(limit=args.num_images, val_batch_size=batch_size)

    rows: list[dict[str, Any]] = []
    for label in args.pivots:
        pivot_dir = runs / f"pivot_{label}"
        if label.startswith("lsap_o"):
            lam = 0.0 if label == "lsap_o_lambda0" else args.lambda_nscd
            module = LSAP_O(generator=source, lpips=None, space="w+", num_steps=args.lsap_o_steps, lambda_lpips=0.0,
                            lambda_mse=1.0, lambda_nscd=lam, seed=args.seed, progress=False, **common)
            gradients = True
        else:
            encoder = "fashion32_e4e" if label == "e4e" else "fashion32_lsap"
            module = LSAP_E(generator=source, encoder=Encoder4Editing(**ENCODER_ARCH), encoder_checkpoint=encoder,
                            lpips=None, identity=None, moco=None, **common).eval()
            gradients = False
        pivot_seconds = predict(module, InversionWriter(str(pivot_dir)), data(args.batch_size), gradients)
        timing = pivot_dir / "seconds.json"  # the first (real) run's time survives a resumed run
        if timing.is_file():
            pivot_seconds = json.loads(timing.read_text())["seconds_per_image"] * args.num_images
        else:
            timing.write_text(json.dumps({"seconds_per_image": pivot_seconds / args.num_images}))
        if args.pivots_only:
            print(f"pivots {label}: {pivot_seconds:.1f} s", flush=True)
            continue
        sam = SAM(source, pivots_dir=str(pivot_dir), lpips=FeatureDistance("fashion_classifier"),
                  segmenter=SuperpixelSegmenter(num_segments=16), num_steps=args.sam_steps, seed=args.seed,
                  progress=False, **SAM_SETTINGS, **common)
        sam_dir = runs / f"sam_{label}"
        sam_seconds = predict(sam, SAMWriter(str(sam_dir)), data(args.batch_size), True)
        sam_timing = sam_dir / "seconds.json"  # as for the pivot: a resumed run keeps the first run's time
        if sam_timing.is_file():
            sam_seconds = json.loads(sam_timing.read_text())["seconds_per_image"] * args.num_images
        else:
            sam_timing.write_text(json.dumps({"seconds_per_image": sam_seconds / args.num_images}))
        for kind, run_dir, seconds in (("pivot", pivot_dir, pivot_seconds), ("sam", sam_dir, sam_seconds)):
            count = min(len(InversionResults(run_dir)), args.num_images)
            row = {"run": f"{kind}_{label}", "pivot": label, "kind": kind, "images": count,
                   "seconds_per_image": seconds / max(count, 1)}
            row.update(metrics_of(run_dir, args.anchor_samples, args.batch_size))
            row.update(keep_and_edits(run_dir, generator, classifier, labels, directions, strengths))
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_edit"}, default=str), flush=True)

    settings = {"images": args.num_images, "sam_steps": args.sam_steps, "lsap_o_steps": args.lsap_o_steps,
                "lambda_nscd": args.lambda_nscd, "edit_sigmas": args.edit_sigmas, "threads": args.threads,
                "sam": SAM_SETTINGS, "segments": "SLIC, 16 segments", "perceptual": "FeatureDistance(fashion_classifier)"}
    (output / "sam_fashion32.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2,
                                                          default=str) + "\n")
    lines = ["| run | images | MSE | PSNR | SSIM | NSCD | FID (classifier) | class keep | edit success | s / image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['images']} | {fmt(r['mse'])} | {fmt(r['psnr'])} | {fmt(r['ssim'])} | "
                     f"{fmt(r['nscd'])} | {fmt(r['fid_classifier'])} | {fmt(r['class_keep'], 3)} | "
                     f"{fmt(r['edit_success'], 3)} | {r['seconds_per_image']:.2f} |")
    table = "\n".join(lines) + "\n\nSettings: " + json.dumps(settings, default=str) + "\n"
    (output / "sam_fashion32.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
