"""The two-stage claims table of ``bench/claims_fashion32.py``: per-image values of every
row (embedding x refinement), their bootstrap intervals, the method-level correlations and
the pivot effect per refinement.

Every number of a row comes from per-image values, so each gets a 95 % bootstrap interval
over images (``lsap.metrics.bootstrap``); FID, not a mean, is bootstrapped by resampling
the image pairs. Class keep and edit success are scored by both classifiers: the shipped
one (the *labeller*, which also labelled the codes the directions were fitted on) and the
independent judge (``lsap.nets.fashion_judge``, never used to fit or select anything).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lsap.metrics.bootstrap import Interval, bootstrap_interval, bootstrap_mean, bootstrap_mean_difference

CLASSIFIERS = ("labeller", "judge")
# Columns from per-image values: (key, header, digits).
MEAN_COLUMNS = (
    ("mse", "MSE ↓", 4), ("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 3), ("perceptual", "feature dist. ↓", 3),
    ("nscd", "NSCD ↓", 3), ("keep_labeller", "class keep (labeller) ↑", 3), ("keep_judge", "class keep (judge) ↑", 3),
    ("edit_labeller", "edit → target (labeller) ↑", 3), ("edit_judge", "edit → target (judge) ↑", 3),
    ("other_labeller", "other classes moved ↓", 3),
)
# Pivot effects: (row of the LSAP pivot, row of the baseline pivot), per refinement.
PIVOT_PAIRS = (("encoder_lsap", "encoder_e4e"), ("restyle_lsap", "restyle_e4e"))
EFFECT_COLUMNS = ("nscd", "mse", "keep_judge", "edit_judge", "edit_labeller")
# The seeds table: every column's row mean, then mean ± sd across training seeds.
SEED_COLUMNS = (*[(key, header) for key, header, _ in MEAN_COLUMNS], ("fid", "FID (labeller features) ↓"),
                ("lec", "LEC ↓"), ("seconds_per_image", "s / image"))


# ----- a selection rule fixed in advance -----------------------------------------------------
def select_under_half_nscd(scores: dict[float, dict[str, float]], reference_nscd: float,
                           fallback: float) -> dict[str, Any]:
    """The validation choice of an NSCD weight (LSAP_E's NSCD weight, LSAP_O's lambda).

    ``scores`` maps each candidate weight to its ``{"mse": ..., "nscd": ...}`` on the
    validation images; ``reference_nscd`` is the NSCD of the reference without the NSCD loss.
    A candidate qualifies when its NSCD is at most half of ``reference_nscd``; the choice is
    the qualifying candidate of lowest MSE, ties going to the larger weight; when none
    qualifies, ``fallback``. Returns the choice, whether it came from the rule, and per
    candidate whether it qualified.
    """
    if not math.isfinite(reference_nscd):
        raise ValueError(f"the reference NSCD must be a finite number, got {reference_nscd}")
    limit = reference_nscd / 2
    qualifies = {weight: bool(s["nscd"] <= limit) for weight, s in scores.items()}
    eligible = [weight for weight, ok in qualifies.items() if ok]
    if not eligible:
        return {"choice": fallback, "by_rule": False, "limit": limit, "qualifies": qualifies,
                "reason": f"no candidate has NSCD <= {limit:.6g} (half the reference's): the fallback {fallback:g}"}
    best = min(scores[w]["mse"] for w in eligible)
    choice = max(w for w in eligible if scores[w]["mse"] == best)
    return {"choice": choice, "by_rule": True, "limit": limit, "qualifies": qualifies,
            "reason": f"lowest MSE among the candidates with NSCD <= {limit:.6g} (half the reference's)"}


# ----- test images ---------------------------------------------------------------------------
def full_test_split_folder(output: Path, root: str | Path) -> Path:
    """The 10 000 Fashion-MNIST test images as a folder the claims script reads like the shipped
    one (28 px grey PNGs named ``<t10k index>_<class>.png``), written once into ``output``."""
    from PIL import Image

    from lsap.data.fashion_mnist import FILES, check_root, read_idx

    folder = output / "fashion_mnist_t10k"
    done = folder / ".complete"
    if done.is_file():
        return folder
    root = check_root(root)
    images, labels = read_idx(root / FILES["test"][0]), read_idx(root / FILES["test"][1])
    folder.mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image, mode="L").save(folder / f"{index:05d}_{int(label)}.png")
    done.write_text(f"{len(labels)}\n")
    return folder


def first_images(folder: Path, count: int, output: Path) -> Path:
    """A folder (under ``output``) with copies of the first ``count`` images of ``folder`` (by
    name), so that rows made on fewer images are scored without reading the whole split;
    ``folder`` itself when that is all of it."""
    import shutil

    names = sorted(p.name for p in folder.glob("*.png"))
    if count >= len(names):
        return folder
    subset = output / f"{folder.name}_first{count}"
    if not (subset / ".complete").is_file():
        subset.mkdir(parents=True, exist_ok=True)
        for name in names[:count]:
            shutil.copyfile(folder / name, subset / name)
        (subset / ".complete").write_text(f"{count}\n")
    return subset


def choose_test_images(source: str, output: Path, root: str | Path) -> tuple[Path | None, str]:
    """``(folder or None for the shipped one, description)`` for ``source`` in auto / full / shipped."""
    from lsap.data.fashion_mnist import check_root

    if source not in ("auto", "full", "shipped"):
        raise ValueError(f"test images must be auto, full or shipped, got {source!r}")
    if source == "shipped":
        return None, "the 256 shipped test images (lsap/assets/fashion_mnist_test)"
    try:
        check_root(root)
    except FileNotFoundError:
        if source == "full":
            raise
        return None, ("the 256 shipped test images (lsap/assets/fashion_mnist_test): Debian's "
                      "dataset-fashion-mnist is not installed, so not the full split")
    return full_test_split_folder(output, root), f"the full Fashion-MNIST test split ({root}, 10 000 images)"


# ----- per-image scores ----------------------------------------------------------------------
def from_uint8(images: Tensor) -> Tensor:
    return images.float() / 127.5 - 1


@torch.no_grad()
def class_keep(run: Any, labels: dict[str, int], classifiers: dict[str, nn.Module],
               batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Per classifier, per image: 1.0 when it reads the reconstruction as the input's class."""
    out: dict[str, dict[str, float]] = {name: {} for name in classifiers}
    for chunk in run.batches(batch_size):
        names = [item.name for item, _ in chunk]
        images = torch.stack([run.reconstruction(item) for item, _ in chunk])
        truth = torch.tensor([labels[n] for n in names])
        for key, classifier in classifiers.items():
            hits = (classifier(images).argmax(1) == truth).float().tolist()
            out[key].update(zip(names, hits))
    return out


