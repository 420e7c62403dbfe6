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
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pandas as pd

from gazelib.model.bundle import Bundle, BundleError, feature_param_diff, load_bundle
from gazelib.core.cache import VideoCache, hash_file, hash_obj, run_per_video
from gazelib.core.closure import stage_code
from gazelib.core.io import atomic_path, read_npz, write_json, write_npz, write_table
from gazelib.core.params import default
from gazelib.core.media import VIDEO_EXTS
from gazelib.viz.overlay import X264_PRESETS

log = logging.getLogger(__name__)

FEATURES_DIR = "_features"
PARTS = ("probe", "load_models", "audio", "text", "visual", "align", "model", "outputs", "overlay")
# the overlay's x264 preset and quality: the fastest preset (the overlay is for looking at; at 720p it
# is ~2.7x the bytes of veryfast, docs/predict.md) and x264's default CRF
OVERLAY_PRESET = "ultrafast"
OVERLAY_CRF = 23


class PredictError(ValueError):
    """A refusal before any video is touched (model folder, params, missing gaze); names the problem."""


@dataclass
class VideoJob:
    video_id: str
    path: Path
    probe: object = None
    gaze_path: Path | None = None
    error: str = ""
    media_hash: str = ""
    align_hash: str = ""
    timings: dict = field(default_factory=dict)
    reused: list = field(default_factory=list)
    files: list = field(default_factory=list)

    def fail(self, part: str, message: str) -> None:
        if not self.error:
            self.error = f"{part}: {message}"
            log.error("%s (%s): %s failed: %s", self.video_id, self.path, part, message)


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


# ---------------------------------------------------------------- inputs
def collect_videos(*, inputs: list[str | Path]) -> list[VideoJob]:
    """Video files named or found directly in the named folders (sorted), with unique ids made from
    their names (characters outside [A-Za-z0-9._-] become '_'; a repeated name gets '-2', '-3'...).
    A path that does not exist is returned as a failed job."""
    paths: list[Path] = []
    jobs: list[VideoJob] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS)
            if not found:
                log.warning("%s: no video files (%s) in this folder", p, ", ".join(VIDEO_EXTS))
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            job = VideoJob(video_id=_safe_id(p.stem or p.name), path=p)
            job.fail("input", f"{p}: no such file or folder")
            jobs.append(job)
    seen = {j.video_id for j in jobs}
    for p in paths:
        base = _safe_id(p.stem)
        vid, n = base, 1
        while vid in seen:
            n += 1
            vid = f"{base}-{n}"
        seen.add(vid)
        jobs.append(VideoJob(video_id=vid, path=p))
    return jobs


