"""One evaluator per metric family of ``lsap evaluate``.

Each evaluator takes the loaded :class:`~lsap.evaluation.run.EvaluationRun` and the shared
:class:`EvaluationContext` (options, device, the generator loaded once, the per-image
rows) and returns an :class:`Outcome`: its metrics, and for each metric it did not
compute, why.

* :class:`FidelityEvaluator`: MSE, PSNR, SSIM, MS-SSIM, LPIPS, ID (and extra per-image metrics);
* :class:`FIDEvaluator`: FID of all reconstructions against all inputs, in Inception or any
  other feature network's features (the shipped classifier's included);
* :class:`NSCDEvaluator`: NSCD, each batch's distances computed once;
* :class:`LECEvaluator` (encoders) and :class:`ReinversionLECEvaluator` (LSAP_O runs);
* :class:`ClassEditEvaluator`: class-edit success and the other classes' movement, judged by
  a classifier, for any results folder (PTI images rendered with their own weights).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from lsap.errors import BadValueError, MissingInputError
from lsap.evaluation.options import EvaluationOptions
from lsap.evaluation.run import EvaluationRun

__all__ = [
    "ClassEditEvaluator",
    "EvaluationContext",
    "Evaluator",
    "FIDEvaluator",
    "FidelityEvaluator",
    "LECEvaluator",
    "NSCDEvaluator",
    "Outcome",
    "ReinversionLECEvaluator",
    "class_edit_success",
    "default_evaluators",
    "load_classifier_spec",
    "reinversion_module",
]

CLASS_LABEL = re.compile(r"_(\d+)$")


@dataclass
class Outcome:
    """What an evaluator produced: ``metrics`` by name, and ``skipped`` (name -> why)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluationContext:
    """What every evaluator shares: the options, the device, the per-image rows (by name),
    the weights files used (for the report's hashes) and the generator, loaded once."""

    options: EvaluationOptions
    device: torch.device
    per_image: dict[str, dict[str, Any]]
    weights: dict[str, str] = field(default_factory=dict)
    _generator: Any = None
    _classifier: Any = None

    @property
    def generator(self) -> Any:
        """The ``--generator`` (None without one), on the device."""
        if self._generator is None and self.options.generator:
            from lsap.model.source import generator_from_spec

            self._generator = generator_from_spec(self.options.generator).to(self.device)
            self.weights["generator"] = self.options.generator
        return self._generator

    @property
    def classifier(self) -> Any:
        """The ``--classifier`` (None without one), on the device."""
        if self._classifier is None and self.options.classifier:
            self._classifier = load_classifier_spec(self.options.classifier, self.device)
            if self.options.classifier != "fashion32":
                self.weights["classifier"] = self.options.classifier
        return self._classifier


class Evaluator:
    """One metric family: ``evaluate(run, context) -> Outcome``."""

    name = "evaluator"

    def evaluate(self, run: EvaluationRun, context: EvaluationContext) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError


def load_classifier_spec(spec: str, device: torch.device | str = "cpu") -> nn.Module:
    """``"fashion32"`` (the shipped Fashion-MNIST classifier) or a file of its weights."""
    from lsap.nets.fashion_classifier import load_fashion_classifier

    return load_fashion_classifier(None if spec == "fashion32" else spec, device=device).eval()


