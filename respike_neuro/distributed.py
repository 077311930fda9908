"""torch.distributed helpers: process-group setup from torchrun's environment, sharded samplers,
and cross-rank reductions. Single-process runs go through the same code with world size 1.

Equivalence of DDP to one process: with W ranks of per-rank batch b, DistributedSampler hands
rank r the samples perm[r::W] of one seeded permutation, so optimizer step k sees exactly the
global batch perm[kWb:(k+1)Wb] that a single process with batch Wb sees, and DDP's gradient
average (1/W) sum_r grad(mean_b loss_r) equals grad(mean_{Wb} loss). BatchNorm is the exception:
it normalises with per-rank batch statistics unless SyncBatchNorm (CUDA only) is used.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str, *, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK), if any.

    Backend: nccl for CUDA, gloo for CPU. Without torchrun's variables this is a no-op (world 1).
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s)
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device | str = "cpu") -> list[float]:
    """Sum a few scalars over ranks (float64, so counts stay exact)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step every
    rank holds statistics updated by its own batch; evaluation must use one set.
    """
    if info.enabled:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def broadcast_object(obj, info: DistInfo):
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_rows(
    index: torch.Tensor, rows: torch.Tensor, info: DistInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (index (n_r,), rows (n_r, K)) from every rank, sorted by index, duplicates dropped.

    Ranks may hold different n_r: each pads to the largest, and the padding is cut off again.
    """
    if info.enabled:
        device = rows.device
        n = torch.tensor([index.numel()], device=device)
        sizes = [torch.zeros_like(n) for _ in range(info.world_size)]
        dist.all_gather(sizes, n)
        longest = int(max(int(s) for s in sizes))
        pad_rows = rows.new_zeros((longest, *rows.shape[1:]))
        pad_rows[: rows.shape[0]] = rows
        pad_index = index.new_full((longest,), -1).to(device)
        pad_index[: index.numel()] = index.to(device)
        got_rows = [torch.zeros_like(pad_rows) for _ in range(info.world_size)]
        got_index = [torch.zeros_like(pad_index) for _ in range(info.world_size)]
        dist.all_gather(got_rows, pad_rows)
        dist.all_gather(got_index, pad_index)
        rows = torch.cat([r[: int(s)] for r, s in zip(got_rows, sizes)])
        index = torch.cat([i[: int(s)] for i, s in zip(got_index, sizes)])
    order = torch.argsort(index.cpu(), stable=True)
    index, rows = index.cpu()[order], rows.cpu()[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    return index[keep], rows[keep]


class TrainSampler(DistributedSampler):
    """DistributedSampler whose permutation depends only on (seed, epoch), that can start mid-epoch.

    `skip_batches(k, batch)` drops the first k per-rank batches of the current epoch, so a run
    resumed from a step checkpoint sees exactly the samples the interrupted run had not seen yet.
    It applies to the next iteration only.
    """

    def __init__(self, dataset: Dataset, info: DistInfo, *, seed: int, shuffle: bool = True) -> None:
        super().__init__(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self._skip = 0

    def skip_batches(self, batches: int, batch_size: int) -> None:
        self._skip = batches * batch_size

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class ShardSampler(Sampler[int]):
    """Rank r of W takes indices r, r+W, ... in order, without padding (evaluation: no duplicates)."""

    def __init__(self, length: int, info: DistInfo) -> None:
        self.indices = list(range(info.rank, length, info.world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
