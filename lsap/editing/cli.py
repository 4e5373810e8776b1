"""The ``lsap edit`` and ``lsap directions`` commands (registered in ``lsap.commands``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

# The commands import torch and lsap inside, and nothing heavy sits under TYPE_CHECKING either
# (jsonargparse runs those imports to read signatures), so that `lsap edit --help` stays fast.

__all__ = ["directions_interfacegan", "directions_ganspace", "directions_sefa", "edit"]


def _generator(spec: str | None, results_dir: str | None = None) -> Any:  # a torch.nn.Module
    from lsap.model.source import generator_from_spec

    return generator_from_spec(spec, results_dir)


def edit(results_dir: str, direction: list[str] = [], strengths: list[float] = [-3.0, 0.0, 3.0],  # noqa: B006
         layers: Optional[str] = None, output: Optional[str] = None, generator: Optional[str] = None,
         ganspace: Optional[str] = None, ganspace_mode: Literal["target", "shift"] = "target",
         style_std_samples: int = 100_000, batch_size: int = 8, device: str = "cpu", upscale: int = 1,
         seed: int = 0, std_units: bool = False) -> None:
    """Edit every image of an inversion output folder and write edit grids.

    Args:
        results_dir: output folder of lsap predict (LSAP_E, LSAP_O or PTI; PTI decodes with the tuned weights).
        direction: one or more edits, one grid row each: a direction file (.pt / .npy), FILE#k (a component of a
            GANSpace or SeFa file), ganspace:NAME or ganspace:k:start:end, stylespace:NAME or
            stylespace:LAYER:CHANNEL, or the name of a built-in direction.
        strengths: edit strengths, one grid column each (the reconstruction sits in the middle).
        layers: restrict direction edits to W+ entries a:b (end exclusive).
        output: output folder (default RESULTS_DIR/edits).
        generator: checkpoint, or the YAML config of the inversion run (default: RESULTS_DIR/config.yaml).
        ganspace: GANSpace file (e4e *_pca.pt or GANSpace .npz) for ganspace:... edits.
        ganspace_mode: "target" (e4e: strength is the target coordinate in std units) or "shift".
        style_std_samples: samples for the per-channel style std of StyleSpace edits (cached).
        batch_size: images rendered together.
        device: device to render on, e.g. "cpu" or "cuda".
        upscale: integer enlargement of grid images.
        seed: seed of the style std samples (and of the samples behind --std_units).
        std_units: give direction strengths in standard deviations of sampled w along each direction
            (Direction.in_std_units) instead of multiples of the stored vector.
    """
    from lsap.editing.edits import DirectionEdit, resolve_edit
    from lsap.editing.run import edit_results
    from lsap.errors import BadValueError
    from lsap.results import InversionResults

    InversionResults(results_dir).checked()  # a missing or foreign folder is named before anything else
    if not direction:
        raise BadValueError("give at least one --direction (a file, FILE#k, ganspace:..., stylespace:... or a name)")

    g = _generator(generator, results_dir).to(device)
    edits = [resolve_edit(spec, g, layers=layers, ganspace=ganspace, ganspace_mode=ganspace_mode,
                          style_std_samples=style_std_samples, seed=seed) for spec in direction]
    if std_units:
        for e in edits:
            if not isinstance(e, DirectionEdit):
                raise BadValueError(f"--std_units applies to direction edits; '{e.name}' is not one")
            e.direction = e.direction.in_std_units(g, seed=seed)
    counts = edit_results(results_dir, g, edits, strengths, output=output, batch_size=batch_size, device=device,
                          upscale=upscale)
    print(f"edited {counts['edited']} images, skipped {counts['skipped']} already done ({counts['total']} in all)")


def directions_ganspace(generator: str, output: str, num_samples: int = 300_000, num_components: int = 80,
                        seed: int = 0, method: Literal["exact", "randomized"] = "exact", batch_size: int = 4096,
                        device: str = "cpu") -> None:
    """GANSpace: PCA of W over seeded samples, saved in e4e's *_pca.pt format.

    Args:
        generator: checkpoint, or a YAML/JSON of generator fields.
        output: .pt file to write.
        num_samples: sampled w.
        num_components: principal components kept.
        seed: seed of the z draws.
        method: "exact" (covariance eigendecomposition) or "randomized".
        batch_size: samples per forward pass.
        device: device to sample on.
    """
    from lsap.editing.ganspace import compute_ganspace, save_ganspace

    g = _generator(generator).to(device)
    result = compute_ganspace(g, num_samples, num_components, seed, method, batch_size)
    save_ganspace(result, output)
    top = ", ".join(f"{v:.3f}" for v in (result.var_ratio[:5].tolist() if result.var_ratio is not None else []))
    print(f"wrote {num_components} components to {output}; explained variance of the first: [{top}]")


def directions_sefa(generator: str, output: str, layers: str = "2:6", num_components: int = 10,
                    normalize: bool = False) -> None:
    """SeFa: closed-form directions from the chosen W+ entries' modulation weights.

    Args:
        generator: checkpoint, or a YAML/JSON of generator fields.
        output: .pt file to write (use FILE#k with lsap edit).
        layers: W+ entries a:b (end exclusive) or a,b,c.
        num_components: eigenvectors kept.
        normalize: scale each weight row to unit norm first (SeFa's official variant).
    """
    from lsap.editing.sefa import compute_sefa, save_sefa

    g = _generator(generator)
    result = compute_sefa(g, layers, num_components, normalize)
    save_sefa(result, output)
    print(f"wrote {len(result.components)} SeFa directions of entries {list(result.layers)} to {output}")


def directions_interfacegan(generator: str, output: str, labels: Optional[str] = None,
                            codes_dir: Optional[str] = None, classifier: Optional[str] = None,
                            num_samples: int = 10_000, score_index: int = 0, label_column: Optional[str] = None,
                            method: Literal["svm", "logistic"] = "svm", chosen_ratio: float = 0.02,
                            test_fraction: float = 0.3, regularization: float = 1e-3,
                            condition: Optional[list[str]] = None, seed: int = 0, device: str = "cpu") -> None:
    """InterFaceGAN: a linear boundary in W from labelled codes; saves its unit normal.

    Args:
        generator: checkpoint, or a YAML/JSON of generator fields.
        output: .pt direction file to write.
        labels: CSV or JSON of image name -> label (0/1) or score, matched to codes_dir's images.
        codes_dir: inversion output folder holding codes/<name>.pt (with labels).
        classifier: instead of labels: 'package.module:ClassOrFactory' scoring generated images.
        num_samples: sampled codes to score with the classifier.
        score_index: column of the classifier's output to use when it returns several.
        label_column: CSV column of the labels (default: the second).
        method: "svm" (linear, squared hinge) or "logistic".
        chosen_ratio: for scores: fraction of highest and lowest codes used as the two classes.
        test_fraction: held-out share for the reported accuracy.
        regularization: L2 penalty.
        condition: direction files to project out (conditional editing).
        seed: seed of the split and of the samples.
        device: device for generating samples.
    """
    import torch

    from lsap.editing.directions import load_direction, save_direction
    from lsap.editing.interfacegan import fit_boundary, load_classifier, project_out, read_labels, sample_scored_codes
    from lsap.errors import BadValueError
    from lsap.model.fingerprint import generator_fingerprint
    from lsap.results import InversionResults

    g = _generator(generator).to(device)
    conditions = [load_direction(c) for c in condition or []]  # refused now (NaN, shape), not after the fit
    if labels is not None:
        if codes_dir is None:
            raise BadValueError("--labels needs --codes_dir (the inversion output holding the codes)")
        table = read_labels(labels, label_column)
        records = [r for r in InversionResults(codes_dir).checked() if r.name in table]
        names = [r.name for r in records]
        missing = len(table) - len(names)
        if len(names) < 4:
            raise BadValueError(f"only {len(names)} labelled images have codes in '{codes_dir}'")
        shape = (int(g.num_ws), int(g.w_dim))
        codes = torch.stack([r.load_code(shape)["ws"] for r in records])
        values = torch.tensor([table[n] for n in names])
        source: dict[str, Any] = {"labels": labels, "codes_dir": codes_dir, "unmatched_labels": missing}
    elif classifier is not None:
        codes, values = sample_scored_codes(g, load_classifier(classifier), num_samples, seed,
                                            score_index=score_index)
        source = {"classifier": classifier, "num_samples": num_samples}
    else:
        raise BadValueError("give --labels with --codes_dir, or --classifier")
    boundary = fit_boundary(codes, values, method, test_fraction, chosen_ratio, regularization, seed)
    direction = boundary.direction(Path(output).stem, generator_fingerprint(g), {"fit": method, **source})
    if condition:
        direction.vector = project_out(direction.vector, *[c.vector.reshape(-1) for c in conditions])
        direction.meta["conditions"] = list(condition)
    save_direction(direction, output)
    if missing := source.get("unmatched_labels"):
        print(f"{missing} labels had no code and were skipped")
    print(f"wrote {output}: held-out accuracy {boundary.accuracy} on {boundary.num_test} codes "
          f"(train {boundary.train_accuracy:.3f} on {boundary.num_train})")

