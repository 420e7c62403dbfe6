"""A pursuit world: aligned videos where a target jumps at random times and every viewer follows it
with a latency (plus short glances away, blinks and fixational noise), so the last seen gaze, the
persistence floor, is a strong predictor. Written straight at the aligned level
(:func:`gazelib.data.align.write_aligned`'s layout: labels from 60 Hz samples, a grid channel that shows
the target), which is all the track-only baseline and the floors read; the scoring is the
pipeline's own (:func:`gazelib.eval.evaluate.score_rows`, :func:`gazelib.model.floors.floor_predictions`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gazelib.data.align import write_aligned
from gazelib.core.normalize import fit_norm_stats

GH, GW, FPS = 9, 16, 10.0


def pursuit_video(rng: np.random.Generator, *, duration_s: float, n_viewers: int, dwell_s: tuple[float, float],
                  latency_s: tuple[float, float], glance_rate_hz: float, glance_s: tuple[float, float],
                  noise_sd: float, p_missing: float) -> dict:
    """One aligned video's arrays (``t``, content rows, ``grid``, ``mask`` and per-viewer labels)."""
    n_t = int(round(duration_s * FPS))
    t = np.arange(n_t) / FPS
    jumps, pos, s = [-10.0], [rng.uniform(0.1, 0.9, 2)], 0.0
    while s < duration_s:
        s += rng.uniform(*dwell_s)
        jumps.append(s)
        pos.append(rng.uniform(0.1, 0.9, 2))
    jumps, pos = np.array(jumps), np.array(pos)

    def target(at):
        return pos[np.searchsorted(jumps, at, side="right") - 1]

    gaze = np.zeros((n_viewers, n_t, 2), np.float32)
    gaze_t = np.zeros((n_viewers, n_t))
    for v in range(n_viewers):
        lat = rng.uniform(*latency_s)
        st = t + rng.uniform(-0.5 / 60, 0.5 / 60, n_t)       # the 60 Hz sample nearest each step
        g = target(st - lat) + rng.normal(0, noise_sd, (n_t, 2))
        k = 0.0
        while True:                                          # glances away: a random point for a while
            k += rng.exponential(1 / glance_rate_hz)
            if k >= duration_s:
                break
            away = (st >= k) & (st < k + rng.uniform(*glance_s))
            g[away] = rng.uniform(-0.05, 1.05, 2)
        gaze[v], gaze_t[v] = g, st
    valid = rng.uniform(size=(n_viewers, n_t)) > p_missing
    inout = (valid & ((gaze >= 0) & (gaze <= 1)).all(-1)).astype(np.int8)
    gaze_t = np.where(valid, gaze_t, np.nan)
    grid = rng.normal(0, 0.1, (n_t, 1, GH, GW)).astype(np.float32)
    tc = target(t)
    grid[np.arange(n_t), 0, np.minimum((tc[:, 1] * GH).astype(int), GH - 1),
         np.minimum((tc[:, 0] * GW).astype(int), GW - 1)] += 1.0
    return {"t": t, "audio": rng.normal(size=(n_t, 2)).astype(np.float32), "audio_columns": np.array(["a0", "a1"]),
            "audio_kinds": np.array(["continuous"] * 2), "text": np.zeros((n_t, 2), np.float32),
            "text_columns": np.array(["e0", "e1"]), "text_kinds": np.array(["embedding"] * 2),
            "visual": rng.normal(size=(n_t, 2)).astype(np.float32), "visual_columns": np.array(["m0", "m1"]),
            "visual_kinds": np.array(["continuous"] * 2), "grid": grid, "mask": np.ones((n_t, 4), bool),
            "gaze": gaze, "inout": inout, "valid": valid, "gaze_t": gaze_t,
            "viewers": np.array([f"p{v}" for v in range(n_viewers)])}


