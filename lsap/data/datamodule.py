"""Lightning data modules: image folders, and images drawn from a generator.

Batch sizes are per process. Under DDP Lightning swaps in a ``DistributedSampler``, so
the effective batch is ``batch_size * world_size`` (the official LSAP_E batch of 8 is
``batch_size=4`` on two devices, or ``batch_size=8`` on one).
"""

from __future__ import annotations

import os


import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lsap.errors import BadValueError
from lsap.data.images import ContentBox, DomainPreset, ImageFolderDataset, PresetName, VerifyMode
from lsap.model import GeneratorSource
from lsap.model.generator import NoiseMode
from lsap.model.sampling import derive_seed, item_z
from lsap.torch_utils import module_device


#: Where the data module's arguments live in a LightningCLI config; error messages name
#: options by this path so users know what to edit.
CONFIG_KEY_PREFIX = "data.init_args."


def _pin_memory(requested: bool | None, trainer: object | None) -> bool:
    if requested is not None:
        return requested
    # Pinning only helps copies to an accelerator; on a CPU-only run it just warns.
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None:
        return strategy.root_device.type == "cuda"
    return torch.cuda.is_available()


def _make_loader(module: LightningDataModule, dataset: Dataset, train: bool) -> DataLoader:
    """A loader with the DataModule's settings: training shuffles and may drop the last
    incomplete batch; evaluation keeps every item in order."""
    return DataLoader(
        dataset,
        batch_size=module.batch_size if train else module.val_batch_size,
        shuffle=train,
        drop_last=module.drop_last if train else False,
        num_workers=module.num_workers,
        pin_memory=_pin_memory(module.pin_memory, module.trainer),
        persistent_workers=module.num_workers > 0,
    )


# ----- image folders -------------------------------------------------------------------
def default_num_workers(limit: int = 8) -> int:
    """DataLoader workers by default: the CPU cores this process may actually run on
    (its affinity mask, which containers and job schedulers restrict), at most ``limit``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS / Windows
        cores = os.cpu_count() or 1
    return max(1, min(limit, cores))


class ImageDataModule(LightningDataModule):
    """Folders of real images for training, validation, test and prediction.

    Each stage builds only the datasets it uses (``fit``: train and, if set, val;
    ``validate``: val; ``test``: test; ``predict``: predict); a stage whose folder is not
    set is an error naming the config key. Without ``val_dir``, ``fit`` runs without
    validation. Items are dicts, see ``lsap.data.images``.

    Args:
        train_dir / val_dir / test_dir / predict_dir: image folders (scanned recursively).
        preset: domain preset (``face``, ``car``, ``church``), see ``DomainPreset``.
        resolution: image size R; default: the preset's native size (256 / 512 / 256).
        batch_size: training batch size per process (per device under DDP).
        val_batch_size: batch size of the val / test / predict loaders; default ``batch_size``.
        num_workers: DataLoader worker processes per loader (workers persist across epochs);
            default: the CPU cores this process may use (``os.sched_getaffinity``), at most 8.
            Files that fail inside a worker are recorded in that worker's copy of the
            dataset, so ``skipped`` in the main process lists only what it saw itself.
        pin_memory: pin host memory; default: only when the run is on a CUDA device.
        drop_last: drop the last incomplete training batch (keeps BatchNorm statistics
            and per-step loss scales consistent); evaluation loaders never drop.
        hflip_probability: horizontal-flip chance for training items (evaluation: none).
        seed: seed of the flip stream (combined with each worker's per-epoch seed).
        verify: build-time check of the files, see ``VerifyMode``. Under DDP every
            process scans and checks its folders (only rank 0 warns about skipped files).
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        predict_dir: str | None = None,
        preset: PresetName = "face",
        resolution: int | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        drop_last: bool = True,
        hflip_probability: float = 0.5,
        seed: int = 0,
        verify: VerifyMode = "quick",
    ):
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1):
            raise BadValueError(f"batch sizes must be >= 1, got batch_size={batch_size}, val_batch_size={val_batch_size}")
        if num_workers is None:
            num_workers = default_num_workers()
        if num_workers < 0:
            raise BadValueError(f"num_workers must be >= 0, got {num_workers}")
        self.folders: dict[str, str | None] = {
            "train_dir": train_dir, "val_dir": val_dir, "test_dir": test_dir, "predict_dir": predict_dir,
        }
        self.preset = DomainPreset(preset)
        self.resolution = int(resolution) if resolution is not None else self.preset.default_resolution
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size if val_batch_size is not None else batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.hflip_probability = hflip_probability
        self.seed = seed
        self.verify: VerifyMode = verify
        self.datasets: dict[str, ImageFolderDataset] = {}

    @property
    def content_box(self) -> ContentBox | None:
        """The preset's content box at ``resolution`` (``car``), else None."""
        return self.preset.content_box(self.resolution)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._ensure("train_dir", stage or "fit", required=stage == "fit")
            self._ensure("val_dir", stage or "fit", required=False)
        if stage in (None, "validate"):
            self._ensure("val_dir", stage or "validate", required=stage == "validate")
        if stage in (None, "test"):
            self._ensure("test_dir", stage or "test", required=stage == "test")
        if stage in (None, "predict"):
            self._ensure("predict_dir", stage or "predict", required=stage == "predict")
        if stage not in (None, "fit", "validate", "test", "predict"):
            raise BadValueError(f"unknown stage {stage!r}")

    def _ensure(self, key: str, stage: str, required: bool) -> None:
        if key in self.datasets:
            return
        folder = self.folders[key]
        if folder is None:
            if required:
                raise BadValueError(
                    f"stage '{stage}' needs images, but {CONFIG_KEY_PREFIX}{key} is not set "
                    f"(ImageDataModule({key}=...))"
                )
            return
        try:
            self.datasets[key] = ImageFolderDataset(
                folder,
                preset=self.preset,
                resolution=self.resolution,
                hflip_probability=self.hflip_probability if key == "train_dir" else 0.0,
                seed=derive_seed(self.seed, key),
                verify=self.verify,
            )
        except (FileNotFoundError, NotADirectoryError, ValueError) as error:
            raise type(error)(f"{CONFIG_KEY_PREFIX}{key}: {error}") from error

    def _loader(self, key: str, train: bool) -> DataLoader:
        if key not in self.datasets:
            stage = {"train_dir": "fit", "val_dir": "validate", "test_dir": "test", "predict_dir": "predict"}[key]
            raise RuntimeError(f"no dataset for {CONFIG_KEY_PREFIX}{key}; call setup('{stage}') first")
        return _make_loader(self, self.datasets[key], train)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train_dir", train=True)

    def val_dataloader(self) -> DataLoader | list:
        if "val_dir" not in self.datasets and self.folders["val_dir"] is None:
            return []  # Lightning skips validation when there are no batches
        return self._loader("val_dir", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test_dir", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict_dir", train=False)


