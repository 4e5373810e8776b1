"""NSCD under torch.distributed: two CPU processes (gloo) give the single-process value."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from lsap.metrics import NSCD, Anchors, compute_anchors
from lsap.model import Generator
from conftest import free_port, small_source, spawn_and_wait

WORLD_SIZE = 2
NUM_SAMPLES = 500
NUM_CODES = 10  # rank r takes codes r, r + 2, ... and updates in two batches
DEADLINE_S = 90


def build_generator() -> Generator:
    return small_source(32, 2, channel_max=64, w_avg_samples=100).build()


def make_codes(generator: Generator) -> torch.Tensor:
    rng = torch.Generator().manual_seed(123)
    with torch.no_grad():
        ws = generator.mapping(torch.randn(NUM_CODES, generator.z_dim, generator=rng))[:, None]
    return ws.repeat(1, generator.num_ws, 1) + 0.5 * torch.randn(NUM_CODES, generator.num_ws, generator.w_dim,
                                                                 generator=rng)



def worker(rank: int, port: int, cache_dir: str, out_dir: str) -> None:
    # The codes come from the parent: recomputing them here with another thread count could
    # change their float32 rounding.
    codes = torch.load(Path(out_dir) / "codes.pt", weights_only=True)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        generator = build_generator()
        # Both ranks compute (or read) the anchors through one shared cache folder.
        anchors = compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, cache_dir=cache_dir)
        metric = NSCD(generator=generator, anchors=anchors)
        mine = codes[rank::WORLD_SIZE]
        metric.update(mine[:2])
        metric.update(mine[2:])
        gathered = [torch.zeros_like(anchors.full[0]) for _ in range(WORLD_SIZE)]
        dist.all_gather(gathered, anchors.full[0])
        torch.save({"compute": metric.compute(), "per_layer": metric.compute_per_layer(),
                    "local_images": metric.num_images.clone(), "anchors_rank0": gathered[0],
                    "anchors_rank1": gathered[1]}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 30)
def test_two_processes_match_one(tmp_path: Path) -> None:
    generator = build_generator()
    codes = make_codes(generator)
    torch.save(codes, tmp_path / "codes.pt")
    spawn_and_wait(worker, (free_port(), str(tmp_path / "cache"), str(tmp_path)), WORLD_SIZE, DEADLINE_S)

    anchors = Anchors.load(next((tmp_path / "cache").glob("anchors-*.pt")))
    single = NSCD(generator=generator, anchors=anchors)
    single.update(codes)
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["local_images"].item() == NUM_CODES / WORLD_SIZE  # states are restored after syncing
        torch.testing.assert_close(result["anchors_rank0"], result["anchors_rank1"], atol=0, rtol=0)
        torch.testing.assert_close(result["anchors_rank0"], anchors.full[0], atol=0, rtol=0)
        torch.testing.assert_close(result["compute"], single.compute(), atol=1e-12, rtol=0)
        torch.testing.assert_close(result["per_layer"], single.compute_per_layer(), atol=1e-12, rtol=0)
