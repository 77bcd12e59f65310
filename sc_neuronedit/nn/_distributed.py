"""Data parallelism over ``torch.distributed`` ranks (torchrun; gloo on CPU, NCCL on GPU).

When a process group is initialised, every rank holds the same (lazy) data and
the same seed. Each minibatch of the single-process run is split into one
contiguous shard per rank, so the global batch, the gradient (summed over ranks)
and hence the trained weights are those of one process, up to float rounding.
Statistics over cells (standardisation, validation loss, the edit's quantiles)
are reduced or gathered exactly. Without a process group, every function here
is the identity of a single process.
"""

from __future__ import annotations

import numpy as np
import torch


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(idx: np.ndarray) -> np.ndarray:
    """This rank's contiguous part of ``idx`` (parts differ in length by at most one)."""
    rank, size = world()
    return idx if size == 1 else np.array_split(idx, size)[rank]


def _backend_device(t: torch.Tensor) -> torch.device:
    """Where a collective can run: NCCL needs CUDA tensors, gloo takes CPU ones."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks, on ``t``'s device."""
    if world()[1] == 1:
        return t
    import torch.distributed as dist

    moved = t.to(_backend_device(t))
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    return moved.to(t.device)


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows in rank order: the rows of :func:`shard`'s parts
    put back together, as one process would have computed them."""
    size = world()[1]
    if size == 1:
        return local
    import torch.distributed as dist

    home, local = local.device, local.to(_backend_device(local))
    counts = torch.tensor([local.shape[0]], dtype=torch.int64, device=local.device)
    sizes = [torch.zeros_like(counts) for _ in range(size)]
    dist.all_gather(sizes, counts)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(home)


def data_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` on
    more than one rank; itself otherwise."""
    if world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