# ----- fidelity ------------------------------------------------------------------------------
class FidelityEvaluator(Evaluator):
    """MSE, PSNR, SSIM always; MS-SSIM when the images are large enough; LPIPS and ID with
    their weights; plus any extra :class:`~lsap.metrics.fidelity.PerImageMetric`."""

    name = "fidelity"

    def __init__(self, extra_metrics: dict[str, Any] | None = None) -> None:
        self.extra_metrics = dict(extra_metrics or {})

    def evaluate(self, run: EvaluationRun, context: EvaluationContext) -> Outcome:
        from lsap.metrics.fidelity import MSE, MSSSIM, PSNR, SSIM, IDSimilarity, LPIPSMetric, msssim_min_size, prepare_pair

        options, outcome = context.options, Outcome()
        convention = options.convention
        metrics: dict[str, Any] = {m.name: m for m in (MSE(convention), PSNR(convention), SSIM(convention))}
        item, path = run.pairs[0]
        first_pred, _ = prepare_pair(run.reconstruction(item)[None], run.real(path)[None], convention)
        if min(first_pred.shape[-2:]) >= msssim_min_size():
            metrics["ms_ssim"] = MSSSIM(convention)
        else:
            outcome.skipped["ms_ssim"] = (f"images of {tuple(first_pred.shape[-2:])} are below MS-SSIM's "
                                          f"{msssim_min_size()} px")
        if options.lpips:
            metrics["lpips"] = LPIPSMetric(backbone_weights=options.lpips, convention=convention)
            context.weights["lpips"] = options.lpips
        else:
            outcome.skipped["lpips"] = "no --lpips (torchvision AlexNet ImageNet weights, alexnet-owt-7be5be79.pth)"
        if options.identity:
            detector = None
            if options.detect_faces:
                from lsap.align import MTCNNFaceDetector

                detector = MTCNNFaceDetector(device=options.device)
            metrics["id"] = IDSimilarity(weights=options.identity, backbone=options.identity_backbone,
                                         convention=convention, face_detector=detector)
            context.weights["id"] = options.identity
        else:
            outcome.skipped["id"] = ("no --identity (ArcFace model_ir_se50.pth, CurricularFace_Backbone.pth or a "
                                     "facenet-pytorch state dict)")
        metrics.update(self.extra_metrics)
        for metric in metrics.values():
            metric.to(context.device)
        for chunk in run.batches(options.batch_size):
            prepared = [prepare_pair(run.reconstruction(item)[None], run.real(path)[None], convention)
                        for item, path in chunk]
            # Reconstructions of one folder normally share a size; others go in per-size groups.
            for shape in dict.fromkeys(p.shape for p, _ in prepared):
                group = [k for k, (p, _) in enumerate(prepared) if p.shape == shape]
                pred = torch.cat([prepared[k][0] for k in group]).to(context.device)
                real = torch.cat([prepared[k][1] for k in group]).to(context.device)
                for name, metric in metrics.items():
                    values = metric.scores(pred, real)
                    metric.accumulate(values)
                    for k, value in zip(group, values.tolist()):
                        context.per_image[chunk[k][0].name][name] = value
        outcome.metrics = {name: metric.summary() for name, metric in metrics.items()}
        return outcome


# ----- FID -----------------------------------------------------------------------------------
def feed_fid(metric: Any, images: list[Tensor], real: bool, batch_size: int, device: torch.device) -> None:
    """Add uint8 images to an FID metric, batch by batch; mixed sizes go in per-size groups
    (the feature networks resize inside)."""
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        for shape in dict.fromkeys(image.shape for image in chunk):
            metric.update(torch.stack([i for i in chunk if i.shape == shape]).to(device), real=real)


