"""Per-video cache: skip a video whose inputs and stage params did not change.

DVC reruns a whole stage when any dependency changes; this cache keeps the
per-video work. A record ``<out_dir>/_cache/<video_id>.json`` holds the key
(hash of stage name, input hash and params) and the files produced. The record
is written last, so a video interrupted mid-way is recomputed on the next run.

A video that fails loses its previous outputs and record (stale features are never reused
downstream), and every run writes ``<out_dir>/_report.json`` (tracked: the videos present and
the failures with their reasons, which downstream stages read) and ``<out_dir>.last_run.json``
(untracked: what this run computed, reused, failed and removed).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from gazelib.core.closure import hash_file  # noqa: F401 - re-exported: the stages hash their inputs with it
from gazelib.core.io import write_json

if TYPE_CHECKING:
    from gazelib.core.closure import StageCode
    from gazelib.core.compute import WorkerSpec

log = logging.getLogger(__name__)


def hash_obj(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(*, stage: str, input_hash: str, params: dict, code: "StageCode | None" = None) -> str:
    """Key of one video's outputs: its inputs, the stage's params and what the stage runs
    (:func:`gazelib.core.closure.stage_code`: code closure, package versions, weight files)."""
    return hash_obj({"stage": stage, "input": input_hash, "params": params,
                     **({"code": code.digest} if code is not None else {})})


@dataclass
class CacheRun:
    """What a per-video loop did: ids computed, reused from cache, failed, removed."""

    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    workers: list[dict] = field(default_factory=list)   # per worker process: videos, seconds, peak RSS

    def as_dict(self) -> dict:
        return {"computed": self.computed, "cached": self.cached, "failed": self.failed,
                "removed": self.removed, "workers": self.workers}


class VideoCache:
    def __init__(self, out_dir: str | Path, stage: str):
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.record_dir = self.out_dir / "_cache"

    def _record_path(self, video_id: str) -> Path:
        return self.record_dir / f"{video_id}.json"

    def is_fresh(self, video_id: str, key: str) -> bool:
        path = self._record_path(video_id)
        if not path.exists():
            return False
        record = json.loads(path.read_text())
        files_ok = all((self.out_dir / f).exists() for f in record.get("files", []))
        return record.get("key") == key and files_ok

    def record(self, video_id: str) -> dict | None:
        path = self._record_path(video_id)
        return json.loads(path.read_text()) if path.exists() else None

    def commit(self, video_id: str, key: str, files: Iterable[str | Path], code: dict | None = None) -> None:
        """Record a video's outputs under ``key``; ``code`` (:meth:`StageCode.as_dict`) says what
        computed them, so a later run can tell why they went stale."""
        rel = sorted(str(Path(f).relative_to(self.out_dir)) if Path(f).is_absolute() or
                     str(f).startswith(str(self.out_dir)) else str(f) for f in files)
        write_json(self._record_path(video_id), {"key": key, "stage": self.stage, "files": rel,
                                                 **({"code": code} if code is not None else {})})

    def invalidate(self, video_id: str) -> list[str]:
        """Delete a video's record and every output named after it (``<video_id>.<ext>`` anywhere
        in the stage folder); returns the files removed."""
        gone = []
        rec = self._record_path(video_id)
        listed = json.loads(rec.read_text()).get("files", []) if rec.exists() else []
        for f in [self.out_dir / f for f in listed] + [
                f for f in self.out_dir.rglob("*") if f.is_file() and f.parent != self.record_dir
                and f.name.startswith(f"{video_id}.") and f.name[len(video_id) + 1:].count(".") == 0]:
            if f.exists():
                f.unlink()
                gone.append(str(f.relative_to(self.out_dir)))
        rec.unlink(missing_ok=True)
        return sorted(set(gone))

    def prune(self, keep_ids: set[str]) -> list[str]:
        """Delete outputs of videos no longer in the manifest; returns their ids."""
        removed = []
        if not self.record_dir.exists():
            return removed
        for rec in sorted(self.record_dir.glob("*.json")):
            vid = rec.stem
            if vid in keep_ids:
                continue
            for f in json.loads(rec.read_text()).get("files", []):
                (self.out_dir / f).unlink(missing_ok=True)
            rec.unlink()
            removed.append(vid)
        return removed


def run_per_video(*, cache: VideoCache, items: list[dict], params: dict,
                  compute: "Callable[[dict], list[Path]] | WorkerSpec", on_error: str = "raise",
                  progress: bool = True, backend: dict | None = None, code: "StageCode | None" = None,
                  record: dict | None = None) -> CacheRun:
    """Run ``compute(item)`` for each manifest row whose cache key changed.

    ``item`` needs ``video_id`` and ``media_hash``; ``compute`` returns the files it wrote.
    With ``on_error='skip'`` a failing video is logged and listed, the rest go on.

    ``compute`` is a callable (run here) or a :class:`gazelib.core.compute.WorkerSpec`, which
    ``backend`` (``params['compute']``: local | ray, workers) may run in worker processes or Ray
    actors. Either way this process decides what is fresh, commits records, removes the outputs of
    failed videos and writes the reports, taking outcomes in manifest order: the same files result.

    ``code`` (:func:`gazelib.core.closure.stage_code`) puts what the stage runs into every key: an
    edited module in its closure, another package version or weight file recomputes every video.

    ``record``: the params the outputs were made with, written into the folder's report (``params``)
    for the stages downstream (the model bundle's feature params, gazelib.core.params.feature_record).
    """
    from tqdm import tqdm

    from gazelib.core.compute import emit_records, run_items, worker_summary

    run = CacheRun()
    run.removed = cache.prune({it["video_id"] for it in items})
    pending, why = [], {}
    for item in items:
        key = cache_key(stage=cache.stage, input_hash=item["media_hash"], params=params, code=code)
        if cache.is_fresh(item["video_id"], key):
            run.cached.append(item["video_id"])
            continue
        pending.append((item, key))
        old = cache.record(item["video_id"])
        if old is not None and code is not None and old.get("key") != key:
            for reason in code.changes(old.get("code")) or ["inputs or params changed"]:
                why.setdefault(reason, []).append(item["video_id"])
    for reason, vids in sorted(why.items()):
        log.info("%s: %d video(s) stale: %s (%s)", cache.stage, len(vids), reason, ", ".join(vids[:5]) +
                 (", ..." if len(vids) > 5 else ""))
    outcomes = run_items(compute, [item for item, _ in pending], backend, stage=cache.stage)
    done = []
    bar = tqdm(total=len(items), initial=len(run.cached), desc=cache.stage, disable=not progress, leave=False)
    try:
        for (item, key), out in zip(pending, outcomes):
            vid = item["video_id"]
            emit_records(out.records)
            done.append(out)
            bar.update()
            if out.fatal:  # a worker could not load the stage's models: nothing to do with this video
                raise out.exception()
            if out.error is not None:
                stale = cache.invalidate(vid)
                if stale:
                    log.warning("%s: removed the outputs of an earlier run (%s): this run failed", vid, ", ".join(stale))
                if on_error != "skip":
                    raise out.exception()
                log.error("%s: %s failed: %s", vid, cache.stage, out.message)
                run.failed[vid] = out.error
                continue
            cache.commit(vid, key, out.files, code=code.as_dict() if code is not None else None)
            run.computed.append(vid)
    finally:
        bar.close()
        close = getattr(outcomes, "close", None)
        if close:
            close()
        run.workers = worker_summary(done)
    log.info("%s: computed %d, cached %d, failed %d, removed %d", cache.stage,
             len(run.computed), len(run.cached), len(run.failed), len(run.removed))
    write_stage_report(cache.out_dir, stage=cache.stage, run=run, extra=None if record is None else {"params": record})
    return run


REPORT = "_report.json"


def write_stage_report(out_dir: Path, *, stage: str, run: CacheRun, extra: dict | None = None) -> None:
    """Two records of a per-video stage run.

    ``<out_dir>/_report.json`` (tracked by DVC with the outputs) says what the folder holds and
    why not more: the videos with outputs and the videos that failed, with the error. It does not
    depend on the cache's history, so an incremental run and a fresh clone write the same bytes.
    ``<out_dir>.last_run.json`` (beside the folder, untracked) says what this run did: computed,
    reused from the cache, failed, removed."""
    out_dir = Path(out_dir)
    write_json(out_dir / REPORT, {"stage": stage, "videos": sorted(run.computed + run.cached),
                                  "failed": dict(sorted(run.failed.items())), **(extra or {})})
    write_json(out_dir.with_name(out_dir.name + ".last_run.json"),
               {"stage": stage, "computed": sorted(run.computed), "reused": sorted(run.cached),
                "failed": dict(sorted(run.failed.items())), "removed": sorted(run.removed)})


def read_stage_report(out_dir: Path, *, last_run: bool = False) -> dict:
    """The report a per-video stage wrote (``last_run``: what its last run did); empty when the
    stage has not run."""
    out_dir = Path(out_dir)
    path = out_dir.with_name(out_dir.name + ".last_run.json") if last_run else out_dir / REPORT
    if not path.exists():
        return {"videos": [], "computed": [], "reused": [], "failed": {}, "removed": []}
    return json.loads(path.read_text())