def _safe_id(stem: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    return s if s[:1].isalnum() else f"v{s}"


def resolve_feature_params(*, bundle: Bundle, params_file: str | Path | None = None) -> dict:
    """The feature params to extract with: the model's own, or those of ``params_file`` when they
    agree with the model's (speed-only keys such as ``text.asr_threads`` may differ). Refuses,
    naming every differing key, when they do not."""
    if params_file is None:
        return {k: dict(v) for k, v in bundle.feature_params.items()}
    from gazelib.core.params import load_params

    wanted = load_params(params_file)
    diff = feature_param_diff(model=bundle.feature_params, wanted=wanted)
    if diff:
        raise PredictError(f"{bundle.model_dir}: the model was trained on features made with other params than "
                           f"{params_file} would extract with; differing keys:\n  " + "\n  ".join(diff)
                           + "\nPredict with the model's own params (drop --params) or retrain the model.")
    return {k: dict(wanted[k]) for k in bundle.feature_params}


def check_model_grid(*, bundle: Bundle, params: dict, state_meta: dict) -> None:
    """The grid the visual extractor would make, the bundle's and the checkpoint's must agree."""
    from gazelib.features.grid import grid_shape

    want = tuple(grid_shape(params["visual"]))
    cfg = state_meta["model_config"]
    model_grid = (cfg["grid_channels"], cfg["grid_h"], cfg["grid_w"])
    problems = []
    if "visual" in bundle.modalities and want != model_grid:
        problems.append(f"visual grid: extractor would make {want} (channels, rows, cols), model reads {model_grid}")
    if tuple(bundle.grid) != model_grid:
        problems.append(f"grid: bundle.json says {tuple(bundle.grid)}, checkpoint {model_grid}")
    if abs(float(state_meta["fps"]) - float(params["align"]["fps"])) > 1e-9:
        problems.append(f"align.fps: model trained at {state_meta['fps']}, params give {params['align']['fps']}")
    if problems:
        raise PredictError(f"{bundle.model_dir}: features would not fit the model: " + "; ".join(problems))


def _gaze_file(*, gaze: Path | None, job: VideoJob, n_videos: int) -> Path | None:
    if gaze is None:
        return None
    if gaze.is_dir():
        for name in (job.path.stem, job.video_id):
            cand = gaze / f"{name}.csv"
            if cand.exists():
                return cand
        raise FileNotFoundError(f"no gaze recording {gaze / (job.path.stem + '.csv')} for this video")
    if n_videos > 1:
        raise PredictError(f"--gaze {gaze} is one file but {n_videos} videos were given; give a folder with "
                           "<video name>.csv per video")
    return gaze


# ---------------------------------------------------------------- extraction (the pipeline's functions)
class _KeepCache(VideoCache):
    """A per-video cache that keeps the outputs of videos not in this run (earlier predictions)."""

    def prune(self, keep_ids: set[str]) -> list[str]:
        return []


def _items(jobs: list[VideoJob]) -> list[dict]:
    out = []
    for j in jobs:
        if j.error:
            continue
        p = j.probe
        out.append({"video_id": j.video_id, "video_path": str(j.path), "duration_s": p.duration_s,
                    "has_audio": p.has_audio, "media_hash": j.media_hash})
    return out


def _timed(job_by_id: dict, part: str, fn, timings: dict | None = None):
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


def _run_stage(*, part: str, jobs: list[VideoJob], work: Path, params: dict, compute, progress: bool,
               timings: dict) -> None:
    job_by_id = {j.video_id: j for j in jobs}
    items = _items(jobs)
    if not items:
        return
    run = run_per_video(cache=_KeepCache(work / part, f"predict_{part}"), items=items,
                        params=params, code=stage_code(stage=f"predict_{part}", cfg=params),
                        compute=_timed(job_by_id, part, compute, timings), on_error="skip", progress=progress)
    for vid in run.cached:
        job_by_id[vid].reused.append(part)
        job_by_id[vid].timings.setdefault(part, 0.0)
    for vid, why in run.failed.items():
        job_by_id[vid].fail(part, why)


# ---------------------------------------------------------------- models: loaded once per process, on first use
_MODELS: dict[str, object] = {}


def cached_model(*, kind: str, key: object, make, timings: dict | None = None):
    """The model ``make()`` builds for ``kind`` and ``key`` (the params it is built from), built on
    first use and kept for the rest of the process: predicting folder after folder, from a notebook or
    a server loads each model once. The seconds a build took are added to ``timings['load_models']``.
    Every cached model is stateless between videos (the VADs are reset per video)."""
    k = f"{kind}:{hash_obj(key)}"
    if k not in _MODELS:
        t0 = time.perf_counter()
        _MODELS[k] = make()
        if timings is not None:
            timings["load_models"] = timings.get("load_models", 0.0) + time.perf_counter() - t0
    return _MODELS[k]


def clear_model_cache() -> None:
    """Forget the models :func:`cached_model` kept (the next run loads them again)."""
    _MODELS.clear()


class _Lazy:
    """A cached model (:func:`cached_model`), looked up on first use only: a run whose features are
    all cached loads nothing."""

    def __init__(self, kind: str, key: object, make, timings: dict):
        self.kind, self.key, self.make, self.timings = kind, key, make, timings

    def __call__(self):
        return cached_model(kind=self.kind, key=self.key, make=self.make, timings=self.timings)


_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                  "pooling_mode_mean_sqrt_len_tokens")


