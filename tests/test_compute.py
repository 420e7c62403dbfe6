"""Per-video stages on a chosen backend (gazelib.core.compute): local in process, local worker processes,
Ray actors on a local cluster started here. Every backend writes the same bytes, reuses the same
cache and skips-and-reports a bad video the same way."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import pytest

from gazelib.core.cache import VideoCache, read_stage_report, run_per_video
from gazelib.core.compute import Backend, WorkerSpec
from gazelib.features.audio import run_extract_audio
from gazelib.features.text import run_extract_text
from gazelib.features.visual import run_extract_visual
from gazelib.gaze.ingest import run_ingest
from gazelib.core.io import read_table, write_table
from tests.compute_toy import rendezvous_worker, toy_worker

EXTRACT = {"extract_audio": run_extract_audio, "extract_text": run_extract_text,
           "extract_visual": run_extract_visual}
BACKENDS = {"local1": {"backend": "local", "workers": 1},
            "local2": {"backend": "local", "workers": 2},
            "ray2": {"backend": "ray", "workers": 2, "ray": {"address": "local"}}}


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file the extract stages wrote (features, records, reports, ASR metrics)."""
    files = [f for f in sorted((root / "data/features").rglob("*")) if f.is_file()] + [root / "reports/metrics/asr.json"]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPUs for this module; the stages join it (and leave it running)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
             logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpus, ray_cluster):
    """The three extract stages of the tiny demo on each backend, each into its own root."""
    src, params = tiny_corpus
    out = {}
    for name, compute in BACKENDS.items():
        root = tmp_path_factory.mktemp(name)
        shutil.copytree(src, root / "data/raw/demo")
        p = {**params, "compute": compute}
        run_ingest(params=p, root=root)
        results = {s: run(params=p, root=root) for s, run in EXTRACT.items()}
        out[name] = {"root": root, "params": p, "results": results, "digest": _digest(root)}
    return out


@pytest.mark.slow  # starts a Ray cluster
def test_backends_write_identical_bytes(runs):
    ref = runs["local1"]
    assert any(k.endswith("_report.json") for k in ref["digest"]) and any(k.endswith(".npz") for k in ref["digest"])
    for name in ("local2", "ray2"):
        other = runs[name]
        for stage, r in other["results"].items():
            assert sorted(r["computed"]) == ["demo000", "demo001", "demo002"], (name, stage, r)
            pids = [w["pid"] for w in r["workers"]]
            # off this process, on at most 2 workers; how many got a video depends on scheduling (a
            # fast worker may take all 3): test_two_workers_run_at_once shows both run
            assert 1 <= len(pids) <= 2 and os.getpid() not in pids, (name, stage, r["workers"])
            assert sum(w["videos"] for w in r["workers"]) == 3 and all(w["peak_rss_mb"] > 0 for w in r["workers"])
        differ = sorted(k for k in ref["digest"].keys() | other["digest"].keys()
                        if ref["digest"].get(k) != other["digest"].get(k))
        assert differ == [], f"{name} differs from local/1 worker: {differ}"
    assert [w["pid"] for w in ref["results"]["extract_audio"]["workers"]] == [os.getpid()]  # in process


def _break_video(root: Path, vid: str) -> None:
    """Truncate a video (audio decoding fails) and give it a new media hash, as a changed input."""
    video = root / "data/raw/demo/videos" / f"{vid}.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    path = root / "data/interim/manifest.parquet"
    m, meta = read_table(path)
    m.loc[m["video_id"] == vid, "media_hash"] = "changed"
    write_table(path, m, meta=meta)


