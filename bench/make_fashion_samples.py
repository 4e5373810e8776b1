"""Write the Fashion-MNIST test images shipped with lsap (lsap/assets/fashion_mnist_test/).

A fixed-seed, class-balanced selection from the t10k split, stored as the original 28 x 28
grey PNGs named ``NNNN_<class index>.png`` (NNNN: index in the t10k split). The data module
``lsap.data.FashionSamplesDataModule`` pads them to 32 px RGB exactly like
``lsap.data.FashionMNISTDataModule``.

    python bench/make_fashion_samples.py [--root /usr/share/datasets/fashion-mnist] [--count 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from lsap.data.fashion_mnist import CLASS_NAMES, DEFAULT_ROOT, FILES, check_root, read_idx
from lsap.data.fashion_samples import SHIPPED_SAMPLES_DIR


def balanced_selection(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of ``count`` items, as equal per class as possible (counts differ by at most
    one; the lower class indices get the extra ones), drawn at random without replacement."""
    classes = len(CLASS_NAMES)
    per_class = [count // classes + (1 if c < count % classes else 0) for c in range(classes)]
    rng = np.random.default_rng(seed)
    chosen = []
    for c, n in enumerate(per_class):
        pool = np.flatnonzero(labels == c)
        if len(pool) < n:
            raise ValueError(f"class {c} has {len(pool)} images, {n} wanted")
        chosen.append(rng.choice(pool, size=n, replace=False))
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=DEFAULT_ROOT, help="folder with the Fashion-MNIST idx files")
    parser.add_argument("--output", default=str(SHIPPED_SAMPLES_DIR))
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = check_root(args.root)
    images = read_idx(root / FILES["test"][0])
    labels = read_idx(root / FILES["test"][1])
    selection = balanced_selection(labels, args.count, args.seed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    stale = [p for p in output.glob("*.png")]
    for path in stale:  # a re-run with another seed must not leave old images behind
        path.unlink()
    for index in selection:
        Image.fromarray(images[index], mode="L").save(output / f"{index:04d}_{labels[index]}.png", optimize=True)
    total = sum(p.stat().st_size for p in output.glob("*.png"))
    counts = np.bincount(labels[selection], minlength=len(CLASS_NAMES))
    print(f"wrote {len(selection)} images ({total / 1024:.0f} kB) to {output}; per class: {counts.tolist()}")


if __name__ == "__main__":
    main()
