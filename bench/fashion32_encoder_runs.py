"""Encoder runs at a real budget for fashion32: the e4e baseline and LSAP_E, several seeds,
validated on real *training* images held out from encoder training.

The encoders train on the generator's own samples (as the shipped recipe does); their
validation set is a class-balanced folder of real Fashion-MNIST **training** images
(never the test images), written once by ``valset``. Each run's config is the shipped
config (``configs/encoder_fashion32_{e4e,lsap}.yaml``) with only these changes, written
as plain YAML into the run's folder: the budget (``--max-steps``), the validation folder,
the seed (``seed_everything`` and the training samples' seed), the number of training
samples, the NSCD weight (LSAP_E only, ``--nscd-weight``), and where logs and
checkpoints go. A run resumes from its ``last.ckpt`` (Lightning's ``--ckpt_path last``),
so stopping and restarting one loses at most the steps since its last checkpoint.

The ReStyle encoders (kinds ``restyle_e4e`` and ``restyle_lsap``, from
``configs/restyle_fashion32_{e4e,lsap}.yaml``, whose NSCD weights are 0 and 0.5) run the
same way, validated with their 5 ReStyle steps on the same split; ``export`` and ``best``
write them with ``bench/export_fashion32_restyle.py``.

    python bench/fashion32_encoder_runs.py valset                      # runs/fashion_val_train ($LSAP_RUNS_DIR)
    python bench/fashion32_encoder_runs.py command e4e 0                # print the exact command of one run
    python bench/fashion32_encoder_runs.py launch e4e 0 lsap 0          # start runs in the background (niced)
    python bench/fashion32_encoder_runs.py curves                       # validation curves of every run
    python bench/fashion32_encoder_runs.py curves e4e_s0 lsap_s0 --markdown   # val/mse, val/nscd per 1000 steps
    python bench/fashion32_encoder_runs.py curves e4e_s0 e4e_s1 lsap_s0 lsap_s1 --seeds-mean   # mean ± sd per kind
    python bench/fashion32_encoder_runs.py choose-weight 0.05 0.15 0.5 [--json OUT] [--export OUT.pt]
    python bench/fashion32_encoder_runs.py run e4e 0 e4e 1 --jobs 2     # run in the foreground, 2 at a time
    python bench/fashion32_encoder_runs.py run restyle_e4e 0 restyle_lsap 0 --max-steps 6000   # the ReStyle pair
    python bench/fashion32_encoder_runs.py export e4e 0 out.pt          # export a finished run's encoder
    python bench/fashion32_encoder_runs.py best e4e 0 1 2 out.pt        # export the seed of lowest final val/mse
    python bench/fashion32_encoder_runs.py score e4e 0 --test-dir DIR   # MSE, NSCD, class keep (both classifiers)
    python bench/fashion32_encoder_runs.py score e4e 0 e4e 1 --test-dir DIR --markdown   # and mean ± sd per kind
    python bench/fashion32_encoder_runs.py scores-table A.jsonl B.jsonl       # the same table from saved score output

``best`` compares only runs stopped at the same final step (an error otherwise), and with
``--others DIR`` also exports the other seeds, as ``DIR/fashion32_<kind>_s<seed>.pt``.

``choose-weight`` applies a rule fixed before any result was seen:

    Among the LSAP_E NSCD weights given (runs lsap_s0_nscd<w>; the plain lsap_s0 run is weight
    0.5, the config's), choose the one with the lowest final validation MSE among those whose
    final validation NSCD is at most half the final validation NSCD of the e4e baseline run
    e4e_s0; ties go to the larger weight; if none qualifies, say so and choose 0.5.

Every run compared (e4e_s0 included) must have stopped at the same final step.

A run's command is ``OMP_NUM_THREADS=1 lsap fit --config <run>/config.yaml --ckpt_path last``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from runs_folder import runs_folder


REPO = Path(__file__).resolve().parent.parent
BASE_CONFIGS = {"e4e": REPO / "configs/encoder_fashion32_e4e.yaml", "lsap": REPO / "configs/encoder_fashion32_lsap.yaml",
                "restyle_e4e": REPO / "configs/restyle_fashion32_e4e.yaml",
                "restyle_lsap": REPO / "configs/restyle_fashion32_lsap.yaml"}
# The exporter of each kind's Lightning checkpoint into the small shipped file.
EXPORTERS = {"e4e": REPO / "bench/export_fashion32_encoder.py", "lsap": REPO / "bench/export_fashion32_encoder.py",
             "restyle_e4e": REPO / "bench/export_fashion32_restyle.py",
             "restyle_lsap": REPO / "bench/export_fashion32_restyle.py"}
DEFAULT_RUNS = runs_folder()
VAL_PER_CLASS = 50
CONFIG_NSCD_WEIGHT = 0.5  # LSAP_E's nscd_weight in configs/encoder_fashion32_lsap.yaml
WEIGHT_RULE = ("Among the LSAP_E NSCD weights given (runs lsap_s0_nscd<w>; the plain lsap_s0 run is weight 0.5, "
               "the config's), choose the one with the lowest final validation MSE among those whose final "
               "validation NSCD is at most half the final validation NSCD of the e4e baseline run e4e_s0; ties go "
               "to the larger weight; if none qualifies, say so and choose 0.5.")


def write_validation_set(out: Path, root: str, per_class: int = VAL_PER_CLASS, seed: int = 0) -> Path:
    """``per_class`` training images of each class (a seeded choice), as the 28 px grey PNGs
    ``FashionSamplesDataset`` reads, named ``<train index>_<class>.png``."""
    from PIL import Image

    from lsap.data.fashion_mnist import FILES, check_root, read_idx

    root_path = check_root(root)
    images = read_idx(root_path / FILES["train"][0])
    labels = read_idx(root_path / FILES["train"][1])
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = sorted(int(i) for c in range(10) for i in order[labels[order] == c][:per_class])
    out.mkdir(parents=True, exist_ok=True)
    for index in chosen:
        Image.fromarray(images[index], mode="L").save(out / f"{index:05d}_{labels[index]}.png")
    print(f"wrote {len(chosen)} training images ({per_class} per class) to {out}")
    return out


def seed_group(name: str) -> str:
    """A run's name without its seed: the group its seeds form (``lsap_s2_nscd0.15`` -> ``lsap_nscd0.15``)."""
    match = re.fullmatch(r"(.*)_s\d+(.*)", name)
    return match.group(1) + match.group(2) if match else name