# ----- synthetic images ----------------------------------------------------------------
class SyntheticDataset(Dataset):
    """Images sampled from a generator, with the W+ codes that made them.

    Item ``i`` is ``{"image": [3, R, R] in [-1, 1] (clamped), "ws": [num_ws, w_dim],
    "index": i}``. Its z is drawn from a ``torch.Generator`` seeded by ``(seed, i)`` on
    the CPU, so an item does not depend on ``num_samples``, batch size or device; with
    ``noise_mode="const"`` the image is ``G.synthesis(ws)`` exactly (up to the float
    differences of batching). ``ws`` is the mapped w repeated over all layers.

    Everything is generated once, here, in batches under ``torch.no_grad()`` on the
    device the generator is on, and kept on the CPU: ``num_samples * 3 * R * R * 4``
    bytes of images (about 50 MB for 1000 images at 64 px, 800 MB at 256 px).

    Args:
        generator: object with ``mapping(z, truncation_psi)``, ``synthesis(ws, noise_mode)``
            and ``z_dim``, ``w_dim``, ``num_ws``, ``resolution``.
        num_samples: number of items.
        seed: seed of the item stream; different seeds give unrelated items.
        truncation_psi: truncation towards the generator's mean w (1 = none).
        noise_mode: per-layer noise of the synthesis network.
        image_resolution: if set and smaller than the generator's, images are
            average-pooled to it (as the LSAP losses see generator output); ``ws`` is
            unchanged.
        batch_size: generation batch size.
    """

    def __init__(
        self,
        generator: nn.Module,
        num_samples: int,
        seed: int = 0,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "const",
        image_resolution: int | None = None,
        batch_size: int = 16,
    ):
        if num_samples < 0:
            raise BadValueError(f"num_samples must be >= 0, got {num_samples}")
        if batch_size < 1:
            raise BadValueError(f"batch_size must be >= 1, got {batch_size}")
        self.seed = seed
        self.num_ws, self.w_dim = int(generator.num_ws), int(generator.w_dim)
        self.resolution = int(image_resolution) if image_resolution is not None else int(generator.resolution)
        if self.resolution > generator.resolution:
            raise BadValueError(
                f"image_resolution {self.resolution} is larger than the generator's {generator.resolution}"
            )
        self.z = torch.stack([self.latent_z(generator.z_dim, seed, i) for i in range(num_samples)]) if num_samples \
            else torch.zeros(0, int(generator.z_dim))
        device = module_device(generator)
        images, codes = [], []
        with torch.no_grad():
            for start in range(0, num_samples, batch_size):
                z = self.z[start:start + batch_size].to(device)
                w = generator.mapping(z, truncation_psi=truncation_psi)
                ws = w[:, None, :].expand(-1, self.num_ws, -1) if w.ndim == 2 else w
                image = generator.synthesis(ws, noise_mode=noise_mode).clamp(-1.0, 1.0)
                if image.shape[-1] != self.resolution:
                    image = F.interpolate(image, size=(self.resolution, self.resolution), mode="area")
                images.append(image.float().cpu())
                codes.append(ws.float().cpu().contiguous())
        self.images = torch.cat(images) if images else torch.zeros(0, 3, self.resolution, self.resolution)
        self.ws = torch.cat(codes) if codes else torch.zeros(0, self.num_ws, self.w_dim)

    @staticmethod
    def latent_z(z_dim: int, seed: int, index: int) -> torch.Tensor:
        """The z of item ``index`` of a dataset with ``seed`` (float32 ``[z_dim]``, CPU)."""
        return item_z(z_dim, derive_seed("synthetic", seed, index))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, object]:
        return {"image": self.images[index], "ws": self.ws[index], "index": int(index) % len(self)}