@torch.no_grad()
def edit_scores(run: Any, labels: dict[str, int], generator: nn.Module, classifiers: dict[str, nn.Module],
                edits: list[tuple[str, Any, float, int, int]], batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Per-image class-edit results of a run's stored codes, for every classifier.

    ``edits`` holds ``(name, direction, strength in w, source class, target class)``; each
    edit is applied to the images whose label is its source class. Returns, keyed
    ``"<image>|<edit>"``: ``edit_<classifier>`` (1.0 when that classifier reads the edited
    image as the target) and ``other_<classifier>`` (mean absolute change of the other nine
    classes' probabilities). Refined results (PTI, HFGI, SAM) and results with their own
    noise maps render one by one through their refinement state, as ``lsap edit`` renders
    them (``lsap.evaluation.evaluators.edit_renderer``); the others in batches (constant
    noise, so batching changes nothing beyond float rounding).
    """
    from lsap.evaluation.evaluators import edit_renderer

    out: dict[str, dict[str, float]] = {}
    device = next(iter(generator.parameters())).device
    noise = getattr(run, "noise", {})

    def plain(item: Any) -> bool:  # rendered by the generator alone, with its constant noise
        record = getattr(item, "record", None)
        return (record is None or record.refinement is None) and noise.get(item.name) is None

    def const_render(codes: Tensor) -> Tensor:
        return generator.synthesis(codes, noise_mode="const").clamp(-1, 1)

    for name, direction, strength, source, target in edits:
        items = [item for item, _ in run.with_codes() if labels.get(item.name) == source]
        batched = [item for item in items if plain(item)]
        groups = [(batched[i:i + batch_size], const_render) for i in range(0, len(batched), batch_size)]
        groups += [([item], edit_renderer(run, item, generator)) for item in items if not plain(item)]
        for group, decode in groups:
            ws = torch.stack([run.codes[item.name].float() for item in group]).to(device)
            before, after = decode(ws), decode(direction.apply(ws, strength))
            for key, classifier in classifiers.items():
                p_before, p_after = classifier(before).softmax(1), classifier(after).softmax(1)
                others = [k for k in range(p_before.shape[1]) if k != target]
                moved = (p_after[:, others] - p_before[:, others]).abs().mean(1)
                hit = (p_after.argmax(1) == target).float()
                for k, item in enumerate(group):
                    row = out.setdefault(f"{item.name}|{name}", {})
                    row[f"edit_{key}"] = float(hit[k])
                    row[f"other_{key}"] = float(moved[k])
    return out


@torch.no_grad()
def perceptual_distance(run: Any, distance: nn.Module, batch_size: int = 256) -> dict[str, float]:
    """Per image: the offline perceptual distance between reconstruction and input."""
    out: dict[str, float] = {}
    for chunk in run.batches(batch_size):
        pred = torch.stack([run.reconstruction(item) for item, _ in chunk])
        real = torch.stack([run.real(path) for _, path in chunk])
        out.update(zip([item.name for item, _ in chunk], distance.per_sample(pred, real).tolist()))
    return out


@torch.no_grad()
def fid_features(run: Any, classifier: nn.Module, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate labeller features of the inputs and the reconstructions, paired by image."""
    real, fake = [], []
    for chunk in run.batches(batch_size):
        real.append(classifier.forward_features(torch.stack([run.real(path) for _, path in chunk]))[1])
        fake.append(classifier.forward_features(torch.stack([run.reconstruction(item) for item, _ in chunk]))[1])
    return torch.cat(real).double().numpy(), torch.cat(fake).double().numpy()


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_interval(real: np.ndarray, fake: np.ndarray, resamples: int = 200, seed: int = 0) -> Interval:
    """Classifier-feature FID of the reconstructions against their own inputs, with a bootstrap
    interval from resampling the image pairs."""
    index = np.arange(len(real), dtype=np.float64)
    return bootstrap_interval([index], lambda i: frechet_distance(real[i.astype(int)], fake[i.astype(int)]),
                              resamples=resamples, seed=seed)


# ----- a row ---------------------------------------------------------------------------------
def row_intervals(per_image: dict[str, dict[str, float]], per_edit: dict[str, dict[str, float]],
                  resamples: int, seed: int) -> dict[str, Interval | None]:
    """Mean and interval of each column (image columns over images, edit columns over image-edit pairs)."""
    out: dict[str, Interval | None] = {}
    for key, _, _ in MEAN_COLUMNS:
        table = per_edit if key.startswith(("edit_", "other_")) else per_image
        values = [row[key] for row in table.values() if row.get(key) is not None and math.isfinite(row[key])]
        out[key] = bootstrap_mean(values, resamples=resamples, seed=seed) if len(values) >= 2 else None
    return out


# Below five rows a rank correlation across methods carries no evidence (with four rows the
# smallest exact two-sided p is 1/12), and scipy's approximate p reads 0 for a perfect ordering.
MIN_ROWS_FOR_CORRELATION = 5


def spearman_across_rows(rows: list[dict[str, Any]], x: str = "nscd",
                         ys: tuple[str, ...] = ("fid", "keep_judge", "keep_labeller", "edit_judge",
                                                "edit_labeller")) -> dict[str, dict[str, Any]]:
    """The method-level claim: Spearman's rho, across rows (n = rows), of each row's mean ``x``
    with each row's mean ``y``; none below ``MIN_ROWS_FOR_CORRELATION`` rows."""
    from scipy.stats import spearmanr

    out = {}
    for y in ys:
        pairs = [(r["values"][x].value, r["values"][y].value) for r in rows
                 if r["values"].get(x) is not None and r["values"].get(y) is not None]
        if len(pairs) < MIN_ROWS_FOR_CORRELATION:
            out[y] = {"rho": None, "p_value": None, "n": len(pairs),
                      "note": f"too few rows (at least {MIN_ROWS_FOR_CORRELATION})"}
            continue
        if len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
            out[y] = {"rho": None, "p_value": None, "n": len(pairs), "note": "constant rows"}
            continue
        result = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
        out[y] = {"rho": float(result.statistic), "p_value": float(result.pvalue), "n": len(pairs)}
    return out


def pivot_effects(rows: list[dict[str, Any]], pairs: tuple[tuple[str, str], ...], resamples: int,
                  seed: int) -> list[dict[str, Any]]:
    """For each refinement and each (LSAP pivot, baseline pivot) pair present: the paired
    difference ``LSAP - baseline`` of each column's per-image values, over the images (or
    image-edit pairs) both rows hold, with its interval."""
    by_key = {(r["embedding"], r["refinement"]): r for r in rows}
    out = []
    for (embedding, refinement), row in by_key.items():
        for lsap_pivot, base_pivot in pairs:
            if embedding != lsap_pivot or (base_pivot, refinement) not in by_key:
                continue
            base = by_key[(base_pivot, refinement)]
            effect: dict[str, Any] = {"refinement": refinement, "lsap": lsap_pivot, "baseline": base_pivot}
            for key in EFFECT_COLUMNS:
                table = "per_edit" if key.startswith(("edit_", "other_")) else "per_image"
                common = sorted(set(row[table]) & set(base[table]))
                a = [row[table][n].get(key) for n in common]
                b = [base[table][n].get(key) for n in common]
                keep = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
                effect[key] = (bootstrap_mean_difference([x for x, _ in keep], [y for _, y in keep],
                                                         resamples=resamples, seed=seed) if len(keep) >= 2 else None)
            out.append(effect)
    return out


def row_number(row: dict[str, Any], key: str) -> float | None:
    """A row's single value of a seeds-table column (an interval's mean, or a plain number)."""
    value = row.get(key) if key in ("lec", "seconds_per_image") else row["values"].get(key)
    value = value.value if isinstance(value, Interval) else value
    return float(value) if value is not None and math.isfinite(float(value)) else None


def seeds_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per encoder kind: over its main row and its seed rows (``row["seed_of"] == kind``), the
    mean and the sample standard deviation across seeds of every column's row mean, with n
    (the seeds holding that column; sd needs two)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({r["seed_of"] for r in rows if r.get("seed_of")}):
        group = [r for r in rows if r["embedding"] == f"encoder_{kind}" and r["refinement"] == "none"]
        group += [r for r in rows if r.get("seed_of") == kind]
        columns = {}
        for key, _ in SEED_COLUMNS:
            values = [v for v in (row_number(r, key) for r in group) if v is not None]
            columns[key] = {"mean": float(np.mean(values)) if values else None,
                            "sd": float(np.std(values, ddof=1)) if len(values) >= 2 else None, "n": len(values)}
        out[kind] = {"rows": [r["method"] for r in group], "n": len(group), "columns": columns}
    return out


def seeds_markdown(seeds: dict[str, dict[str, Any]]) -> list[str]:
    if not seeds:
        return []
    headers = ["encoder", "seeds", *[h for _, h in SEED_COLUMNS]]
    lines = ["", "Across training seeds (each encoder's main row and its seed rows, refinement none): mean ± sd "
                 "across seeds of each row's mean:", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for kind, s in seeds.items():
        cells = []
        for key, _ in SEED_COLUMNS:
            c = s["columns"][key]
            cells.append("–" if c["mean"] is None else f"{c['mean']:.4g}" + ("" if c["sd"] is None
                                                                              else f" ± {c['sd']:.2g}"))
        lines.append(f"| encoder_{kind} | {s['n']} | " + " | ".join(cells) + " |")
    lines += ["", "The seed rows (`encoder_<kind>_seed<k>`) are left out of the method-level Spearman "
                  "correlation below (one row per method there)."]
    return lines


# ----- markdown ------------------------------------------------------------------------------
def cell(interval: Interval | None, digits: int) -> str:
    if interval is None or not math.isfinite(interval.value):
        return "–"
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)) or interval.low == interval.high:
        return f"{interval.value:.{digits}f}"
    return f"{interval.value:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def markdown(rows: list[dict[str, Any]], unavailable: dict[str, str], correlations: dict[str, Any],
             effects: list[dict[str, Any]], per_image_correlation: dict[str, Any], settings: dict[str, Any],
             seeds: dict[str, dict[str, Any]] | None = None) -> str:
    headers = ["method", "refinement", "images", *[h for _, h, _ in MEAN_COLUMNS], "FID (labeller features) ↓",
               "LEC ↓", "s / image"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        v = r["values"]
        cells = [r["embedding"], r["refinement"], str(r["images"]),
                 *[cell(v.get(key), digits) for key, _, digits in MEAN_COLUMNS], cell(v.get("fid"), 3),
                 f"{r['lec']:.3g}" if r.get("lec") is not None else "–", f"{r['seconds_per_image']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    for label, why in unavailable.items():
        lines.append(f"| {label} | {why} |" + " |" * (len(headers) - 2))
    lines += ["", "Intervals: 95 % bootstrap over images (edit columns: over image-edit pairs; FID: over image "
                  "pairs)."]
    lines += seeds_markdown(seeds or {})
    lines += ["", "Method-level claim, Spearman's ρ across rows of mean NSCD with"
                  + (" (seed rows left out):" if seeds else ":"), ""]
    lines += ["| with | ρ | p | rows |", "|---|---|---|---|"]
    for y, c in correlations.items():
        rho = "–" if c["rho"] is None else f"{c['rho']:.3f}"
        p = (c.get("note") or "–") if c["p_value"] is None else f"{c['p_value']:.3g}"
        lines.append(f"| {y} | {rho} | {p} | {c['n']} |")
    pc = per_image_correlation
    lines += ["", f"Per image (pooled over rows): Spearman's ρ of NSCD with edit success (judge) = "
                  f"{'–' if pc.get('rho') is None else format(pc['rho'], '.3f')} "
                  f"(p = {'–' if pc.get('p_value') is None else format(pc['p_value'], '.3g')}, n = {pc.get('n', 0)})."]
    if effects:
        lines += ["", "Pivot effect per refinement (LSAP pivot − baseline pivot, paired over the same images):", "",
                  "| refinement | LSAP pivot | baseline | " + " | ".join(f"Δ {k}" for k in EFFECT_COLUMNS) + " |",
                  "|" + "---|" * (3 + len(EFFECT_COLUMNS))]
        for e in effects:
            lines.append(f"| {e['refinement']} | {e['lsap']} | {e['baseline']} | "
                         + " | ".join(cell(e.get(k), 4 if k == "mse" else 3) for k in EFFECT_COLUMNS) + " |")
    lines += ["", "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + "."]
    return "\n".join(lines) + "\n"


def interval_json(value: Any) -> Any:
    if isinstance(value, Interval):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: interval_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [interval_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
