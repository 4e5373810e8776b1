"""The fashion32 claim, measured as a two-stage table: every embedding x every refinement.

Rows (``--embeddings`` / ``--refinements`` choose; a row whose files or module are not in
this checkout is listed with the reason ("not available here: ...")):

* embeddings: the e4e baseline and LSAP_E encoders (lsap/assets/encoders/fashion32_*.pt),
  further encoders (``--extra-encoders LABEL=KIND=FILE``: row ``encoder_<LABEL>``, refined like
  an encoder of KIND, e.g. LSAP_E at the NSCD weight chosen on validation), ReStyle with e4e
  losses and with NSCD (fashion32_restyle_*), LSAP_O in W+ with each ``--lambdas`` value
  (the second one is the pivot compared with the first in the pivot effects) and LSAP_O in W
  at ``--w-lambda``;
* refinements of every pivot: none, PTI (first ``--pti-images``), HFGI (the refiner trained
  over the e4e or the NSCD embedding, by the pivot's kind) and SAM (first ``--sam-images``).

Columns, each a mean over images with a 95 % bootstrap interval (``bench/claims_table.py``,
``lsap.metrics.bootstrap``): MSE, PSNR, SSIM (``lsap.evaluation.evaluate``, inputs padded to
32 px), the offline perceptual distance (``lsap.nets.FeatureDistance`` on the shipped
classifier), NSCD, class keep and edit success (the six class edits at ``--edit-sigmas``
std of w, rendered through each result's refinement) by **both** the shipped classifier
(the labeller, which labelled the directions' codes) and the independent judge
(``lsap.nets.fashion_judge``), the other classes' movement, the FID of the reconstructions
in the labeller's features (over resampled image pairs), LEC for the one-shot encoders and
seconds per image. Below the table: Spearman's rho across rows of mean NSCD with FID, class
keep and edit success (the method-level claim), the per-image correlation, and the pivot
effect per refinement (LSAP pivot minus baseline pivot, paired over the same images).

Training seeds: ``--seed-encoders KIND=FILE ...`` adds, for each further training seed of the
e4e (KIND ``e4e``) or LSAP_E (``lsap``) encoder, a row ``encoder_<KIND>_seed<k>`` (k = 1, 2, ...
in the order given per kind; refinement none only), scored in every column; the table then
gives, per kind, the mean ± sd across seeds (main row and seed rows) of every column's mean.
Seed rows stay out of the method-level correlation (one row per method there).

Test images: ``--test-images auto`` takes the full 10 000-image Fashion-MNIST test split when
Debian's ``dataset-fashion-mnist`` is installed (the first ``--num-images`` of it), else the
256 shipped images; the table says which.

    python bench/claims_fashion32.py [--generator fashion32] [--output outputs/claims_fashion32]
        [--num-images N] [--optim-images 256] [--pti-images 64] [--sam-images 16] [--sam-steps 250]

Writes ``claims.json``, ``claims.md`` (the table) and ``per_image.jsonl`` to ``--output``;
every run's outputs and ``lsap evaluate`` reports stay under ``--output/runs/<row>``. Fixed
seeds throughout. Smoke run: ``--generator '<GeneratorSource JSON>' --num-images 4
--allow-untrained-encoders --directions DIR --test-images shipped`` with DIR from
``bench/fashion32_directions.py``.
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
from lsap.evaluation.evaluators import EvaluationContext, LECEvaluator
from lsap.evaluation.options import EvaluationOptions
from lsap.evaluation.run import EvaluationRun
from lsap.model import GeneratorSource
from lsap.model.checkpoints import builtin_generator_path, save_generator
from lsap.model.source import generator_from_spec
from lsap.modules import LSAP_E, LSAP_O, PTI
from lsap.nets.fashion_classifier import load_fashion_classifier
from lsap.run_settings import run_settings, settings_fingerprint

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


def is_baseline_pivot(embedding: str) -> bool:
    """Pivots made without the NSCD loss: the e4e losses, or LSAP_O at lambda 0."""
    return embedding in ("encoder_e4e", "restyle_e4e") or embedding.endswith("_lambda0")


ENCODER_KINDS = ("e4e", "lsap")


def parse_seed_encoders(items: list[str]) -> list[tuple[str, str, Path]]:
    """``KIND=FILE`` items as ``(embedding, kind, file)``, ``encoder_<kind>_seed<k>`` numbered per kind from 1."""
    out, counts = [], {kind: 0 for kind in ENCODER_KINDS}
    for item in items:
        kind, sep, file = item.partition("=")
        if not sep or kind not in ENCODER_KINDS or not file:
            raise SystemExit(f"--seed-encoders: expected KIND=FILE with KIND one of {', '.join(ENCODER_KINDS)}, "
                             f"got {item!r}")
        counts[kind] += 1
        out.append((f"encoder_{kind}_seed{counts[kind]}", kind, Path(file)))
    return out


def parse_extra_encoders(items: list[str]) -> list[tuple[str, str, Path]]:
    """``LABEL=KIND=FILE`` items as ``(embedding, kind, file)`` with embedding ``encoder_<LABEL>``."""
    out = []
    for item in items:
        parts = item.split("=", 2)
        if len(parts) != 3 or not parts[0] or parts[1] not in ENCODER_KINDS or not parts[2]:
            raise SystemExit(f"--extra-encoders: expected LABEL=KIND=FILE with KIND one of "
                             f"{', '.join(ENCODER_KINDS)}, got {item!r}")
        label, kind, file = parts
        if label in ENCODER_KINDS or "/" in label or any(c.isspace() for c in label):
            raise SystemExit(f"--extra-encoders: the label {label!r} must differ from {ENCODER_KINDS} and hold "
                             "no '/' or spaces")
        out.append((f"encoder_{label}", kind, Path(file)))
    if len({e for e, _, _ in out}) != len(out):
        raise SystemExit("--extra-encoders: every LABEL must be different")
    return out


def run_inversion(module: nn.Module, run_dir: Path, data: FashionSamplesDataModule, gradients: bool,
                  writer: type = InversionWriter, reuse: bool = False, pivot: dict[str, Any] | None = None
                  ) -> tuple[float, dict[str, Any]]:
    """``trainer.predict`` with an InversionWriter (or the refinement's own ``writer``) into
    ``run_dir``; returns the wall time (also in ``run_dir/seconds.json``) and the run's recipe
    (in ``recipe.json``): the module's result settings by their fingerprint (the one its
    ``settings.json`` holds: weights by their fingerprints), the images' folder and, for a
    refinement, its ``pivot`` run's recipe. With ``reuse``, a folder that already holds all
    its images is not run again when its recorded recipe is this run's."""
    recipe = {"settings": settings_fingerprint(run_settings(module, data)), "images": str(data.root),
              "pivot": pivot}
    expected = data.limit
    images = sorted((run_dir / "images").glob("*.png")) if (run_dir / "images").is_dir() else []
    recorded = run_dir / "recipe.json"
    if reuse and images and expected is not None and len(images) >= expected:
        timing = run_dir / "seconds.json"
        same = recorded.is_file() and json.loads(recorded.read_text()) == json.loads(json.dumps(recipe))
        if same and timing.is_file():
            return float(json.loads(timing.read_text())["seconds"]), recipe
        print(f"{run_dir.name}: run again, its folder was made from "
              f"{'another recipe' if recorded.is_file() else 'an unrecorded recipe'}", flush=True)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, inference_mode=not gradients,
                      callbacks=[writer(str(run_dir), skip_done=False)], default_root_dir=str(run_dir))
    start = time.perf_counter()
    trainer.predict(module, datamodule=data, return_predictions=False)
    seconds = time.perf_counter() - start
    (run_dir / "seconds.json").write_text(json.dumps({"seconds": seconds}) + "\n")
    recorded.write_text(json.dumps(recipe, indent=1, sort_keys=True) + "\n")
    return seconds, recipe


