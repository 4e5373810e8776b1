"""What the inversion modules (LSAP_E, LSAP_O, PTI, and the refinements) share: a frozen
generator built from its config source, the NSCD loss of its S^N anchors, per-image image
losses compared at one loss resolution with one resizing rule
(:func:`lsap.losses.reconstruction.to_resolution`), and the one way a ``predict_step``
builds its :class:`~lsap.results.InversionPrediction` (:meth:`FrozenGeneratorModule.build_prediction`).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from lsap.errors import BadFileError, BadValueError, MissingInputError
from lsap.losses import L2Loss
from lsap.nets.perceptual import PerceptualDistance
from lsap.losses.nscd import NSCDLoss
from lsap.losses.reconstruction import to_resolution
from lsap.style import Anchors, compute_anchors, generator_fingerprint
from lsap.model import Generator, GeneratorSource
from lsap.results import InversionPrediction, InversionResults
from lsap.run_settings import NEUTRAL_SETTINGS, state_fingerprint

__all__ = ["FrozenGeneratorModule", "require_grad_mode"]


def require_grad_mode(owner: str) -> None:
    """Raise a clear error when gradients cannot be enabled (``torch.inference_mode``): the
    modules that optimise inside ``predict_step`` need them."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{owner} optimises inside predict_step and needs gradients, but the Trainer runs prediction under "
            "torch.inference_mode. Build the Trainer with inference_mode=False (in a config: "
            "'trainer: {inference_mode: false}')."
        )


