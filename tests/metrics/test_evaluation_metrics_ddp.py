"""Fidelity, FID and LEC under torch.distributed: two CPU processes (gloo) give the one-process values."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from conftest import free_port, spawn_and_wait
from lsap.metrics.fid import FID, load_feature_extractor
from lsap.metrics.fidelity import MSE, PSNR, SSIM
from lsap.metrics.lec import LEC

WORLD_SIZE = 2
DEADLINE_S = 90


class TinyFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 5, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


def toy_lec() -> LEC:
    """An encoder/decoder pair of fixed linear maps: enough to exercise the state handling."""
    g = torch.Generator().manual_seed(5)
    enc, dec = torch.randn(3 * 4 * 4, 2 * 3, generator=g), torch.randn(2 * 3, 3 * 4 * 4, generator=g)
    direction = torch.randn(3, generator=g)
    return LEC(lambda x: (x.flatten(1) @ enc).view(-1, 2, 3),
               lambda ws: torch.tanh(ws.flatten(1) @ dec).view(-1, 3, 4, 4),
               lambda ws: ws + direction, lambda ws: ws - direction, image_size=None)


def all_metrics(extractor_path: str) -> dict:
    return {"mse": MSE(), "psnr": PSNR(), "ssim": SSIM(), "fid": FID(load_feature_extractor(extractor_path)),
            "lec": toy_lec()}


def feed(metrics: dict, data: dict, batches: list[slice]) -> None:
    for part in batches:
        for name in ("mse", "psnr", "ssim"):
            metrics[name].update(data["pred"][part], data["target"][part])
        metrics["fid"].update(data["real_u8"][part], real=True)
        metrics["fid"].update(data["fake_u8"][part], real=False)
        metrics["lec"].update(data["lec"][part])


def results_of(metrics: dict) -> dict:
    out = {name: metrics[name].summary() for name in ("mse", "psnr", "ssim", "lec")}
    out["fid"] = float(metrics["fid"].compute())
    return out



def worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    data = torch.load(Path(out_dir) / "data.pt", weights_only=True)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        metrics = all_metrics(str(Path(out_dir) / "features.pt"))
        # Rank r takes batches r, r + 2: the same batches as the single process, split.
        feed(metrics, data, [slice(4 * b, 4 * b + 4) for b in range(rank, 4, WORLD_SIZE)])
        torch.save(results_of(metrics), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 30)
def test_two_processes_match_one(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(16, 3, 16, 16, generator=g) * 2 - 1
    data = {"target": target, "pred": (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(-1, 1),
            "real_u8": torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=g),
            "fake_u8": torch.randint(0, 200, (16, 3, 16, 16), dtype=torch.uint8, generator=g),
            "lec": torch.rand(16, 3, 4, 4, generator=g)}
    torch.save(data, tmp_path / "data.pt")
    torch.jit.save(torch.jit.script(TinyFeatures()), str(tmp_path / "features.pt"))
    spawn_and_wait(worker, (free_port(), str(tmp_path)), WORLD_SIZE, DEADLINE_S)

    single = all_metrics(str(tmp_path / "features.pt"))
    feed(single, data, [slice(4 * b, 4 * b + 4) for b in range(4)])
    expected = results_of(single)
    for rank in range(WORLD_SIZE):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in ("mse", "psnr", "ssim", "lec"):
            assert got[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
        assert got["fid"] == pytest.approx(expected["fid"], rel=1e-5)