class FIDEvaluator(Evaluator):
    """FID of every reconstruction against every readable input, as ``lsap fid`` computes it.

    Features: Inception (``--inception``), or with ``--fid_features classifier`` the
    ``--classifier``'s penultimate features; from Python any
    :class:`~lsap.metrics.fid.FeatureExtractor` (``extractor``). Inputs are read as they are,
    except that with ``real_fit="pad"`` they are padded to the reconstructions' size, as
    for the fidelity metrics (the generator draws on the padded canvas)."""

    name = "fid"

    def __init__(self, extractor: nn.Module | None = None) -> None:
        self.extractor = extractor

    def _extractor(self, context: EvaluationContext) -> tuple[nn.Module | None, str | None]:
        from lsap.metrics.fid import ClassifierFeatures, load_feature_extractor

        if self.extractor is not None:
            return self.extractor, None
        if context.options.fid_features == "classifier":
            if context.classifier is None:
                return None, "--fid_features classifier needs --classifier"
            from lsap.nets.fashion_classifier import FEATURE_DIM

            return ClassifierFeatures(context.classifier, FEATURE_DIM).to(context.device), None
        try:
            return load_feature_extractor(context.options.inception, device=context.device), None
        except FileNotFoundError as error:
            return None, str(error)

    def evaluate(self, run: EvaluationRun, context: EvaluationContext) -> Outcome:
        from lsap.evaluation.inputs import fit_real
        from lsap.images import from_uint8, to_uint8
        from lsap.metrics.fid import FID, file_sha256

        options = context.options
        extractor, why = self._extractor(context)
        if extractor is None:
            return Outcome(skipped={"fid": why or "no feature network"})
        fake = [run.images[str(r.image_path)] for r in run.reconstructions if str(r.image_path) in run.images]
        if len(fake) < 2:
            return Outcome(skipped={"fid": f"FID needs at least 2 readable reconstructions, found {len(fake)}"})
        weights = getattr(extractor, "weights_path", None)
        feature_hash = file_sha256(weights) if weights else ""
        metric = FID(extractor).to(context.device)
        stats = Path(options.real_stats) if options.real_stats else None
        if stats is not None and stats.is_file():
            metric.load_real_stats(stats, feature_hash)
        else:
            real = [run.images[f] for f in run.real_files]
            if options.real_fit == "pad":
                size = run.size
                real = [to_uint8(fit_real(from_uint8(i), size, "pad", f)) for i, f in zip(real, run.real_files)]
            if len(real) < 2:
                return Outcome(skipped={"fid": f"FID needs at least 2 readable inputs, found {len(real)}"})
            feed_fid(metric, real, True, options.batch_size, context.device)
            if stats is not None:
                metric.save_real_stats(stats, feature_hash)
        feed_fid(metric, fake, False, options.batch_size, context.device)
        if weights:
            context.weights["inception"] = weights
        return Outcome(metrics={"fid": {"mean": float(metric.compute()), "std": None,
                                        "num_real": int(metric.real_features_num_samples),
                                        "num_fake": int(metric.fake_features_num_samples),
                                        "feature_network": getattr(extractor, "source", type(extractor).__name__)}})


# ----- NSCD ----------------------------------------------------------------------------------
def _generator_and_codes(run: EvaluationRun, context: EvaluationContext) -> tuple[Any, str | None]:
    """The generator when the run's codes belong to it, else why not."""
    g = context.generator
    shape = run.code_shape()
    if g is None:
        return None, "no --generator"
    if shape is None:
        return None, "the results folder holds no codes"
    if shape != (g.num_ws, g.w_dim):
        return None, (f"the codes have shape {shape} but the generator takes W+ codes of shape "
                      f"{(g.num_ws, g.w_dim)}: they were made with another generator")
    return g, None


class NSCDEvaluator(Evaluator):
    """NSCD of the stored codes: mean, std over images and per layer; per image in the rows."""

    name = "nscd"

    def evaluate(self, run: EvaluationRun, context: EvaluationContext) -> Outcome:
        from lsap.metrics import NSCD

        g, why = _generator_and_codes(run, context)
        if g is None:
            return Outcome(skipped={"nscd": why})
        options = context.options
        metric = NSCD(generator=g, num_samples=options.nscd_samples).to(context.device)
        items = run.with_codes()
        per_image = []
        for chunk in run.batches(options.batch_size, items):
            ws = torch.stack([run.codes[item.name] for item, _ in chunk]).to(context.device)
            distances = metric.alignment.distances(ws, dtype=torch.float64)  # once per batch
            per_image.append(distances.cpu())
            for (item, _), value in zip(chunk, distances.mean(dim=1).tolist()):
                context.per_image[item.name]["nscd"] = value
        distances = torch.cat(per_image)
        per_layer = distances.mean(dim=0)
        return Outcome(metrics={"nscd": {
            "mean": float(per_layer.mean()), "std": float(distances.mean(dim=1).std(unbiased=False)),
            "count": len(items), "per_layer": [float(v) for v in per_layer], "layers": metric.layer_names,
            "num_samples": options.nscd_samples}})


