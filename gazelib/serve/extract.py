"""``gazelib predict``'s features: the pipeline's featurize steps (audio, text from speech
recognition, visual, align) over the videos given, each step with its own per-video cache under
``<out>/_features/``; failures are recorded on the jobs."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.core.cache import VideoCache, hash_file, hash_obj, run_per_video
from gazelib.core.closure import stage_code
from gazelib.serve.inputs import VideoJob, safe_id
from gazelib.serve.runtime import Lazy
from gazelib.features.text import LazyTextEmbedder

log = logging.getLogger(__name__)


class KeepCache(VideoCache):
    """A per-video cache that keeps the outputs of videos not in this run (earlier predictions)."""

    def prune(self, keep_ids: set[str]) -> list[str]:
        return []


def job_items(jobs: list[VideoJob]) -> list[dict]:
    out = []
    for j in jobs:
        if j.error:
            continue
        p = j.probe
        out.append({"video_id": j.video_id, "video_path": str(j.path), "duration_s": p.duration_s,
                    "has_audio": p.has_audio, "media_hash": j.media_hash})
    return out


def timed(job_by_id: dict, part: str, fn, timings: dict | None = None):
    """``fn`` with its wall time recorded on the job, less the model loading it triggered (counted
    once, under ``load_models``)."""
    def compute(item: dict) -> list[Path]:
        t0 = time.perf_counter()
        loads0 = (timings or {}).get("load_models", 0.0)
        try:
            return fn(item)
        finally:
            loaded = (timings or {}).get("load_models", 0.0) - loads0
            job_by_id[item["video_id"]].timings[part] = time.perf_counter() - t0 - loaded
    return compute


def run_stage(*, part: str, jobs: list[VideoJob], work: Path, params: dict, compute, progress: bool,
               timings: dict) -> None:
    job_by_id = {j.video_id: j for j in jobs}
    items = job_items(jobs)
    if not items:
        return
    run = run_per_video(cache=KeepCache(work / part, f"predict_{part}"), items=items,
                        params=params, code=stage_code(stage=f"predict_{part}", cfg=params),
                        compute=timed(job_by_id, part, compute, timings), on_error="skip", progress=progress)
    for vid in run.cached:
        job_by_id[vid].reused.append(part)
        job_by_id[vid].timings.setdefault(part, 0.0)
    for vid, why in run.failed.items():
        job_by_id[vid].fail(part, why)


def extract_features(*, jobs: list[VideoJob], params: dict, work: Path, timings: dict, progress: bool = True,
                     warn_sources: bool = True, asr_threads: int | None = None) -> None:
    """Audio, text (ASR) and visual features of every job that has not failed, by the featurize steps
    the pipeline's extract stages run (gazelib.pipeline.featurize), each with its own cache; failures
    are recorded on the jobs. ``asr_threads``: the recogniser's threads when given, instead of the
    params' (speed only: neither the words nor the cache keys change)."""
    from gazelib.features.audio import audio_video, make_audio_models
    from gazelib.features.text import extract_text_video, text_config
    from gazelib.features.transcript import make_asr
    from gazelib.features.faces import FaceDetector
    from gazelib.features.visual import make_image_encoder, visual_video

    from gazelib.features import lookahead_of

    # a bundle from before features.lookahead was trained on look-ahead features: extract those
    lookahead = lookahead_of(params, default="offline")
    acfg, vcfg = params["audio"], params["visual"]
    tcfg = text_config({**params, "features": {"lookahead": lookahead}})
    audio_models = Lazy("audio", acfg, lambda: make_audio_models(acfg), timings)

    def audio(item: dict) -> list[Path]:
        return audio_video(item=item, cfg=acfg, models=audio_models(), out_dir=work / "audio", lookahead=lookahead)

    run_stage(part="audio", jobs=jobs, work=work, params={**acfg, "lookahead": lookahead}, compute=audio,
               progress=progress,
               timings=timings)

    if warn_sources and "asr" not in tcfg["sources"]:
        log.warning("the model's text came from %s, never from speech recognition; here text comes from ASR "
                    "(videos have no subtitles), which it was not trained on", tcfg.get("sources"))
    # lazy: a video without words (no audio) gets zero embeddings, for which the network never loads
    embedder = Lazy("text_embedder", [tcfg["embedder"], tcfg["embed_threads"], tcfg["embed_batch"]],
                     lambda: LazyTextEmbedder(model=tcfg["embedder"], threads=tcfg["embed_threads"],
                                              batch_size=tcfg["embed_batch"]), timings)
    asr_cfg = {**tcfg, "asr_threads": asr_threads or tcfg["asr_threads"]}
    asr = Lazy("asr", {k: v for k, v in asr_cfg.items() if k.startswith(("asr_", "whisperx_"))
                        or k in ("language", "utterance_gap_s")}, lambda: make_asr(asr_cfg), timings)

    def text(item: dict) -> list[Path]:
        # videos given to predict have no subtitles: text comes from ASR whatever the model's order
        emb = embedder()
        loaded = emb.load_s
        try:
            return extract_text_video(item=item, cfg=tcfg, out_dir=work / "text", embedder=emb, asr=asr,
                                      sources=["asr"])["paths"]
        finally:  # the network loads on the first words: model loading, not text
            timings["load_models"] = timings.get("load_models", 0.0) + emb.load_s - loaded

    run_stage(part="text", jobs=jobs, work=work, params=tcfg, compute=text, progress=progress,
               timings=timings)

    visual_models = Lazy("visual", vcfg, lambda: (FaceDetector.from_params(vcfg), make_image_encoder(vcfg)),
                          timings)

    def visual(item: dict) -> list[Path]:
        detector, encoder = visual_models()
        return visual_video(item=item, cfg=vcfg, detector=detector, encoder=encoder, out_dir=work / "visual",
                            lookahead=lookahead)

    run_stage(part="visual", jobs=jobs, work=work, params={**vcfg, "lookahead": lookahead}, compute=visual,
               progress=progress,
               timings=timings)


