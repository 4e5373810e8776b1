"""Optional logging of an evaluation: TensorBoard scalars and images, a wandb run with a table of
per-image values and an NSCD-per-layer bar chart, and the 2-D PCA of inverted codes against
synthetic samples in S^N (the paper's Figure 2) as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from lsap.io import atomic_write

PCA_FIGURE = "pca_sn.png"


def sn_points(generator: Any, ws: Tensor) -> Tensor:
    """Codes in S^N: every LSAP style vector normalised to unit length, concatenated ``[B, sum C_l]``."""
    styles = generator.lsap_styles(ws)
    return torch.cat([torch.nn.functional.normalize(s.double(), dim=1) for s in styles], dim=1)


@torch.no_grad()
def synthetic_sn_points(generator: Any, num_samples: int, seed: int = 0, batch_size: int = 256) -> Tensor:
    """S^N points of synthetic samples: z ~ N(0, I), no truncation, the same w on every layer."""
    from lsap.model.sampling import sample_z

    device = next(generator.parameters()).device
    out = []
    for z in sample_z(num_samples, int(generator.z_dim), seed, batch_size):
        w = generator.mapping(z.to(device))
        out.append(sn_points(generator, w[:, None].expand(-1, generator.num_ws, -1)).cpu())
    return torch.cat(out)


def pca_2d(reference: Tensor, others: Sequence[Tensor]) -> list[np.ndarray]:
    """Project ``reference`` and ``others`` on the first two principal axes of ``reference``."""
    reference = reference.double()
    mean = reference.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(reference - mean, full_matrices=False)
    axes = vh[:2].T
    return [((x.double() - mean) @ axes).numpy() for x in (reference, *others)]


def scatter_png(path: str | Path, groups: Sequence[tuple[np.ndarray, tuple[int, int, int], str]],
                size: int = 512, title: str = "") -> Path:
    """A plain scatter plot written with PIL (no plotting library needed)."""
    points = np.concatenate([g[0] for g in groups])
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    margin = 30
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for data, color, _ in groups:
        xy = margin + (data - low) / span * (size - 2 * margin)
        for x, y in xy:
            draw.ellipse([x - 2, size - y - 2, x + 2, size - y + 2], fill=color)
    for k, (_, color, label) in enumerate(groups):
        draw.rectangle([8, 8 + 14 * k, 16, 16 + 14 * k], fill=color)
        draw.text((20, 6 + 14 * k), label, fill="black")
    if title:
        draw.text((8, size - 16), title, fill="black")
    path = Path(path)
    atomic_write(path, lambda f: image.save(f, format="PNG"))
    return path


def pca_figure(generator: Any, inverted_ws: Tensor, output: str | Path, num_synthetic: int = 1000) -> Path:
    """The paper's Figure 2: inverted codes (red) and synthetic samples (blue) in S^N, on the
    first two principal axes of the synthetic samples."""
    synthetic = synthetic_sn_points(generator, num_synthetic)
    device = next(generator.parameters()).device
    with torch.no_grad():
        inverted = sn_points(generator, inverted_ws.to(device)).cpu()
    synthetic_2d, inverted_2d = pca_2d(synthetic, [inverted])
    return scatter_png(output, [(synthetic_2d, (70, 110, 220), f"synthetic ({len(synthetic_2d)})"),
                                (inverted_2d, (220, 50, 40), f"inverted ({len(inverted_2d)})")],
                       title="S^N, PCA of synthetic samples")


def scalar_items(report: Mapping[str, Any]) -> dict[str, float]:
    return {f"eval/{name}": float(entry["mean"]) for name, entry in report["metrics"].items()
            if isinstance(entry, Mapping) and isinstance(entry.get("mean"), (int, float))}


def log_tensorboard(log_dir: str | Path, report: Mapping[str, Any], figure: Path | None = None) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    try:
        for tag, value in scalar_items(report).items():
            writer.add_scalar(tag, value, 0)
        nscd = report["metrics"].get("nscd")
        if nscd:
            for name, value in zip(nscd["layers"], nscd["per_layer"]):
                writer.add_scalar(f"eval/nscd_layer/{name}", value, 0)
        if figure is not None:
            array = np.asarray(Image.open(figure).convert("RGB"))
            writer.add_image("eval/pca_sn", array, 0, dataformats="HWC")
        writer.add_text("eval/convention", f"{report['convention']}: {report['convention_note']}", 0)
    finally:
        writer.close()


def log_wandb(project: str, report: Mapping[str, Any], per_image: list[Mapping[str, Any]],
              figure: Path | None = None, mode: str | None = None, run_dir: str | Path | None = None) -> None:
    """One wandb run: summary scalars, a Table of per-image values, an NSCD-per-layer bar chart
    and the PCA figure. ``mode`` as wandb's (``"online"``, ``"offline"``, ``"disabled"``)."""
    import wandb

    run = wandb.init(project=project, mode=mode, dir=str(run_dir) if run_dir else None,
                     config={"convention": report["convention"], "results_dir": report["results_dir"]})
    try:
        run.log(scalar_items(report))
        columns = sorted({k for row in per_image for k in row}, key=lambda k: (k != "name", k))
        run.log({"eval/per_image": wandb.Table(columns=columns,
                                               data=[[row.get(c) for c in columns] for row in per_image])})
        nscd = report["metrics"].get("nscd")
        if nscd:
            table = wandb.Table(columns=["layer", "nscd"], data=list(map(list, zip(nscd["layers"], nscd["per_layer"]))))
            run.log({"eval/nscd_per_layer": wandb.plot.bar(table, "layer", "nscd", title="NSCD per layer")})
        if figure is not None:
            run.log({"eval/pca_sn": wandb.Image(str(figure))})
    finally:
        run.finish()
