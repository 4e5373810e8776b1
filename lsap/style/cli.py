"""The ``lsap anchors`` command (registered in :mod:`lsap.commands`)."""

from __future__ import annotations

__all__ = ["anchors_command"]


def anchors_command(generator: str, output: str | None = None, num_samples: int = 100_000, seed: int = 0,
                    device: str = "cpu") -> None:
    """Compute (and cache) the S^N anchors of a generator: the per-layer mean of unit-normalised
    style vectors of synthetic samples.

    Args:
        generator: generator checkpoint (any supported format).
        output: optional .pt file to also write the anchors to.
        num_samples: synthetic samples M (official: 100000).
        seed: seed of the z draws.
        device: device to compute on, e.g. "cpu" or "cuda".
    """
    from lsap.model import load_generator
    from lsap.style.anchors import compute_anchors

    g = load_generator(generator, device=device)
    anchors = compute_anchors(g, num_samples=num_samples, seed=seed)
    if output:
        anchors.save(output)
    norms = ", ".join(f"{a.norm():.3f}" for a in anchors.lsap)
    print(f"anchors of {generator}: {len(anchors.lsap)} LSAP layers, |mu_l| = [{norms}]")
