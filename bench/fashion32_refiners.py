"""Score the shipped fashion32 HFGI refiners and ReStyle encoders against their pivots.

For each method, the 256 shipped test images (``lsap/assets/fashion_mnist_test``) are
inverted / refined into ``<out>/<method>`` (the usual results layout, resumable), then scored
with ``lsap evaluate``'s own evaluators (``lsap.evaluation.evaluate``: MSE, PSNR, SSIM, NSCD of
the codes, FID on the shipped classifier's features, class-edit success along
``sneaker_to_boot`` at 3 std, edits rendered through each result's refinement), plus the
*class keep*: the share of reconstructions that the shipped classifier assigns to the input's
class (the label in the file name). Prints one markdown table.

    OMP_NUM_THREADS=2 python bench/fashion32_refiners.py --out outputs/refiners_fashion32
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from lsap.callbacks import InversionWriter
from lsap.callbacks.hfgi_writer import HFGIWriter
from lsap.data import FashionSamplesDataModule
from lsap.data.fashion_samples import parse_sample_name
from lsap.encoders import Encoder4Editing
from lsap.evaluation import evaluate
from lsap.evaluation.inputs import read_image
from lsap.modules import HFGI, LSAP_E, ReStyle
from lsap.nets.fashion_classifier import load_fashion_classifier
from lsap.results import InversionResults

ASSETS = Path(__file__).resolve().parents[1] / "lsap" / "assets"
REAL = ASSETS / "fashion_mnist_test"
ANCHORS = 20_000  # the anchors of every fashion32 config (cached per generator)


def fashion_encoder(channels: int) -> Encoder4Editing:
    return Encoder4Editing(num_ws=8, w_dim=256, input_size=32, input_channels=channels, blocks_per_stage=[1, 1, 1, 1],
                           stage_channels=[32, 48, 64, 96])


def methods() -> dict[str, tuple[str, callable]]:
    """name -> (what it is, module factory)."""
    common = dict(generator={"checkpoint": "fashion32"}, lpips=None, loss_resolution=32, anchor_samples=ANCHORS)

    def encoder(name):
        return lambda: LSAP_E(encoder=fashion_encoder(3), encoder_checkpoint=name, **common)

    def restyle(path):
        return lambda: ReStyle(encoder=fashion_encoder(6), encoder_checkpoint=str(ASSETS / path), num_steps=5, **common)

    def hfgi(embedding, refiner):
        return lambda: HFGI(embedding=embedding, refiner_checkpoint=refiner, **common)

    return {
        "e4e": ("one-shot e4e baseline (fashion32_e4e)", encoder("fashion32_e4e")),
        "e4e+hfgi": ("fashion32_e4e + HFGI (fashion32_hfgi_e4e)", hfgi("fashion32_e4e", "fashion32_hfgi_e4e")),
        "lsap_e": ("one-shot LSAP_E (fashion32_lsap)", encoder("fashion32_lsap")),
        "lsap_e+hfgi": ("fashion32_lsap + HFGI (fashion32_hfgi_lsap)", hfgi("fashion32_lsap", "fashion32_hfgi_lsap")),
        "restyle_e4e": ("ReStyle, e4e losses, N=5 (fashion32_restyle_e4e)", restyle("encoders/fashion32_restyle_e4e.pt")),
        "restyle_lsap": ("ReStyle with NSCD, N=5 (fashion32_restyle_lsap)", restyle("encoders/fashion32_restyle_lsap.pt")),
    }


def invert(name: str, factory, out: Path) -> Path:
    folder = out / name
    writer = (HFGIWriter if "hfgi" in name else InversionWriter)(output_dir=str(folder))
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[writer], inference_mode=True)
    trainer.predict(factory(), datamodule=FashionSamplesDataModule(val_batch_size=32))
    return folder


def class_keep(folder: Path) -> float:
    classifier = load_fashion_classifier()
    kept = total = 0
    for record in InversionResults(folder):
        label = parse_sample_name(Path(record.name).name + ".png")[1]
        image = read_image(record.image_path)[None]
        with torch.no_grad():
            kept += int(classifier(image).argmax(1)) == label
        total += 1
    return kept / max(total, 1)


def score(folder: Path) -> dict[str, float]:
    report = evaluate(str(folder), str(REAL), real_fit="pad", generator="fashion32", nscd_samples=ANCHORS,
                      classifier="fashion32", fid_features="classifier", direction="sneaker_to_boot", strength=3.0,
                      strength_unit="std", pca_samples=0, batch_size=32)
    metrics = report["metrics"]

    def mean(key: str) -> float | None:
        value = metrics.get(key)
        return value.get("mean") if isinstance(value, dict) else value

    return {"mse": mean("mse"), "psnr": mean("psnr"), "ssim": mean("ssim"), "nscd": mean("nscd"),
            "fid_classifier": mean("fid"), "class_keep": class_keep(folder), "edit_success": mean("class_edit"),
            "skipped": report.get("skipped")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/refiners_fashion32")
    parser.add_argument("--only", nargs="*", help="method names (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    rows = {}
    for name, (what, factory) in methods().items():
        if args.only and name not in args.only:
            continue
        folder = invert(name, factory, out)
        rows[name] = {"what": what, **score(folder)}
        print(json.dumps({name: rows[name]}), flush=True)
    (out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| method | MSE | PSNR | SSIM | NSCD | FID (classifier) | class keep | edit success |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        cells = [row[k] for k in ("mse", "psnr", "ssim", "nscd", "fid_classifier", "class_keep", "edit_success")]
        print(f"| {row['what']} | " + " | ".join("-" if c is None else f"{c:.4g}" for c in cells) + " |")


if __name__ == "__main__":
    main()
