"""Images per second on CPU, side by side in one run, on the fashion32 generator (32 px):
e4e, ReStyle (N = 1 and N = 5), e4e + HFGI, PTI and LSAP_O.

Each method inverts the same ``--images`` shipped test images (batches of ``--batch``; PTI
tunes one image at a time, as it does in a run). The encoders use the shipped weights where
they exist and otherwise the same architectures with random weights (speed does not depend on
the weights). PTI (``--pti_steps`` tuning steps per image, from the e4e pivot) and LSAP_O
(``--lsap_o_steps`` steps) run far fewer steps than their defaults (350 and 1000); the table
says how many. Every method gets one untimed warm-up batch.

    OMP_NUM_THREADS=2 python bench/bench_refiners.py --threads 2 --images 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lsap.data.fashion_samples import FashionSamplesDataset
from lsap.encoders import load_encoder_checkpoint
from lsap.encoders.restyle import restyle_invert
from lsap.model import load_generator
from lsap.modules import LSAP_O, PTI
from lsap.refine.hfgi import HFGIRefiner, load_hfgi_refiner

ASSETS = Path(__file__).resolve().parents[1] / "lsap" / "assets"


def restyle_encoder():
    path = ASSETS / "encoders" / "fashion32_restyle_lsap.pt"
    if path.is_file():
        from lsap.encoders.restyle import load_restyle_encoder

        loaded = load_restyle_encoder(path)
        return loaded.encoder, loaded.latent_avg, "shipped"
    from lsap.encoders import Encoder4Editing

    encoder = Encoder4Editing(num_ws=8, w_dim=256, input_size=32, input_channels=6, blocks_per_stage=[1, 1, 1, 1],
                              stage_channels=[32, 48, 64, 96]).eval()
    return encoder, None, "random weights"


def hfgi_refiner(generator):
    if (ASSETS / "refine" / "hfgi_fashion32_e4e.pt").is_file():
        return load_hfgi_refiner("fashion32_hfgi_e4e")[0], "shipped"
    return HFGIRefiner.for_generator(generator, fusion_resolution=16).eval(), "random weights"


def timed(function, batches) -> float:
    function(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches:
        function(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pti_steps", type=int, default=10)
    parser.add_argument("--lsap_o_steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = load_generator("fashion32")
    data = FashionSamplesDataset()
    images = torch.stack([data[i]["image"] for i in range(args.images)])
    batches = list(images.split(args.batch))
    e4e = load_encoder_checkpoint("fashion32_e4e")
    e4e_encoder, e4e_avg = e4e.encoder.float().eval(), e4e.latent_avg.float()
    restyle, restyle_avg, restyle_weights = restyle_encoder()
    restyle_avg = restyle_avg if restyle_avg is not None else generator.w_avg
    refiner, refiner_weights = hfgi_refiner(generator)

    def encode(batch):
        return e4e_encoder(batch) + e4e_avg

    rows = []

    def row(name, seconds, count, note=""):
        rows.append({"method": name, "images_per_s": count / seconds, "s_per_image": seconds / count, "note": note})
        print(f"{name:>24}: {count / seconds:9.2f} images/s  ({seconds / count * 1000:8.1f} ms/image) {note}", flush=True)

    with torch.no_grad():
        row("e4e", timed(lambda b: generator.synthesis(encode(b)), batches), args.images, "shipped fashion32_e4e")
        for steps in (1, 5):
            seconds = timed(lambda b: restyle_invert(restyle, generator, b, restyle_avg, steps), batches)
            row(f"ReStyle N={steps}", seconds, args.images, restyle_weights)
        seconds = timed(lambda b: refiner.refine(generator, encode(b), b), batches)
        row("e4e + HFGI", seconds, args.images, f"refiner: {refiner_weights}")
        pivots = [encode(b) for b in batches]

    common = dict(generator={"checkpoint": "fashion32"}, lpips=None, loss_resolution=32, anchor_samples=20_000)
    pti = PTI(pivots_dir="unused", num_steps=args.pti_steps, lambda_lpips=0.0, early_stop_lpips=None,
              progress=False, **common)
    singles = [(images[i:i + 1], torch.cat(pivots)[i:i + 1]) for i in range(args.images)]
    seconds = timed(lambda pair: pti.tune(pair[0], pair[1], "bench"), singles)
    row(f"PTI ({args.pti_steps} steps)", seconds, args.images, "from the e4e pivot, one image at a time")
    lsap_o = LSAP_O(num_steps=args.lsap_o_steps, lambda_lpips=0.0, lambda_mse=1.0, progress=False, **common)
    names = [f"{i:04d}" for i in range(args.images)]
    named = [(b, names[i * args.batch:(i + 1) * args.batch]) for i, b in enumerate(batches)]
    seconds = timed(lambda pair: lsap_o.invert(pair[0], pair[1]), named)
    row(f"LSAP_O ({args.lsap_o_steps} steps)", seconds, args.images, "MSE + NSCD, batches of %d" % args.batch)
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "images": args.images, "rows": rows},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
