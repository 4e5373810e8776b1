"""Quality of a Fashion-MNIST generator, judged by lsap's Fashion-MNIST classifier.

    PYTHONPATH=. python bench/fashion32_quality.py GENERATOR [--num-samples 10000]

GENERATOR is anything ``lsap.model.load_generator`` reads (a file, a ``lsap fit``
StyleGAN2 checkpoint, or the built-in name ``fashion32``). On ``num_samples`` seeded
samples it reports:

* ``confident``: the fraction classified with softmax confidence >= ``threshold`` (target >= 0.7),
  and ``confident_real_test`` (the same fraction for the real test images, as a reference);
* ``class_share``: the share of samples per predicted class (target: every class >= 3 %);
* ``fid``: Frechet distance of the classifier's penultimate features, samples vs the real
  test split, and ``fid_real_train_vs_test`` (the same number for real training images,
  the best a generator can hope for).

Prints one JSON line, then a markdown table.
"""

from __future__ import annotations

import argparse
import json

import torch

from lsap.data.fashion_mnist import CLASS_NAMES, DEFAULT_ROOT, FashionMNISTDataset
from lsap.metrics.fid import frechet_distance
from lsap.model import load_generator
from lsap.model.sampling import sample_z
from lsap.nets.fashion_classifier import FashionClassifier, load_fashion_classifier


def feature_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between the Gaussians fitted to feature sets ``a`` and ``b`` ([N, D]), in float64."""
    a, b = a.double(), b.double()
    return float(frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T)))


@torch.no_grad()
def classify(classifier: FashionClassifier, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and penultimate features of [-1, 1] images."""
    probs, feats = [], []
    for i in range(0, len(images), batch):
        logits, f = classifier.forward_features(images[i:i + batch])
        probs.append(logits.softmax(1))
        feats.append(f)
    return torch.cat(probs), torch.cat(feats)


@torch.no_grad()
def sample(generator, num_samples: int, seed: int, truncation_psi: float, batch: int = 250) -> torch.Tensor:
    """Images of ``num_samples`` seeded z (lsap's one seeded z stream), clamped to [-1, 1]."""
    return torch.cat([generator(z, truncation_psi=truncation_psi, noise_mode="const").clamp(-1, 1)
                      for z in sample_z(num_samples, generator.z_dim, seed, batch_size=batch)])


def evaluate(generator, classifier: FashionClassifier, root: str, num_samples: int, seed: int = 0,
             truncation_psi: float = 1.0, threshold: float = 0.8) -> dict:
    probs, feats = classify(classifier, sample(generator, num_samples, seed, truncation_psi))
    conf, pred = probs.max(1)
    share = torch.bincount(pred, minlength=len(CLASS_NAMES)).double() / len(pred)
    test = FashionMNISTDataset(root, "test")
    train = FashionMNISTDataset(root, "train")
    test_probs, test_feats = classify(classifier, test.image(slice(None)))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:len(test)]
    _, train_feats = classify(classifier, train.image(pick))
    return {
        "num_samples": num_samples, "truncation_psi": truncation_psi, "threshold": threshold,
        "confident": round(float((conf >= threshold).double().mean()), 4),
        "confident_real_test": round(float((test_probs.max(1).values >= threshold).double().mean()), 4),
        "class_share": {name: round(float(s), 4) for name, s in zip(CLASS_NAMES, share)},
        "min_class_share": round(float(share.min()), 4),
        "fid": round(feature_fid(feats, test_feats), 4),
        "fid_real_train_vs_test": round(feature_fid(train_feats, test_feats), 4),
        "pass": bool((conf >= threshold).double().mean() >= 0.7 and share.min() >= 0.03),
    }


def markdown(result: dict) -> str:
    lines = ["| metric | value | target |", "|---|---|---|",
             f"| confident (p >= {result['threshold']}) | {result['confident']:.1%} | >= 70 % "
             f"(real test images: {result['confident_real_test']:.1%}) |",
             f"| smallest class share | {result['min_class_share']:.1%} | >= 3 % |",
             f"| feature FID (samples vs test) | {result['fid']:.3f} | reference: "
             f"{result['fid_real_train_vs_test']:.3f} (train vs test) |"]
    lines += [f"| share: {name} | {value:.1%} | >= 3 % |" for name, value in result["class_share"].items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("generator")
    ap.add_argument("--num-samples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--truncation-psi", type=float, default=1.0)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--classifier", default=None, help="weights file (default: the one shipped with lsap)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--grid", default=None, help="also write an 8x8 grid of the first 64 samples to this PNG")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = load_generator(args.generator)
    result = evaluate(generator, load_fashion_classifier(args.classifier), args.root,
                      args.num_samples, args.seed, args.truncation_psi, args.threshold)
    if args.grid:
        from lsap.visualize import image_grid, save_image_grid

        images = sample(generator, 64, args.seed, args.truncation_psi).clamp(-1, 1)
        save_image_grid(image_grid(list(images.reshape(8, 8, *images.shape[1:])), upscale=2), args.grid)
    print(json.dumps({"generator": args.generator, **result}))
    print(markdown(result))


if __name__ == "__main__":
    main()
