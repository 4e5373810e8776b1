"""Where a generator comes from, as a config value."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from lsap.model.checkpoints import load_generator
from lsap.model.generator import Generator


@dataclass
class GeneratorSource:
    """A generator named in a config: a checkpoint file, or (with ``checkpoint`` unset) a
    randomly initialised one built from ``seed`` and the architecture fields.

    Random generators make the offline demo and tests possible: the same seed and
    architecture always give the same weights, so a model and a synthetic data set that
    name the same source share one generator.
    """

    checkpoint: Optional[str] = None
    seed: int = 0
    resolution: int = 64
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 32768
    channel_max: int = 512
    noise_strength: float = 0.1
    w_avg_samples: int = 10_000

    @classmethod
    def coerce(cls, value: "GeneratorSource | Mapping[str, Any]") -> "GeneratorSource":
        """Accept a source or its plain-dict form (what checkpoints store as hyper-parameters)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        raise TypeError(f"generator must be a GeneratorSource or a dict of its fields, got {type(value).__name__}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build(self) -> Generator:
        """The generator, in eval mode with frozen weights, on the CPU."""
        if self.checkpoint:
            return load_generator(self.checkpoint)
        fork = torch.random.fork_rng(devices=[])
        with fork:
            torch.manual_seed(self.seed)
            g = Generator(resolution=self.resolution, z_dim=self.z_dim, w_dim=self.w_dim,
                          mapping_layers=self.mapping_layers, channel_base=self.channel_base,
                          channel_max=self.channel_max)
            with torch.no_grad():
                for conv in g.synthesis_network.convs:
                    conv.noise_strength.fill_(self.noise_strength)
                g.mapping_network.w_avg.copy_(g.mean_latent(self.w_avg_samples, seed=self.seed))
        return g.eval().requires_grad_(False)


def generator_from_spec(spec: str | None, results_dir: str | None = None) -> Generator:
    """A generator from a checkpoint path, a YAML/JSON file of ``GeneratorSource`` fields or a run
    config (its ``model.init_args.generator``), a JSON object string, or (``spec`` None) the
    ``config.yaml`` Lightning saved next to ``results_dir``."""
    if spec is None:
        candidate = Path(results_dir or ".") / "config.yaml"
        if not candidate.is_file():
            raise FileNotFoundError(f"no generator given and no '{candidate}' to read it from: pass --generator "
                                    "(a checkpoint, or the config of the inversion run)")
        spec = str(candidate)
    text = spec.strip()
    if text.startswith("{"):
        return GeneratorSource.coerce(json.loads(text)).build()
    path = Path(spec).expanduser()
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        import yaml

        data: Any = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            data = (data["model"].get("init_args") or data["model"]).get("generator")
        if not isinstance(data, dict):
            raise ValueError(f"'{path}' holds no generator (expected GeneratorSource fields or model.init_args.generator)")
        return GeneratorSource.coerce(data).build()
    return GeneratorSource(checkpoint=str(path)).build()
