"""Train SAM's invertibility net for a generator (lsap.refine.invertibility), e.g. the
shipped one for fashion32:

    nice -n 10 python bench/train_sam_invertibility.py --generator fashion32 \\
        --output lsap/assets/refine/sam_fashion32_invertibility.safetensors \\
        --num-images 192 --target-steps 40 --target-batch 64 --width 16 --epochs 80 --threads 1 \\
        --targets-file /tmp/targets.pt

(the shipped file: 179 CPU s for the targets, 37 CPU s of training, one thread).

Targets: per synthetic image and latent layer (W+, then each offset block), the
FeatureDistance (shipped classifier) spatial map left by an inversion of only that layer.
"""

from __future__ import annotations

import argparse

from lsap.refine.invertibility import train_invertibility_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="fashion32")
    parser.add_argument("--output", required=True)
    parser.add_argument("--blocks", type=int, nargs="+", default=None)
    parser.add_argument("--distance", default="fashion_classifier", help="feature network, or 'pixel'")
    parser.add_argument("--optimize-distance", action="store_true")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--target-steps", type=int, default=100)
    parser.add_argument("--target-batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--targets-file", default=None, help="keep / reuse the targets here")
    args = parser.parse_args()
    train_invertibility_command(args.generator, args.output, args.blocks,
                                None if args.distance == "pixel" else args.distance, args.optimize_distance,
                                args.num_images, args.target_steps, target_batch=args.target_batch,
                                width=args.width, epochs=args.epochs, seed=args.seed, threads=args.threads,
                                targets_file=args.targets_file)


if __name__ == "__main__":
    main()
