"""Where the per-video work of a stage runs: this process, a pool of worker processes, or Ray actors.

``params.yaml``::

    compute:
      backend: local      # local | ray
      workers: 1          # worker processes / actors; each loads the stage's models once
      ray:
        address: local    # local: start a Ray cluster on this machine; "auto" or host:port: join one

A stage describes its per-video work as a :class:`WorkerSpec`: a module-level ``factory`` that loads
the stage's models from plain arguments and returns ``compute(item) -> files written``. The driver
(:func:`gazelib.core.cache.run_per_video`) keeps everything about the cache: which videos are fresh, the
records it commits, the outputs of a failed video it removes, the reports. Workers only run
``compute`` and send back an :class:`Outcome` per video, which the driver consumes in manifest order,
so every backend commits the same records and writes the same reports.

- ``local`` with 1 worker: the spec is built in this process and the videos run one after another,
  exactly as the stages always did.
- ``local`` with N > 1: N spawned worker processes (``concurrent.futures``), each builds the spec once.
- ``ray``: N Ray actors (1 CPU each), each builds the spec once. ``ray.address: local`` starts a
  Ray cluster of N CPUs on this machine for the run and stops it afterwards (an already initialised
  Ray session is reused and left running); ``auto`` or ``host:port`` joins an existing cluster, whose
  nodes must see the repo and ``data/`` at the same path (shared storage) and have gazelib installed.

Outputs are byte-identical across backends: every worker, the in-process one included, sets the
same torch thread count (:attr:`WorkerSpec.threads`, per stage) and BLAS thread count (the
driver's), because float reductions depend on how they are split over threads; Ray would otherwise
start its workers with ``OMP_NUM_THREADS=1``; and every worker runs the same CPU instruction-set
path (:mod:`gazelib.core.cpu`: spawned processes inherit the driver's switches and pin again when they
import gazelib, Ray actors get them through the job's ``runtime_env``). Workers ``chdir`` to the driver's working directory,
so relative paths (in manifests, outputs and error messages) mean the same thing everywhere.
Log records a worker emits are shipped back with the video's outcome and re-emitted by the driver's
loggers, so they reach the driver's log (and its handlers) in manifest order.
"""
from __future__ import annotations

import logging
import os
import pickle
import resource
import shutil
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from concurrent.futures import Executor

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
# read by BLAS libraries when they load (OpenBLAS, including scipy's own copy; MKL; BLIS)
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@dataclass(frozen=True)
class Backend:
    """``params['compute']``: where per-video work runs."""

    kind: str
    workers: int
    address: str

    @classmethod
    def from_params(cls, compute: dict | None, stage: str | None = None) -> "Backend":
        """``params['compute']``; a key it lacks (or ``None``: no params) takes the schema default.
        ``compute.workers`` is one count for every stage or a mapping stage -> count (``default``
        for the stages it does not name; 1 without it); ``stage`` picks from the mapping."""
        from gazelib.core.params import default

        compute = {**default("compute"), **(compute or {})}
        kind = str(compute["backend"])
        if kind not in BACKENDS:
            raise ValueError(f"compute.backend must be one of {BACKENDS}, got {kind!r}")
        workers = compute["workers"]
        if isinstance(workers, dict):
            workers = workers.get(stage, workers.get("default", 1)) if stage else workers.get("default", 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"compute.workers{f' ({stage})' if stage else ''} must be an integer >= 1, "
                             f"got {workers!r}")
        address = str({**default("compute.ray"), **(compute["ray"] or {})}["address"] or "local")
        return cls(kind=kind, workers=workers, address=address)

    @property
    def in_process(self) -> bool:
        return self.kind == "local" and self.workers == 1

    def describe(self) -> str:
        if self.in_process:
            return "in process"
        if self.kind == "local":
            return f"{self.workers} worker processes"
        return f"{self.workers} Ray actors ({'local cluster' if self.address == 'local' else self.address})"


