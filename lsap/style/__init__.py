"""The generator's style space: S^N anchors, the style alignment shared by the NSCD metric and
loss, and style statistics over seeded samples (the loop both are built on, the per-channel
style std of StyleSpace edits). Metrics, losses and editing depend on this package; it
depends on nothing of theirs. Names load on first use, so ``lsap anchors --help`` needs no torch."""

from lsap._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "lsap.model.fingerprint": ["generator_fingerprint"],
    ".alignment": ["StyleAlignment", "check_styles", "resolve_anchors"],
    ".anchors": ["ANCHORS_FORMAT", "ANCHORS_FORMAT_VERSION", "DEFAULT_BATCH_SIZE", "DEFAULT_NUM_SAMPLES", "Anchors",
                 "LayerSelection", "anchors_cache_path", "compute_anchors", "default_cache_dir"],
    ".statistics": ["StyleStd", "sampled_styles", "style_std", "style_std_cache_path"],
})