def run_name(kind: str, seed: int, nscd_weight: float | None) -> str:
    name = f"{kind}_s{seed}"
    if kind == "lsap" and nscd_weight is not None:
        name += f"_nscd{nscd_weight:g}"
    return name


def run_config(kind: str, seed: int, run_dir: Path, val_dir: Path, max_steps: int, num_train: int,
               val_every: int, nscd_weight: float | None, generator: str | None = None,
               anchor_samples: int | None = None) -> dict:
    config = yaml.safe_load(BASE_CONFIGS[kind].read_text())
    trainer = config["trainer"]
    trainer["max_steps"] = max_steps
    trainer["val_check_interval"] = val_every
    trainer["check_val_every_n_epoch"] = None  # validate by steps, across epochs
    trainer.pop("limit_val_batches", None)  # the ReStyle configs validate nothing by themselves
    trainer["default_root_dir"] = str(run_dir)
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                         "init_args": {"save_dir": str(run_dir), "name": "logs", "version": None}}
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["dirpath"] = str(run_dir / "checkpoints")
            callback["init_args"]["every_n_train_steps"] = 500  # resume point between validations
    # Reconstruction grids need an image logger; the CSV logger has none.
    trainer["callbacks"] = [c for c in trainer["callbacks"] if not c["class_path"].endswith("ReconstructionGridCallback")]
    config["seed_everything"] = seed
    model = config["model"]["init_args"]
    if nscd_weight is not None:
        if kind != "lsap":
            raise SystemExit("--nscd-weight applies to lsap runs only (e4e is nscd_weight 0 by definition; "
                             "the ReStyle kinds keep their configs' weights)")
        model["nscd_weight"] = nscd_weight
    data = config["data"]["init_args"]
    if generator is not None:  # another generator file: the frozen one and the training samples' source
        model["generator"] = {"checkpoint": generator}
        data["train_generator"] = {"checkpoint": generator}
    if anchor_samples is not None:
        model["anchor_samples"] = anchor_samples
    data["root"] = str(val_dir)
    data["seed"] = seed
    data["num_train"] = num_train
    return config


