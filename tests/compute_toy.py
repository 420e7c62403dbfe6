"""A toy per-video stage for tests/test_compute.py, in its own light module: worker processes
import the factory by name, and this keeps them from importing the feature extractors."""
from __future__ import annotations

import logging
from pathlib import Path


def toy_worker(*, out: str, fail: str = "", broken_init: bool = False):
    """A module-level factory (worker processes import it by name): one text file per video."""
    log = logging.getLogger("gazelib.toy")
    if broken_init:
        raise RuntimeError("toy model weights missing")
    log.info("toy model loaded")

    def compute(item):
        if item["video_id"] == fail:
            raise ValueError(f"{item['video_id']}: cannot decode")
        log.warning("toy computed %s", item["video_id"])
        p = Path(out) / f"{item['video_id']}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(item["video_id"])
        return [p]
    return compute


def rendezvous_worker(*, out: str, timeout_s: float = 60.0):
    """Each video leaves a mark with its worker's pid, then waits until marks from two different
    processes exist: with one worker (or items run one after another) the first video times out, so
    a run that finishes proves two workers ran at the same time, whatever the scheduling."""
    import os
    import time

    def compute(item):
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{item['video_id']}.{os.getpid()}"
        p.write_text(item["video_id"])
        deadline = time.monotonic() + timeout_s
        while len({q.suffix for q in d.glob("*.*")}) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{item['video_id']}: no second worker ran beside pid {os.getpid()}")
            time.sleep(0.02)
        return [p]
    return compute


def square_job(ctx: dict, *, x: int) -> int:
    """A scoring-style job for :class:`gazelib.core.compute.JobPool`: reads the shared context, logs, may raise."""
    import logging
    import os

    logging.getLogger("gazelib.toy").warning("job %d in pid %d", x, os.getpid())
    if x < 0:
        raise ValueError(f"job {x}: negative input")
    return ctx["k"] * x * x


def blas_pools_job(ctx: dict) -> list[tuple[str, int]]:
    """For :class:`gazelib.core.compute.JobPool`: the BLAS thread pools of a job worker after it loaded scipy's
    optimiser, which brings scipy's own OpenBLAS (loaded after the worker set its limits)."""
    import scipy.optimize  # noqa: F401
    from threadpoolctl import threadpool_info

    return sorted((Path(d["filepath"]).name, int(d["num_threads"])) for d in threadpool_info()
                  if d.get("user_api") == "blas")


def context_digest_job(ctx: dict, *, salt: int) -> str:
    """For :class:`gazelib.core.compute.JobPool`: the sha256 of the shared context's array (and a salt), so a
    context that arrived in a worker changed or cut short shows."""
    import hashlib

    return hashlib.sha256(ctx["a"].tobytes() + str(salt).encode()).hexdigest()
