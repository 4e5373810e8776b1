"""Export the encoder of an ``lsap fit`` ReStyle checkpoint as a small weights-only file.

The e4e / pSp layout (``lsap.encoders.save_e4e_checkpoint``) with 6 input channels, float16
weights, ``latent_avg`` and ``opts["restyle_steps"]``; it reads back through
``lsap.encoders.restyle.load_restyle_encoder`` (and so by built-in name once under
``lsap/assets/encoders``). The Lightning checkpoint is read with ``weights_only=True``.

    python bench/export_fashion32_restyle.py lightning_logs/restyle_fashion32_lsap/checkpoints/last.ckpt \\
        lsap/assets/encoders/fashion32_restyle_lsap.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lsap.encoders.checkpoints import build_encoder_from_state_dict, save_e4e_checkpoint
from lsap.encoders.restyle import load_restyle_encoder
from lsap.io import load_weights_file


def export_restyle(checkpoint: str, output: str, half: bool = True) -> Path:
    data = load_weights_file(Path(checkpoint), "lsap fit checkpoint of ReStyle")
    state = data.get("state_dict") if isinstance(data, dict) else None
    if not isinstance(state, dict) or "latent_avg" not in state:
        raise ValueError(f"'{checkpoint}' is not a ReStyle training checkpoint (no state_dict with latent_avg)")
    hparams = data.get("hyper_parameters") or {}
    encoder_args = (hparams.get("encoder") or {}).get("init_args", {}) if isinstance(hparams.get("encoder"), dict) else {}
    input_size = int(encoder_args.get("input_size", 32))
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    encoder = build_encoder_from_state_dict(encoder_state, "e4e", input_size=input_size, source=checkpoint)
    # Entries past the progressive stage were never trained (e4e's schedule had not reached
    # them): zero their heads, so the file gives them w0 as training did, whatever reads it.
    stage = data.get("lsap_progressive_stage")
    if stage is not None:
        with torch.no_grad():
            for entry in range(int(stage) + 1, encoder.num_ws):
                encoder.styles[entry].linear.weight.zero_()
                encoder.styles[entry].linear.bias.zero_()
    latent_avg = state["latent_avg"].float()
    if half:
        encoder, latent_avg = encoder.half(), latent_avg.half()
    opts = {"lsap_source": Path(checkpoint).name, "global_step": data.get("global_step"),
            "nscd_weight": hparams.get("nscd_weight"), "restyle_steps": int(hparams.get("num_steps", 5)),
            "progressive_stage": stage,
            "weights_dtype": "float16" if half else "float32"}
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_e4e_checkpoint(path, encoder, latent_avg, opts=opts)
    loaded = load_restyle_encoder(path, input_size=input_size)  # it must read back
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): ReStyle e4e encoder, num_ws={loaded.encoder.num_ws}, "
          f"{loaded.num_steps} steps, step {data.get('global_step')}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights (twice the size)")
    args = parser.parse_args()
    export_restyle(args.checkpoint, args.output, half=not args.float32)


if __name__ == "__main__":
    main()
