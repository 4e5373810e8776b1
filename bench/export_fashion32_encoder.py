"""Export the encoder of an ``lsap fit`` LSAP_E checkpoint as a small weights-only file.

Writes the e4e / pSp layout (``lsap.encoders.save_e4e_checkpoint``: encoder weights,
latent_avg, opts) with the weights in float16, which halves the file; the reader
(``lsap.encoders.load_encoder_checkpoint``) casts them back to float32. The Lightning
checkpoint is read with ``weights_only=True``; nothing in it is executed.

    python bench/export_fashion32_encoder.py lightning_logs/encoder_fashion32_lsap/checkpoints/last.ckpt \\
        lsap/assets/encoders/fashion32_lsap.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path


from lsap.encoders import load_encoder_checkpoint
from lsap.encoders.checkpoints import build_encoder_from_state_dict, save_e4e_checkpoint
from lsap.io import load_weights_file


def export_encoder(checkpoint: str, output: str, half: bool = True) -> Path:
    data = load_weights_file(Path(checkpoint), "lsap fit checkpoint of LSAP_E")
    state = data.get("state_dict") if isinstance(data, dict) else None
    if not isinstance(state, dict) or "latent_avg" not in state:
        raise ValueError(f"'{checkpoint}' is not an LSAP_E training checkpoint (no state_dict with latent_avg)")
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    hparams = data.get("hyper_parameters") or {}
    input_size = hparams.get("encoder", {}).get("init_args", {}).get("input_size") \
        if isinstance(hparams.get("encoder"), dict) else None
    encoder = build_encoder_from_state_dict(encoder_state, "e4e", input_size=input_size or 32, source=checkpoint)
    if half:
        encoder = encoder.half()
    latent_avg = state["latent_avg"].float()
    opts = {"lsap_source": Path(checkpoint).name, "global_step": data.get("global_step"),
            "nscd_weight": hparams.get("nscd_weight"), "weights_dtype": "float16" if half else "float32"}
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_e4e_checkpoint(path, encoder, latent_avg.half() if half else latent_avg, opts=opts)
    loaded = load_encoder_checkpoint(path, input_size=input_size or 32)  # it must read back
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): e4e encoder, num_ws={loaded.num_ws}, "
          f"w_dim={loaded.w_dim}, step {data.get('global_step')}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights (twice the size)")
    args = parser.parse_args()
    export_encoder(args.checkpoint, args.output, half=not args.float32)


if __name__ == "__main__":
    main()
