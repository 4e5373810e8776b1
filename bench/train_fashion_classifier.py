"""Train the Fashion-MNIST classifiers shipped with lsap.

    PYTHONPATH=. python bench/train_fashion_classifier.py --threads 1 --epochs 3
    PYTHONPATH=. python bench/train_fashion_classifier.py --architecture judge --seed 1 --threads 1 --epochs 3

The first makes ``lsap/assets/fashion_classifier.safetensors`` (``FashionClassifier``, the
labeller: directions, confident samples, classifier-feature FID). The second makes the
independent judge ``lsap/assets/fashion_judge.safetensors`` (``FashionJudge``: another
architecture and seed, only ever used to score). Both train on the 60 000 training images
(random 2 px shifts as augmentation), report the test accuracy on the 10 000 test images
and write the weights in float16 (each file stays under 1 MB).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lsap.data.fashion_mnist import DEFAULT_ROOT, FashionMNISTDataset
from lsap.nets import fashion_classifier, fashion_judge

ARCHITECTURES = {
    "classifier": (fashion_classifier.FashionClassifier, fashion_classifier.WEIGHTS_FILE,
                   fashion_classifier.load_fashion_classifier, "lsap.fashion_classifier"),
    "judge": (fashion_judge.FashionJudge, fashion_judge.WEIGHTS_FILE, fashion_judge.load_fashion_judge,
              "lsap.fashion_judge"),
}


def shifted(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Random translations of grey 32 px images (crop of the padded canvas)."""
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
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
    ap.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="classifier")
    ap.add_argument("--output", default=None, help="default: the shipped file of the architecture")
    ap.add_argument("--limit", type=int, default=None, help="smoke runs: only the first N training and test images")
    args = ap.parse_args()
    network, weights_file, load, file_format = ARCHITECTURES[args.architecture]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train = FashionMNISTDataset(args.root, "train", resolution=32, channels=1)
    test = FashionMNISTDataset(args.root, "test", resolution=32, channels=1)
    x_train, y_train = train.image(slice(args.limit)), train.labels[:args.limit]
    x_test, y_test = test.image(slice(args.limit)), test.labels[:args.limit]
    model = network()
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
    out = Path(args.output or weights_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"format": file_format, "test_accuracy": f"{acc:.4f}",
                                             "seed": str(args.seed), "epochs": str(args.epochs)})
    # The shipped fp16 weights must score what was measured.
    reloaded = accuracy(load(out), x_test, y_test)
    print(json.dumps({"written": str(out), "bytes": out.stat().st_size, "test_accuracy_fp16": round(reloaded, 4)}))


if __name__ == "__main__":
    main()