def read_viewer_gaze(*, job: VideoJob, coords: str, time_unit: str, ingest_params: dict) -> pd.DataFrame:
    """The recording of ``--gaze`` for one video, by the corpus reader (normalised, seconds)."""
    from gazelib.gaze.ingest import read_gaze_csv

    p = job.probe
    # the bundle's ingest params (keys younger than the bundle at their schema defaults: load_bundle)
    return read_gaze_csv(path=job.gaze_path, video_id=job.video_id, viewer_id=safe_id(job.gaze_path.stem),
                         coords=coords, time_unit=time_unit, width=p.width, height=p.height, duration_s=p.duration_s,
                         cfg=ingest_params)


def align_jobs(*, jobs: list[VideoJob], params: dict, work: Path, gaze_opts: dict, ingest_params: dict,
               progress: bool = True) -> None:
    """Every job's features (and recorded gaze, if any) on the model's timeline, as ``align`` makes them,
    into ``<work>/aligned/<video_id>.npz``. A video without a recording gets one all-missing viewer
    (the model windows run per viewer; a model without track never reads it)."""
    from gazelib.data.align import align_video, write_aligned
    from gazelib.features.grid import grid_shape

    from gazelib.features import lookahead_of

    cfg = params["align"]
    lookahead = lookahead_of(params, default="offline")   # as the features were extracted
    gshape = grid_shape(params["visual"])
    job_by_id = {j.video_id: j for j in jobs}
    for j in jobs:
        if j.error:
            continue
        files = [work / m / f"{j.video_id}{ext}" for m in ("audio", "text", "visual") for ext in (".parquet", ".npz")]
        gaze_hash = [hash_file(j.gaze_path), gaze_opts] if j.gaze_path else None
        j.align_hash = hash_obj([gaze_hash] + [hash_file(p) if p.exists() else None for p in files])

    def compute(item: dict) -> list[Path]:
        job = job_by_id[item["video_id"]]
        gaze = (read_viewer_gaze(job=job, ingest_params=ingest_params, **gaze_opts) if job.gaze_path else
                pd.DataFrame({"viewer_id": pd.Series(dtype=str), "t": [], "x": [], "y": [],
                              "valid": pd.Series(dtype=bool), "inout": pd.Series(dtype=np.int8)}))
        arrays = align_video(video_id=job.video_id, duration_s=job.probe.duration_s, feat_dir=work, gaze=gaze,
                             cfg=cfg, grid_shape=gshape, lookahead=lookahead)
        if arrays["gaze"].shape[0] == 0:
            n = arrays["t"].size
            arrays.update(gaze=np.zeros((1, n, 2), np.float32), inout=np.zeros((1, n), np.int8),
                          valid=np.zeros((1, n), bool), gaze_t=np.full((1, n), np.nan), viewers=np.array(["none"]))
        path = work / "aligned" / f"{job.video_id}.npz"
        write_aligned(path, arrays)  # feature rows uncompressed: read window by window, as in training
        return [path]

    items = [{**it, "media_hash": job_by_id[it["video_id"]].align_hash} for it in job_items(jobs)]
    if not items:
        return
    run = run_per_video(cache=KeepCache(work / "aligned", "predict_align"), items=items,
                        params={**cfg, "grid": gshape, "lookahead": lookahead},
                        code=stage_code(stage="predict_align", cfg=cfg),
                        compute=timed(job_by_id, "align", compute), on_error="skip", progress=progress)
    for vid in run.cached:
        job_by_id[vid].reused.append("align")
        job_by_id[vid].timings.setdefault("align", 0.0)
    for vid, why in run.failed.items():
        job_by_id[vid].fail("align", why)
