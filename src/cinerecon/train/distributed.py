"""Plain torch DistributedDataParallel via ``torchrun``.

``torchrun --nproc_per_node N -m cinerecon.cli train ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; :func:`init_distributed` reads them and joins the process group (NCCL on
CUDA, gloo on CPU). Without them everything runs in one process. Only rank 0 logs and
writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        initialised: whether this module started a process group (and must end it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and saves."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> CUDA (this rank's GPU) when available, else CPU; ``cuda`` -> this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        if name == "cuda":
            name = f"cuda:{info.local_rank}"
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device {name!r}: {e}") from None


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else single-process."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if world <= 1:
        return DistInfo()
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, True)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed, else ``model``."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    # A model with a second weight set for masks without calibration (uncalibrated_weights)
    # leaves one set without gradients in any step whose items all have one kind of mask.
    two_sets = getattr(model, "uncalibrated_cascades", None) is not None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=two_sets)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (identity in a single process)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if info.initialised and dist.is_initialized():
        dist.destroy_process_group()
