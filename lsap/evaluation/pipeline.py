"""``lsap evaluate``: every metric the given weights allow, for one inversion output folder.

The folder is loaded once (:class:`~lsap.evaluation.run.EvaluationRun`); each metric family
is one evaluator (:mod:`lsap.evaluation.evaluators`) that computes its metrics or says why
it skipped them; the options are :class:`~lsap.evaluation.options.EvaluationOptions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lsap.errors import BadValueError
from lsap.evaluation.evaluators import EvaluationContext, Evaluator, default_evaluators, reinversion_module
from lsap.evaluation.options import EvaluationOptions
from lsap.evaluation.report import write_reports
from lsap.evaluation.run import EvaluationRun
from lsap.metrics.fid import file_sha256

__all__ = ["CONVENTION_NOTES", "evaluate", "evaluate_run", "reinversion_module"]

CONVENTION_NOTES = {
    "default": "float images in [-1, 1] at the reconstruction's size; PSNR = 10 log10(4 / MSE)",
    "ganinverter": "GANInverter scripts/test.py: 8-bit images at 256x256; PSNR = 10 log10(2 / MSE)",
}


def _weights_file(kind: str, spec: str) -> Path | None:
    """The file behind a weights argument, for the report's hashes: built-in names resolved;
    ``None`` for what has no file (an inline generator spec, a seeded random generator)."""
    if kind == "generator":
        from lsap.model.checkpoints import builtin_generator_path

        spec = builtin_generator_path(spec)
    elif kind == "encoder":
        from lsap.encoders.checkpoints import builtin_encoder_path

        spec = builtin_encoder_path(spec)
    elif kind == "direction":
        from lsap.editing.edits import direction_file

        spec = direction_file(spec) or spec
    if str(spec).lstrip().startswith("{"):
        return None
    file = Path(spec)
    return file if file.is_file() else None


@torch.no_grad()
def evaluate_run(results_dir: str, options: EvaluationOptions, evaluators: list[Evaluator] | None = None) -> dict:
    """Evaluate an inversion output folder against its inputs with ``evaluators`` (default:
    :func:`~lsap.evaluation.evaluators.default_evaluators`); write the reports; return metrics.json.

    With a generator and codes, also writes ``pca_sn.png`` (inverted codes against
    ``pca_samples`` synthetic samples in S^N). ``tensorboard`` (a log folder) and
    ``wandb_project`` log the results there as well.
    """
    run = EvaluationRun.load(results_dir, options.real, options.real_fit)
    if not run.pairs:
        raise BadValueError(f"no readable reconstruction in '{results_dir}' has a readable input of the same name "
                            f"in '{options.real}' ({len(run.unmatched_results)} unmatched, "
                            f"{len(run.unreadable)} unreadable)")
    context = EvaluationContext(options, torch.device(options.device),
                                {name: {"name": name} for name in run.names})
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for evaluator in evaluators if evaluators is not None else default_evaluators():
        outcome = evaluator.evaluate(run, context)
        results.update(outcome.metrics)
        skipped.update(outcome.skipped)
    report = {
        "results_dir": str(results_dir), "real_dir": str(options.real), "convention": options.convention,
        "real_fit": options.real_fit, "convention_note": CONVENTION_NOTES[options.convention], "metrics": results,
        "skipped": skipped, "counts": run.counts(),
        "unmatched_results": run.unmatched_results, "unmatched_real": run.unmatched_real,
        "unreadable": dict(run.unreadable.files),
        "weights": {k: {"path": str(file), "sha256": file_sha256(file)}
                    for k, v in sorted(context.weights.items()) if (file := _weights_file(k, v)) is not None},
        "std": "population standard deviation over images (ddof=0)",
    }
    per_image = list(context.per_image.values())
    out_dir = Path(options.output or results_dir)
    figure = None
    g = context.generator if "nscd" in results else None
    if g is not None and options.pca_samples > 0:
        from lsap.evaluation.logging import PCA_FIGURE, pca_figure

        ws = torch.stack([run.codes[item.name] for item, _ in run.with_codes()])
        figure = pca_figure(g, ws, out_dir / PCA_FIGURE, num_synthetic=options.pca_samples)
        report["figures"] = {"pca_sn": PCA_FIGURE}
    report = write_reports(out_dir, report, per_image)
    if options.tensorboard:
        from lsap.evaluation.logging import log_tensorboard

        log_tensorboard(options.tensorboard, report, figure)
    if options.wandb_project:
        from lsap.evaluation.logging import log_wandb

        log_wandb(options.wandb_project, report, per_image, figure, mode=options.wandb_mode, run_dir=out_dir)
    return report


def evaluate(results_dir: str, real: str | None = None, options: EvaluationOptions | None = None,
             extra_metrics: dict[str, Any] | None = None, fid_extractor: torch.nn.Module | None = None,
             **kwargs: Any) -> dict[str, Any]:
    """Evaluate an inversion output folder against the inputs in ``real``; write the reports;
    return metrics.json. The options are :class:`EvaluationOptions` (``options``, or its fields
    as keyword arguments); ``extra_metrics`` adds per-image metrics and ``fid_extractor`` any
    feature network for FID."""
    if options is None:
        if real is None:
            raise BadValueError("evaluate needs the folder of real images (real=...)")
        options = EvaluationOptions.from_kwargs(real, **kwargs)
    elif kwargs or (real is not None and real != options.real):
        raise BadValueError("pass either options or keyword options, not both")
    return evaluate_run(results_dir, options, default_evaluators(extra_metrics, fid_extractor))
