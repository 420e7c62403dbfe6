"""``gazelib predict``: a trained model on any video (no gaze, no subtitles needed).

For each video: the same extractors as the pipeline with the feature params stored in the model
folder (audio; text from speech recognition; visual), the same alignment (no gaze), and the model
over non-overlapping windows exactly as ``evaluate`` runs it. Per video it writes, under
``<out>/<video_id>/``:

- ``predictions.parquet`` and ``predictions.csv``: one row per step ``t`` with the predicted gaze
  point ``x, y`` (the heatmap peak refined to sub-cell precision, see :mod:`gazelib.viz.overlay`),
  ``p_in`` (P(gaze in frame)), ``entropy_bits`` of the map, and the top-5 cells
  ``top{k}_cell`` (row-major index, row = cell // Gw) with ``top{k}_prob``; with ``--gaze``, the
  recorded gaze label at t as ``gaze_x, gaze_y, gaze_valid``;
- ``heatmaps.npz``: ``t`` [T], ``prob`` [T, Gh, Gw] (float16), ``p_in`` [T];
- ``overlay.mp4``: the video at its own size and frame rate with its original audio, the heatmap
  and the predicted point drawn on it.

Work is cached per video under ``<out>/_features/`` (features and aligned steps, keyed like the
pipeline's caches by file hash + params + code) and ``<out>/_cache/`` (outputs, keyed by the
aligned data, the checkpoint and the runtime), so a rerun reuses what did not change; videos
predicted earlier into the same folder are kept. A video that fails (unreadable, truncated, no
gaze file where the model needs one...) is named with its problem in ``summary.json`` and on
the console; the others complete, and the command exits non-zero.

A variant that reads a viewer's gaze track (``track`` in its modalities) forecasts *along a
recording*: it is refused without ``--gaze`` (a CSV with columns t, x, y[, valid], read by the
corpus reader); with it, the track input at step t is that viewer's last gaze sample at or
before t - horizon (the model's own horizon), exactly as in training.

The run is :func:`predict_videos`, here; the rest of ``gazelib/serve/`` by concern: ``inputs``
(videos, ids, ``--gaze`` files), ``extract`` (the featurize steps with their caches), ``runtime``
(feature params, model loading with torch or onnxruntime, the model cache, the model over an aligned
video), ``outputs`` (tables, heatmaps, overlay) and ``cli`` (the ``gazelib predict`` command).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from gazelib.core.cache import VideoCache, hash_file, hash_obj
from gazelib.core.closure import stage_code
from gazelib.core.io import read_npz, write_json
from gazelib.core.media import VIDEO_EXTS
from gazelib.model.bundle import load_bundle
from gazelib.serve.extract import align_jobs, extract_features
from gazelib.serve.inputs import PredictError, collect_videos, gaze_file
from gazelib.serve.outputs import drop_outputs, listed_files, write_outputs
from gazelib.serve.runtime import (
    cached_model,
    check_columns,
    check_model_grid,
    load_runtime_model,
    predict_aligned,
    resolve_feature_params,
    set_torch_threads,
)
from gazelib.viz.overlay import X264_PRESETS

log = logging.getLogger(__name__)

FEATURES_DIR = "_features"
PARTS = ("probe", "load_models", "audio", "text", "visual", "align", "model", "outputs", "overlay")
# the overlay's x264 preset and quality: the fastest preset (the overlay is for looking at; at 720p it
# is ~2.7x the bytes of veryfast, docs/predict.md) and x264's default CRF
OVERLAY_PRESET = "ultrafast"
OVERLAY_CRF = 23


@dataclass
class PredictResult:
    out_dir: Path
    model_dir: Path
    variant: str
    seed: int
    runtime: str
    videos: dict = field(default_factory=dict)     # video_id -> {"source", "status", "files", "error", ...}
    failed: dict = field(default_factory=dict)     # video_id -> "part: message"
    timings: dict = field(default_factory=dict)    # part -> seconds (all videos)
    media_s: float = 0.0
    wall_s: float = 0.0
    synthetic: str | None = None                   # the model was trained on synthetic data: what made it

    @property
    def ok(self) -> bool:
        return not self.failed


def predict_videos(*, inputs: list[str | Path], model_dir: str | Path, out_dir: str | Path, seed: int | None = None,
                   runtime: str = "torch", onnx_path: str | Path | None = None, gaze: str | Path | None = None,
                   gaze_coords: str = "normalized", gaze_time_unit: str = "s", params_file: str | Path | None = None,
                   overlay: bool = True, overlay_preset: str = OVERLAY_PRESET, overlay_crf: int = OVERLAY_CRF,
                   batch_size: int = 32, threads: int = 2, progress: bool = True) -> PredictResult:
    """Predict where people look in ``inputs`` (videos or folders of videos) with the model in
    ``model_dir``; writes per-video outputs, ``summary.json`` and ``timing.json`` under ``out_dir``.

    Raises :class:`PredictError` / :class:`gazelib.model.bundle.BundleError` before any work for a
    model that cannot be used as asked; per-video problems are collected in the result instead.
    """
    from tqdm import tqdm

    from gazelib.core.media import MediaError, probe_video

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    if onnx_path is not None and runtime != "onnx":
        raise PredictError(f"--onnx {onnx_path} is only used with --runtime onnx (runtime is {runtime!r})")
    if overlay_preset not in X264_PRESETS:
        raise PredictError(f"overlay preset {overlay_preset!r} is not an x264 preset ({', '.join(X264_PRESETS)})")
    if not (isinstance(overlay_crf, int) and 0 <= overlay_crf <= 51):
        raise PredictError(f"overlay CRF {overlay_crf!r} must be an integer from 0 to 51")
    bundle = load_bundle(model_dir)
    if bundle.needs_track and gaze is None:
        raise PredictError(
            f"{bundle.model_dir}: variant {bundle.variant!r} (modalities {bundle.modalities}) forecasts from a "
            "viewer's own gaze track ('track'), which a video alone does not have. Give --gaze FILE.csv "
            "(columns t, x, y[, valid]: the recording of one viewer watching this video; a folder of "
            "<video name>.csv for several videos), or use a variant without 'track' (e.g. content_only).")
    if gaze is not None and not bundle.needs_track:
        log.warning("%s: variant %r does not read a gaze track; --gaze %s is ignored", bundle.model_dir,
                    bundle.variant, gaze)
        gaze = None
    gaze = Path(gaze) if gaze is not None else None
    if gaze is not None and not gaze.exists():
        raise PredictError(f"--gaze {gaze}: no such file or folder")
    params = resolve_feature_params(bundle=bundle, params_file=params_file)
    checkpoint = bundle.checkpoint(seed)
    work = out_dir / FEATURES_DIR
    timings: dict = {"load_models": 0.0}
    onnx_path = Path(onnx_path) if onnx_path else None
    model, meta = cached_model(
        kind="gaze_model", key=[hash_file(checkpoint), bundle.variant, bundle.stats_hash, runtime, threads,
                                onnx_path and hash_file(onnx_path)],
        make=lambda: load_runtime_model(bundle=bundle, checkpoint=checkpoint, runtime=runtime, onnx_path=onnx_path,
                                        work=work, threads=threads), timings=timings)
    set_torch_threads(threads)   # what loading the model sets, whether it was loaded now or before
    check_model_grid(bundle=bundle, params=params, state_meta=meta)
    used_seed = int(meta.get("seed", seed if seed is not None else bundle.seeds[0]))

    jobs = collect_videos(inputs=inputs)
    if not jobs:
        raise PredictError(f"no video found in {[str(i) for i in inputs]} (extensions {', '.join(VIDEO_EXTS)})")
    ingest_params = bundle.ingest_params
    n_videos = len(jobs)
    for j in tqdm(jobs, desc="probe", leave=False, disable=not progress):
        if j.error:
            continue
        t0 = time.perf_counter()
        try:
            j.probe = probe_video(path=j.path, video_id=j.video_id,
                                  truncation_tol_s=ingest_params["truncation_tol_s"])
            j.media_hash = hash_obj([hash_file(j.path)])
            j.gaze_path = gaze_file(gaze=gaze, job=j, n_videos=n_videos)
        except PredictError:
            raise
        except (MediaError, OSError, ValueError) as exc:
            j.fail("probe", str(exc))
        j.timings["probe"] = time.perf_counter() - t0

    # the recogniser on the threads asked for here, not on the count the model's extract stage used
    extract_features(jobs=jobs, params=params, work=work, timings=timings, progress=progress, asr_threads=threads)
    gaze_opts = {"coords": gaze_coords, "time_unit": gaze_time_unit}
    align_jobs(jobs=jobs, params=params, work=work, gaze_opts=gaze_opts, ingest_params=ingest_params,
               progress=progress)

    info = {"model": bundle.model_dir.name, "variant": bundle.variant, "modalities": bundle.modalities,
            "seed": used_seed, "runtime": runtime, "gazelib_version": _version(), "fps": meta["fps"],
            "grid": [meta["model_config"]["grid_h"], meta["model_config"]["grid_w"]],
            "window_s": meta["train_cfg"]["window_s"], "point": "argmax + quadratic fit of log p (sub-cell)",
            **({"horizon_s": meta["train_cfg"]["horizon_s"]} if bundle.needs_track else {})}
    overlay_opts = {"preset": overlay_preset, "crf": overlay_crf}
    out_key = {"checkpoint": hash_file(checkpoint), "runtime": runtime, "overlay": overlay and overlay_opts,
               "code": stage_code(stage="predict").digest}
    cache = VideoCache(out_dir, "predict")
    for j in tqdm([j for j in jobs if not j.error], desc="predict", leave=False, disable=not progress):
        aligned_path = work / "aligned" / f"{j.video_id}.npz"
        key = hash_obj({**out_key, "aligned": hash_file(aligned_path), "source": j.media_hash})
        if cache.is_fresh(j.video_id, key):
            j.reused += ["model", "outputs", "overlay"]
            j.files = listed_files(cache, j.video_id)
            continue
        try:
            aligned = read_npz(aligned_path)
            check_columns(arrays=aligned, stats=bundle.stats, video_id=j.video_id)
            t0 = time.perf_counter()
            pred = predict_aligned(model=model, aligned_path=aligned_path, stats=bundle.stats, meta=meta,
                                   batch_size=batch_size)
            j.timings["model"] = time.perf_counter() - t0
            files = write_outputs(job=j, out_dir=out_dir, pred=pred, aligned=aligned, meta=meta,
                                  info={**info, "source": j.path.name, "media_hash": j.media_hash},
                                  overlay=overlay, overlay_opts=overlay_opts, progress=progress)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
            drop_outputs(out_dir / j.video_id)
            (cache.record_dir / f"{j.video_id}.json").unlink(missing_ok=True)
            j.fail("predict", f"{type(exc).__name__}: {exc}")
            continue
        cache.commit(j.video_id, key, files)
        j.files = [str(Path(f).relative_to(out_dir)) for f in files]

    result = PredictResult(out_dir=out_dir, model_dir=bundle.model_dir, variant=bundle.variant, seed=used_seed,
                           synthetic=bundle.synthetic,
                           runtime=runtime)
    for j in jobs:
        rec = {"source": str(j.path), "status": "failed" if j.error else "ok", "files": sorted(j.files),
               "reused": sorted(set(j.reused))}
        if j.probe is not None:
            rec.update(duration_s=j.probe.duration_s, width=j.probe.width, height=j.probe.height, fps=j.probe.fps,
                       has_audio=j.probe.has_audio)
            result.media_s += j.probe.duration_s if not j.error else 0.0
        if j.gaze_path is not None:
            rec["gaze"] = str(j.gaze_path)
        if j.error:
            rec["error"] = j.error
            result.failed[j.video_id] = j.error
        result.videos[j.video_id] = rec
        for part, s in j.timings.items():
            timings[part] = timings.get(part, 0.0) + s
    result.timings = {p: round(timings.get(p, 0.0), 3) for p in PARTS}
    result.wall_s = time.perf_counter() - t_start
    write_json(out_dir / "summary.json", {**info, "model_dir": str(bundle.model_dir),
                                          "model_trained_on_synthetic_data": bundle.synthetic,
                                          "videos": result.videos, "failed": result.failed})
    write_json(out_dir / "timing.json", {"parts_s": result.timings, "wall_s": round(result.wall_s, 3),
                                         "media_s": round(result.media_s, 3),
                                         "x_realtime": round(result.media_s / result.wall_s, 3) if result.wall_s else None,
                                         "per_video_s": {j.video_id: {k: round(v, 3) for k, v in j.timings.items()}
                                                         for j in jobs}})
    return result


def _version() -> str:
    from gazelib import __version__

    return __version__