def lsap_o_module(source: GeneratorSource, space: str, lam: float, steps: int, seed: int,
                  anchor_samples: int) -> LSAP_O:
    """LSAP_O as the claims table runs it: MSE only (no perceptual loss) at 32 px, NSCD weight ``lam``."""
    return LSAP_O(generator=source, space=space, num_steps=steps, lambda_lpips=0.0, lambda_mse=1.0, lambda_nscd=lam,
                  seed=seed, progress=False, lpips=None, loss_resolution=32, anchor_samples=anchor_samples)


def scored_per_image(run_dir: Path, real: Path, generator_path: Path, anchor_samples: int, batch_size: int,
                     labels: dict[str, int], classifiers: dict[str, nn.Module],
                     inception: str | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]], EvaluationRun]:
    """``lsap evaluate`` of a run against ``real`` (inputs padded to 32 px; its MSE is of the
    8-bit reconstructions), its per-image values, and class keep by each classifier
    (``keep_<name>``) added to them. Returns ``(report, per_image, run)``."""
    import claims_table as table

    report = evaluate(str(run_dir), str(real), output=str(run_dir / "evaluation"), inception=inception,
                      generator=str(generator_path), nscd_samples=anchor_samples, real_fit="pad", pca_samples=0,
                      batch_size=batch_size)
    per_image = {row["name"]: row for row in
                 (json.loads(line) for line in (run_dir / "evaluation" / "per_image.jsonl").read_text().splitlines()
                  if line.strip())}
    run = EvaluationRun.load(run_dir, real, "pad")
    for key, values in table.class_keep(run, labels, classifiers).items():
        for name, value in values.items():
            per_image.setdefault(name, {"name": name})[f"keep_{key}"] = value
    return report, per_image, run