def _blas_threads() -> int | None:
    """The size of this process's BLAS thread pool (numpy's OpenBLAS), None if unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return None
    counts = [d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"]
    return max(counts) if counts else None


def _root_level() -> int:
    return min(logging.getLogger().getEffectiveLevel(), logging.getLogger("gazelib").getEffectiveLevel())


@dataclass(frozen=True)
class WorkerSpec:
    """The per-video work of a stage, picklable so that a worker process or actor can rebuild it.

    ``factory(**kwargs)`` loads the models and returns ``compute(item) -> list of files written``;
    it must be a module-level function (workers import it by name). ``threads`` is the torch
    intra-op thread count every worker sets before and after loading the models (a model's import
    may change it, e.g. silero-vad sets 1); ``blas_threads``, ``cwd`` and ``log_level`` are taken
    from the driver when the spec is made."""

    factory: Callable[..., Callable[[dict], list]]
    kwargs: dict = field(default_factory=dict)
    threads: int = 1
    blas_threads: int | None = field(default_factory=_blas_threads)
    cwd: str = field(default_factory=os.getcwd)
    log_level: int = field(default_factory=_root_level)

    def set_threads(self) -> None:
        import torch

        if self.blas_threads:
            from threadpoolctl import threadpool_limits

            # the BLAS libraries loaded so far, and (by their environment variables) those loaded later:
            # scipy ships its own OpenBLAS, loaded with scipy.optimize/linalg. Left at its default (a
            # thread per core) in two job workers on two cores, L-BFGS-B's tiny BLAS calls made each
            # worker's calibration jobs 4-5x slower than in one process (docs/speed.md)
            for var in BLAS_THREAD_VARS:
                os.environ[var] = str(self.blas_threads)
            threadpool_limits(limits=self.blas_threads, user_api="blas")
        torch.set_num_threads(self.threads)

    def build(self) -> Callable[[dict], list]:
        self.set_threads()
        compute = self.factory(**self.kwargs)
        self.set_threads()
        return compute


@dataclass
class Outcome:
    """What one video's ``compute`` gave: the files written, or the error (``"Type: message"``,
    as the stage report records it) with the exception when it could be carried back."""

    files: list | None = None
    error: str | None = None       # "Type: message", as the stage report records it
    message: str = ""              # str(exception), as the stage log says it
    exc: BaseException | None = None
    remote_traceback: str = ""
    fatal: bool = False            # the worker could not load its models: the stage fails
    records: list = field(default_factory=list)
    pid: int = 0
    peak_rss_mb: float = 0.0
    seconds: float = 0.0

    def exception(self) -> BaseException:
        """The exception to re-raise in the driver."""
        exc = self.exc if self.exc is not None else RuntimeError(self.error)
        if self.remote_traceback and hasattr(exc, "add_note"):
            exc.add_note(f"raised in worker pid {self.pid}:\n{self.remote_traceback}")
        return exc


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB): VmHWM where /proc has it (ru_maxrss of a spawned
    child would still count the parent it was forked from before exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ worker side
class _Collect(logging.Handler):
    """Keeps a worker's log records (made picklable) until they go back with an outcome."""

    def __init__(self):
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:   # the message's template travels too: the driver summarises repeated warnings by it
            record.template = str(getattr(record, "template", record.msg))
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            pickle.dumps(record)
        except Exception:  # noqa: BLE001 - an odd record must not lose the video
            record = logging.makeLogRecord({"name": record.name, "levelno": record.levelno,
                                            "levelname": record.levelname, "msg": str(record.msg),
                                            "template": str(getattr(record, "template", record.msg)),
                                            "created": record.created, "process": record.process})
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        out, self.records = self.records, []
        return out