class FrozenGeneratorModule(LightningModule):
    """Base of the inversion modules.

    Subclasses call :meth:`init_frozen_generator` from ``__init__`` right after
    ``save_hyperparameters`` (which must leave out ``generator`` and ``lpips``). Then:

    * ``self.generator`` is the frozen generator, and ``hparams["generator"]`` its source as
      plain data (checkpoints load with ``weights_only=True``);
    * ``self.anchors`` and ``self.nscd_loss`` (per image, official form, LSAP layers) are
      built on first use from the anchor settings; the loss then is an ordinary submodule
      whose buffers are non-persistent, so it follows ``.to()`` and never enters a checkpoint;
    * :meth:`image_losses` gives per-image ``mse`` (and ``lpips``) at ``image_loss_resolution``;
    * :meth:`nscd_per_image` gives the reported NSCD of codes, and :meth:`build_prediction`
      the ``predict_step`` output every writer reads.
    """

    generator: Generator
    lpips: PerceptualDistance | None

    def init_frozen_generator(
        self,
        generator: GeneratorSource | dict[str, Any] | str,
        lpips: PerceptualDistance | None,
        loss_resolution: int | None,
        anchor_samples: int,
        anchor_seed: int,
        anchor_cache_dir: str | None,
    ) -> None:
        source = GeneratorSource.coerce(generator)
        self.hparams["generator"] = source.as_dict()  # plain data: checkpoints load with weights_only
        self.generator = source.build().eval().requires_grad_(False)
        self.lpips = lpips.eval().requires_grad_(False) if lpips is not None else None
        self.l2 = L2Loss(reduction="none")
        self.loss_resolution = loss_resolution
        self.anchor_samples, self.anchor_seed, self.anchor_cache_dir = anchor_samples, anchor_seed, anchor_cache_dir
        self._anchors: Anchors | None = None
        self._generator_hash: str | None = None

    # ----- derived from the generator alone -------------------------------------------------
    @property
    def generator_hash(self) -> str:
        """Fingerprint of the generator's weights (ties outputs to the generator they need)."""
        if self._generator_hash is None:
            self._generator_hash = generator_fingerprint(self.generator)
        return self._generator_hash

    @property
    def anchors(self) -> Anchors:
        """The generator's S^N anchors (computed once, cached on disk, identical on every rank)."""
        if self._anchors is None:
            self._anchors = compute_anchors(self.generator, num_samples=self.anchor_samples, seed=self.anchor_seed,
                                            cache_dir=self.anchor_cache_dir)
        return self._anchors

    @property
    def nscd_loss(self) -> NSCDLoss:
        """Per-image NSCD loss (``[B]``, official form, LSAP layers) on the generator's
        device; its anchors are also those of the reported NSCD."""
        loss = self._modules.get("nscd")
        if loss is None:
            loss = NSCDLoss(self.generator, anchors=self.anchors, reduction="none")
            self.nscd = loss  # a submodule from now on: follows .to(), adds nothing to checkpoints
        return loss

    # ----- image losses ---------------------------------------------------------------------
    @property
    def image_loss_resolution(self) -> int:
        return self.loss_resolution or self.generator.resolution

    def at_loss_resolution(self, images: Tensor) -> Tensor:
        """Targets or masks ``[B, C, H, W]`` on the generator's device, in float32, at the
        loss resolution."""
        images = images.to(device=self.generator.w_avg.device, dtype=torch.float32)
        return to_resolution(images, self.image_loss_resolution)

    def image_losses(self, synth: Tensor, target: Tensor, mask: Tensor | None = None,
                     with_lpips: bool = True) -> dict[str, Tensor]:
        """Per-image ``mse`` and (when configured and ``with_lpips``) ``lpips``, each ``[B]``,
        of generator output ``synth`` against ``target``; ``target`` and ``mask`` are already at
        the loss resolution (see :meth:`at_loss_resolution`)."""
        synth = to_resolution(synth, self.image_loss_resolution)
        losses = {"mse": self.l2(synth, target, mask)}
        if self.lpips is not None and with_lpips:
            losses["lpips"] = self.lpips.per_sample(synth, target, mask)
        return losses

    # ----- what decides a result -----------------------------------------------------------
    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the frozen submodules (state in the state dict, no trainable
        parameter: the generator, perceptual and identity networks, anchors): they are rebuilt
        from their config sources, so checkpoints and fingerprints leave them out."""
        return tuple(f"{name}." for name, child in self.named_children()
                     if any(True for _ in child.state_dict()) and not any(p.requires_grad for p in child.parameters()))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints hold what training changes (and what the configuration cannot rebuild),
        never the frozen parts."""
        frozen = self.frozen_prefixes()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(frozen)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Frozen parts are absent on purpose (older checkpoints may hold them: the configured
        # module's own are used either way), so strict loading still catches anything else.
        frozen = self.frozen_prefixes()
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith(frozen):
                state[key] = value

    #: Frozen submodules whose weights come from a file the configuration names (an
    #: invertibility net, an embedding encoder): unlike the generator's perceptual networks,
    #: retraining that file under the same name changes the results, so their weights are
    #: part of the result settings.
    weights_from_files: tuple[str, ...] = ()

    def result_settings(self) -> dict[str, Any]:
        """Plain data that decides this module's results (see
        :func:`lsap.run_settings.run_settings`): the class, the hyper-parameters that
        matter, the generator by its weights' fingerprint, the module's own state (e.g. a
        trained encoder) and the ``weights_from_files`` networks by their fingerprints."""
        hparams = {k: v for k, v in self.hparams.items() if k not in NEUTRAL_SETTINGS}
        hparams["generator"] = self.generator_hash
        frozen = self.frozen_prefixes()
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(frozen)}
        settings = {"class": f"{type(self).__module__}.{type(self).__qualname__}", "hparams": hparams,
                    "state": state_fingerprint(own) if own else None}
        loaded = {name: state_fingerprint(net.state_dict()) for name in self.weights_from_files
                  if (net := getattr(self, name, None)) is not None}
        if loaded:  # absent otherwise, so the settings of modules without such a network stay as they were
            settings["loaded_weights"] = loaded
        return settings

    # ----- predictions ----------------------------------------------------------------------
    def nscd_per_image(self, ws: Tensor) -> tuple[Tensor, Tensor]:
        """The reported NSCD of W+ codes ``[B, num_ws, w_dim]``: per image ``[B]`` (mean over
        the LSAP layers) and per layer ``[B, L]``, float32, computed in float64 without
        gradients; the anchors are the NSCD loss's."""
        with torch.no_grad():
            layers = self.nscd_loss.alignment.distances(ws.detach(), torch.float64).float()
        return layers.mean(dim=1), layers

    # ----- pivots (refinements) -------------------------------------------------------------
    #: The embedding's results folder a refinement starts from (None: the module has none).
    pivots: InversionResults | None = None

    def load_pivot(self, name: str) -> dict[str, Any]:
        """The pivot code of image ``name`` from :attr:`pivots`, checked: present, of this
        generator's shape and finite, and (when recorded) made with this generator."""
        if self.pivots is None:
            raise BadValueError(f"{type(self).__name__} was given no pivots folder (pivots_dir)")
        path = self.pivots.code_path(name)
        if not path.is_file():
            raise MissingInputError(
                f"no pivot for '{name}': expected '{path}'. Run an embedding (LSAP_O, LSAP_E, e4e, ReStyle) with "
                f"an InversionWriter whose output_dir is '{self.pivots.root}' first")
        pivot = self.pivots.load_code(name, shape=(self.generator.num_ws, self.generator.w_dim))
        made_with = (pivot.get("meta") or {}).get("generator_hash")
        if made_with is not None and made_with != self.generator_hash:
            raise BadFileError(f"pivot '{path}' was embedded with another generator than "
                               f"{type(self).__name__}'s (fingerprints differ)")
        return pivot

    # ----- prediction -----------------------------------------------------------------------
    #: Prediction entries that only a dedicated writer stores (a refinement's per-image state);
    #: a predict run without such a writer would silently drop them, so it is refused first.
    prediction_state_keys: tuple[str, ...] = ()

    def on_predict_start(self) -> None:
        missing = [key for key in self.prediction_state_keys
                   if not any(key in getattr(cb, "written_state_keys", ()) for cb in self.trainer.callbacks)]
        if missing:
            raise BadValueError(
                f"{type(self).__name__} predictions carry {missing}, which no callback of this run writes: use the "
                f"writer made for it (see lsap.callbacks) in trainer.callbacks, or its results could not be edited")

    def build_prediction(self, pending: InversionPrediction, ws: Tensor, image: Tensor,
                         losses: dict[str, Tensor], meta: dict[str, Any], **extra: Any) -> InversionPrediction:
        """Complete ``pending`` (from :func:`lsap.results.split_pending`) with the results of
        its B images: detached ``ws``, the reconstruction ``image`` clamped to [-1, 1], the
        per-image ``losses`` (each reshaped to ``[B]``), their NSCD (:meth:`nscd_per_image`)
        and ``meta`` with the generator's fingerprint added. ``extra`` holds the optional
        entries (``noise``, ``pti_delta``, or a refinement's own) and is stored as given.
        """
        batch = ws.shape[0]
        if image.shape[0] != batch or len(pending.get("path") or pending.get("index", ())) not in (0, batch):
            raise ValueError(f"a prediction needs one code and one image per pending item: got {batch} codes, "
                             f"{image.shape[0]} images for {len(pending.get('path') or ())} items")
        nscd, layers = self.nscd_per_image(ws)
        pending.update(
            ws=ws.detach(),
            image=image.detach().clamp(-1, 1),
            losses={name: value.detach().reshape(batch) for name, value in losses.items()},
            nscd=nscd,
            nscd_layers=layers,
            meta={**meta, "generator_hash": self.generator_hash},
        )
        pending.update(extra)  # type: ignore[typeddict-item]
        return pending