def prepare(args: argparse.Namespace, kind: str, seed: int) -> tuple[Path, list[str]]:
    name = run_name(kind, seed, args.nscd_weight)
    run_dir = args.runs / "encoders" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_config(kind, seed, run_dir, args.val_dir, args.max_steps, args.num_train, args.val_every,
                        args.nscd_weight, args.generator, args.anchor_samples)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    lsap = str(Path(sys.executable).with_name("lsap"))
    return run_dir, [lsap, "fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last"]


def pairs(items: list[str]) -> list[tuple[str, int]]:
    if len(items) % 2:
        raise SystemExit("give runs as KIND SEED pairs, e.g. e4e 0 lsap 0")
    out = []
    for kind, seed in zip(items[::2], items[1::2]):
        if kind not in BASE_CONFIGS:
            raise SystemExit(f"kind must be one of {sorted(BASE_CONFIGS)}, got {kind!r}")
        out.append((kind, int(seed)))
    return out


def read_curve(run_dir: Path) -> list[dict]:
    """The run's validation rows by step. Each launch (the first and every resume) logs into a
    new ``logs/version_N``; they are merged in launch order, a later launch's row replacing an
    earlier one at the same step."""
    by_step: dict[int, dict] = {}
    versions = sorted((run_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for path in versions:
        with path.open() as f:
            for row in csv.DictReader(f):
                val = {k: v for k, v in row.items() if k.startswith("val") and v not in ("", None)}
                if val:
                    step = int(row["step"])
                    by_step[step] = {"step": step, **{k: float(v) for k, v in val.items()}}
    return [by_step[step] for step in sorted(by_step)]


def final_val(run_dir: Path, key: str = "val/mse") -> tuple[int, float]:
    """``(step, value)`` of a run's last validation row holding ``key``."""
    curve = [row for row in read_curve(run_dir) if key in row]
    if not curve:
        raise SystemExit(f"run {run_dir} has no validation result (metrics.csv without {key})")
    return curve[-1]["step"], curve[-1][key]


def same_final_step(finals: dict[str, int]) -> int:
    """The common final step of the runs ``{name: final step}``; an error naming them otherwise."""
    if len(set(finals.values())) != 1:
        raise SystemExit("runs stopped at different final steps, so their final validation results do not "
                         "compare: " + ", ".join(f"{name} at step {step}" for name, step in finals.items())
                         + " (let them all reach the same --max-steps)")
    return next(iter(finals.values()))


def weight_run_name(weight: float) -> str:
    return "lsap_s0" if weight == CONFIG_NSCD_WEIGHT else run_name("lsap", 0, weight)


def choose_weight(runs: Path, weights: list[float]) -> dict:
    """The NSCD weight by ``WEIGHT_RULE`` from the runs' final validation MSE and NSCD."""
    import claims_table  # beside this script: the selection rule shared with LSAP_O's lambda

    if not weights:
        raise SystemExit("choose-weight: give the candidate NSCD weights, e.g. choose-weight 0.05 0.15 0.5")
    names = {weight: weight_run_name(weight) for weight in weights}
    base = runs / "encoders" / "e4e_s0"
    finals = {"e4e_s0": final_val(base, "val/nscd")[0]}
    scores = {}
    for weight, name in names.items():
        step, mse = final_val(runs / "encoders" / name, "val/mse")
        nscd_step, nscd = final_val(runs / "encoders" / name, "val/nscd")
        if nscd_step != step:
            raise SystemExit(f"run {name}: its last val/mse (step {step}) and val/nscd (step {nscd_step}) differ")
        finals[name] = step
        scores[weight] = {"mse": mse, "nscd": nscd, "step": step, "run": name}
    step = same_final_step(finals)
    reference = final_val(base, "val/nscd")[1]
    selection = claims_table.select_under_half_nscd(scores, reference, fallback=CONFIG_NSCD_WEIGHT)
    return {"rule": WEIGHT_RULE, "final_step": step, "e4e_s0_val_nscd": reference, "scores": scores, **selection}


def weight_markdown(result: dict) -> str:
    lines = [f"Rule (fixed in advance): {result['rule']}", "",
             f"e4e_s0 final validation NSCD: {result['e4e_s0_val_nscd']:.6g} (half: {result['limit']:.6g})", "",
             "| NSCD weight | run | final step | val MSE | val NSCD | qualifies |", "|---|---|---|---|---|---|"]
    for weight, s in sorted(result["scores"].items()):
        lines.append(f"| {weight:g} | {s['run']} | {s['step']} | {s['mse']:.6g} | {s['nscd']:.6g} | "
                     f"{'yes' if result['qualifies'][weight] else 'no'} |")
    verdict = "" if result["by_rule"] else "none qualifies; "
    lines += ["", f"Chosen NSCD weight: {result['choice']:g} ({verdict}{result['reason']})."]
    return "\n".join(lines) + "\n"


def curves_at(runs: dict[str, list[dict]], every: int) -> dict[str, dict[int, dict]]:
    """Each run's validation row nearest each multiple of ``every`` steps (the last one when
    several round to it)."""
    at: dict[str, dict[int, dict]] = {}
    for name, curve in runs.items():
        for row in curve:
            if "val/mse" in row or "val/nscd" in row:
                at.setdefault(name, {})[int(round(row["step"] / every)) * every] = row
    return at


def curves_markdown(runs: dict[str, list[dict]], every: int = 1000) -> str:
    """val/mse and val/nscd of each run per ``every`` steps."""
    at = curves_at(runs, every)
    steps = sorted({step for rows in at.values() for step in rows})
    headers = ["step", *[f"{name} {key}" for name in runs for key in ("val/mse", "val/nscd")]]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for step in steps:
        cells = [str(step)]
        for name in runs:
            row = at.get(name, {}).get(step, {})
            cells += [f"{row[key]:.5g}" if key in row else "–" for key in ("val/mse", "val/nscd")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_sd(values: list[float]) -> str:
    """``"mean ± sample sd"`` to 4 decimals; the mean alone for one value."""
    text = f"{np.mean(values):.4f}"
    return text + (f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else "")


def seed_curves_markdown(runs: dict[str, list[dict]], every: int = 1000) -> str:
    """Per seed group (``seed_group``): the mean ± sample sd across its seeds of
    val/mse and val/nscd per ``every`` steps, and over each step, the relative change of the
    mean val/mse since the previous row (how flat the curve is)."""
    at = curves_at(runs, every)
    kinds: dict[str, list[str]] = {}
    for name in runs:
        kinds.setdefault(seed_group(name), []).append(name)
    steps = sorted({step for rows in at.values() for step in rows})
    headers = ["step"]
    for kind, names in kinds.items():
        headers += [f"{kind} val/mse ({len(names)} seeds)", "change", f"{kind} val/nscd"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    previous: dict[str, float] = {}
    for step in steps:
        cells = [str(step)]
        for kind, names in kinds.items():
            for key in ("val/mse", "val/nscd"):
                values = [at[n][step][key] for n in names if key in at.get(n, {}).get(step, {})]
                complete = len(values) == len(names)
                cells.append(mean_sd(values) if complete else "–")
                if key == "val/mse":
                    mean = float(np.mean(values)) if complete else None
                    change = "–" if mean is None or kind not in previous else f"{mean / previous[kind] - 1:+.1%}"
                    cells.append(change)
                    if mean is not None:
                        previous[kind] = mean
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def score_run(args: argparse.Namespace, kind: str, seed: int, test_dir: Path | None) -> dict:
    """A run's last checkpoint on the validation folder (and ``test_dir``): MSE of the 8-bit
    reconstruction, NSCD, and class keep by the shipped classifier and by the judge, with
    bootstrap intervals over images. Scores only: nothing is selected on the judge."""
    import tempfile

    import torch

    from lsap.data import FashionSamplesDataset
    from lsap.encoders import Encoder4Editing
    from lsap.metrics.bootstrap import bootstrap_mean
    from lsap.metrics.fidelity import quantize_uint8
    from lsap.modules import LSAP_E
    from lsap.nets.fashion_classifier import load_fashion_classifier
    from lsap.nets.fashion_judge import load_fashion_judge

    if kind == "file":  # an exported encoder file (e.g. a shipped one), with the configs' settings
        config = yaml.safe_load(BASE_CONFIGS["e4e"].read_text())["model"]["init_args"]
        encoder_file, out = Path(args.encoder_file), {"run": args.encoder_file, "step": None}
    else:
        run_dir = args.runs / "encoders" / run_name(kind, seed, args.nscd_weight)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["init_args"]
        step_file = run_dir / "checkpoints" / "last.ckpt"
        out = {"run": run_dir.name,
               "step": int(torch.load(step_file, map_location="cpu", weights_only=True)["global_step"])}
    with tempfile.TemporaryDirectory() as tmp:
        if kind != "file":
            encoder_file = Path(tmp) / "encoder.pt"
            export_run(kind, step_file, encoder_file)
        module = LSAP_E(generator=config["generator"], encoder=Encoder4Editing(**config["encoder"]["init_args"]),
                        encoder_checkpoint=str(encoder_file), lpips=None, identity=None, moco=None, loss_resolution=32,
                        anchor_samples=config["anchor_samples"]).eval()
    classifiers = {"labeller": load_fashion_classifier(), "judge": load_fashion_judge()}
    for split, folder in (("validation (training images)", args.val_dir), ("test", test_dir)):
        if folder is None:
            continue
        samples = FashionSamplesDataset(folder)
        values: dict[str, list[float]] = {"mse": [], "nscd": [], "keep_labeller": [], "keep_judge": []}
        with torch.no_grad():
            for start in range(0, len(samples), 256):
                items = [samples[i] for i in range(start, min(start + 256, len(samples)))]
                images = torch.stack([item["image"] for item in items])
                labels = torch.tensor([item["label"] for item in items])
                ws, recon = module(images)
                written = quantize_uint8(recon.float())
                values["mse"] += ((written - images) ** 2).flatten(1).mean(1).tolist()
                values["nscd"] += module.nscd_per_image(ws)[0].tolist()
                for key, classifier in classifiers.items():
                    values[f"keep_{key}"] += (classifier(written).argmax(1) == labels).float().tolist()
        out[split] = {k: bootstrap_mean(v, resamples=1000).as_dict() for k, v in values.items()}
        out[split]["images"] = len(samples)
    return out


SCORE_COLUMNS = (("mse", "MSE ↓"), ("nscd", "NSCD ↓"), ("keep_labeller", "class keep (labeller) ↑"),
                 ("keep_judge", "class keep (judge) ↑"))


def scores_markdown(results: list[dict], split: str) -> str:
    """``score`` results of one split as a table: each run with its intervals, then per kind
    (``seed_group``) the mean ± sample sd across its runs of each mean."""
    rows = [r for r in results if split in r]
    headers = ["run", "step", "images", *[h for _, h in SCORE_COLUMNS]]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [f"{r[split][k]['value']:.4f} [{r[split][k]['low']:.4f}, {r[split][k]['high']:.4f}]"
                 for k, _ in SCORE_COLUMNS]
        lines.append(f"| {r['run']} | {r['step']} | {r[split]['images']} | " + " | ".join(cells) + " |")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(seed_group(str(r["run"])), []).append(r)
    for kind, group in groups.items():
        if len(group) < 2:
            continue
        cells = [mean_sd([g[split][key]["value"] for g in group]) for key, _ in SCORE_COLUMNS]
        lines.append(f"| **{kind}: mean ± sd of {len(group)} runs** | | | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def print_scores(results: list[dict]) -> None:
    for split in ("validation (training images)", "test"):
        if any(split in r for r in results):
            print(f"\n{split}:\n\n" + scores_markdown(results, split), end="")


def export_run(kind: str, checkpoint: Path, out: str | Path) -> None:
    """Export a run's Lightning checkpoint with its kind's exporter (the shipped file layout)."""
    subprocess.run([sys.executable, str(EXPORTERS[kind]), str(checkpoint), str(out)], check=True)


def run_foreground(args: argparse.Namespace, runs: list[tuple[str, int]]) -> None:
    """Run the given runs to the end, ``--jobs`` at a time (each resumes from its last.ckpt)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    queue, running, failed = list(runs), [], []
    while queue or running:
        while queue and len(running) < args.jobs:
            kind, seed = queue.pop(0)
            run_dir, command = prepare(args, kind, seed)
            print("OMP_NUM_THREADS=1 " + shlex.join(command), flush=True)
            log = (run_dir / "train.log").open("ab")
            running.append((run_dir, log, subprocess.Popen(["nice", "-n", str(args.nice), *command], cwd=REPO,
                                                           env=env, stdout=log, stderr=subprocess.STDOUT)))
        run_dir, log, process = running.pop(0)
        if process.wait() != 0:
            failed.append(f"{run_dir.name} (exit {process.returncode}, see {run_dir / 'train.log'})")
        log.close()
    if failed:
        raise SystemExit("encoder runs failed: " + "; ".join(failed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["valset", "command", "launch", "run", "curves", "export", "best", "score",
                                           "scores-table", "choose-weight"])
    parser.add_argument("items", nargs="*", help="KIND SEED pairs (kind: e4e, lsap, restyle_e4e or restyle_lsap); export: KIND SEED OUT; "
                                                 "best: KIND SEED... OUT; curves: run names (default all); "
                                                 "choose-weight: NSCD weights")
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="folder of all runs (default: $LSAP_RUNS_DIR, else runs/)")
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST idx files")
    parser.add_argument("--val-dir", type=Path, default=None, help="validation folder (default RUNS/fashion_val_train)")
    parser.add_argument("--max-steps", type=int, default=12000)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--num-train", type=int, default=16384, help="generator samples to train on")
    parser.add_argument("--nscd-weight", type=float, default=None, help="LSAP_E's NSCD weight (default: the config's 0.5)")
    parser.add_argument("--nice", type=int, default=19)
    parser.add_argument("--jobs", type=int, default=2, help="run: runs at a time")
    parser.add_argument("--generator", default=None, help="generator file (default: the configs' fashion32)")
    parser.add_argument("--anchor-samples", type=int, default=None, help="S^N anchor samples (default: the configs')")
    parser.add_argument("--val-per-class", type=int, default=VAL_PER_CLASS)
    parser.add_argument("--test-dir", default=None, help="score: also these test images (NNNN_<class>.png)")
    parser.add_argument("--encoder-file", default=None, help="score: an exported encoder file instead of runs")
    parser.add_argument("--markdown", action="store_true",
                        help="curves: a markdown table per --every steps; score: a table per split, with mean ± sd "
                             "across seeds")
    parser.add_argument("--every", type=int, default=1000, help="curves --markdown: steps between table rows")
    parser.add_argument("--seeds-mean", action="store_true",
                        help="curves: one markdown table of mean ± sd across each kind's seeds, per --every steps")
    parser.add_argument("--json", default=None, help="choose-weight: also write the choice as JSON here")
    parser.add_argument("--export", default=None, help="choose-weight: export the chosen weight's encoder here")
    parser.add_argument("--others", default=None, help="best: also export the other seeds into this folder")
    args = parser.parse_args()
    args.val_dir = args.val_dir or args.runs / "fashion_val_train"

    if args.action == "valset":
        write_validation_set(args.val_dir, args.root, args.val_per_class)
    elif args.action == "run":
        run_foreground(args, pairs(args.items))
    elif args.action in ("command", "launch"):
        if not args.val_dir.is_dir():
            raise SystemExit(f"no validation folder {args.val_dir}; run `{sys.argv[0]} valset` first")
        for kind, seed in pairs(args.items):
            run_dir, command = prepare(args, kind, seed)
            line = "OMP_NUM_THREADS=1 " + shlex.join(command)
            print(line)
            if args.action == "launch":
                env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
                with (run_dir / "train.log").open("ab") as log:
                    process = subprocess.Popen(["nice", "-n", str(args.nice), *command], cwd=REPO, env=env,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                (run_dir / "pid").write_text(str(process.pid))
                print(f"  started pid {process.pid}, log {run_dir / 'train.log'}")
    elif args.action == "curves":
        dirs = ([args.runs / "encoders" / name for name in args.items] if args.items
                else sorted(p for p in (args.runs / "encoders").glob("*") if p.is_dir()))
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            raise SystemExit(f"curves: no such run folder {', '.join(missing)}")
        if args.markdown or args.seeds_mean:
            table = seed_curves_markdown if args.seeds_mean else curves_markdown
            print(table({d.name: read_curve(d) for d in dirs}, args.every), end="")
            return
        for run_dir in dirs:
            curve = read_curve(run_dir)
            print(f"## {run_dir.name}")
            for row in curve:
                print("  " + "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    elif args.action == "export":
        if len(args.items) != 3:
            raise SystemExit("export KIND SEED OUT")
        kind, seed, out = args.items[0], int(args.items[1]), args.items[2]
        ckpt = args.runs / "encoders" / run_name(kind, seed, args.nscd_weight) / "checkpoints" / "last.ckpt"
        export_run(kind, ckpt, out)
    elif args.action == "score":
        import json

        test_dir = Path(args.test_dir) if args.test_dir else None
        runs = [("file", 0)] if args.encoder_file else pairs(args.items)
        restyle = [kind for kind, _ in runs if kind.startswith("restyle")]
        if restyle:
            raise SystemExit(f"score: the one-shot kinds only (e4e, lsap), not {restyle[0]}; the ReStyle encoders "
                             "are scored by bench/claims_fashion32.py")
        results = []
        for kind, seed in runs:
            results.append(score_run(args, kind, seed, test_dir))
            print(json.dumps(results[-1]), flush=True)
        if args.markdown:
            print_scores(results)
    elif args.action == "scores-table":  # score's JSON lines, saved from one or several runs of it
        import json

        if not args.items:
            raise SystemExit("scores-table FILE [FILE ...]: files of score's JSON lines")
        # score's stdout also holds the exporter's lines: its results are the lines that are JSON objects
        results = [json.loads(line) for file in args.items for line in Path(file).read_text().splitlines()
                   if line.startswith("{")]
        if not results:
            raise SystemExit(f"scores-table: no score results (JSON lines) in {', '.join(args.items)}")
        print_scores(results)
    elif args.action == "best":
        if len(args.items) < 3 or args.items[0] not in BASE_CONFIGS:
            raise SystemExit("best KIND SEED [SEED ...] OUT")
        kind, seeds, out = args.items[0], [int(s) for s in args.items[1:-1]], args.items[-1]
        finals = {seed: final_val(args.runs / "encoders" / run_name(kind, seed, args.nscd_weight)) for seed in seeds}
        step = same_final_step({run_name(kind, seed, args.nscd_weight): f[0] for seed, f in finals.items()})
        scores = {seed: f[1] for seed, f in finals.items()}
        best = min(scores, key=scores.get)
        print(f"{kind}: final val/mse (step {step}) per seed {scores}; best seed {best}")
        exports = [(best, out)]
        if args.others:
            exports += [(seed, str(Path(args.others) / f"fashion32_{kind}_s{seed}.pt")) for seed in seeds if seed != best]
            Path(args.others).mkdir(parents=True, exist_ok=True)
        for seed, path in exports:
            ckpt = args.runs / "encoders" / run_name(kind, seed, args.nscd_weight) / "checkpoints" / "last.ckpt"
            export_run(kind, ckpt, path)
    elif args.action == "choose-weight":
        import json

        result = choose_weight(args.runs, [float(w) for w in args.items])
        print(weight_markdown(result), end="")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({**result, "scores": {f"{w:g}": s for w, s in result["scores"].items()},
                                                   "qualifies": {f"{w:g}": q for w, q in result["qualifies"].items()}},
                                                  indent=2) + "\n")
        if args.export:
            ckpt = args.runs / "encoders" / weight_run_name(result["choice"]) / "checkpoints" / "last.ckpt"
            export_run("lsap", ckpt, args.export)
            print(f"exported the NSCD weight {result['choice']:g} encoder to {args.export}")


if __name__ == "__main__":
    main()
