"""Where a generator comes from, as a config value."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import torch

from lsap.errors import BadFileError, BadValueError, MissingInputError
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
    def coerce(cls, value: "GeneratorSource | Mapping[str, Any]", where: str = "generator") -> "GeneratorSource":
        """Accept a source or its plain-dict form (what checkpoints store as hyper-parameters);
        an unknown field or a component (``class_path``) is a :class:`BadValueError` naming it."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise BadValueError(f"{where} must be a GeneratorSource or a mapping of its fields, "
                                f"got {type(value).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in value if k not in valid)
        if unknown:
            raise BadValueError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                                f"a generator spec takes {', '.join(valid)}")
        for key, item in value.items():
            if isinstance(item, (Mapping, list, tuple)):
                raise BadValueError(f"{where}: field '{key}' must be a plain value, got {type(item).__name__}")
        return cls(**value)

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
    """A generator from a checkpoint path or built-in name, a YAML/JSON file of ``GeneratorSource``
    fields or a run config (its ``model.init_args.generator``), a JSON object string, or (``spec``
    None) the ``config.yaml`` Lightning saved next to ``results_dir``.

    Run configs are untrusted data: they go through :func:`lsap.model.run_config.read_run_config`
    and a config naming any component other than lsap's own is refused."""
    from lsap.model.run_config import check_components, config_file, model_section, read_run_config

    if spec is None:
        folder = Path(results_dir or ".")
        if not folder.is_dir():
            raise MissingInputError(f"results folder not found: '{folder}'")
        candidate = config_file(folder)
        if not candidate.is_file():
            raise MissingInputError(f"no generator given and no '{candidate}' to read it from: pass --generator "
                                    "(a checkpoint, or the config of the inversion run)")
        spec = str(candidate)
    text = spec.strip()
    if text.startswith("{"):
        try:
            fields_ = json.loads(text)
        except json.JSONDecodeError as error:
            raise BadValueError(f"the generator spec is not valid JSON ({error.msg} at character {error.pos}): "
                                f"{text[:80]}") from None
        return GeneratorSource.coerce(fields_, "the generator spec").build()
    path = Path(spec).expanduser()
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        data = read_run_config(path)
        class_path, settings = model_section(data, str(path))
        if "model" in data:
            check_components(data["model"], f"'{path}' model")
            data = settings.get("generator")
        if not isinstance(data, dict):
            raise BadFileError(f"'{path}' holds no generator (expected GeneratorSource fields or "
                               "model.init_args.generator)")
        return GeneratorSource.coerce(data, f"'{path}' generator").build()
    return GeneratorSource(checkpoint=str(path)).build()