# ----- LEC -----------------------------------------------------------------------------------
def direction_edit(spec: str, generator: Any) -> Any:
    """The W-space edit a direction spec names (a file or a built-in name)."""
    from lsap.editing.edits import DirectionEdit, resolve_edit

    edit = resolve_edit(spec, generator)
    if not isinstance(edit, DirectionEdit):
        raise BadValueError(f"this metric needs a W-space direction; '{spec}' is a {type(edit).__name__}")
    return edit


def strength_in_w(edit: Any, generator: Any, options: EvaluationOptions) -> float:
    """``--strength`` as the raw strength of ``Direction.apply``: as given (``raw``), or ``k``
    standard deviations of sampled w along the direction (``std``; the unit is the
    direction's own, :meth:`lsap.editing.directions.Direction.std_strength`)."""
    if options.strength_unit == "raw":
        return float(options.strength)
    return edit.direction.std_strength(generator, float(options.strength))


def _edit_description(options: EvaluationOptions, strength: float) -> str:
    unit = "" if options.strength_unit == "raw" else f" ({options.strength:g} std of w along it)"
    return f"direction {Path(str(options.direction)).name} x{strength:+g}{unit}, inverse x{-strength:+g}"


class LECEvaluator(Evaluator):
    """e4e's LEC of an encoder (``--encoder``) on the inputs, whole batches only."""

    name = "lec"

    def evaluate(self, run: EvaluationRun, context: EvaluationContext) -> Outcome:
        from lsap.encoders.checkpoints import load_encoder_checkpoint
        from lsap.metrics.lec import LEC

        options = context.options
        if not (options.encoder and options.direction and options.generator):
            return Outcome(skipped={"lec": "needs --encoder, --direction and --generator"})
        g = context.generator
        loaded = load_encoder_checkpoint(options.encoder)
        if (loaded.num_ws, loaded.w_dim) != (g.num_ws, g.w_dim):
            raise BadValueError(f"the encoder '{options.encoder}' gives codes of shape {(loaded.num_ws, loaded.w_dim)} "
                                f"but the generator takes {(g.num_ws, g.w_dim)}")
        context.weights.update(encoder=options.encoder, direction=options.direction)
        net = loaded.encoder.to(context.device).eval()
        latent_avg = loaded.latent_avg.to(context.device) if loaded.latent_avg is not None else None
        size = net.input_size
        edit = direction_edit(options.direction, g)
        strength = strength_in_w(edit, g, options)

        def encode(images: Tensor) -> Tensor:
            if images.shape[-1] != size:
                images = torch.nn.functional.adaptive_avg_pool2d(images, (size, size))
            codes = net(images)
            return codes + latent_avg if loaded.start_from_latent_avg and latent_avg is not None else codes

        metric = LEC(encode, lambda ws: g.synthesis(ws, noise_mode="const"),
                     lambda ws: edit.edited(g, ws, strength), lambda ws: edit.edited(g, ws, -strength),
                     image_size=size).to(context.device)
        batch_size = options.batch_size
        usable = run.pairs[:len(run.pairs) - len(run.pairs) % batch_size]  # e4e drops the last incomplete batch
        for chunk in run.batches(batch_size, usable):
            metric.update(torch.stack([run.real(path) for _, path in chunk]).to(context.device))
        summary = metric.summary()
        summary.update({"edit": _edit_description(options, strength), "batch_size": batch_size})
        return Outcome(metrics={"lec": summary})


def reinversion_module(results_dir: str, num_steps: int | None = None, allowed: tuple[str, ...] = ()) -> Any:
    """The LSAP_O module of the run that wrote ``results_dir``, rebuilt from its ``config.yaml``
    by the safe run-config reader (lsap's own components only, or ``allowed``), for
    re-inverting edited images; ``num_steps`` overrides the run's schedule length."""
    from lsap.model.run_config import config_file, module_from_run_config
    from lsap.modules import LSAP_O

    file = config_file(results_dir)
    if not file.is_file():
        raise MissingInputError(f"'{file}' is missing: the edit-and-reinvert LEC re-runs the inversion "
                                "that wrote the results and reads its settings from there")
    overrides: dict[str, Any] = {"progress": False}
    if num_steps is not None:
        overrides["num_steps"] = num_steps
    return module_from_run_config(file, LSAP_O, overrides, allowed)


