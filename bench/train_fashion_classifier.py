"""Train the Fashion-MNIST classifier shipped as lsap/assets/fashion_classifier.safetensors.

    PYTHONPATH=. python bench/train_fashion_classifier.py --threads 1 --epochs 3

Trains on the 60 000 training images (random 2 px shifts as augmentation), reports the test
accuracy and writes the weights in float16 (the file stays well under 1 MB).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lsap.data.fashion_mnist import DEFAULT_ROOT, FashionMNISTDataset
from lsap.nets.fashion_classifier import WEIGHTS_FILE, FashionClassifier


def shifted(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Random translations of grey 32 px images (crop of the padded canvas)."""
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def accuracy(model: FashionClassifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum().item()
                  for i in range(0, len(images), batch))
    return correct / len(images)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=str(WEIGHTS_FILE))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train = FashionMNISTDataset(args.root, "train", resolution=32, channels=1)
    test = FashionMNISTDataset(args.root, "test", resolution=32, channels=1)
    x_train, y_train = train.image(slice(None)), train.labels
    x_test, y_test = test.image(slice(None)), test.labels
    model = FashionClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(x_train) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.2)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(len(x_train) // args.batch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            loss = F.cross_entropy(model(shifted(x_train[idx])), y_train[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model, x_test, y_test)
        print(json.dumps({"epoch": epoch + 1, "loss": round(loss.item(), 4), "test_accuracy": round(acc, 4),
                          "minutes": round((time.perf_counter() - start) / 60, 2)}), flush=True)

    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"format": "lsap.fashion_classifier", "test_accuracy": f"{acc:.4f}"})
    # The shipped fp16 weights must score what was measured.
    from lsap.nets.fashion_classifier import load_fashion_classifier

    reloaded = accuracy(load_fashion_classifier(out), x_test, y_test)
    print(json.dumps({"written": str(out), "bytes": out.stat().st_size, "test_accuracy_fp16": round(reloaded, 4)}))


if __name__ == "__main__":
    main()
