"""NSCD: normalised style-space cosine distance to the S^N anchors.

For a code with style vectors s_l (one per layer of the chosen selection) and the anchors
mu_l of the generator (:mod:`lsap.style.anchors`), the per-layer distance is

    d_l = 1 - cos(s_l, mu_l),

and NSCD is the mean of d_l over layers, averaged over images. Lower is better aligned
with the generator's synthetic distribution. Scaling any s_l by a > 0 leaves it unchanged.

Holding the generator. The metric needs only the affine (modulation) transforms w -> s_l
of the selected layers. It keeps a frozen *snapshot* of them, with the anchors, in a
:class:`~lsap.style.StyleAlignment` (shared with the NSCD loss) as
non-persistent buffers, never the generator module itself, so that

* a user's LightningModule that owns the generator does not register it twice, and its
  checkpoints gain no entries from the metric (anchors are non-persistent buffers too;
  they are cheap to recompute and normally come from the on-disk cache);
* ``metric.to(device)`` moves everything the metric uses;
* the styles and the anchors always come from the same weights, even if the generator is
  fine-tuned later (PTI): NSCD measures codes against the generator it was built from.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from lsap.style.anchors import DEFAULT_BATCH_SIZE, DEFAULT_NUM_SAMPLES, Anchors, LayerSelection
from lsap.style.alignment import StyleAlignment, resolve_anchors
from lsap.model.generator import StyleLayer
from lsap.torch_utils import module_device

__all__ = ["NSCD"]


class NSCD(Metric):
    """Normalised style-space cosine distance (lower is better).

    ``compute()`` returns the mean NSCD: the mean over layers of ``d_l = 1 - cos(s_l, mu_l)``,
    averaged over every image seen. ``compute_per_layer()`` returns the per-layer vector
    ``[num_layers]`` (each entry averaged over images; its mean is ``compute()``), in the
    order of ``layer_names``: W+ order for ``layers="lsap"``, execution order for
    ``"full"``.

    Args:
        generator: the generator the codes belong to. Needed to score W / W+ codes, and to
            compute (or read from the cache) the anchors when ``anchors`` is not given.
            Only a frozen snapshot of its style affines is kept (see the module docs); the
            metric starts on the generator's device and follows ``.to()`` afterwards.
        anchors: precomputed :class:`Anchors`. With anchors only, ``update`` accepts style
            vectors but not codes.
        num_samples, seed, cache_dir, batch_size: anchor settings, see
            :func:`~lsap.metrics.compute_anchors` (ignored when ``anchors`` is given).
        layers: ``"lsap"`` (one layer per W+ entry, the paper's S space) or ``"full"``.
        kwargs: :class:`torchmetrics.Metric` options (``sync_on_compute``, ...).

    ``update(inputs)`` takes codes W ``[B, w_dim]`` / W+ ``[B, num_ws, w_dim]`` or a list of
    style tensors ``[B, channels_l]``, one per selected layer. Inputs of any floating dtype
    and device are accepted; distances are computed and summed in the dtype of the
    states (float64; call ``metric.set_dtype(torch.float32)`` on devices without float64,
    such as Apple MPS). States are a per-layer sum of distances and an image count, both
    reduced by sum, so under DDP the result equals the single-process value on the whole
    data set. Calling the metric (``forward``) returns the batch value, differentiable
    with respect to the inputs.
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    distance_sum: Tensor
    num_images: Tensor

    def __init__(
        self,
        generator: nn.Module | None = None,
        anchors: Anchors | None = None,
        num_samples: int = DEFAULT_NUM_SAMPLES,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        layers: LayerSelection = "lsap",
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        anchors = resolve_anchors(generator, anchors, num_samples, seed, cache_dir, batch_size, "NSCD")
        self.alignment = StyleAlignment(anchors, layers, generator, anchor_dtype=torch.float64, owner="NSCD")
        self.anchor_settings = {"num_samples": anchors.num_samples, "seed": anchors.seed,
                                "generator_hash": anchors.generator_hash}
        num_layers = len(self.alignment.layers)
        self.add_state("distance_sum", default=torch.zeros(num_layers, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        if generator is not None:
            self.to(module_device(generator))

    @property
    def layers(self) -> tuple[StyleLayer, ...]:
        return self.alignment.layers

    @property
    def layer_names(self) -> list[str]:
        """Names of the scored layers, in ``compute_per_layer()`` order."""
        return self.alignment.layer_names

    def _compute_dtype(self) -> torch.dtype:
        return torch.float64 if self.distance_sum.dtype == torch.float64 else torch.float32

    def update(self, inputs: Tensor | Sequence[Tensor]) -> None:
        """Add a batch: W / W+ codes (needs the generator) or a list of per-layer styles."""
        distances = self.alignment.distances(inputs, self._compute_dtype())
        self.distance_sum = self.distance_sum + distances.sum(dim=0).to(self.distance_sum.dtype)
        self.num_images = self.num_images + distances.shape[0]

    def compute(self) -> Tensor:
        """Mean NSCD over layers and images (NaN before any update)."""
        return (self.distance_sum / self.num_images).mean()

    def compute_per_layer(self) -> Tensor:
        """Per-layer NSCD ``[num_layers]`` averaged over images, synchronised across
        processes as ``compute()`` is (its mean is ``compute()``); order as in ``layer_names``."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, process_group=self.process_group,
                               should_sync=self.sync_on_compute):
            return (self.distance_sum / self.num_images).clone()

    def extra_repr(self) -> str:
        return (f"layers={self.alignment.layer_selection!r} ({len(self.layers)}), num_ws={self.alignment.num_ws}, "
                f"num_samples={self.anchor_settings['num_samples']}, seed={self.anchor_settings['seed']}")