def _portable(exc: BaseException) -> BaseException | None:
    """The exception if it survives pickling both ways, else None (the error text still goes back)."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001
        return None


class Worker:
    """One worker's state: the spec built once, then ``run(item)`` per video. Used in the spawned
    processes and inside Ray actors; never raises for a video (the outcome says what failed)."""

    def __init__(self, spec: WorkerSpec, *, chdir: bool):
        self.collect = _Collect()
        root = logging.getLogger()
        root.addHandler(self.collect)
        root.setLevel(spec.log_level)
        self.compute = None
        self.init_error: BaseException | None = None
        self.init_traceback = ""
        try:
            if chdir:
                if not os.path.isdir(spec.cwd):
                    raise FileNotFoundError(
                        f"the driver's working directory {spec.cwd} does not exist on this node: a Ray "
                        "cluster needs the repo and data/ on shared storage at the same path (docs/scaling.md)")
                os.chdir(spec.cwd)
            self.compute = spec.build()
        except Exception as exc:  # noqa: BLE001 - reported with the first video, then the stage fails
            self.init_error, self.init_traceback = exc, traceback.format_exc()

    def run(self, item: dict) -> Outcome:
        t0 = time.perf_counter()
        if self.init_error is not None:
            out = Outcome(error=error_text(self.init_error), message=str(self.init_error),
                          exc=_portable(self.init_error), remote_traceback=self.init_traceback, fatal=True)
        else:
            try:
                out = Outcome(files=[Path(f) for f in self.compute(item)])
            except Exception as exc:  # noqa: BLE001 - per video, as in process
                out = Outcome(error=error_text(exc), message=str(exc), exc=_portable(exc),
                              remote_traceback=traceback.format_exc())
        out.records = self.collect.take()
        out.pid, out.peak_rss_mb, out.seconds = os.getpid(), peak_rss_mb(), time.perf_counter() - t0
        return out


_POOL_WORKER: Worker | None = None


def _pool_init(spec: WorkerSpec) -> None:
    global _POOL_WORKER
    _POOL_WORKER = Worker(spec, chdir=True)


def _pool_run(item: dict) -> Outcome:
    assert _POOL_WORKER is not None
    return _POOL_WORKER.run(item)


# ------------------------------------------------------------------ driver side
def emit_records(records: list[logging.LogRecord]) -> None:
    """Re-emit a worker's log records through this process's loggers."""
    for rec in records:
        logger = logging.getLogger(rec.name)
        if logger.isEnabledFor(rec.levelno):
            logger.handle(rec)


def _in_process(compute: WorkerSpec | Callable, items: list[dict]) -> Iterator[Outcome]:
    fn = None
    for item in items:
        if fn is None:
            fn = compute.build() if isinstance(compute, WorkerSpec) else compute
        t0 = time.perf_counter()
        try:
            out = Outcome(files=list(fn(item)))
        except Exception as exc:  # noqa: BLE001 - the driver decides (skip or re-raise this very exception)
            out = Outcome(error=error_text(exc), message=str(exc), exc=exc)
        out.pid, out.peak_rss_mb, out.seconds = os.getpid(), peak_rss_mb(), time.perf_counter() - t0
        yield out


def _process_pool(spec: WorkerSpec, items: list[dict], workers: int) -> Iterator[Outcome]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_pool_init, initargs=(spec,))
    try:
        yield from ex.map(_pool_run, items)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _ray_init(backend: Backend) -> bool:
    """Connect to Ray (or start a local cluster); True when this call started it (and must stop it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports leave the machine
    import ray

    if ray.is_initialized():
        log.info("using the Ray session already initialised in this process")
        return False
    from gazelib.core.cpu import child_env

    # actors pin the same CPU path before they import numpy / torch (gazelib.core.cpu), on any node
    common = dict(include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING,
                  runtime_env={"env_vars": child_env()})
    if backend.address == "local":
        ray.init(address="local", num_cpus=backend.workers, object_store_memory=256 << 20, **common)
        log.info("started a local Ray cluster with %d CPUs", backend.workers)
    else:
        ray.init(address=backend.address, **common)
        log.info("joined the Ray cluster at %s", backend.address)
    return True


def _ray_actors(spec: WorkerSpec, items: list[dict], backend: Backend) -> Iterator[Outcome]:
    import ray
    from ray.util import ActorPool

    started = _ray_init(backend)
    actors = []
    try:
        remote = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)
        actors = [remote.remote(spec) for _ in range(min(backend.workers, len(items)))]
        pool = ActorPool(actors)
        yield from pool.map(lambda actor, item: actor.run.remote(item), items)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


class _RayWorker:
    """The Ray actor class (wrapped with ``ray.remote`` when used, so Ray is imported lazily)."""

    def __init__(self, spec: WorkerSpec):
        self.worker = Worker(spec, chdir=True)

    def run(self, item: dict) -> Outcome:
        return self.worker.run(item)


def run_items(compute: WorkerSpec | Callable[[dict], list], items: list[dict],
              backend: Backend | dict | None = None, stage: str | None = None) -> Iterator[Outcome]:
    """One :class:`Outcome` per item, in the order of ``items``. Closing the iterator (or leaving
    it early) stops the workers. A plain callable runs in this process only, and so does everything
    when no ``backend`` is given (not the params' default workers: a caller without a backend, such
    as align or aoi, passes a closure). ``stage`` picks the count from a per-stage ``compute.workers``."""
    if backend is None:
        backend = Backend(kind="local", workers=1, address="local")
    backend = backend if isinstance(backend, Backend) else Backend.from_params(backend, stage=stage)
    if not items:
        return iter(())
    if backend.in_process:
        return _in_process(compute, items)
    if not isinstance(compute, WorkerSpec):
        raise TypeError(f"compute backend {backend.describe()} needs a WorkerSpec (a picklable factory), "
                        "not a closure")
    workers = min(backend.workers, len(items))
    log.info("%s: %d videos on %s", getattr(compute.factory, "__name__", "stage"), len(items),
             Backend(backend.kind, workers, backend.address).describe())
    if backend.kind == "local":
        return _process_pool(compute, items, workers)
    return _ray_actors(compute, items, Backend(backend.kind, workers, backend.address))


