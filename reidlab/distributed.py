"""Multi-GPU training with torchrun: process group, P x K sampler split across ranks, SyncBN + DDP.

`torchrun --nproc_per_node=N ...` starts one process per GPU. Every rank builds the same P x K epoch
(same seed, same epoch) and takes its own P / N identities of each step, so the global batch is the
single-GPU one and ranks never share an identity within a step. Per-GPU BatchNorm statistics lower
accuracy (bot_paper.md section 8); SyncBatchNorm computes them over the global batch.

Not the same as one GPU: batch-hard mining sees only the rank's own P / N identities.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) and nothing done otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; launch with "
                           f"`torchrun --nproc_per_node=N script.py` (it sets all of them)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl", rank=rank, world_size=world_size,
                                    device_id=torch.device("cuda", local_rank))
        else:
            dist.init_process_group("gloo", rank=rank, world_size=world_size)
    return rank, world_size, local_rank


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 or without a process group: the one process that logs and writes files."""
    return rank_and_world()[0] == 0


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DistributedIdentitySampler:
    """This rank's share of a RandomIdentitySampler: P / world identities x K images per step.

    A global step is P chunks of K same-identity indices; rank r takes chunks [r * P / world, (r + 1) * P / world),
    so the ranks' shares of a step are disjoint identities whose union is the single-GPU batch.
    """

    def __init__(self, pids: Sequence[int], P: int, K: int, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, base=None):
        group_rank, group_world = rank_and_world()
        self.rank = group_rank if rank is None else int(rank)
        self.world_size = group_world if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank} must be in [0, world_size={self.world_size})")
        if P % self.world_size:
            raise ValueError(f"P={P} identities per step cannot be split over {self.world_size} ranks; "
                             f"use a P divisible by the number of GPUs")
        if base is None:
            from reidlab.sampler import RandomIdentitySampler
            base = RandomIdentitySampler(pids, P, K, seed)
        self.base = base
        self.pids = list(pids)
        self.P, self.K = P, K
        self.batch_size = P // self.world_size * K  # this rank's images per step

    @property
    def epoch(self) -> int:
        return self.base.epoch

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)

    def _indices(self) -> list[int]:
        order = list(self.base)
        step = self.P * self.K
        n = len(order) // step
        share = self.batch_size
        mine = []
        for b in range(n):
            batch = order[b * step:(b + 1) * step]
            chunk_pids = [self.pids[i] for i in batch]
            # the split relies on the base sampler's layout: P runs of K indices of one identity each
            if any(len(set(chunk_pids[c:c + self.K])) != 1 for c in range(0, step, self.K)):
                raise ValueError("the base sampler's batches are not P consecutive runs of K same-identity "
                                 "indices; DistributedIdentitySampler needs RandomIdentitySampler's layout")
            mine.extend(batch[self.rank * share:(self.rank + 1) * share])
        return mine

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self.base) // (self.P * self.K) * self.batch_size


def wrap_model(model: nn.Module, device: torch.device | str, find_unused_parameters: bool = False) -> nn.Module:
    """Move to `device`; with a process group of several ranks: SyncBatchNorm (on CUDA) + DDP."""
    device = torch.device(device)
    model = model.to(device)
    if rank_and_world()[1] == 1:
        return model
    if device.type == "cuda":
        # BN statistics over the global batch, as on one GPU
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        index = device.index if device.index is not None else torch.cuda.current_device()
        return nn.parallel.DistributedDataParallel(model, device_ids=[index],
                                                   find_unused_parameters=find_unused_parameters)
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused_parameters)
