"""Distributed training on CPU: two gloo processes against one process with the same seed and epoch."""
import gc
import json
import os
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from reidlab.config import Config
from reidlab.distributed import (DistributedIdentitySampler, cleanup, is_main_process, setup_distributed,
                                 wrap_model)
from reidlab.runs import RunFolder
from reidlab.sampler import RandomIdentitySampler

P, K, SEED, EPOCH, WORLD = 4, 3, 5, 2, 2
# 10 identities with 2..9 images (the ones with fewer than K are drawn with replacement)
PIDS = [p for p in range(10) for _ in range(2 + (p * 7) % 8)]
STEPS = 3  # optimiser steps checked


def build_tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 10))


def fixed_inputs() -> torch.Tensor:
    return torch.randn(len(PIDS), 8, generator=torch.Generator().manual_seed(1))  # (N, 8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    result = {"setup": setup_distributed()}
    try:
        result["main"] = is_main_process()
        sampler = DistributedIdentitySampler(PIDS, P, K, SEED)
        sampler.set_epoch(EPOCH)
        order = list(sampler)
        result["order"], result["len"] = order, len(sampler)
        model = wrap_model(build_tiny_model(), "cpu")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = fixed_inputs(), torch.tensor(PIDS)
        B = sampler.batch_size
        grads = []
        for step in range(STEPS):
            idx = torch.tensor(order[step * B:(step + 1) * B])
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            flat = torch.cat([p.grad.flatten() for p in model.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(WORLD)]
            dist.all_gather(gathered, flat)  # every rank's gradient after DDP's all-reduce
            grads.append(torch.stack(gathered))  # (WORLD, num_params)
            opt.step()
        result["grads"] = torch.stack(grads)  # (STEPS, WORLD, num_params)
    finally:
        cleanup()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def run_rank_and_collect(rank: int, port: int, out_dir: str) -> None:
    """run_rank, then free its DDP model's reference cycles while Python is still whole: left to the shutdown,
    gloo's threads abort a rank that finished its work (SIGABRT, "terminate called without an active
    exception"; torch 2.14, here about 1 spawn in 12, and once in CI)."""
    run_rank(rank, port, out_dir)
    gc.collect()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(run_rank_and_collect, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def single_gpu_batches() -> list[list[int]]:
    base = RandomIdentitySampler(PIDS, P, K, SEED)
    base.set_epoch(EPOCH)
    order = list(base)
    return [order[i:i + P * K] for i in range(0, len(order), P * K)]


def test_ranks_see_disjoint_identities_and_together_the_single_gpu_batch(ranks):
    assert [r["setup"] for r in ranks] == [(0, WORLD, 0), (1, WORLD, 1)]
    assert [r["main"] for r in ranks] == [True, False]
    batches = single_gpu_batches()
    share = P // WORLD * K
    assert len(batches) >= STEPS
    for r in ranks:
        assert len(r["order"]) == r["len"] == len(batches) * share
    for step, batch in enumerate(batches):
        parts = [r["order"][step * share:(step + 1) * share] for r in ranks]
        ids = [{PIDS[i] for i in part} for part in parts]
        assert all(len(s) == P // WORLD for s in ids)
        assert not ids[0] & ids[1], f"step {step}: ranks share identities {ids[0] & ids[1]}"
        assert parts[0] + parts[1] == batch  # the union, in order, is the single-GPU batch


def test_gradients_agree_across_ranks_and_equal_the_full_batch_gradient(ranks):
    g0, g1 = ranks[0]["grads"], ranks[1]["grads"]
    assert torch.equal(g0, g1)  # both ranks gathered the same tensors
    assert torch.equal(g0[:, 0], g0[:, 1])  # after all-reduce every rank holds the same gradient
    # DDP averages the ranks' mean losses over equal shares: the gradient of the global batch's mean loss
    model = build_tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = fixed_inputs(), torch.tensor(PIDS)
    for step, batch in enumerate(single_gpu_batches()[:STEPS]):
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        flat = torch.cat([p.grad.flatten() for p in model.parameters()])
        torch.testing.assert_close(g0[step, 0], flat, rtol=1e-5, atol=1e-7)
        opt.step()


def test_split_without_a_process_group():
    """rank and world_size given explicitly; a fresh sampler starts at epoch 1."""
    base = RandomIdentitySampler(PIDS, P, K, SEED)
    order = list(base)
    for world in (1, 2, 4):
        parts = [list(DistributedIdentitySampler(PIDS, P, K, SEED, rank=r, world_size=world)) for r in range(world)]
        share = P // world * K
        assert all(len(part) == len(order) // world for part in parts)
        for b in range(len(order) // (P * K)):
            union = sum((part[b * share:(b + 1) * share] for part in parts), [])
            assert union == order[b * P * K:(b + 1) * P * K]


def test_single_process_is_a_no_op(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert setup_distributed() == (0, 1, 0)
    assert is_main_process() and not dist.is_initialized()
    model = nn.Linear(3, 2)
    assert wrap_model(model, "cpu") is model
    cleanup()  # nothing to clean: no error


def test_bad_inputs_raise_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="divisible"):
        DistributedIdentitySampler(PIDS, 3, K, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank=2"):
        DistributedIdentitySampler(PIDS, P, K, rank=2, world_size=2)

    class Interleaved:  # yields P*K indices whose identities alternate: not P runs of K
        epoch = 1

        def __iter__(self):
            return iter([i for pair in zip(range(0, 6), range(len(PIDS) - 6, len(PIDS))) for i in pair])

        def __len__(self):
            return 12
    with pytest.raises(ValueError, match="runs of K"):
        list(DistributedIdentitySampler(PIDS, P, K, rank=0, world_size=2, base=Interleaved()))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        setup_distributed()


def test_gpu_batches_take_the_ranks_share():
    from reidlab.gpu_data import GpuTrainBatches
    Record = namedtuple("Record", "path pid camid")
    cfg = Config(image_size=(16, 16), P=P, K=K, progress=False)
    records = [Record(f"{i}.jpg", pid, 0) for i, pid in enumerate(PIDS)]
    images = torch.zeros(len(PIDS), 3, 16, 16, dtype=torch.uint8)
    shares = []
    for rank in range(WORLD):
        sampler = DistributedIdentitySampler(PIDS, P, K, SEED, rank=rank, world_size=WORLD)
        batches = GpuTrainBatches(records, cfg, "cpu", seed=SEED, sampler=sampler, images=images)
        batches.set_epoch(EPOCH)
        shares.append([pids.tolist() for x, pids, _ in batches])
        assert all(x.shape[0] == P // WORLD * K for x, _, _ in batches)
    for step, batch in enumerate(single_gpu_batches()):
        assert shares[0][step] + shares[1][step] == [PIDS[i] for i in batch]


RANK_SCRIPT = """
import json, os, sys
from reidlab.config import PRESETS
from reidlab.datasets import load_dataset
from reidlab.train import fit
cfg = PRESETS["bot"].replace(backbone="resnet18", pretrained=None, image_size=(32, 16), P=4, K=2, epochs=1,
                             num_workers=0, progress=False, device="cpu", data_path="resident", channels_last=True)
metrics = fit(cfg, sys.argv[2], dataset=load_dataset("market1501", sys.argv[1], verbose=False))
with open(os.path.join(sys.argv[3], "rank" + os.environ["RANK"] + ".json"), "w") as f:
    json.dump(metrics, f)
"""


def test_fit_under_torchrun_on_a_cpu(tiny_market, tmp_path):
    """The product path: `torchrun --nproc_per_node=2` on fit (gloo); both ranks train, rank 0 alone writes and scores
    the run, and every rank exits 0 (benchmarks/ddp_cpu_exit.py counts exits over many spawns)."""
    script, run = tmp_path / "rank.py", tmp_path / "run"
    script.write_text(RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tiny_market), str(run), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert rank1 == {}  # only the main process scores and writes
    assert rank0 == RunFolder(run).metrics()
    assert 0 <= rank0["mAP"] <= 100 and rank0["epochs"] == 1
    history = RunFolder(run).history()
    assert len(history) == 1 and history[0]["loss_id"] > 0  # one line: rank 1 did not write its own