@pytest.mark.slow  # starts a Ray cluster
def test_ray_reuses_the_cache_and_skips_and_reports_a_bad_video(runs):
    ray_root, params = runs["ray2"]["root"], runs["ray2"]["params"]
    mtimes = {p: p.stat().st_mtime_ns for p in (ray_root / "data/features").rglob("demo*")}
    again = {s: run(params=params, root=ray_root) for s, run in EXTRACT.items()}
    for stage, r in again.items():
        assert r["computed"] == [] and sorted(r["cached"]) == ["demo000", "demo001", "demo002"], (stage, r)
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())

    # demo001 changes and breaks: under Ray and in process alike it fails, loses its old outputs, and
    # the others are reused, not recomputed
    local_root = runs["local1"]["root"]
    for root, p in ((ray_root, params), (local_root, runs["local1"]["params"])):
        _break_video(root, "demo001")
        r = run_extract_audio(params=p, root=root)
        assert list(r["failed"]) == ["demo001"] and r["computed"] == [], r
        assert sorted(r["cached"]) == ["demo000", "demo002"]
        audio = root / "data/features/audio"
        assert not (audio / "demo001.parquet").exists() and not (audio / "_cache/demo001.json").exists()
        assert (audio / "demo000.parquet").exists()
        report = read_stage_report(audio)
        assert report["videos"] == ["demo000", "demo002"] and "demo001" in report["failed"]
    for f in ("data/features/audio/_report.json", "data/features/audio.last_run.json"):  # the error names the path
        assert ((ray_root / f).read_text().replace(str(ray_root), "ROOT")
                == (local_root / f).read_text().replace(str(local_root), "ROOT")), f


# ------------------------------------------------------------------ the machinery, on a toy stage
ITEMS = [{"video_id": f"v{i}", "media_hash": str(i)} for i in range(4)]
POOL = {"backend": "local", "workers": 2}


def test_worker_processes_send_logs_back_and_raise_like_in_process(tmp_path, caplog):
    out = tmp_path / "o"
    with caplog.at_level(logging.INFO):
        run = run_per_video(cache=VideoCache(out, "toy"), items=ITEMS, params={}, progress=False,
                            compute=WorkerSpec(toy_worker, {"out": str(out), "fail": "v2"}), on_error="skip",
                            backend=POOL)
    assert run.computed == ["v0", "v1", "v3"] and run.failed == {"v2": "ValueError: v2: cannot decode"}
    toy = [r for r in caplog.records if r.name == "gazelib.toy"]
    # the workers' records reach this process's handlers, per video in manifest order
    assert [r.getMessage() for r in toy if r.levelno == logging.WARNING] == [f"toy computed v{i}" for i in (0, 1, 3)]
    assert {r.process for r in toy} - {os.getpid()} and "toy model loaded" in {r.getMessage() for r in toy}

    # on_error=raise: the worker's exception, re-raised here, after the earlier videos were committed
    out2 = tmp_path / "o2"
    with pytest.raises(ValueError, match="v1: cannot decode"):
        run_per_video(cache=VideoCache(out2, "toy"), items=ITEMS, params={}, progress=False,
                      compute=WorkerSpec(toy_worker, {"out": str(out2), "fail": "v1"}), backend=POOL)
    assert (out2 / "_cache/v0.json").exists() and not (out2 / "_cache/v1.json").exists()

    # a worker that cannot load its models fails the stage, even when videos are skipped
    with pytest.raises(RuntimeError, match="weights missing"):
        run_per_video(cache=VideoCache(tmp_path / "o3", "toy"), items=ITEMS, params={}, progress=False,
                      compute=WorkerSpec(toy_worker, {"out": str(tmp_path / "o3"), "broken_init": True}),
                      on_error="skip", backend=POOL)


@pytest.mark.slow  # starts a Ray cluster
@pytest.mark.parametrize("backend", [POOL, {"backend": "ray", "workers": 2, "ray": {"address": "local"}}],
                         ids=["local", "ray"])
def test_two_workers_run_at_once(tmp_path, backend, ray_cluster):
    out = tmp_path / "o"
    run = run_per_video(cache=VideoCache(out, "toy"), items=ITEMS[:2], params={}, progress=False,
                        compute=WorkerSpec(rendezvous_worker, {"out": str(out / "marks")}), backend=backend)
    assert run.computed == ["v0", "v1"]
    assert len({p.suffix for p in (out / "marks").iterdir()} - {f".{os.getpid()}"}) == 2