def package_context(run_dir: Path, real: Path = SHIPPED_SAMPLES_DIR, **options: Any) -> tuple[EvaluationRun, EvaluationContext]:
    """The run loaded once by lsap's evaluation (inputs padded to 32 px) and an evaluator context."""
    chosen = EvaluationOptions(real=str(real), real_fit="pad", **options)
    run = EvaluationRun.load(run_dir, chosen.real, chosen.real_fit)
    return run, EvaluationContext(chosen, torch.device(chosen.device), {name: {"name": name} for name in run.names})


def encoder_lec(run_dir: Path, generator_path: Path, encoder: Path, direction: Path, sigmas: float,
                batch_size: int, real: Path = SHIPPED_SAMPLES_DIR) -> dict[str, Any]:
    """LEC of an encoder on the images of ``real`` (lsap's LEC evaluator), the edit ``sigmas`` std of w."""
    run, context = package_context(run_dir, real, generator=str(generator_path), encoder=str(encoder),
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
    import claims_table as table  # the two-stage table's helpers, beside this script

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="fashion32")
    parser.add_argument("--output", default="outputs/claims_fashion32")
    parser.add_argument("--test-images", choices=["auto", "full", "shipped"], default="auto",
                        help="auto: the full 10 000-image test split when Debian's dataset-fashion-mnist is "
                             "installed, else the 256 shipped images")
    parser.add_argument("--fashion-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--num-images", type=int, default=None,
                        help="encoder rows use the first N test images (default: all of them)")
    parser.add_argument("--optim-images", type=int, default=256, help="LSAP_O rows use the first N")
    parser.add_argument("--pti-images", type=int, default=64, help="PTI runs on the first N of each pivot's images")
    parser.add_argument("--e4e-encoder", default=str(ASSETS / "encoders" / "fashion32_e4e.pt"))
    parser.add_argument("--lsap-encoder", default=str(ASSETS / "encoders" / "fashion32_lsap.pt"))
    parser.add_argument("--seed-encoders", nargs="+", default=[], metavar="KIND=FILE",
                        help="further training seeds of the e4e / LSAP_E encoders (KIND e4e or lsap): one row "
                             "encoder_<KIND>_seed<k> each (refinement none) and a seeds table")
    parser.add_argument("--extra-encoders", nargs="+", default=[], metavar="LABEL=KIND=FILE",
                        help="further encoder rows encoder_<LABEL>, refined like an encoder of KIND (e4e or lsap)")
    parser.add_argument("--allow-untrained-encoders", action="store_true",
                        help="smoke runs: use seeded untrained encoders where the files are missing")
    parser.add_argument("--directions", default=str(ASSETS / "directions"))
    parser.add_argument("--judge", default=None, help="judge weights (default: the shipped fashion_judge)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.05, 0.5])
    parser.add_argument("--w-lambda", type=float, default=0.05, help="lambda_NSCD of the LSAP_O W row")
    parser.add_argument("--lsap-o-steps", type=int, default=80)
    parser.add_argument("--pti-steps", type=int, default=30)
    parser.add_argument("--refinements", nargs="+", default=["none", "pti", "hfgi", "sam"],
                        choices=["none", "pti", "hfgi", "sam"])
    parser.add_argument("--embeddings", nargs="+", default=None,
                        help="embedding rows to make (default: all; names as in the table)")
    parser.add_argument("--restyle-encoders", nargs=2, default=[str(ASSETS / "encoders" / "fashion32_restyle_e4e.pt"),
                                                                 str(ASSETS / "encoders" / "fashion32_restyle_lsap.pt")],
                        metavar=("E4E", "NSCD"), help="ReStyle encoders (rows left out, and said so, when missing)")
    parser.add_argument("--hfgi-refiners", nargs=2, default=["fashion32_hfgi_e4e", "fashion32_hfgi_lsap"],
                        metavar=("E4E", "LSAP"), help="HFGI refiners trained over the e4e / LSAP_E encoders")
    parser.add_argument("--sam-images", type=int, default=16, help="SAM runs on the first N of each pivot's images")
    parser.add_argument("--sam-steps", type=int, default=250)
    parser.add_argument("--restyle-steps", type=int, default=5)
    parser.add_argument("--edit-sigmas", type=float, default=3.0,
                        help="edit strength in standard deviations of sampled w along the direction")
    parser.add_argument("--anchor-samples", type=int, default=20_000)
    parser.add_argument("--inception", default=None, help="Inception file for FID (skipped when not found)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of each interval")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lec-batch-size", type=int, default=8)
    parser.add_argument("--lec-images", type=int, default=256, help="LEC on the first N images")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="keep run folders under --output that already hold all their images and were made "
                             "from the same files and settings (their recipe.json; resume)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    seed_encoders = parse_seed_encoders(args.seed_encoders)
    extra_encoders = parse_extra_encoders(args.extra_encoders)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    runs = output / "runs"

    gfile = generator_file(args.generator, output)
    source = GeneratorSource(checkpoint=str(gfile))
    generator = source.build()
    from lsap.nets.fashion_judge import load_fashion_judge
    from lsap.nets.perceptual import FeatureDistance

    labeller = load_fashion_classifier()
    classifiers = {"labeller": labeller, "judge": load_fashion_judge(args.judge)}
    perceptual = FeatureDistance("fashion_classifier")
    images_dir, images_note = table.choose_test_images(args.test_images, output, args.fashion_root)
    real_dir = images_dir or SHIPPED_SAMPLES_DIR
    samples = FashionSamplesDataset(real_dir, limit=args.num_images)
    labels = {name: int(label) for name, label in zip(samples.names, samples.labels)}
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
    edits = [(n, directions[n], strengths[n], src, dst) for n, src, dst in CLASS_EDITS]

    def data(limit: int, batch_size: int) -> FashionSamplesDataModule:
        return FashionSamplesDataModule(root=str(real_dir), limit=min(limit, len(samples)),
                                        val_batch_size=batch_size)

    rows_todo: list[dict[str, Any]] = []
    common = {"lpips": None, "loss_resolution": 32, "anchor_samples": args.anchor_samples}
    # (embedding, kind, file, seed row): the main encoders, the extra ones, then the further seeds.
    encoder_rows = [(f"encoder_{kind}", kind, Path(path), False)
                    for kind, path in (("e4e", args.e4e_encoder), ("lsap", args.lsap_encoder))]
    encoder_rows += [(embedding, kind, file, False) for embedding, kind, file in extra_encoders]
    encoder_rows += [(embedding, kind, file, True) for embedding, kind, file in seed_encoders]
    wanted = set(args.embeddings) if args.embeddings else None
    candidates = [row[0] for row in encoder_rows] + ["restyle_e4e", "restyle_lsap"] + \
        [f"lsap_o_{space}_lambda{lam:g}" for space, lam in [("w+", lam) for lam in args.lambdas] + [("w", args.w_lambda)]]
    if wanted is not None and wanted - set(candidates):
        raise SystemExit(f"--embeddings: unknown rows {sorted(wanted - set(candidates))}; the rows are {candidates}")

    def skipped(name: str) -> bool:
        return wanted is not None and name not in wanted

    for embedding, kind, path, seed_row in encoder_rows:
        if skipped(embedding):
            continue
        file, trained = encoder_file(path, embedding.removeprefix("encoder_"), output, args.allow_untrained_encoders,
                                     args.seed)
        module = LSAP_E(generator=source, encoder=Encoder4Editing(**ENCODER_ARCH), encoder_checkpoint=str(file),
                        identity=None, moco=None, **common).eval()
        name = embedding + ("" if trained else "_untrained")
        seconds, recipe = run_inversion(module, runs / name, data(len(samples), args.batch_size), gradients=False,
                                        reuse=args.reuse_runs)
        lec = encoder_lec(runs / name, gfile, file, directions_dir / f"{LEC_DIRECTION}.pt", args.edit_sigmas,
                          args.lec_batch_size, table.first_images(Path(real_dir), args.lec_images, output / "test_images"))
        rows_todo.append({"embedding": embedding, "method": name, "refinement": "none", "kind": kind,
                          "dir": runs / name, "seconds": seconds, "images": len(samples), "lec": lec,
                          "encoder": str(file), "recipe": recipe, **({"seed_of": kind} if seed_row else {})})
    unavailable: dict[str, str] = {}
    restyle_files = dict(zip(("e4e", "lsap"), args.restyle_encoders))
    if all(Path(f).is_file() for f in restyle_files.values()):
        from lsap.modules import ReStyle

        for label, file in restyle_files.items():
            if skipped(f"restyle_{label}"):
                continue
            module = ReStyle(generator=source, encoder=Encoder4Editing(**{**ENCODER_ARCH, "input_channels": 6}),
                             encoder_checkpoint=file, num_steps=args.restyle_steps, identity=None, moco=None,
                             **common).eval()
            name = f"restyle_{label}"
            seconds, recipe = run_inversion(module, runs / name, data(len(samples), args.batch_size),
                                            gradients=False, reuse=args.reuse_runs)
            rows_todo.append({"embedding": name, "method": name, "refinement": "none", "dir": runs / name,
                              "kind": label, "seconds": seconds, "images": len(samples), "encoder": file,
                              "recipe": recipe})
    else:
        missing = [f for f in restyle_files.values() if not Path(f).is_file()]
        unavailable["ReStyle (e4e, NSCD)"] = f"no ReStyle encoder file {', '.join(missing)}"
    optim_images = min(args.optim_images, len(samples))
    spaces = [("w+", lam) for lam in args.lambdas] + [("w", args.w_lambda)]
    for space, lam in spaces:
        name = f"lsap_o_{space}_lambda{lam:g}"
        if skipped(name):
            continue
        module = lsap_o_module(source, space, lam, args.lsap_o_steps, args.seed, args.anchor_samples)
        seconds, recipe = run_inversion(module, runs / name, data(optim_images, args.batch_size), gradients=True,
                                        reuse=args.reuse_runs)
        rows_todo.append({"embedding": name, "method": name, "refinement": "none", "dir": runs / name,
                          "kind": "e4e" if is_baseline_pivot(name) else "lsap", "seconds": seconds,
                          "images": optim_images, "recipe": recipe})
    pti_images = min(args.pti_images, len(samples))
    # Refinements run on every pivot but the further seeds (those are scored unrefined only).
    pivots = [r for r in rows_todo if r["refinement"] == "none" and not r.get("seed_of")]
    if "pti" in args.refinements:
        for pivot in pivots:
            name = f"pti_on_{pivot['embedding']}"
            module = PTI(generator=source, pivots_dir=str(pivot["dir"]), num_steps=args.pti_steps, lambda_lpips=0.0,
                         early_stop_lpips=None, progress=False, **common)
            seconds, _ = run_inversion(module, runs / name, data(pti_images, 1), gradients=True,
                                       reuse=args.reuse_runs, pivot=pivot["recipe"])
            rows_todo.append({"embedding": pivot["embedding"], "method": name, "refinement": "pti",
                              "dir": runs / name, "seconds": seconds + pivot["seconds"] / pivot["images"] * pti_images,
                              "images": pti_images})
    if "hfgi" in args.refinements:
        try:
            from lsap.callbacks.hfgi_writer import HFGIWriter
            from lsap.modules import HFGI

            refiners = dict(zip(("e4e", "lsap"), args.hfgi_refiners))
            for pivot in pivots:
                kind = pivot["kind"]  # the refiner trained over the pivots of its kind
                name = f"hfgi_on_{pivot['embedding']}"
                module = HFGI(generator=source, pivots_dir=str(pivot["dir"]), refiner_checkpoint=refiners[kind],
                              **common).eval()
                seconds, _ = run_inversion(module, runs / name, data(pivot["images"], args.batch_size),
                                           gradients=False, writer=HFGIWriter, reuse=args.reuse_runs,
                                           pivot=pivot["recipe"])
                rows_todo.append({"embedding": pivot["embedding"], "method": name, "refinement": "hfgi",
                                  "dir": runs / name, "images": pivot["images"],
                                  "seconds": seconds + pivot["seconds"], "refiner": refiners[kind]})
        except (ImportError, FileNotFoundError) as error:
            unavailable["HFGI on every pivot"] = f"not available here ({type(error).__name__}: {error})"
    if "sam" in args.refinements:
        try:
            from lsap.callbacks.sam_writer import SAMWriter
            from lsap.modules import SAM
            from lsap.refine.segments import SuperpixelSegmenter

            sam_images = min(args.sam_images, len(samples))
            for pivot in pivots:
                name = f"sam_on_{pivot['embedding']}"
                module = SAM(source, pivots_dir=str(pivot["dir"]), lpips=FeatureDistance("fashion_classifier"),
                             segmenter=SuperpixelSegmenter(num_segments=16), num_steps=args.sam_steps, seed=args.seed,
                             progress=False, invertibility="fashion32", blocks=[4, 8], threshold=0.225,
                             loss_resolution=32, anchor_samples=args.anchor_samples)
                seconds, _ = run_inversion(module, runs / name, data(sam_images, args.batch_size), gradients=True,
                                           writer=SAMWriter, reuse=args.reuse_runs, pivot=pivot["recipe"])
                rows_todo.append({"embedding": pivot["embedding"], "method": name, "refinement": "sam",
                                  "dir": runs / name, "images": sam_images,
                                  "seconds": seconds + pivot["seconds"] / pivot["images"] * sam_images})
        except (ImportError, FileNotFoundError) as error:
            unavailable["SAM on every pivot"] = f"not available here ({type(error).__name__}: {error})"
    for refinement, label in (("pti", "PTI"), ("hfgi", "HFGI"), ("sam", "SAM")):
        if refinement not in args.refinements:
            unavailable[f"{label} on every pivot"] = "not run in this table (not in --refinements)"
    if "none" not in args.refinements:
        rows_todo = [r for r in rows_todo if r["refinement"] != "none"]

    from lsap.evaluation.run import EvaluationRun

    rows, nscd_values, success_values = [], [], []
    for method in rows_todo:
        run_dir: Path = method["dir"]
        row_real = table.first_images(Path(real_dir), method["images"], output / "test_images")
        report, per_image, run = scored_per_image(run_dir, row_real, gfile, args.anchor_samples, args.batch_size,
                                                  labels, classifiers, args.inception)
        for name, value in table.perceptual_distance(run, perceptual).items():
            per_image.setdefault(name, {"name": name})["perceptual"] = value
        per_edit = table.edit_scores(run, labels, generator, classifiers, edits)
        values = table.row_intervals(per_image, per_edit, args.resamples, args.seed)
        real_feats, fake_feats = table.fid_features(run, labeller)
        values["fid"] = table.fid_interval(real_feats, fake_feats, resamples=max(20, args.resamples // 5),
                                           seed=args.seed)
        for key, result in per_edit.items():
            nscd = per_image.get(key.split("|")[0], {}).get("nscd")
            if nscd is not None:
                nscd_values.append(float(nscd))
                success_values.append(result["edit_judge"])
        lec = method.get("lec")
        edit_counts = {n: sum(1 for k in per_edit if k.endswith(f"|{n}")) for n, _, _ in CLASS_EDITS}
        row = {
            "method": method["method"], "embedding": method["embedding"], "refinement": method["refinement"],
            "images": len(run.pairs), "values": values, "lec": lec["mean"] if lec else None,
            "seconds_per_image": method["seconds"] / max(1, method["images"]),
            "per_image": per_image, "per_edit": per_edit, "edit_counts": edit_counts,
            "skipped": report["skipped"], "encoder": method.get("encoder"), "kind": method.get("kind"),
            "seed_of": method.get("seed_of"),
            # the single-number view of earlier tables
            "mse": values["mse"].value if values["mse"] else None,
            "nscd": values["nscd"].value if values["nscd"] else None,
            "fid_classifier": values["fid"].value, "fid_inception": report["metrics"].get("fid", {}).get("mean"),
            "edit_reads_target": values["edit_labeller"].value if values["edit_labeller"] else float("nan"),
            "edits": {"all": {"count": len(per_edit)}}, "lec_detail": lec,
        }
        rows.append(row)
        print(f"{row['method']}: " + ", ".join(f"{k} {table.cell(values.get(k), 4)}"
                                                 for k in ("mse", "nscd", "keep_judge", "edit_judge")), flush=True)
    correlations = table.spearman_across_rows([r for r in rows if not r.get("seed_of")])  # one row per method
    seeds = table.seeds_table(rows)
    per_image_correlation = spearman(nscd_values, success_values)
    chosen = f"lsap_o_w+_lambda{args.lambdas[1] if len(args.lambdas) > 1 else args.lambdas[0]:g}"
    pairs = table.PIVOT_PAIRS + ((chosen, f"lsap_o_w+_lambda{args.lambdas[0]:g}"),)
    pairs += tuple((embedding, "encoder_e4e") for embedding, kind, _ in extra_encoders if kind == "lsap")
    effects = table.pivot_effects(rows, pairs, args.resamples, args.seed)
    ran = {r["method"] for r in rows_todo}
    settings = {"generator": args.generator, "test images": images_note, "encoder images": len(samples),
                "seed rows": len(seed_encoders)}
    if any(m.startswith("restyle_") for m in ran):
        settings["ReStyle steps"] = args.restyle_steps
    if any(m.startswith("lsap_o_") for m in ran):  # only the settings of rows that ran
        settings.update({"LSAP_O images": optim_images, "LSAP_O steps": args.lsap_o_steps,
                         "lambda_NSCD": args.lambdas, "LSAP_O W lambda": args.w_lambda})
    if any(m.startswith("pti_on_") for m in ran):
        settings.update({"PTI images": pti_images, "PTI steps": args.pti_steps})
    if any(m.startswith("sam_on_") for m in ran):
        settings.update({"SAM images": min(args.sam_images, len(samples)), "SAM steps": args.sam_steps})
    settings.update({"edit strength": f"{args.edit_sigmas:g} std of w along the direction",
                     "bootstrap resamples": args.resamples, "reused runs": args.reuse_runs,
                     "anchor samples": args.anchor_samples, "seed": args.seed, "threads": args.threads})
    result = {"settings": settings, "rows": [{k: v for k, v in r.items() if k not in ("per_image", "per_edit")}
                                             for r in rows],
              "spearman_across_rows": correlations, "seeds": seeds, "spearman_nscd_vs_edit_success": per_image_correlation,
              "pivot_effects": effects, "unavailable": unavailable, "edit_strengths": strengths,
              "seconds_total": time.perf_counter() - started}
    (output / "claims.json").write_text(json.dumps(table.interval_json(result), indent=2, default=str) + "\n")
    with (output / "per_image.jsonl").open("w") as f:
        for r in rows:
            for name, values in r["per_image"].items():
                f.write(json.dumps({"method": r["method"], **values}) + "\n")
    text = table.markdown(rows, unavailable, correlations, effects, per_image_correlation, settings, seeds)
    (output / "claims.md").write_text(text)
    print(text, end="")
    print(f"wrote {output / 'claims.json'} and {output / 'claims.md'} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
