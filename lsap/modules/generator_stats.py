"""Statistics of a module's frozen generator, prepared once on first use."""

from __future__ import annotations

from lsap.losses.nscd import NSCDLoss
from lsap.metrics.anchors import generator_fingerprint


class FrozenGeneratorStats:
    """Mixin for modules holding a frozen ``self.generator`` and anchor settings
    (``anchor_samples``, ``anchor_seed``, ``anchor_cache_dir``).

    Both values derive from the generator alone, so they are caches, never submodules:
    they are not saved in checkpoints and cost nothing until used.
    """

    _nscd_loss_cache: NSCDLoss | None = None
    _generator_hash_cache: str | None = None

    @property
    def generator_hash(self) -> str:
        """Fingerprint of the generator's weights (ties outputs to the generator they need)."""
        if self._generator_hash_cache is None:
            object.__setattr__(self, "_generator_hash_cache", generator_fingerprint(self.generator))
        return self._generator_hash_cache

    @property
    def nscd_loss(self) -> NSCDLoss:
        """Per-image NSCD loss (official form, LSAP layers) on the generator's device; its
        anchors are also those of the reported NSCD."""
        device = self.generator.w_avg.device
        if self._nscd_loss_cache is None:
            loss = NSCDLoss(self.generator, reduction="none", num_samples=self.anchor_samples,
                            seed=self.anchor_seed, cache_dir=self.anchor_cache_dir)
            object.__setattr__(self, "_nscd_loss_cache", loss)
        if self._nscd_loss_cache.alignment.anchors.device != device:
            self._nscd_loss_cache.to(device)
        return self._nscd_loss_cache
