"""torchrun integration: process-group setup, rank helpers and the few collectives the loop uses.

Every helper is a no-op in a single process, so the loop reads the same either way.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def init_distributed(backend: str | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; joins the process group.

    backend None picks nccl when CUDA is available, else gloo (CPU). Outside torchrun
    (WORLD_SIZE unset or 1) nothing is initialised and (0, 1, 0) is returned.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: start "
                           f"multi-process runs with `torchrun --nproc_per_node=N run.py ...`.")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return rank, world_size, local_rank


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: torch.nn.Module, device: torch.device,
             find_unused_parameters: bool = False) -> torch.nn.Module:
    """DDP around `module` when several processes train together; `module` itself otherwise."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(module, device_ids=[index], output_device=index,
                                       find_unused_parameters=find_unused_parameters)
    return DistributedDataParallel(module, find_unused_parameters=find_unused_parameters)


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Average of `tensor` over all processes (a copy; the input is untouched)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(flag: torch.Tensor) -> torch.Tensor:
    """True on every process when `flag` is true on any, so all take the same branch."""
    if not is_distributed():
        return flag
    out = flag.detach().to(torch.int32)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out.bool()


def gather_objects(obj: Any) -> list[Any]:
    """`obj` from every process, in rank order (small picklable values only)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
