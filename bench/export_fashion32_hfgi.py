"""Export the refiner of an ``lsap fit`` HFGI checkpoint as a small weights-only file.

Only the trained parts (ADA and the consultation encoder) in float16, with the refiner's
config and the facts editing checks (the generator's fingerprint, the embedding, the step):
``lsap.refine.save_hfgi_refiner``; it reads back through ``lsap.refine.load_hfgi_refiner``
(and so by built-in name once under ``lsap/assets/refine``). The Lightning checkpoint is read
with ``weights_only=True``.

    python bench/export_fashion32_hfgi.py lightning_logs/hfgi_fashion32_lsap/checkpoints/last.ckpt \\
        lsap/assets/refine/hfgi_fashion32_lsap.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lsap.io import load_weights_file
from lsap.model import GeneratorSource
from lsap.model.fingerprint import generator_fingerprint
from lsap.refine.hfgi import HFGIRefiner, load_hfgi_refiner, save_hfgi_refiner


def export_hfgi(checkpoint: str, output: str, half: bool = True) -> Path:
    data = load_weights_file(Path(checkpoint), "lsap fit checkpoint of HFGI")
    state = data.get("state_dict") if isinstance(data, dict) else None
    hparams = (data.get("hyper_parameters") or {}) if isinstance(data, dict) else {}
    if not isinstance(state, dict) or not isinstance(hparams.get("refiner"), dict):
        raise ValueError(f"'{checkpoint}' is not an HFGI training checkpoint (no refiner config / state_dict)")
    refiner = HFGIRefiner(**hparams["refiner"])
    refiner.load_state_dict({k[len("refiner."):]: v for k, v in state.items() if k.startswith("refiner.")})
    generator = GeneratorSource.coerce(hparams["generator"]).build()
    meta = {"generator_hash": generator_fingerprint(generator), "embedding": hparams.get("embedding"),
            "global_step": data.get("global_step"), "lsap_source": Path(checkpoint).name,
            "weights_dtype": "float16" if half else "float32"}
    path = save_hfgi_refiner(output, refiner, meta=meta, half=half)
    loaded, _ = load_hfgi_refiner(path)  # it must read back
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): HFGI refiner over {meta['embedding']}, fusion at "
          f"{loaded.fusion_resolution} px, step {meta['global_step']}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights (twice the size)")
    args = parser.parse_args()
    export_hfgi(args.checkpoint, args.output, half=not args.float32)


if __name__ == "__main__":
    main()
