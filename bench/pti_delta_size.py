"""What a PTI delta costs, and what storing only the tensors that changed most would lose.

Tunes the fashion32 generator around the shipped LSAP_E encoder's pivots of the first
``--images`` shipped Fashion-MNIST images (the settings of configs/pti_fashion32.yaml), then
reports the delta's size against the synthesis network's, and, for each relative-change
threshold, the share of the delta kept and the reconstruction MSE when tensors whose
``||delta|| / ||weight||`` lies below it are dropped.

    OMP_NUM_THREADS=2 python bench/pti_delta_size.py --images 3 --steps 50
"""

from __future__ import annotations

import argparse
import io
import json

import torch

from lsap.data.fashion_samples import FashionSamplesDataset
from lsap.encoders import Encoder4Editing
from lsap.model.delta import apply_delta
from lsap.modules import LSAP_E, PTI

THRESHOLDS = (0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    data = FashionSamplesDataset(limit=args.images)
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    encoder = Encoder4Editing(num_ws=8, w_dim=256, input_size=32, blocks_per_stage=[1, 1, 1, 1],
                              stage_channels=[32, 48, 64, 96])
    embed = LSAP_E(generator={"checkpoint": "fashion32"}, encoder=encoder, encoder_checkpoint="fashion32_lsap",
                   loss_resolution=32, anchor_samples=20_000).eval()
    with torch.no_grad():
        pivots = embed.encode(images)
    from lsap.nets import FeatureDistance

    pti = PTI({"checkpoint": "fashion32"}, pivots_dir="unused", lpips=FeatureDistance(network="fashion_classifier"),
              num_steps=args.steps, learning_rate=3e-4, lambda_lpips=0.1, early_stop_lpips=None,
              loss_resolution=32, anchor_samples=20_000, progress=False)
    G = pti.generator
    synthesis = {k: v for k, v in G.state_dict().items() if k.startswith("synthesis_network.")}
    synthesis_bytes = sum(v.numel() * v.element_size() for v in synthesis.values() if v.is_floating_point())
    report = {"images": len(data), "steps": args.steps, "synthesis_float32_bytes": synthesis_bytes,
              "generator_file_bytes": saved_bytes({k: v for k, v in G.state_dict().items()}), "per_image": []}
    for i in range(len(data)):
        result = pti.tune(images[i:i + 1], pivots[i:i + 1], data[i]["name"])
        delta = result["delta"]
        full_mse = float(result["losses"]["mse"])
        relative = {name: float(change.float().norm() / synthesis[name].float().norm().clamp_min(1e-12))
                    for name, change in delta["deltas"].items()}
        target = pti.at_loss_resolution(images[i:i + 1])
        rows = []
        for threshold in THRESHOLDS:
            kept = {n: c for n, c in delta["deltas"].items() if relative[n] >= threshold}
            tuned = apply_delta(G, {**delta, "deltas": kept}, check_fingerprint=False)
            with torch.no_grad():
                mse = float(pti.image_losses(tuned.synthesis(pivots[i:i + 1].float()), target)["mse"])
            kept_bytes = saved_bytes({**delta, "deltas": kept})
            rows.append({"threshold": threshold, "tensors": len(kept), "bytes": kept_bytes,
                         "share_of_full_delta": round(kept_bytes / saved_bytes(delta), 3), "mse": mse})
        report["per_image"].append({
            "name": data[i]["name"], "pivot_mse": float(result["losses"]["mse_pivot"]), "tuned_mse": full_mse,
            "delta_file_bytes": saved_bytes(delta), "tensors": len(delta["deltas"]),
            "relative_change_quantiles": [round(float(q), 5) for q in
                                          torch.tensor(sorted(relative.values())).quantile(
                                              torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))],
            "thresholds": rows,
        })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