def sentence_embedding_dim(path: Path) -> int | None:
    """The embedding size of a sentence-transformers folder read from its files, for the plain layout
    only: modules Transformer, Pooling (the word dimension times the pooling modes it concatenates,
    :data:`_POOLING_MODES`) and optionally Normalize. None for anything else (the network is then
    loaded to ask it)."""
    import json

    try:
        modules = json.loads((path / "modules.json").read_text())
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        cfg = json.loads((path / modules[1]["path"] / "config.json").read_text())
        if any(cfg[k] for k in cfg if k.startswith("pooling_mode_") and k not in _POOLING_MODES):
            return None                      # a pooling mode this does not know is on: ask the network
        n_modes = sum(bool(cfg.get(k)) for k in _POOLING_MODES)
        return int(cfg["word_embedding_dimension"]) * n_modes if n_modes else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class LazyTextEmbedder:
    """:class:`gazelib.features.text.TextEmbedder` with its network loaded on the first words: name,
    backend and ``dim`` (what a video without words needs: zero embeddings and the files' metadata)
    come from the model folder's files (:func:`sentence_embedding_dim`), so a silent video never loads
    sentence-transformers (about 4 s). Where the files do not give the size plainly it loads at once.
    ``load_s``: the seconds the network took to load (0 until it loads). Kept here rather than in the
    extractor so the extract stages' code (and so their caches) stay as they were."""

    def __init__(self, *, model: str, batch_size: int):
        from gazelib.features.text import resolve_text_model

        path = resolve_text_model(model)
        self.name, self.batch_size, self.path = model, batch_size, path
        self.backend = "sentence-transformers" if (path / "modules.json").exists() else "transformers-meanpool"
        self.dim = sentence_embedding_dim(path) if self.backend == "sentence-transformers" else None
        self.net, self.load_s = None, 0.0
        if self.dim is None:
            self._load()

    def _load(self) -> None:
        from gazelib.features.text import TextEmbedder

        t0 = time.perf_counter()
        net = TextEmbedder(model=self.name, batch_size=self.batch_size)
        if self.dim is not None and (net.dim, net.backend) != (self.dim, self.backend):
            raise RuntimeError(f"text embedder {self.name} ({self.path}): the network gives {net.dim}-d "
                               f"{net.backend} embeddings, its files said {self.dim}-d {self.backend}")
        self.net, self.dim, self.backend = net, net.dim, net.backend
        self.load_s = time.perf_counter() - t0

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.net is None:
            self._load()
        return self.net.encode(texts)


def extract_features(*, jobs: list[VideoJob], params: dict, work: Path, timings: dict, progress: bool = True,
                     warn_sources: bool = True) -> None:
    """Audio, text (ASR) and visual features of every job that has not failed, by the featurize steps
    the pipeline's extract stages run (gazelib.pipeline.featurize), each with its own cache; failures
    are recorded on the jobs."""
    from gazelib.features.audio import audio_video, make_audio_models
    from gazelib.features.text import extract_text_video, text_config
    from gazelib.features.transcript import make_asr
    from gazelib.features.visual import FaceDetector, make_image_encoder, visual_video

    from gazelib.features import lookahead_of

    # a bundle from before features.lookahead was trained on look-ahead features: extract those
    lookahead = lookahead_of(params, default="offline")
    acfg, vcfg = params["audio"], params["visual"]
    tcfg = text_config({**params, "features": {"lookahead": lookahead}})
    audio_models = _Lazy("audio", acfg, lambda: make_audio_models(acfg), timings)

    def audio(item: dict) -> list[Path]:
        return audio_video(item=item, cfg=acfg, models=audio_models(), out_dir=work / "audio", lookahead=lookahead)

    _run_stage(part="audio", jobs=jobs, work=work, params={**acfg, "lookahead": lookahead}, compute=audio,
               progress=progress,
               timings=timings)

    if warn_sources and "asr" not in tcfg.get("sources", []):
        log.warning("the model's text came from %s, never from speech recognition; here text comes from ASR "
                    "(videos have no subtitles), which it was not trained on", tcfg.get("sources"))
    # lazy: a video without words (no audio) gets zero embeddings, for which the network never loads
    embedder = _Lazy("text_embedder", [tcfg["embedder"], tcfg["embed_batch"]],
                     lambda: LazyTextEmbedder(model=tcfg["embedder"], batch_size=tcfg["embed_batch"]), timings)
    asr = _Lazy("asr", {k: v for k, v in tcfg.items() if k.startswith(("asr_", "whisperx_"))
                        or k in ("language", "utterance_gap_s")}, lambda: make_asr(tcfg), timings)

    def text(item: dict) -> list[Path]:
        # videos given to predict have no subtitles: text comes from ASR whatever the model's order
        emb = embedder()
        loaded = emb.load_s
        try:
            return extract_text_video(item=item, cfg=tcfg, out_dir=work / "text", embedder=emb, asr=asr,
                                      sources=["asr"])["paths"]
        finally:  # the network loads on the first words: model loading, not text
            timings["load_models"] = timings.get("load_models", 0.0) + emb.load_s - loaded

    _run_stage(part="text", jobs=jobs, work=work, params=tcfg, compute=text, progress=progress,
               timings=timings)

    visual_models = _Lazy("visual", vcfg, lambda: (FaceDetector.from_params(vcfg), make_image_encoder(vcfg)),
                          timings)

    def visual(item: dict) -> list[Path]:
        detector, encoder = visual_models()
        return visual_video(item=item, cfg=vcfg, detector=detector, encoder=encoder, out_dir=work / "visual",
                            lookahead=lookahead)

    _run_stage(part="visual", jobs=jobs, work=work, params={**vcfg, "lookahead": lookahead}, compute=visual,
               progress=progress,
               timings=timings)