class SyntheticDataModule(LightningDataModule):
    """Train / val / test / predict sets sampled from a generator (see ``SyntheticDataset``).

    Each split has its own seed derived from ``seed`` and the split name, so splits do not
    overlap and growing one split does not change another. The generator is built from
    ``generator`` (a ``GeneratorSource``) in ``setup``, used once, and released. Under
    DDP every process generates the same samples and the ``DistributedSampler`` shares
    them out.

    Args:
        generator: where the generator comes from (checkpoint path or seeded random).
        num_train / num_val / num_test / num_predict: split sizes (0 = no such split;
            ``fit`` then runs without validation).
        batch_size: training batch size per process (per device under DDP).
        val_batch_size: batch size of the other loaders; default ``batch_size``.
        seed: base seed of all splits.
        truncation_psi / noise_mode / image_resolution: see ``SyntheticDataset``.
        generation_batch_size: batch size used while generating.
        generation_device: device to generate on; default: the trainer's device when the
            module is attached to a trainer, else wherever ``build()`` put the generator.
        num_workers / pin_memory / drop_last: DataLoader settings (items are in memory,
            so workers rarely help).
    """

    def __init__(
        self,
        generator: GeneratorSource,
        num_train: int = 1000,
        num_val: int = 64,
        num_test: int = 64,
        num_predict: int = 0,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        seed: int = 0,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "const",
        image_resolution: int | None = None,
        generation_batch_size: int = 16,
        generation_device: str | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        drop_last: bool = True,
    ):
        super().__init__()
        generator = GeneratorSource.coerce(generator)
        self.save_hyperparameters(ignore=["generator"])
        self.hparams["generator"] = generator.as_dict()  # plain data: checkpoints load with weights_only
        self.generator_source = generator
        self.sizes: dict[str, int] = {"train": num_train, "val": num_val, "test": num_test, "predict": num_predict}
        if any(n < 0 for n in self.sizes.values()):
            raise BadValueError(f"split sizes must be >= 0, got {self.sizes}")
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size if val_batch_size is not None else batch_size
        self.seed = seed
        self.truncation_psi = truncation_psi
        self.noise_mode: NoiseMode = noise_mode
        self.image_resolution = image_resolution
        self.generation_batch_size = generation_batch_size
        self.generation_device = generation_device
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.datasets: dict[str, SyntheticDataset] = {}

    def split_seed(self, split: str) -> int:
        return derive_seed(self.seed, split)

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            None: ["train", "val", "test", "predict"], "fit": ["train", "val"], "validate": ["val"],
            "test": ["test"], "predict": ["predict"],
        }
        if stage not in wanted:
            raise BadValueError(f"unknown stage {stage!r}")
        if stage is not None and stage != "fit":
            split = wanted[stage][0]
            if self.sizes[split] == 0:
                raise BadValueError(f"stage '{stage}' needs samples, but {CONFIG_KEY_PREFIX}num_{split} is 0")
        if stage == "fit" and self.sizes["train"] == 0:
            raise BadValueError(f"stage 'fit' needs samples, but {CONFIG_KEY_PREFIX}num_train is 0")
        todo = [s for s in wanted[stage] if s not in self.datasets and self.sizes[s] > 0]
        if not todo:
            return
        generator = self.generator_source.build()
        device = self._generation_device()
        if device is not None:
            generator = generator.to(device)
        for split in todo:
            self.datasets[split] = SyntheticDataset(
                generator,
                self.sizes[split],
                seed=self.split_seed(split),
                truncation_psi=self.truncation_psi,
                noise_mode=self.noise_mode,
                image_resolution=self.image_resolution,
                batch_size=self.generation_batch_size,
            )
        del generator  # only the samples are needed from here on

    def _generation_device(self) -> torch.device | None:
        if self.generation_device is not None:
            return torch.device(self.generation_device)
        strategy = getattr(self.trainer, "strategy", None)
        return strategy.root_device if strategy is not None else None

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no '{split}' samples; call setup() for the stage first")
        return _make_loader(self, self.datasets[split], train)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.sizes["val"] == 0:
            return []  # Lightning skips validation when there are no batches
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", train=False)
