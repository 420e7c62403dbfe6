"""Data-parallel training under ``torchrun``: ranks, the process group, sharding, reductions.

One process per device. Under ``torchrun`` (environment ``WORLD_SIZE`` > 1) :func:`init_from_env`
joins the process group (NCCL when CUDA is available, one GPU per local rank; gloo on CPU). In a
single process every helper here is a no-op, so that path is the plain one and its artifacts do
not depend on this module.

Sharding keeps the global batch: with ``batch_size`` B and W ranks each rank takes batches of
ceil(B / W) windows, and rank r takes every W-th window of the epoch order from r (padded by
repeating its head to a multiple of W), so the k-th batches of all ranks together are the k-th
batch of a single-process run whenever W divides B, and every rank runs the same number of steps.
"""
from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank, world size, its device and the backend (None: one process)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=_default_device)
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, metrics and dvclive."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def local_batch(self, batch_size: int) -> int:
        """Windows per rank and step: the global ``batch_size`` split over the ranks (rounded up)."""
        return math.ceil(batch_size / self.world)

    def shard(self, order: list[int]) -> list[int]:
        """This rank's share of an epoch order (every rank gets the same length)."""
        order = list(order)
        if not self.active or not order:
            return order
        pad = -len(order) % self.world
        padded = order + (order * math.ceil(pad / len(order)))[:pad]
        return padded[self.rank::self.world]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over ranks); itself in one process."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # the only buffer (positional table) is constant: no need to broadcast it every step
        return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                       broadcast_buffers=False)

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order (``[obj]`` in one process)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def total(self, x: float) -> float:
        return float(sum(self.gather(x)))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as ``torchrun`` sets them; (0, 1, 0) outside it."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun): {exc}") from exc


def under_torchrun() -> bool:
    return env_world()[1] > 1


def log_level() -> str:
    """INFO on rank 0, WARNING on the others (one copy of every progress line)."""
    return "INFO" if env_world()[0] == 0 else "WARNING"


def current() -> Dist:
    """The process group this process belongs to, or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    local = env_world()[2]
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, device=device,
                backend=dist.get_backend())


def init_from_env() -> Dist:
    """Join the process group ``torchrun`` describes (idempotent); a single process outside it."""
    rank, world, local = env_world()
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise RuntimeError("torch was built without torch.distributed; run training in one process")
    if torch.cuda.is_available():
        n_gpu = torch.cuda.device_count()
        if local >= n_gpu:
            raise RuntimeError(f"rank {rank}: LOCAL_RANK {local} but only {n_gpu} GPU(s) are visible; "
                               f"use --nproc_per_node (train.nproc) <= {n_gpu}")
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    log.info("rank %d of %d joined the process group (%s)", rank, world, backend)
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_nproc(nproc) -> int:
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"train.nproc must be an integer >= 1 (processes for torchrun), got {nproc!r}")
    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise ValueError(f"train.nproc={nproc} but only {torch.cuda.device_count()} GPU(s) are visible")
    return nproc


def torchrun_command(*, nproc: int, script: str | Path, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(script), *argv]


def relaunch(*, nproc, script: str | Path, argv: list[str]) -> int | None:
    """With ``nproc`` > 1 and not already under torchrun: run ``script argv`` under torchrun with
    ``nproc`` processes on this machine and return its exit code; None when this process should train."""
    nproc = check_nproc(nproc)
    rank, world, _ = env_world()
    if world > 1:
        if world != nproc and rank == 0:
            log.warning("running under torchrun with %d processes; train.nproc=%d is ignored", world, nproc)
        return None
    if nproc == 1:
        return None
    cmd = torchrun_command(nproc=nproc, script=script, argv=argv)
    log.info("train.nproc=%d: launching %s", nproc, " ".join(cmd))
    from gazelib.core.cpu import child_env

    # every rank runs the same CPU path as this process (gazelib.core.cpu; also set by its own import)
    return subprocess.run(cmd, check=False, env={**os.environ, **child_env()}).returncode


def ordered_mean(per_rank: list[list[float]]) -> float:
    """Mean of per-batch values gathered from every rank (``Dist.gather``), taken in global batch
    order: batch k of rank 0, 1, ..., then batch k + 1. One process: ``np.mean`` of its list."""
    longest = max((len(p) for p in per_rank), default=0)
    flat = [p[k] for k in range(longest) for p in per_rank if k < len(p)]
    return float(np.mean(flat)) if flat else float("nan")