def read_viewer_gaze(*, job: VideoJob, coords: str, time_unit: str, ingest_params: dict) -> pd.DataFrame:
    """The recording of ``--gaze`` for one video, by the corpus reader (normalised, seconds)."""
    from gazelib.gaze.ingest import read_gaze_csv

    # a bundle records the ingest params it was trained with; keys younger than it take the schema's defaults
    cfg = {**default("ingest"), **ingest_params}
    p = job.probe
    return read_gaze_csv(path=job.gaze_path, video_id=job.video_id, viewer_id=_safe_id(job.gaze_path.stem),
                         coords=coords, time_unit=time_unit, width=p.width, height=p.height, duration_s=p.duration_s,
                         cfg=cfg)


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

    items = [{**it, "media_hash": job_by_id[it["video_id"]].align_hash} for it in _items(jobs)]
    if not items:
        return
    run = run_per_video(cache=_KeepCache(work / "aligned", "predict_align"), items=items,
                        params={**cfg, "grid": gshape, "lookahead": lookahead},
                        code=stage_code(stage="predict_align", cfg=cfg),
                        compute=_timed(job_by_id, "align", compute), on_error="skip", progress=progress)
    for vid in run.cached:
        job_by_id[vid].reused.append("align")
        job_by_id[vid].timings.setdefault("align", 0.0)
    for vid, why in run.failed.items():
        job_by_id[vid].fail("align", why)


def check_columns(*, arrays: dict, stats: dict, video_id: str) -> None:
    """The aligned columns must be the ones the model's norm stats were fitted on (names and order)."""
    for m in ("audio", "text", "visual"):
        have = [str(c) for c in arrays[f"{m}_columns"]]
        want = list(stats[m]["columns"])
        if have and have != want:
            missing = [c for c in want if c not in have]
            extra = [c for c in have if c not in want]
            raise ValueError(f"{video_id}: {m} features have other columns than the model was trained on "
                             f"(missing {missing[:8]}, extra {extra[:8]}"
                             f"{', same names in another order' if not missing and not extra else ''})")
    want_c = len(stats["grid"]["mean"])
    if arrays["grid"].shape[1] != want_c:
        raise ValueError(f"{video_id}: visual grid has {arrays['grid'].shape[1]} channels, the model "
                         f"{want_c}")


