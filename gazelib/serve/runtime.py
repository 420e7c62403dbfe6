"""``gazelib predict``'s model side: which feature params to extract with, the checks that the
features fit the model, the model runtime (torch, or onnxruntime with an on-demand ONNX export),
the process-wide model cache, and the model over one aligned video."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from gazelib.core.cache import hash_file, hash_obj
from gazelib.core.io import read_npz
from gazelib.model.bundle import Bundle, feature_param_diff
from gazelib.serve.inputs import PredictError

log = logging.getLogger(__name__)


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


class Lazy:
    """A cached model (:func:`cached_model`), looked up on first use only: a run whose features are
    all cached loads nothing."""

    def __init__(self, kind: str, key: object, make, timings: dict):
        self.kind, self.key, self.make, self.timings = kind, key, make, timings

    def __call__(self):
        return cached_model(kind=self.kind, key=self.key, make=self.make, timings=self.timings)


def load_runtime_model(*, bundle: Bundle, checkpoint: Path, runtime: str, onnx_path: Path | None, work: Path,
                       threads: int):
    """(model callable, checkpoint metadata) for ``runtime`` torch or onnx. Without ``onnx_path`` the
    checkpoint is exported (and checked) once into ``<work>/onnx/``."""
    from gazelib.model.checkpoint import load_checkpoint, model_from_checkpoint

    expect = {"variant": bundle.variant, "modalities": bundle.modalities, "norm_stats_hash": bundle.stats_hash}
    set_torch_threads(threads)
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


def set_torch_threads(threads: int) -> None:
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
    out = predict(model=model, ds=ds, batch_size=batch_size)[vid]
    return {"t": arrays["t"], "prob": out["prob"][0], "p_in": out["p_in"][0]}