WORLD = {"duration_s": 30.0, "n_viewers": 3, "dwell_s": (1.5, 4.0), "latency_s": (0.15, 0.35),
         "glance_rate_hz": 0.15, "glance_s": (0.3, 0.8), "noise_sd": 0.02, "p_missing": 0.03}


def pursuit_corpus(root: Path, *, n_train: int, n_val: int, n_test: int, seed: int = 0, **world) -> dict:
    """Write the videos under ``root``; returns files per split, the index maps and train norm stats."""
    rng = np.random.default_rng(seed)
    cfg = {**WORLD, **world}
    files, arrays = {"train": [], "val": [], "test": []}, {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for i in range(n):
            vid = f"{split}{i:02d}"
            arrays[vid] = pursuit_video(rng, **cfg)
            write_aligned(root / f"{vid}.npz", arrays[vid])
            files[split].append(root / f"{vid}.npz")
    index = {"length": {v: a["t"].size for v, a in arrays.items()},
             "viewers": {v: a["gaze"].shape[0] for v, a in arrays.items()}}
    stats = fit_norm_stats(videos=[arrays[f.stem] for f in files["train"]])
    return {"files": files, "index": index, "stats": stats, "arrays": arrays}


def world_floors(*, corpus: dict, horizon_s: float, evaluate_cfg: dict, seed: int = 0) -> dict:
    """The floors fitted on the train videos, as the floors stage fits them."""
    from gazelib.model.floors import fit_floors

    return fit_floors(train=[corpus["arrays"][f.stem] for f in corpus["files"]["train"]], gh=GH, gw=GW,
                      horizon_s=horizon_s, sigmas=evaluate_cfg["floor_sigmas"], weights=evaluate_cfg["floor_weights"],
                      eps=evaluate_cfg["prior_eps"], seed=seed)


def score_vs_floors(*, model, corpus: dict, floors: dict, cfg: dict, evaluate_cfg: dict, seed: int = 0) -> dict:
    """Pooled metrics (:func:`gazelib.eval.evaluate.summarise`) of ``model`` and of the ``floors`` on the
    test videos, through the pipeline's scoring code."""
    import pandas as pd

    from gazelib.data.dataset import GazeWindows
    from gazelib.model.inference import predict
    from gazelib.eval.evaluate import sauc_negatives, score_rows, summarise
    from gazelib.model.floors import floor_predictions
    from gazelib.metrics import resize_bilinear

    test = corpus["files"]["test"]
    ds = GazeWindows(files=test, stats=corpus["stats"], cfg=cfg, grid_hw=(GH, GW), fps=FPS,
                     lengths=corpus["index"]["length"], n_viewers=corpus["index"]["viewers"], stride_s=cfg["window_s"])
    preds = predict(model=model, ds=ds)
    labels = {f.stem: corpus["arrays"][f.stem] for f in test}
    hw = (int(round(evaluate_cfg["saliency_width"] * GH / GW)), evaluate_cfg["saliency_width"])
    prior_eval = resize_bilinear(maps=np.asarray(floors["prior"]).reshape(1, GH, GW), out_hw=hw)[0]
    rows: dict[str, list] = {"model": [], "persistence": [], "centre_prior": []}
    for vid, lab in sorted(labels.items()):
        kw = dict(lab=lab, gh=GH, gw=GW, eval_hw=hw, prior_eval=prior_eval, video_id=vid,
                  other_xy=sauc_negatives(labels=labels, video_id=vid, max_n=evaluate_cfg["sauc_negatives"], seed=seed),
                  fixation_sigma=evaluate_cfg["fixation_map_sigma"])
        rows["model"].append(score_rows(prob=preds[vid]["prob"], p_in=preds[vid]["p_in"], **kw))
        fp = floor_predictions(floors=floors, lab=lab, gh=GH, gw=GW)
        for name in ("persistence", "centre_prior"):
            rows[name].append(score_rows(prob=fp[name][0], p_in=fp[name][1], **kw))
    return {name: summarise(pd.concat(r, ignore_index=True)) for name, r in rows.items()}