# ---------------------------------------------------------------- model and outputs
def load_runtime_model(*, bundle: Bundle, checkpoint: Path, runtime: str, onnx_path: Path | None, work: Path,
                       threads: int):
    """(model callable, checkpoint metadata) for ``runtime`` torch or onnx. Without ``onnx_path`` the
    checkpoint is exported (and checked) once into ``<work>/onnx/``."""
    from gazelib.model.checkpoint import load_checkpoint, model_from_checkpoint

    expect = {"variant": bundle.variant, "modalities": bundle.modalities, "norm_stats_hash": bundle.stats_hash}
    _set_torch_threads(threads)
    if runtime == "torch":
        model, state = model_from_checkpoint(checkpoint, expect=expect)
        return model, state["meta"]
    if runtime != "onnx":
        raise PredictError(f"unknown runtime {runtime!r}; choose torch or onnx")
    from gazelib.model.onnx_export import OnnxGazeModel, export_checkpoint

    meta = load_checkpoint(checkpoint, expect=expect)["meta"]
    ck_hash = hash_file(checkpoint)
    if onnx_path is None:
        onnx_path = work / "onnx" / f"{bundle.variant}_seed{meta['seed']}_{ck_hash[:12]}.onnx"
        if not onnx_path.exists():
            log.info("exporting %s to %s for the onnx runtime", checkpoint, onnx_path)
            export_checkpoint(checkpoint=checkpoint, out_path=onnx_path, expect=expect)
    model = OnnxGazeModel(onnx_path, threads=threads, expect={
        "variant": bundle.variant, "modalities": bundle.modalities, "norm_stats_hash": bundle.stats_hash,
        "seed": meta.get("seed"), "checkpoint_sha256": ck_hash})
    return model, meta


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def predict_aligned(*, model, aligned_path: Path, stats: dict, meta: dict, batch_size: int = 32) -> dict:
    """The model over non-overlapping windows of one aligned video (viewer 0), by
    :func:`gazelib.eval.evaluate.predict`: ``prob`` [T, cells], ``p_in`` [T], ``t`` [T]."""
    from gazelib.data.dataset import GazeWindows
    from gazelib.model.inference import predict

    cfg = meta["train_cfg"]
    arrays = read_npz(aligned_path, keys=("t", "gaze"))
    vid = aligned_path.stem
    cm = meta["model_config"]
    ds = GazeWindows(files=[aligned_path], stats=stats, cfg=cfg, grid_hw=(cm["grid_h"], cm["grid_w"]), fps=meta["fps"],
                     lengths={vid: int(arrays["t"].size)}, n_viewers={vid: 1}, stride_s=cfg["window_s"], cache_size=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*mismatched src_key_padding_mask and mask.*")
        out = predict(model=model, ds=ds, batch_size=batch_size)[vid]
    return {"t": arrays["t"], "prob": out["prob"][0], "p_in": out["p_in"][0]}


def step_table(*, t: np.ndarray, prob: np.ndarray, p_in: np.ndarray, gh: int, gw: int) -> pd.DataFrame:
    """One row per step: t, x, y (refined peak), p_in, entropy_bits, top-5 cells and their probabilities."""
    from gazelib.viz.overlay import TOP_K, entropy_bits, refine_peak, top_cells

    xy = refine_peak(prob=prob.reshape(-1, gh, gw))
    cells, probs = top_cells(prob=prob, k=TOP_K)
    df = pd.DataFrame({"t": np.round(np.asarray(t, np.float64), 6), "x": xy[:, 0].astype(np.float32),
                       "y": xy[:, 1].astype(np.float32), "p_in": np.asarray(p_in, np.float32),
                       "entropy_bits": entropy_bits(prob=prob).astype(np.float32)})
    for k in range(TOP_K):
        df[f"top{k + 1}_cell"] = cells[:, k].astype(np.int16)
    for k in range(TOP_K):
        df[f"top{k + 1}_prob"] = probs[:, k].astype(np.float32)
    return df


def write_outputs(*, job: VideoJob, out_dir: Path, pred: dict, aligned: dict, meta: dict, info: dict,
                  overlay: bool, overlay_opts: dict, progress: bool) -> list[Path]:
    """predictions.parquet/.csv, heatmaps.npz and (optionally) overlay.mp4 of one video."""
    from gazelib.viz.overlay import render_overlay

    cm = meta["model_config"]
    gh, gw = cm["grid_h"], cm["grid_w"]
    vdir = out_dir / job.video_id
    t0 = time.perf_counter()
    df = step_table(t=pred["t"], prob=pred["prob"], p_in=pred["p_in"], gh=gh, gw=gw)
    gaze_xy = None
    if job.gaze_path is not None:
        ok = aligned["valid"][0].astype(bool)
        g = np.where(ok[:, None], aligned["gaze"][0], np.nan)
        df["gaze_x"], df["gaze_y"], df["gaze_valid"] = g[:, 0].astype(np.float32), g[:, 1].astype(np.float32), ok
        gaze_xy = g[None]
    files = [vdir / "predictions.parquet", vdir / "predictions.csv", vdir / "heatmaps.npz"]
    write_table(files[0], df, meta={**info, "video_id": job.video_id})
    with atomic_path(files[1]) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    write_npz(files[2], t=pred["t"].astype(np.float64), prob=pred["prob"].reshape(-1, gh, gw).astype(np.float16),
              p_in=pred["p_in"].astype(np.float32))
    job.timings["outputs"] = time.perf_counter() - t0
    if overlay:
        res = render_overlay(video_path=job.path, out_path=vdir / "overlay.mp4", t=pred["t"],
                             prob=pred["prob"].reshape(-1, gh, gw), p_in=pred["p_in"],
                             point=df[["x", "y"]].to_numpy(np.float64), gaze=gaze_xy, video_id=job.video_id,
                             label=f"{info['variant']} seed {info['seed']}", progress=progress, **overlay_opts)
        job.timings["overlay"] = res.seconds
        files.append(res.path)
    else:
        (vdir / "overlay.mp4").unlink(missing_ok=True)
    return files


# ---------------------------------------------------------------- the whole run
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
    _set_torch_threads(threads)   # what loading the model sets, whether it was loaded now or before
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
                                  truncation_tol_s={**default("ingest"), **ingest_params}["truncation_tol_s"])
            j.media_hash = hash_obj([hash_file(j.path)])
            j.gaze_path = _gaze_file(gaze=gaze, job=j, n_videos=n_videos)
        except PredictError:
            raise
        except (MediaError, OSError, ValueError) as exc:
            j.fail("probe", str(exc))
        j.timings["probe"] = time.perf_counter() - t0

    extract_features(jobs=jobs, params=params, work=work, timings=timings, progress=progress)
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
            j.files = _listed(cache, j.video_id)
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
            _drop_outputs(out_dir / j.video_id)
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