def worker_summary(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Per worker process: videos run, seconds spent in ``compute``, peak resident memory (MB)."""
    by_pid: dict[int, dict] = {}
    for o in outcomes:
        w = by_pid.setdefault(o.pid, {"pid": o.pid, "videos": 0, "seconds": 0.0, "peak_rss_mb": 0.0})
        w["videos"] += 1
        w["seconds"] += o.seconds
        w["peak_rss_mb"] = max(w["peak_rss_mb"], o.peak_rss_mb)
    return [by_pid[p] for p in sorted(by_pid)]


# ------------------------------------------------------------------ ordered jobs (scoring stages)
_JOB_STATE: dict = {}


def _jobs_init(fn: Callable, context_file: str, threads: int, blas_threads: int | None, log_level: int,
               cwd: str) -> None:
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    root.setLevel(log_level)
    os.chdir(cwd)
    WorkerSpec(factory=fn, threads=threads, blas_threads=blas_threads).set_threads()
    with open(context_file, "rb") as f:
        context = pickle.load(f)
    _JOB_STATE.update(fn=fn, context=context, collect=collect)


def _jobs_run(job: dict) -> tuple[Any, list]:
    st = _JOB_STATE
    try:
        return st["fn"](st["context"], **job), st["collect"].take()
    except Exception as exc:
        # the driver re-raises it: its records go with its traceback, which pickling would lose
        if hasattr(exc, "add_note"):
            exc.add_note(f"raised in job worker pid {os.getpid()}:\n{traceback.format_exc()}")
        raise


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch's intra-op thread count set to ``n`` for the block, the process's setting given back after:
    float sums are split by thread, so a computation whose bytes matter pins its own count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class JobPool:
    """Runs ``fn(context, **job)`` for lists of jobs, in job order: in this process (``workers`` 1) or in
    ``workers`` spawned processes kept for the pool's life. ``fn`` must be a module-level function;
    ``context`` (what every job reads: labels, per-video tables) goes to each worker once, through a
    temporary file: passed as an initializer argument it is written into the new process's pipe, and a
    write larger than the pipe's buffer waits until that process has imported its modules (2-3 s), so
    the workers started one after another instead of together. Every worker
    sets ``threads`` torch threads (default: this process's count) and one BLAS thread: two workers with
    two OpenBLAS threads each on two cores ran evaluate slower than one process (56 s against 49 s),
    with one 38 s, and the scoring's BLAS calls gave the same bytes with 1 and 2 threads (docs/speed.md);
    its log records come back with its result
    and are re-emitted here in job order; a job's exception is raised here. Used by the scoring stages
    (evaluate, horizons), whose jobs are independent: any ``workers`` gives the same outputs
    (tests/test_speed.py)."""

    def __init__(self, *, fn: Callable, workers: int, context: Any = None, threads: int | None = None,
                 what: str = "jobs"):
        import torch

        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"{what}: workers must be a positive integer, got {workers!r}")
        self.fn, self.workers, self.context, self.what = fn, workers, context, what
        self.threads = int(threads or torch.get_num_threads())
        self._ex: Executor | None = None
        self._context_dir: Path | None = None

    def __enter__(self) -> "JobPool":
        return self

    def __exit__(self, *exc) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None
        if self._context_dir is not None:
            shutil.rmtree(self._context_dir, ignore_errors=True)
            self._context_dir = None

    def map(self, jobs: list[dict]) -> list:
        if self.workers <= 1 or len(jobs) <= 1 and self._ex is None:
            with torch_threads(self.threads):
                return [self.fn(self.context, **job) for job in jobs]
        if self._ex is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            log.info("%s: %d processes", self.what, self.workers)
            self._context_dir = Path(tempfile.mkdtemp(prefix="gazelib-jobs-"))
            context_file = self._context_dir / "context.pkl"
            with open(context_file, "wb") as f:
                pickle.dump(self.context, f, protocol=pickle.HIGHEST_PROTOCOL)
            self._ex = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                           initializer=_jobs_init,
                                           initargs=(self.fn, str(context_file), self.threads, 1,
                                                     _root_level(), os.getcwd()))
        out = []
        for result, records in self._ex.map(_jobs_run, jobs):
            emit_records(records)
            out.append(result)
        return out


def map_jobs(*, fn: Callable, jobs: list[dict], workers: int, context: Any = None, threads: int | None = None,
             what: str = "jobs") -> list:
    """``[fn(context, **job) for job in jobs]`` through a :class:`JobPool` used once."""
    with JobPool(fn=fn, workers=min(workers, max(1, len(jobs))) if isinstance(workers, int) else workers,
                 context=context, threads=threads, what=what) as pool:
        return pool.map(jobs)
