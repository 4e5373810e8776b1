"""``lsap evaluate``: every metric the given weights allow, for one inversion output folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from lsap.errors import MissingInputError
from lsap.evaluation.inputs import RealFit, pair_with_inputs, read_image, read_real_image, read_reconstructions
from lsap.evaluation.report import write_reports
from lsap.metrics.fid import file_sha256
from lsap.results import load_code
from lsap.metrics.fidelity import (
    MSE,
    MSSSIM,
    PSNR,
    SSIM,
    IDSimilarity,
    LPIPSMetric,
    PerImageMetric,
    check_convention,
    msssim_min_size,
    prepare_pair,
)

CONVENTION_NOTES = {
    "default": "float images in [-1, 1] at the reconstruction's size; PSNR = 10 log10(4 / MSE)",
    "ganinverter": "GANInverter scripts/test.py: 8-bit images at 256x256; PSNR = 10 log10(2 / MSE)",
}


def _edit_and_inverse(direction: str, generator: Any, strength: float) -> tuple[Any, Any]:
    """``ws -> ws + strength * n`` and its inverse for a W direction: a file in any format
    :mod:`lsap.editing` reads, or a built-in name such as ``sneaker_to_boot``."""
    from lsap.editing.edits import DirectionEdit, resolve_edit

    edit = resolve_edit(direction, generator)
    if not isinstance(edit, DirectionEdit):
        raise ValueError(f"LEC needs a W-space direction; '{direction}' is a {type(edit).__name__}")
    return (lambda ws: edit.edited(generator, ws, strength)), (lambda ws: edit.edited(generator, ws, -strength))


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
    file = Path(spec)
    return file if file.is_file() else None


def _batches(items: list, size: int, label: str):
    for start in tqdm(range(0, len(items), size), desc=label, unit="batch", leave=False):
        yield start, items[start:start + size]


def _lec(encoder: str, generator: Any, direction: str, strength: float, pairs: list, batch_size: int,
         device: torch.device, read_real: Any = read_image) -> dict:
    from lsap.encoders.checkpoints import load_encoder_checkpoint
    from lsap.metrics.lec import LEC

    loaded = load_encoder_checkpoint(encoder)
    if (loaded.num_ws, loaded.w_dim) != (generator.num_ws, generator.w_dim):
        raise ValueError(f"the encoder '{encoder}' gives codes of shape {(loaded.num_ws, loaded.w_dim)} but the "
                         f"generator takes {(generator.num_ws, generator.w_dim)}")
    net = loaded.encoder.to(device).eval()
    latent_avg = loaded.latent_avg.to(device) if loaded.latent_avg is not None else None
    size = net.input_size
    forward_edit, inverse_edit = _edit_and_inverse(direction, generator, strength)

    def encode(images: Tensor) -> Tensor:
        if images.shape[-1] != size:
            images = torch.nn.functional.adaptive_avg_pool2d(images, (size, size))
        codes = net(images)
        return codes + latent_avg if loaded.start_from_latent_avg and latent_avg is not None else codes

    def decode(ws: Tensor) -> Tensor:
        return generator.synthesis(ws, noise_mode="const")

    metric = LEC(encode, decode, forward_edit, inverse_edit, image_size=size).to(device)
    usable = len(pairs) - len(pairs) % batch_size  # e4e drops the last incomplete batch
    for _, chunk in _batches(pairs[:usable], batch_size, "LEC"):
        metric.update(torch.stack([read_real(real) for _, real in chunk]).to(device))
    summary = metric.summary()
    summary.update({"edit": f"direction {Path(direction).name} x{strength:+g}, inverse x{-strength:+g}",
                    "batch_size": batch_size})
    return summary


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


def _lec_reinvert(results_dir: str, generator: Any, direction: str, strength: float, pairs: list,
                  batch_size: int, device: torch.device, num_steps: int | None) -> dict:
    from lsap.metrics.lec import LEC

    module = reinversion_module(results_dir, num_steps).to(device)
    forward_edit, inverse_edit = _edit_and_inverse(direction, generator, strength)
    names: list[str] = []

    def reinvert(images: Tensor) -> Tensor:
        with torch.enable_grad():
            return module.invert(images, [f"lec-reinvert/{name}" for name in names]).ws.detach()

    def decode(ws: Tensor) -> Tensor:
        return generator.synthesis(ws, noise_mode="const")

    metric = LEC(reinvert, decode, forward_edit, inverse_edit, image_size=None).to(device)
    usable = len(pairs) - len(pairs) % batch_size  # whole batches only, as LEC
    for _, chunk in _batches(pairs[:usable], batch_size, "LEC (re-invert)"):
        names[:] = [record.name for record, _ in chunk]
        metric.update_codes(torch.stack([load_code(record.code_path)["ws"] for record, _ in chunk]).to(device))
    summary = metric.summary()
    summary.update({"edit": f"direction {Path(direction).name} x{strength:+g}, inverse x{-strength:+g}",
                    "batch_size": batch_size, "reinversion_steps": module.num_steps})
    return summary


@torch.no_grad()
def evaluate(results_dir: str, real: str, output: str | None = None, inception: str | None = None,
             lpips: str | None = None, identity: str | None = None, identity_backbone: str = "arcface",
             detect_faces: bool = False, generator: str | None = None, nscd_samples: int = 100_000,
             encoder: str | None = None,
             direction: str | None = None, strength: float = 3.0, convention: str = "default",
             device: str = "cpu", batch_size: int = 8, real_stats: str | None = None,
             tensorboard: str | None = None, wandb_project: str | None = None, wandb_mode: str | None = None,
             pca_samples: int = 1000, extra_metrics: dict[str, PerImageMetric] | None = None,
             real_fit: RealFit = "resize", reinvert: bool = False,
             reinvert_steps: int | None = None) -> dict[str, Any]:
    """Evaluate an inversion output folder against its inputs; write the reports; return metrics.json.

    With a generator and codes, also writes ``pca_sn.png`` (inverted codes against
    ``pca_samples`` synthetic samples in S^N). ``tensorboard`` (a log folder) and
    ``wandb_project`` log the results there as well.
    """
    check_convention(convention)
    target = torch.device(device)
    reconstructions = read_reconstructions(results_dir)
    pairing = pair_with_inputs(reconstructions, real)
    pairs = pairing.pairs
    if not pairs:
        raise ValueError(f"no reconstruction in '{results_dir}' has an input of the same name in '{real}' "
                         f"({len(pairing.unmatched_results)} unmatched)")
    skipped: dict[str, str] = {}
    weights: dict[str, str] = {}
    metrics: dict[str, PerImageMetric] = {m.name: m for m in (MSE(convention), PSNR(convention), SSIM(convention))}

    first_image = read_image(pairs[0][0].image_path)
    size = first_image.shape[-1]

    def read_real(path: Any) -> Tensor:
        return read_real_image(path, size, real_fit)

    first_pred, first_real = prepare_pair(first_image[None], read_real(pairs[0][1])[None], convention)
    if min(first_pred.shape[-2:]) >= msssim_min_size():
        metrics["ms_ssim"] = MSSSIM(convention)
    else:
        skipped["ms_ssim"] = f"images of {tuple(first_pred.shape[-2:])} are below MS-SSIM's {msssim_min_size()} px"
    if lpips:
        metrics["lpips"] = LPIPSMetric(backbone_weights=lpips, convention=convention)
        weights["lpips"] = lpips
    else:
        skipped["lpips"] = "no --lpips (torchvision AlexNet ImageNet weights, alexnet-owt-7be5be79.pth)"
    if identity:
        detector = None
        if detect_faces:
            from lsap.align import MTCNNFaceDetector

            detector = MTCNNFaceDetector(device=device)
        metrics["id"] = IDSimilarity(weights=identity, backbone=identity_backbone, convention=convention,
                                     face_detector=detector)
        weights["id"] = identity
    else:
        skipped["id"] = ("no --identity (ArcFace model_ir_se50.pth, CurricularFace_Backbone.pth or a facenet-pytorch "
                         "state dict)")
    metrics.update(extra_metrics or {})
    for metric in metrics.values():
        metric.to(target)

    per_image: list[dict[str, Any]] = []
    for _, chunk in _batches(pairs, batch_size, "fidelity"):
        prepared = [prepare_pair(read_image(item.image_path)[None], read_real(path)[None], convention)
                    for item, path in chunk]
        rows = [{"name": item.name} for item, _ in chunk]
        # Reconstructions of one folder normally share a size; other folders go in per-size groups.
        for shape in dict.fromkeys(p.shape for p, _ in prepared):
            group = [k for k, (p, _) in enumerate(prepared) if p.shape == shape]
            pred = torch.cat([prepared[k][0] for k in group]).to(target)
            real_images = torch.cat([prepared[k][1] for k in group]).to(target)
            for name, metric in metrics.items():
                values = metric.scores(pred, real_images)
                metric.accumulate(values)
                for k, value in zip(group, values.tolist()):
                    rows[k][name] = value if math.isfinite(value) else None
        per_image.extend(rows)

    results: dict[str, Any] = {name: metric.summary() for name, metric in metrics.items()}

    # FID: all reconstructions against the whole real folder, as `lsap fid` computes it.
    from lsap.evaluation.fid import folder_fid

    try:
        fid = folder_fid(real, [str(r.image_path) for r in reconstructions], inception=inception, device=device,
                         batch_size=batch_size, real_stats=real_stats)
        results["fid"] = {"mean": fid["fid"], "std": None, "num_real": fid["num_real"],
                          "num_fake": fid["num_fake"], "feature_network": fid["feature_network"]}
        if fid["weights"]:
            weights["inception"] = fid["weights"]
    except FileNotFoundError as error:
        skipped["fid"] = str(error)

    g = None
    if generator:
        from lsap.model.source import generator_from_spec

        g = generator_from_spec(generator).to(target)
        weights["generator"] = generator
    codes = [r for r, _ in pairs if r.code_path is not None]
    code_shape = tuple(load_code(codes[0].code_path)["ws"].shape) if codes else None
    if g is not None and codes and code_shape == (g.num_ws, g.w_dim):
        results["nscd"] = _nscd(g, codes, nscd_samples, batch_size, target, per_image)
    elif g is None:
        skipped["nscd"] = "no --generator"
    elif not codes:
        skipped["nscd"] = "the results folder holds no codes"
    else:
        skipped["nscd"] = (f"the codes have shape {code_shape} but the generator takes W+ codes of shape "
                           f"{(g.num_ws, g.w_dim)}: they were made with another generator")
        codes = []

    if encoder and direction and g is not None:
        results["lec"] = _lec(encoder, g, direction, strength, pairs, batch_size, target, read_real)
        weights.update(encoder=encoder, direction=direction)
    else:
        skipped["lec"] = "needs --encoder, --direction and --generator"
    if reinvert and direction and g is not None and codes:
        with_codes = [(record, path) for record, path in pairs if record.code_path is not None]
        results["lec_reinvert"] = _lec_reinvert(results_dir, g, direction, strength, with_codes, batch_size, target,
                                                reinvert_steps)
        weights.update(direction=direction)
    else:
        skipped["lec_reinvert"] = ("needs --reinvert, --direction, --generator and an LSAP_O results folder (it "
                                   "re-runs that optimisation on every edited image)")

    report = {
        "results_dir": str(results_dir), "real_dir": str(real), "convention": convention, "real_fit": real_fit,
        "convention_note": CONVENTION_NOTES[convention], "metrics": results, "skipped": skipped,
        "counts": {"pairs": len(pairs), "reconstructions": len(reconstructions),
                   "unmatched_results": len(pairing.unmatched_results),
                   "unmatched_real": len(pairing.unmatched_real)},
        "unmatched_results": pairing.unmatched_results, "unmatched_real": pairing.unmatched_real,
        "weights": {k: {"path": str(file), "sha256": file_sha256(file)}
                    for k, v in sorted(weights.items()) if (file := _weights_file(k, v)) is not None},
        "std": "population standard deviation over images (ddof=0)",
    }
    out_dir = Path(output or results_dir)
    figure = None
    if g is not None and codes and pca_samples > 0:
        from lsap.evaluation.logging import PCA_FIGURE, pca_figure

        ws = torch.stack([load_code(r.code_path)["ws"] for r in codes])
        figure = pca_figure(g, ws, out_dir / PCA_FIGURE, num_synthetic=pca_samples)
        report["figures"] = {"pca_sn": PCA_FIGURE}
    write_reports(out_dir, report, per_image)
    if tensorboard:
        from lsap.evaluation.logging import log_tensorboard

        log_tensorboard(tensorboard, report, figure)
    if wandb_project:
        from lsap.evaluation.logging import log_wandb

        log_wandb(wandb_project, report, per_image, figure, mode=wandb_mode, run_dir=out_dir)
    return report


def _nscd(generator: Any, items: list, num_samples: int, batch_size: int, device: torch.device,
          per_image: list[dict[str, Any]]) -> dict[str, Any]:
    from lsap.metrics import NSCD

    metric = NSCD(generator=generator, num_samples=num_samples).to(device)
    by_name = {row["name"]: row for row in per_image}
    for _, chunk in _batches(items, batch_size, "NSCD"):
        ws = torch.stack([load_code(r.code_path)["ws"] for r in chunk]).to(device)
        metric.update(ws)
        distances = metric.alignment.distances(ws, dtype=torch.float64)
        for item, value in zip(chunk, distances.mean(dim=1).tolist()):
            by_name[item.name]["nscd"] = value
    values = torch.tensor([by_name[r.name]["nscd"] for r in items], dtype=torch.float64)
    return {"mean": float(metric.compute()), "std": float(values.std(unbiased=False)), "count": len(items),
            "per_layer": [float(v) for v in metric.compute_per_layer()], "layers": metric.layer_names,
            "num_samples": num_samples}