def _listed(cache: VideoCache, video_id: str) -> list[str]:
    """The files (relative to the output folder) the cache record of ``video_id`` lists."""
    import json

    return list(json.loads((cache.record_dir / f"{video_id}.json").read_text())["files"])


def _drop_outputs(vdir: Path) -> None:
    for name in ("predictions.parquet", "predictions.csv", "heatmaps.npz", "overlay.mp4"):
        (vdir / name).unlink(missing_ok=True)


def _version() -> str:
    from gazelib import __version__

    return __version__


# ---------------------------------------------------------------- command line
EPILOG = """\b
Examples:
  # a model without gaze track, on one video and on a folder of videos
  gazelib predict clip.mp4 more_videos/ --model models/content_only --out predictions/

\b
  # a model that forecasts along a viewer's recording (track in its modalities)
  gazelib predict clip.mp4 --model models/multimodal --gaze viewer01.csv --out predictions/

\b
  # the exported ONNX model under onnxruntime
  gazelib export models/content_only --onnx content_only.onnx
  gazelib predict clip.mp4 --model models/content_only --runtime onnx --onnx content_only.onnx --out pred/

\b
Outputs per video in OUT/<video>/: predictions.parquet + .csv (t, x, y, p_in, entropy_bits,
top1..5 cells), heatmaps.npz (float16 maps), overlay.mp4 (with the video's audio); OUT/summary.json
lists every video and what failed. See docs/predict.md.
"""