class ReinversionLECEvaluator(Evaluator):
    """The edit-and-reinvert LEC of an LSAP_O run: stored code -> edit -> image -> the run's own
    optimisation (rebuilt by the safe run-config reader) -> inverse edit."""

    name = "lec_reinvert"

    def evaluate(self, run: EvaluationRun, context: EvaluationContext) -> Outcome:
        from lsap.metrics.lec import LEC

        options = context.options
        why = ("needs --reinvert, --direction, --generator and an LSAP_O results folder (it re-runs that "
               "optimisation on every edited image)")
        if not (options.reinvert and options.direction and options.generator):
            return Outcome(skipped={"lec_reinvert": why})
        module = reinversion_module(str(run.results_dir), options.reinvert_steps,
                                    tuple(options.trusted_classes)).to(context.device)
        g, missing = _generator_and_codes(run, context)
        if g is None:
            return Outcome(skipped={"lec_reinvert": missing})
        context.weights["direction"] = options.direction
        edit = direction_edit(options.direction, g)
        strength = strength_in_w(edit, g, options)
        names: list[str] = []

        def reinvert(images: Tensor) -> Tensor:
            with torch.enable_grad():
                return module.invert(images, [f"lec-reinvert/{name}" for name in names]).ws.detach()

        metric = LEC(reinvert, lambda ws: g.synthesis(ws, noise_mode="const"),
                     lambda ws: edit.edited(g, ws, strength), lambda ws: edit.edited(g, ws, -strength),
                     image_size=None).to(context.device)
        items = run.with_codes()
        batch_size = options.batch_size
        for chunk in run.batches(batch_size, items[:len(items) - len(items) % batch_size]):
            names[:] = [item.name for item, _ in chunk]
            metric.update_codes(torch.stack([run.codes[item.name] for item, _ in chunk]).to(context.device))
        summary = metric.summary()
        summary.update({"edit": _edit_description(options, strength), "batch_size": batch_size,
                        "reinversion_steps": module.num_steps})
        return Outcome(metrics={"lec_reinvert": summary})


# ----- class edits ---------------------------------------------------------------------------
def edit_renderer(run: EvaluationRun, item: Any, generator: Any) -> Callable[[Tensor], Tensor]:
    """W+ codes -> images in [-1, 1] through the state that made a result, as ``lsap edit``
    renders it (:func:`lsap.editing.refinement.refinement_renderer`: the generator, or for a
    PTI result its own tuned weights, with the result's own noise maps when it stored any)."""
    from lsap.editing.refinement import refinement_renderer

    if item.record is None:
        return lambda codes: generator.synthesis(codes, noise_mode="const").clamp(-1, 1)
    code = {"ws": run.codes[item.name], "noise": run.noise.get(item.name)}
    renderer = refinement_renderer(generator, item.record, code)
    return lambda codes: renderer.render(codes).clamp(-1, 1)


