"""``gazelib predict``'s outputs per video: the step table (predictions.parquet / .csv), the
heatmaps (heatmaps.npz) and the overlay video, and the cached record of what was written."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.core.cache import VideoCache
from gazelib.core.io import atomic_path, write_npz, write_table
from gazelib.serve.inputs import VideoJob


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


def listed_files(cache: VideoCache, video_id: str) -> list[str]:
    """The files (relative to the output folder) the cache record of ``video_id`` lists."""
    import json

    return list(json.loads((cache.record_dir / f"{video_id}.json").read_text())["files"])


def drop_outputs(vdir: Path) -> None:
    for name in ("predictions.parquet", "predictions.csv", "heatmaps.npz", "overlay.mp4"):
        (vdir / name).unlink(missing_ok=True)
