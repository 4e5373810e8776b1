"""Editing directions for the fashion32 generator, written in lsap's editing formats.

Samples seeded z -> w, renders them, labels them with the shipped Fashion-MNIST classifier
and, for each class pair, fits an InterFaceGAN boundary (``lsap.editing.fit_boundary``) on
the confident samples of the two classes. A positive strength along ``<a>_to_<b>.pt`` moves
towards class b; ``<b>_to_<a>.pt`` is its negation. Also writes the GANSpace PCA of W
(``ganspace.pt``, e4e's format). Every file carries the generator's fingerprint, so
``lsap edit --direction sneaker_to_boot`` warns when used with another generator.

    python bench/fashion32_directions.py [--generator fashion32] [--output lsap/assets/directions]
                                         [--num-samples 20000]

``--generator`` takes what ``lsap edit --generator`` takes: a checkpoint, a built-in name,
or a JSON object of ``GeneratorSource`` fields (a seeded random generator, for smoke runs).
Prints the held-out accuracy of each boundary and how far an edit moves the classifier.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lsap.editing import compute_ganspace, fit_boundary, save_direction, save_ganspace
from lsap.model.fingerprint import generator_fingerprint
from lsap.model.source import generator_from_spec
from lsap.editing.directions import Direction
from lsap.editing.interfacegan import sample_scored_codes
from lsap.nets.fashion_classifier import load_fashion_classifier

# (name of the a -> b direction, name of b -> a, class a, class b)
CLASS_PAIRS = (
    ("sneaker_to_boot", "boot_to_sneaker", 7, 9),
    ("pullover_to_coat", "coat_to_pullover", 2, 4),
    ("tshirt_to_shirt", "shirt_to_tshirt", 0, 6),
)
ASSET_DIRECTIONS = Path(__file__).resolve().parents[1] / "lsap" / "assets" / "directions"


def pair_labels(logits: torch.Tensor, a: int, b: int, confidence: float, min_per_class: int):
    """Positions and 0/1 labels (1 = class b) of confident samples of classes a and b; if
    either class has fewer than ``min_per_class`` of them (e.g. an untrained generator),
    the logit difference b - a over all samples instead (fit_boundary then keeps its tails)."""
    probs = logits.softmax(dim=1)
    top, predicted = probs.max(dim=1)
    confident = top >= confidence
    is_a, is_b = confident & (predicted == a), confident & (predicted == b)
    if int(is_a.sum()) >= min_per_class and int(is_b.sum()) >= min_per_class:
        keep = torch.nonzero(is_a | is_b).squeeze(1)
        return keep, is_b[keep].float(), {"labels": "confident", "count_a": int(is_a.sum()),
                                          "count_b": int(is_b.sum())}
    keep = torch.arange(logits.shape[0])
    return keep, logits[:, b] - logits[:, a], {"labels": "logit-difference", "count_a": int(is_a.sum()),
                                                "count_b": int(is_b.sum())}


@torch.no_grad()
def edit_effect(generator, classifier, codes: torch.Tensor, direction: Direction, target: int,
                strength: float, batch_size: int) -> tuple[float, float]:
    """Mean classifier probability of ``target`` before and after moving ``codes`` by ``strength``."""
    before, after = [], []
    for start in range(0, codes.shape[0], batch_size):
        w = codes[start:start + batch_size]
        for out, ws in ((before, w), (after, direction.apply(w, strength))):
            images = generator.synthesis(ws, noise_mode="const").clamp(-1, 1)
            out.append(classifier(images).softmax(dim=1)[:, target])
    return float(torch.cat(before).mean()), float(torch.cat(after).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="fashion32")
    parser.add_argument("--output", default=str(ASSET_DIRECTIONS))
    parser.add_argument("--num-samples", type=int, default=20_000)
    parser.add_argument("--confidence", type=float, default=0.8, help="classifier probability to keep a sample")
    parser.add_argument("--min-per-class", type=int, default=20)
    parser.add_argument("--ganspace-samples", type=int, default=100_000)
    parser.add_argument("--ganspace-components", type=int, default=64)
    parser.add_argument("--check-sigmas", type=float, default=3.0,
                        help="check strength, in standard deviations of the sampled w along the direction")
    parser.add_argument("--check-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    generator = generator_from_spec(args.generator)
    classifier = load_fashion_classifier()
    generator_hash = generator_fingerprint(generator)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)

    codes, logits = sample_scored_codes(generator, classifier, args.num_samples, args.seed, args.batch_size,
                                        all_scores=True)
    counts = torch.bincount(logits.argmax(1), minlength=10).tolist()
    print(f"{args.num_samples} samples, classifier's classes: {counts} ({time.perf_counter() - start:.0f} s)")
    summary: dict[str, object] = {"generator_hash": generator_hash, "num_samples": args.num_samples,
                                  "seed": args.seed, "class_counts": counts, "directions": {}}
    for name, reverse, a, b in CLASS_PAIRS:
        keep, labels, info = pair_labels(logits, a, b, args.confidence, args.min_per_class)
        boundary = fit_boundary(codes[keep], labels, method="svm", seed=args.seed)
        meta = {"classes": [a, b], "confidence": args.confidence, "num_samples": args.num_samples,
                "seed": args.seed, **info}
        forward = boundary.direction(name=name, generator_hash=generator_hash, meta=meta)
        backward = Direction(-forward.vector, name=reverse, generator_hash=generator_hash,
                             meta={**forward.meta, "classes": [b, a], "negation_of": name})
        save_direction(forward, output / f"{name}.pt")
        save_direction(backward, output / f"{reverse}.pt")
        sources = torch.nonzero(logits.argmax(1) == a).squeeze(1)[:args.check_samples]
        strength = forward.std_strength(generator, args.check_sigmas, seed=args.seed)  # the direction's own unit
        effect = None
        if sources.numel():
            effect = edit_effect(generator, classifier, codes[sources], forward, b, strength, args.batch_size)
        accuracy = "n/a" if boundary.accuracy is None else f"{boundary.accuracy:.3f}"
        moved = "no samples of class a" if effect is None else \
            f"p(class {b}) on {sources.numel()} class-{a} samples {effect[0]:.3f} -> {effect[1]:.3f} at +{strength:.3g} " \
            f"({args.check_sigmas:g} std of w along it)"
        print(f"{name}: {info['labels']} labels ({info['count_a']} vs {info['count_b']} confident), held-out "
              f"accuracy {accuracy} (n={boundary.num_test}); {moved}")
        summary["directions"][name] = {**meta, "accuracy": boundary.accuracy, "num_test": boundary.num_test,
                                       "train_accuracy": boundary.train_accuracy,
                                       "check": None if effect is None else {"strength": strength,
                                                                             "before": effect[0], "after": effect[1]}}
    pca = compute_ganspace(generator, num_samples=args.ganspace_samples,
                           num_components=min(args.ganspace_components, int(generator.w_dim)), seed=args.seed)
    save_ganspace(pca, output / "ganspace.pt")
    top = [round(float(v), 3) for v in pca.var_ratio[:5]] if pca.var_ratio is not None else None
    print(f"ganspace.pt: {pca.num_components} components, variance ratio of the first five {top}")
    summary["ganspace"] = {"num_samples": args.ganspace_samples, "num_components": pca.num_components,
                           "var_ratio_top5": top}
    (output / "fashion32_directions.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {output} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