def class_edit_success(run: EvaluationRun, generator: Any, classifier: nn.Module, direction: Any, strength: float,
                       target_class: int, source_class: int | None = None,
                       labels: dict[str, int] | None = None) -> tuple[Any, dict[str, float]]:
    """Class-edit success of the stored codes of ``run``: each chosen image (its label, from
    ``labels`` or else the classifier's reading of its input, is ``source_class``; every image
    when that is None) is rendered before and after ``direction.apply(ws, strength)``.

    Returns ``(metric, reads_target)``: an :class:`~lsap.metrics.edit_success.EditSuccess`
    (target column ``target_class``: the share whose target score rose, the mean target change
    and the mean absolute change of the other classes' probabilities) and, per chosen image,
    1.0 when the classifier reads the edited image as ``target_class`` else 0.0. Images are
    rendered one by one (through :func:`edit_renderer`), so a result never depends on its
    batch-mates.
    """
    from lsap.metrics.edit_success import EditSuccess, edit_score_changes

    device = next(iter(generator.parameters())).device

    def probabilities(images: Tensor) -> Tensor:
        return classifier(images).softmax(dim=1)

    metric = EditSuccess(decode=None, edit=None, classifier=classifier, attribute=target_class).to(device)
    reads_target: dict[str, float] = {}
    for item, real_path in run.with_codes():
        if source_class is not None:
            label = labels.get(item.name) if labels is not None else int(
                probabilities(run.real(real_path)[None].to(device)).argmax(1))
            if label != source_class:
                continue
        ws = run.codes[item.name].float()[None].to(device)
        decode = edit_renderer(run, item, generator)

        def edit(codes: Tensor) -> Tensor:
            return direction.apply(codes, strength)

        metric.accumulate(edit_score_changes(ws, decode, edit, probabilities))
        reads_target[item.name] = float(int(probabilities(decode(edit(ws))).argmax(1)) == target_class)
    return metric, reads_target


def labels_from_names(names: list[str]) -> dict[str, int]:
    """Class labels written at the end of file names (``NNNN_<class>``, the shipped samples)."""
    labels = {}
    for name in names:
        match = CLASS_LABEL.search(Path(name).name)
        if match is not None:
            labels[name] = int(match.group(1))
    return labels


class ClassEditEvaluator(Evaluator):
    """Class-edit success (``--classifier``, ``--direction``, ``--strength``): the share of edited
    images the classifier reads as the target class, the target score's rise and the other
    classes' movement. Source and target classes default to the direction's ``classes``
    metadata (the fashion32 class directions carry them); inputs are chosen by their label
    in the file name when every input has one, else by the classifier's reading of them."""

    name = "class_edit"

    def evaluate(self, run: EvaluationRun, context: EvaluationContext) -> Outcome:
        options = context.options
        if not (options.classifier and options.direction and options.generator):
            return Outcome(skipped={"class_edit": "needs --classifier, --direction and --generator"})
        g, why = _generator_and_codes(run, context)
        if g is None:
            return Outcome(skipped={"class_edit": why})
        edit = direction_edit(options.direction, g)
        classes = edit.direction.meta.get("classes") or [None, None]
        source = options.source_class if options.source_class is not None else classes[0]
        target = options.target_class if options.target_class is not None else classes[1]
        if target is None:
            return Outcome(skipped={"class_edit": f"direction '{options.direction}' names no target class: pass "
                                                  "--target_class"})
        strength = strength_in_w(edit, g, options)
        names = [item.name for item, _ in run.with_codes()]
        labels = labels_from_names(names)
        by_name = labels if len(labels) == len(names) else None
        metric, reads = class_edit_success(run, g, context.classifier, edit.direction, strength, int(target),
                                           None if source is None else int(source), by_name)
        context.weights["direction"] = options.direction
        if not reads:
            return Outcome(skipped={"class_edit": f"no image of source class {source} among the results"})
        for name, value in reads.items():
            context.per_image[name]["edit_reads_target"] = value
        summary = metric.summary()
        share = sum(reads.values()) / len(reads)
        summary.update({"mean": share, "reads_target": share, "count": len(reads),
                        "source_class": source, "target_class": int(target), "strength": strength,
                        "labels": "file names" if by_name is not None else "classifier",
                        "edit": _edit_description(options, strength).split(",")[0]})
        return Outcome(metrics={"class_edit": summary})


def default_evaluators(extra_metrics: dict[str, Any] | None = None,
                       fid_extractor: nn.Module | None = None) -> list[Evaluator]:
    """The evaluators of ``lsap evaluate``, in report order."""
    return [FidelityEvaluator(extra_metrics), FIDEvaluator(fid_extractor), NSCDEvaluator(), LECEvaluator(),
            ReinversionLECEvaluator(), ClassEditEvaluator()]