@click.command("predict", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                           "max_content_width": 100})
@click.argument("inputs", metavar="VIDEO_OR_FOLDER...", nargs=-1, required=True)
@click.option("--model", "-m", "model_dir", required=True, type=click.Path(file_okay=False),
              help="A trained model folder (models/<variant>: seed checkpoints, bundle.json, norm_stats.json).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (one sub-folder per video; caches under _features/ and _cache/).")
@click.option("--seed", type=int, default=None, help="Which training seed's checkpoint to use (default: the first).")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Run the model with PyTorch or with ONNX Runtime.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, exists=True),
              help="With --runtime onnx: the file `gazelib export` wrote (default: export once into OUT/_features/onnx).")
@click.option("--gaze", type=click.Path(exists=True),
              help="Recorded gaze (CSV t,x,y[,valid]) for models with 'track'; a folder of <video name>.csv for several videos.")
@click.option("--gaze-coords", type=click.Choice(["normalized", "pixels"]), default="normalized", show_default=True,
              help="Units of the --gaze x, y columns.")
@click.option("--gaze-time-unit", type=click.Choice(["s", "ms", "us"]), default="s", show_default=True,
              help="Unit of the --gaze t column (time from the video start).")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, exists=True),
              help="Extract with this params.yaml instead of the model's own feature params (refused if they differ).")
@click.option("--no-overlay", is_flag=True, help="Skip the overlay video (the slowest output).")
@click.option("--overlay-preset", type=click.Choice(X264_PRESETS), default=OVERLAY_PRESET, show_default=True,
              help="x264 preset of the overlay video (slower presets: smaller files, same look).")
@click.option("--overlay-crf", type=click.IntRange(0, 51), default=OVERLAY_CRF, show_default=True,
              help="x264 constant rate factor of the overlay video (lower: better quality, larger files).")
@click.option("--threads", type=int, default=2, show_default=True, help="CPU threads for the model.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, warnings only.")
def predict_cmd(inputs, model_dir, out_dir, seed, runtime, onnx_path, gaze, gaze_coords, gaze_time_unit, params_file,
                no_overlay, overlay_preset, overlay_crf, threads, quiet) -> None:
    """Predict where people look in VIDEO_OR_FOLDER... with a trained model.

    Runs the pipeline's extractors (audio, speech recognition, visual) with the feature params the
    model was trained with, aligns, and runs the model over the whole video. A video that cannot be
    read is named with its problem; the others complete and the exit code is 1.
    """
    from gazelib.core.params import setup_logging

    setup_logging("WARNING" if quiet else "INFO")
    try:
        res = predict_videos(inputs=list(inputs), model_dir=model_dir, out_dir=out_dir, seed=seed, runtime=runtime,
                             onnx_path=onnx_path, gaze=gaze, gaze_coords=gaze_coords, gaze_time_unit=gaze_time_unit,
                             params_file=params_file, overlay=not no_overlay, overlay_preset=overlay_preset,
                             overlay_crf=overlay_crf,
                             threads=threads, progress=not quiet)
    except (PredictError, BundleError) as exc:
        raise click.UsageError(str(exc)) from exc
    n_ok = len(res.videos) - len(res.failed)
    click.echo(f"{n_ok} of {len(res.videos)} videos predicted with {res.variant} seed {res.seed} ({res.runtime}) "
               f"into {res.out_dir}; {res.media_s:.1f} s of video in {res.wall_s:.1f} s "
               f"({res.media_s / max(res.wall_s, 1e-9):.2f}x real time)")
    if res.synthetic:
        click.echo(f"WARNING: this model was trained on synthetic data, not on real viewers: {res.synthetic}",
                   err=True)
    for vid, rec in res.videos.items():
        if rec["status"] == "ok":
            click.echo(f"  ok      {vid}: {res.out_dir / vid}" + (" (reused)" if "model" in rec["reused"] else ""))
    if res.failed:
        click.echo(f"{len(res.failed)} failed:", err=True)
        for vid, why in res.failed.items():
            click.echo(f"  FAILED  {vid} ({res.videos[vid]['source']}): {why}", err=True)
        raise SystemExit(1)