def test_backend_params():
    from gazelib.core.compute import run_items
    from gazelib.core.params import default

    # no params: the schema's compute section; no backend at all: this process (a closure is fine)
    assert default("compute.workers") == {"default": 1, "extract_text": 2}
    assert Backend.from_params(None) == Backend("local", 1, "local")
    assert Backend.from_params(None, stage="extract_text") == Backend("local", 2, "local")
    assert Backend.from_params({"workers": 1}).in_process
    # one count for every stage, or per stage with a default (1 when the mapping has none)
    assert Backend.from_params({"workers": 3}, stage="extract_text").workers == 3
    per_stage = {"workers": {"extract_visual": 4, "default": 2}}
    assert [Backend.from_params(per_stage, stage=s).workers for s in ("extract_visual", "extract_audio", None)] == [4, 2, 2]
    assert Backend.from_params({"workers": {"extract_text": 3}}, stage="extract_audio").in_process
    outcomes = list(run_items(lambda item: [item["video_id"]], ITEMS, None))
    assert [o.files for o in outcomes] == [[i["video_id"]] for i in ITEMS] and {o.pid for o in outcomes} == {os.getpid()}
    assert Backend.from_params({"backend": "ray", "workers": 3, "ray": {"address": "auto"}}) == Backend("ray", 3, "auto")
    for bad in ({"backend": "dask"}, {"workers": 0}, {"workers": "2"}, {"workers": {"extract_text": 0}}):
        with pytest.raises(ValueError):
            Backend.from_params(bad, stage="extract_text")
    with pytest.raises(TypeError, match="WorkerSpec"):  # a closure cannot travel to a worker
        run_per_video(cache=VideoCache(Path("unused"), "toy"), items=ITEMS, params={}, progress=False,
                      compute=lambda item: [], backend=POOL)


def test_job_pool_keeps_order_logs_and_errors(caplog):
    """JobPool (evaluate's and horizons' scoring jobs): results in job order whatever the worker count,
    the workers' log records re-emitted here, a job's exception raised here with its message."""
    import logging

    from gazelib.core.compute import JobPool, map_jobs
    from tests.compute_toy import square_job

    jobs = [{"x": i} for i in range(7)]
    serial = map_jobs(fn=square_job, jobs=jobs, workers=1, context={"k": 3})
    assert serial == [3 * i * i for i in range(7)]
    with caplog.at_level(logging.WARNING, logger="gazelib.toy"):
        caplog.clear()
        with JobPool(fn=square_job, workers=2, context={"k": 3}) as pool:
            assert pool.map(jobs) == serial
            assert pool.map([{"x": 9}, {"x": 2}]) == [243, 12]   # the same workers, a second batch
            with pytest.raises(ValueError, match="job -1: negative input"):
                pool.map([{"x": 1}, {"x": -1}])
    msgs = [r.getMessage() for r in caplog.records if r.name == "gazelib.toy"]
    assert [m.split(" in pid")[0] for m in msgs[:7]] == [f"job {i}" for i in range(7)]
    assert len({m.split("pid ")[1] for m in msgs}) <= 2
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        JobPool(fn=square_job, workers=0)


def test_job_pool_sends_a_large_context_through_a_file_it_removes():
    """A context of megabytes (evaluate's labels and tables) reaches every worker intact through a temporary
    file. Passed in the worker's start arguments it filled the new process's pipe, and starting the second
    worker waited until the first had imported its modules; the start arguments now stay far below a pipe's
    64 KiB buffer. The file goes with the pool."""
    import pickle

    import numpy as np

    from gazelib.core.compute import JobPool
    from tests.compute_toy import context_digest_job

    ctx = {"a": np.random.default_rng(0).random(1_000_000)}      # 8 MB
    jobs = [{"salt": i} for i in range(4)]
    serial = [context_digest_job(ctx, **j) for j in jobs]
    with JobPool(fn=context_digest_job, workers=2, context=ctx) as pool:
        assert pool.map(jobs) == serial
        assert len(pickle.dumps(pool._ex._initargs)) < 4096      # type: ignore[union-attr]
        folder = pool._context_dir
        assert folder is not None and folder.is_dir()
    assert not folder.exists()


def test_job_workers_limit_blas_loaded_after_them():
    """Every BLAS library in a job worker runs one thread, also one loaded after the worker started (scipy's own
    OpenBLAS, with its optimiser): left at a thread per core, two workers' L-BFGS-B calls made evaluate's
    calibration jobs 4-5x slower than in one process (docs/speed.md)."""
    from gazelib.core.compute import JobPool
    from tests.compute_toy import blas_pools_job

    with JobPool(fn=blas_pools_job, workers=2, context={}) as pool:
        pools = pool.map([{}, {}])
    for libs in pools:
        assert any("scipy_openblas" in name for name, _ in libs), libs   # the late library is there
        assert all(n == 1 for _, n in libs), libs
