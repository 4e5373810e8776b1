"""Remake everything downstream of a fashion32 generator, in order, with one command.

    python bench/remake_world.py --generator fashion32                # in place: lsap/assets, docs, README inputs
    python bench/remake_world.py --generator G.safetensors --output ../world   # into another folder
    python bench/remake_world.py --generator G --dry-run              # print the commands only
    python bench/remake_world.py --generator G --steps directions encoders claims

Steps, in this order (each is the exact commands it prints before running them):

1. ``classifiers``: the shipped Fashion-MNIST classifier (the labeller) and the independent
   judge (``bench/train_fashion_classifier.py``). They depend on the data only, but come
   first because the directions are fitted on codes the classifier labels.
2. ``directions``: the class-edit directions and GANSpace (``bench/fashion32_directions.py``).
3. ``encoders``: the e4e baseline and LSAP_E, every seed, on the real-training-image
   validation split, then the seed of lowest validation MSE of each exported, the other
   seeds into ``RUNS/claims_inputs/seeds/`` (``bench/fashion32_encoder_runs.py``); LSAP_E at
   each ``--nscd-weights`` candidate (seed 0), ``choose-weight`` among them and the config's
   0.5, and the chosen weight's encoder exported to
   ``RUNS/claims_inputs/fashion32_lsap_nscd_chosen.pt`` (the choice in
   ``nscd_weight_choice.json`` beside it).
4. ``refinements``: ReStyle (e4e and NSCD) and HFGI on both pivots' encoders
   (``bench/train_fashion32_refiners.sh``), and SAM's invertibility net
   (``bench/train_sam_invertibility.py``); a missing script fails the step with a message
   naming the file (``--keep-going`` records it and goes on).
5. ``figures``: the sample grid (``bench/fashion32_quality.py --grid``) and the README's
   edit example (``bench/readme_examples.sh``, in place only: it reads the shipped files).
6. ``demo``: the demo picture (``lsap fit --config configs/demo.yaml``, in place only).
7. ``lambda``: LSAP_O's lambda_NSCD chosen on the validation split
   (``bench/lsap_o_lambda_validation.py``, into ``RUNS/claims_inputs/lambda_validation``).
8. ``claims``: the claims table (``bench/claims_fashion32.py``), with the further seeds as
   ``--seed-encoders``, LSAP_E at the chosen NSCD weight as ``--extra-encoders`` (unless the
   choice is the config's 0.5, the main row already) and the chosen lambda in ``--lambdas``
   (with 0 and 0.5). A dry run, with those choices not yet made, prints placeholders for them.

``--output`` other than the repository writes every product under that folder (assets
layout: ``fashion_classifier.safetensors``, ``directions/``, ``encoders/``, ``refine/``,
``claims/``) and leaves the shipped files alone; in place (no ``--output``) the generator is
the built-in ``fashion32`` (copy a new one to ``lsap/assets/fashion32.safetensors`` first: the
configs name it) and the claims go to ``outputs/claims_fashion32``; steps that only make sense in place are
then skipped and listed as such. ``--tiny`` shrinks every budget to seconds (smoke test).
A summary of what ran, what was skipped and why, and each step's wall time is written to
``OUTPUT/remake_world.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from runs_folder import runs_folder

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "lsap" / "assets"
STEPS = ("classifiers", "directions", "encoders", "refinements", "figures", "demo", "lambda", "claims")
CONFIG_NSCD_WEIGHT = 0.5  # LSAP_E's nscd_weight in configs/encoder_fashion32_lsap.yaml
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


class MissingPiece(Exception):
    """A step needs a script or config that this checkout does not have."""


class Plan:
    """Commands of one step; ``skip`` says why the step does not run, ``missing`` which
    scripts it lacks, ``note`` what it leaves out."""

    def __init__(self, commands: list[list[str]] | None = None, skip: str | None = None,
                 missing: list[str] | None = None, note: str | None = None):
        self.commands = commands or []
        self.skip, self.missing, self.note = skip, missing or [], note


def python() -> str:
    return sys.executable


def lsap() -> str:
    return str(Path(sys.executable).with_name("lsap"))


def need(path: Path, made_by: str) -> str:
    if not path.exists():
        raise MissingPiece(f"{path.relative_to(REPO)} is missing from this checkout ({made_by})")
    return str(path)


class World:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.in_place = args.output is None
        self.out = ASSETS if self.in_place else Path(args.output).resolve()
        self.runs = Path(args.runs).resolve() if args.runs else (
            runs_folder() if self.in_place else self.out / "runs")
        self.generator = args.generator
        self.tiny = args.tiny
        self.seeds = [int(s) for s in args.seeds]
        # the claims table's inputs chosen on validation: further seeds, NSCD weight, lambda
        self.picks = self.runs / "claims_inputs"
        weights = [float(w) for w in args.nscd_weights if float(w) != CONFIG_NSCD_WEIGHT]
        self.nscd_weights = weights[:1] if self.tiny else weights  # tiny: one candidate

    # ----- the steps ---------------------------------------------------------------
    def classifiers(self) -> Plan:
        if not FASHION_ROOT.is_dir() and not self.args.fashion_root:
            return Plan(skip=f"Fashion-MNIST is not installed ({FASHION_ROOT}; apt-get install dataset-fashion-mnist)")
        script = need(REPO / "bench/train_fashion_classifier.py", "the classifier's training script")
        extra = ["--root", self.args.fashion_root] if self.args.fashion_root else []
        extra += ["--limit", "512", "--epochs", "1"] if self.tiny else ["--epochs", "3"]
        return Plan(commands=[
            [python(), script, "--threads", "1", "--seed", "0", "--output",
             str(self.out / "fashion_classifier.safetensors"), *extra],
            [python(), script, "--architecture", "judge", "--threads", "1", "--seed", "1", "--output",
             str(self.out / "fashion_judge.safetensors"), *extra],
        ])

    def directions(self) -> Plan:
        script = need(REPO / "bench/fashion32_directions.py", "the directions script")
        extra = ["--num-samples", "96", "--ganspace-samples", "500", "--check-samples", "8", "--batch-size", "48"] \
            if self.tiny else ["--threads", "2"]
        return Plan(commands=[[python(), script, "--generator", self.generator, "--output",
                               str(self.out / "directions"), *extra]])

    def encoder_options(self) -> list[str]:
        options = ["--runs", str(self.runs), "--generator", self.generator]
        if self.args.fashion_root:
            options += ["--root", self.args.fashion_root]
        if self.tiny:
            options += ["--max-steps", "4", "--val-every", "2", "--num-train", "32", "--anchor-samples", "300",
                        "--val-per-class", "1"]
        else:
            options += ["--max-steps", str(self.args.encoder_steps)]
        return options

    def encoders(self) -> Plan:
        if not FASHION_ROOT.is_dir() and not self.args.fashion_root:
            return Plan(skip="the validation split is real training images: Fashion-MNIST is not installed")
        script = need(REPO / "bench/fashion32_encoder_runs.py", "the encoder runs script")
        options = self.encoder_options()
        runs = [item for kind in ("e4e", "lsap") for seed in self.seeds for item in (kind, str(seed))]
        if 0 not in self.seeds:
            runs += ["e4e", "0", "lsap", "0"]  # choose-weight compares with e4e_s0 and lsap_s0 (weight 0.5)
        commands = [[python(), script, "valset", *options], [python(), script, "run", *runs, *options]]
        for weight in self.nscd_weights:  # LSAP_E's NSCD weight candidates, seed 0
            commands.append([python(), script, "run", "lsap", "0", "--nscd-weight", f"{weight:g}", *options])
        for kind in ("e4e", "lsap"):
            commands.append([python(), script, "best", kind, *map(str, self.seeds),
                             str(self.out / "encoders" / f"fashion32_{kind}.pt"), "--others",
                             str(self.picks / "seeds"), *options])
        commands.append([python(), script, "choose-weight", *[f"{w:g}" for w in self.nscd_weights],
                         f"{CONFIG_NSCD_WEIGHT:g}", "--json", str(self.picks / "nscd_weight_choice.json"),
                         "--export", str(self.picks / "fashion32_lsap_nscd_chosen.pt"), *options])
        return Plan(commands=commands)

    def val_dir(self) -> Path:
        return self.runs / "fashion_val_train"

    def lambda_(self) -> Plan:
        script = need(REPO / "bench/lsap_o_lambda_validation.py", "the LSAP_O lambda validation script")
        if not self.val_dir().is_dir() and not self.args.dry_run:  # planned after the encoders step ran
            return Plan(skip=f"no validation split {self.val_dir()} (the encoders step writes it from Fashion-MNIST)")
        command = [python(), script, "--generator", self.generator, "--val-dir", str(self.val_dir()),
                   "--output", str(self.picks / "lambda_validation")]
        if self.tiny:
            command += ["--images", "2", "--lambdas", "0", "0.05", "--lsap-o-steps", "2", "--anchor-samples", "300",
                        "--resamples", "20", "--threads", "1", "--batch-size", "4"]
        return Plan(commands=[command])

    def claims_choices(self) -> tuple[list[str], list[str]]:
        """The claims options chosen on validation (``--seed-encoders``, ``--extra-encoders``,
        ``--lambdas``) from the files the encoders and lambda steps wrote, and notes on what is
        left out; placeholders in a dry run where those files are not there yet."""
        options, notes = [], []
        seeds_dir = self.picks / "seeds"
        files = sorted(seeds_dir.glob("fashion32_*_s*.pt")) if seeds_dir.is_dir() else []
        if files:
            options += ["--seed-encoders", *[f"{f.name.split('_')[1]}={f}" for f in files]]
        elif self.args.dry_run:
            options += ["--seed-encoders", *[f"{kind}={seeds_dir}/fashion32_{kind}_s<each seed but the best>.pt"
                                             for kind in ("e4e", "lsap")]]
        else:
            notes.append(f"no further seeds in {seeds_dir}: no seeds table")
        choice_file = self.picks / "nscd_weight_choice.json"
        chosen_encoder = self.picks / "fashion32_lsap_nscd_chosen.pt"
        if choice_file.is_file():
            weight = float(json.loads(choice_file.read_text())["choice"])
            if weight == CONFIG_NSCD_WEIGHT:
                notes.append(f"the NSCD weight chosen on validation is the config's {weight:g}: the main LSAP_E row")
            else:
                options += ["--extra-encoders", f"lsap_nscd{weight:g}=lsap={chosen_encoder}"]
        elif self.args.dry_run:
            options += ["--extra-encoders", f"lsap_nscd<weight in {choice_file}>=lsap={chosen_encoder}"]
        else:
            notes.append(f"no NSCD weight choice ({choice_file}): no extra LSAP_E row")
        lambda_file = self.picks / "lambda_validation" / "lambda_validation.json"
        if lambda_file.is_file():
            lam = float(json.loads(lambda_file.read_text())["choice"])
            options += ["--lambdas", *dict.fromkeys(f"{v:g}" for v in (0.0, lam, 0.5))]
        elif self.args.dry_run:
            options += ["--lambdas", "0", f"<lambda in {lambda_file}>", "0.5"]
        else:
            notes.append(f"no lambda choice ({lambda_file}): the claims' default --lambdas")
        return options, notes

    def refinements(self) -> Plan:
        plan = Plan()
        sam_budget = (["--num-images", "8", "--target-steps", "2", "--epochs", "2", "--threads", "1"] if self.tiny
                      else ["--num-images", "256", "--target-steps", "40", "--epochs", "150", "--threads", "2"])
        pieces = [
            ("SAM invertibility net", True, lambda: [
                [python(), need(REPO / "bench/train_sam_invertibility.py", "SAM's invertibility training script"),
                 "--generator", self.generator, "--output",
                 str(self.out / "refine" / "sam_fashion32_invertibility.safetensors"), *sam_budget]]),
        ]
        # ReStyle and HFGI train through their configs, which name the built-in fashion32 and the
        # shipped encoders and write to lightning_logs/: in place only.
        for kind in ("restyle", "hfgi"):
            pieces.append((f"{'ReStyle' if kind == 'restyle' else 'HFGI'} (e4e and NSCD pivots)", False,
                           lambda kind=kind: [["sh", need(REPO / "bench/train_fashion32_refiners.sh",
                                                          "the ReStyle / HFGI training script"), kind]]))
        skipped = []
        for label, anywhere, build in pieces:
            if not anywhere and not self.in_place:
                skipped.append(label)
                continue
            try:
                plan.commands += build()
            except MissingPiece as error:
                plan.missing.append(f"{label}: {error}")
        if skipped:
            plan.note = f"in place only (their configs name fashion32 and the shipped encoders): {', '.join(skipped)}"
        return plan

    def figures(self) -> Plan:
        quality = need(REPO / "bench/fashion32_quality.py", "the generator quality script")
        grid = REPO / "docs" / "fashion32_samples.png" if self.in_place else self.out / "fashion32_samples.png"
        commands = [[python(), quality, self.generator, "--grid", str(grid),
                     *(["--num-samples", "64", "--threads", "1"] if self.tiny else ["--threads", "2"])]]
        if self.in_place:
            commands.append(["bash", need(REPO / "bench/readme_examples.sh", "the README examples script")])
        return Plan(commands=commands)

    def demo(self) -> Plan:
        if not self.in_place:
            return Plan(skip="the demo config (configs/demo.yaml) reads the shipped files: in place only")
        return Plan(commands=[[lsap(), "fit", "--config", need(REPO / "configs/demo.yaml", "the demo config")]])

    def claims(self) -> Plan:
        script = need(REPO / "bench/claims_fashion32.py", "the claims script")
        output = REPO / "outputs" / "claims_fashion32" if self.in_place else self.out / "claims"
        command = [python(), script, "--generator", self.generator, "--output", str(output),
                   "--directions", str(self.out / "directions")]
        if not self.in_place:
            command += ["--e4e-encoder", str(self.out / "encoders" / "fashion32_e4e.pt"),
                        "--lsap-encoder", str(self.out / "encoders" / "fashion32_lsap.pt")]
        if self.tiny:
            command += ["--num-images", "4", "--pti-images", "2", "--lsap-o-steps", "3", "--pti-steps", "2",
                        "--anchor-samples", "300", "--threads", "1", "--lec-batch-size", "2", "--batch-size", "4",
                        "--test-images", "shipped", "--refinements", "none", "pti", "--resamples", "50"]
        choices, notes = self.claims_choices()
        command += choices + self.args.claims_args
        return Plan(commands=[command], note="; ".join(notes) or None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="fashion32", help="generator file or built-in name")
    parser.add_argument("--output", default=None, help="folder for every product (default: in place)")
    parser.add_argument("--runs", default=None, help="training runs (default $LSAP_RUNS_DIR or runs/ in place, else OUTPUT/runs)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="encoder training seeds")
    parser.add_argument("--encoder-steps", type=int, default=10000, help="one-shot encoders' budget (the shipped files')")
    parser.add_argument("--nscd-weights", nargs="+", default=["0.05", "0.15"],
                        help="LSAP_E NSCD weight candidates (seed 0) besides the config's 0.5")
    parser.add_argument("--fashion-root", default=None, help="Fashion-MNIST idx files (default: Debian's folder)")
    parser.add_argument("--claims-args", nargs=argparse.REMAINDER, default=[],
                        help="further arguments for bench/claims_fashion32.py (last on the line)")
    parser.add_argument("--tiny", action="store_true", help="seconds-sized budgets everywhere (smoke test)")
    parser.add_argument("--keep-going", action="store_true", help="record missing scripts and go on")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()

    world = World(args)
    if world.in_place and args.generator != "fashion32":
        raise SystemExit("in place, the configs and the shipped files name the built-in generator: copy the new "
                         "generator to lsap/assets/fashion32.safetensors and pass --generator fashion32, or give "
                         "--output to remake into another folder")
    if args.generator.strip().startswith("{"):  # a GeneratorSource spec (tiny test generators): one file for all
        from lsap.model.checkpoints import save_generator
        from lsap.model.source import generator_from_spec

        world.out.mkdir(parents=True, exist_ok=True)
        path = world.out / "generator.safetensors"
        if not args.dry_run:
            save_generator(generator_from_spec(args.generator), path)
        world.generator = str(path)
    summary: dict[str, object] = {"generator": world.generator, "output": str(world.out), "tiny": args.tiny,
                                  "steps": {}}
    # Shell steps call `python` and `lsap`: this interpreter's first on the PATH.
    env = {**os.environ, "PYTHON": python(), "PATH": os.pathsep.join([str(Path(python()).parent), os.environ["PATH"]]),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    failed = None
    for step in (s for s in STEPS if s in args.steps):
        try:
            plan = getattr(world, "lambda_" if step == "lambda" else step)()
        except MissingPiece as error:
            plan = Plan(missing=[str(error)])
        record: dict[str, object] = {"commands": [shlex.join(c) for c in plan.commands]}
        print(f"== {step}", flush=True)
        if plan.skip:
            print(f"   skipped: {plan.skip}")
            record["skipped"] = plan.skip
        if plan.note:
            print(f"   note: {plan.note}")
            record["note"] = plan.note
        for line in plan.missing:
            print(f"   MISSING: {line}")
        if plan.missing:
            record["missing"] = plan.missing
            if not args.keep_going:
                failed = f"step '{step}' cannot run: " + "; ".join(plan.missing)
        started = time.perf_counter()
        for command in plan.commands if not plan.skip and failed is None else []:
            print("   $ " + shlex.join(command), flush=True)
            if args.dry_run:
                continue
            proc = subprocess.run(command, cwd=REPO, env=env)
            if proc.returncode != 0:
                failed = f"step '{step}' failed: `{shlex.join(command)}` exited with {proc.returncode}"
                break
        record["seconds"] = round(time.perf_counter() - started, 1)
        summary["steps"][step] = record
        if failed:
            break
    summary["failed"] = failed
    if not args.dry_run:
        world.out.mkdir(parents=True, exist_ok=True)
        (world.out / "remake_world.json").write_text(json.dumps(summary, indent=2) + "\n")
    if failed:
        raise SystemExit(failed)


if __name__ == "__main__":
    main()
