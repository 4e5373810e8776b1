"""Count what the README's documented edit does: the shipped classifier's reading of each
source-class image's reconstruction and of its edits at every strength of ``lsap edit``.

    lsap predict --config configs/invert_fashion32_e4e.yaml
    lsap edit outputs/invert_fashion32_e4e --direction tshirt_to_shirt --strengths -3 0 3 --std_units true
    python bench/documented_edit.py outputs/invert_fashion32_e4e --edit tshirt_to_shirt --label 0

The edited codes are the ones ``lsap edit`` stored (``edits/codes``), rendered by the
generator with constant noise, as ``lsap edit`` draws them. Prints one markdown table: per
strength, how many images the classifier reads as each class.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from lsap.data.fashion_mnist import CLASS_NAMES
from lsap.evaluation.evaluators import labels_from_names, load_classifier_spec
from lsap.evaluation.inputs import read_image
from lsap.model.checkpoints import builtin_generator_path, load_generator
from lsap.results import EditResults, InversionResults


def readings(results_dir: Path, edit: str, label: int, generator: str) -> tuple[list[str], dict[str, Counter]]:
    """Names of the images of class ``label`` and, per column ("reconstruction" and each
    strength), the count of the classifier's readings."""
    results = InversionResults(results_dir).checked()
    edits = EditResults(results_dir / "edits")
    names = [n for n, lab in labels_from_names(results.names()).items() if lab == label]
    if not names:
        raise SystemExit(f"no image of class {label} in {results_dir}")
    classifier = load_classifier_spec("fashion32")
    model = load_generator(builtin_generator_path(generator)).eval()
    counts: dict[str, Counter] = {"reconstruction": Counter()}
    with torch.no_grad():
        for name in names:
            image = read_image(results.image_path(name))[None]
            counts["reconstruction"][int(classifier(image).argmax(1))] += 1
            entry = edits.load_codes(name)["edits"].get(edit)
            if entry is None:
                raise SystemExit(f"{name}: no '{edit}' edit in {edits.root}")
            for strength, codes in zip(entry["strengths"], entry["codes"]):
                rendered = model.synthesis(codes.float()[None], noise_mode="const").clamp(-1, 1)
                counts.setdefault(f"{float(strength):+g}", Counter())[int(classifier(rendered).argmax(1))] += 1
    return names, counts


def markdown(counts: dict[str, Counter], total: int) -> str:
    classes = sorted({c for column in counts.values() for c in column})
    lines = ["| column | " + " | ".join(CLASS_NAMES[c] for c in classes) + " |", "|---|" + "---|" * len(classes)]
    for column, counter in counts.items():
        lines.append(f"| {column} | " + " | ".join(str(counter.get(c, 0)) for c in classes) + " |")
    return "\n".join(lines) + f"\n\n{total} images.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="an inversion results folder with its edits/ (lsap edit)")
    parser.add_argument("--edit", default="tshirt_to_shirt")
    parser.add_argument("--label", type=int, default=0, help="source class (the label ending the file names)")
    parser.add_argument("--generator", default="fashion32")
    args = parser.parse_args()
    names, counts = readings(args.results, args.edit, args.label, args.generator)
    print(markdown(counts, len(names)))


if __name__ == "__main__":
    main()
