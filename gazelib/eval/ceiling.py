r"""A ceiling that means "achievable": inter-observer consistency extrapolated to infinite observers.

The inter-observer row of the comparison predicts a viewer from the *other* viewers of the corpus
(3 in the demo). With few viewers that map is noisy, so it is beaten by models and says nothing
about what is achievable. Here the same predictor is built from k observers for k = 1, 2, ...,
scored by the same code as every row, and the curve is extrapolated to k -> infinity.

**Predictor from k observers** (the inter-observer floor of :mod:`gazelib.model.floors`, same fitted
blur ``sigma`` and centre-prior weight ``w``): on the grid, ``(1 - w) mean_{o in S} N(g_o, sigma) + w c``
with ``S`` the k chosen observers' in-frame gaze at that step, then scored exactly like a model's
grid map (bilinear resize to the evaluation map).

Two families, two curves:

- **benchmark family** (``bench_*``, :mod:`gazelib.eval.benchmark`): per frame with at least 2K in-frame
  observers, the observers are split at random into halves A (K observers) and B (the rest,
  >= K); the predictor from the first k of A (k = 1..K) is scored against B's fixations and
  fixation map. K = min over test videos of floor(viewers / 2). ``splits`` random splits per frame;
  frames averaged per video, then videos.
- **per-viewer family** (``auc_vat``, ``nss``, ... of :mod:`gazelib.metrics`): each in-frame sample
  of viewer v with at least K' other in-frame observers (K' = min over test videos of viewers - 1)
  is predicted from the first k of a random order of those others (k = 1..K'), scored by
  :func:`gazelib.eval.evaluate.score_rows`; pooled over samples as the per-viewer rows are.

**Curve model** (docs/benchmark.md): ``s(k) = s_inf - b k^(-c)`` (a saturating power law, the form
used to extrapolate inter-observer agreement to infinitely many observers in the fixation-model
literature). With at least 4 points c is fitted (bounded to [0.05, 5]); with 2 or 3 points c = 1,
the noise law of a mean of k independent maps (as in Spearman-Brown: the error variance of an
average of k observers falls as 1/k), and s_inf, b are least squares on 1/k. With fewer than
2 points (fewer than 4 viewers for the benchmark family, 3 for the per-viewer one) there is no
extrapolation and the block says why. ``s_inf`` is the ceiling; its interval is the delete-one-video
jackknife t interval of :mod:`gazelib.stats.intervals` (the whole fit repeated without each video).

**Percent of ceiling**: for a metric with a chance level z (0 for CC, NSS, IG; 0.5 for the AUCs),
``100 (value - z) / (s_inf - z)``; metrics without a chance level that does not depend on the map
(SIM, KL, l2, hits) are not expressed as a percentage.
"""
from __future__ import annotations

import logging
import math
import zlib

import numpy as np
from scipy.optimize import curve_fit

from gazelib.eval.benchmark import (  # noqa: F401  (CHANCE, percent_of_ceiling: re-exported for the ceiling's users)
    BENCH_KEYS, BENCH_LOWER_IS_BETTER, CHANCE, fixation_map, fixation_pixels, percent_of_ceiling, saturating_curve,
    score_frames)
from gazelib.model.floors import gaussian_cells
from gazelib.stats.intervals import contrast_interval, leave_one_out_weights
from gazelib.metrics import LOWER_IS_BETTER, resize_bilinear

log = logging.getLogger(__name__)

VIEWER_KEYS = ("auc_vat", "nss", "cc", "auc_judd", "sauc", "ig")
CHUNK = 1000   # samples whose k-observer predictions are built at once
MODEL = "s(k) = s_inf - b * k^(-c); c fitted (bounds [0.05, 5]) with >= 4 points, else c = 1 (1/k noise law)"


def subset_prediction(*, pts, prior, sigma: float, w: float, gh: int, gw: int) -> np.ndarray:
    """(1 - w) mean_o N(g_o, sigma) + w prior over the grid cells, for in-frame points ``pts`` [k, 2]."""
    prior = np.asarray(prior, np.float64)
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        return prior.copy()
    return (1 - w) * gaussian_cells(xy=pts, gh=gh, gw=gw, sigma=sigma).mean(0) + w * prior


def _rng(seed: int, video_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(video_id.encode())])


def k_grid(*, k_max: int, n_points: int) -> list[int]:
    """The numbers of observers scored: all of 1..k_max when k_max <= n_points, else n_points
    values spaced geometrically from 1 to k_max (rounded, distinct), so large corpora stay cheap."""
    if k_max <= n_points:
        return list(range(1, k_max + 1))
    return sorted({int(round(x)) for x in np.geomspace(1, k_max, n_points)})


def fit_saturating(*, k, y) -> dict:
    """Fit ``y = s_inf - b k^(-c)`` (module docstring). Returns s_inf, b, c, c_fitted; nan if < 2 points."""
    k = np.asarray(k, np.float64)
    y = np.asarray(y, np.float64)
    ok = np.isfinite(y)
    k, y = k[ok], y[ok]
    nan = {"s_inf": math.nan, "b": math.nan, "c": math.nan, "c_fitted": False}
    if np.unique(k).size < 2:
        return nan
    x = 1.0 / k
    b1, a1 = np.polyfit(x, y, 1)   # y = a1 + b1 / k  ->  s_inf = a1, b = -b1
    out = {"s_inf": float(a1), "b": float(-b1), "c": 1.0, "c_fitted": False}
    if np.unique(k).size >= 4:
        try:
            (a, b, c), _ = curve_fit(saturating_curve, k, y, p0=(a1, -b1, 1.0),
                                     bounds=([-np.inf, -np.inf, 0.05], [np.inf, np.inf, 5.0]), maxfev=5000)
            out = {"s_inf": float(a), "b": float(b), "c": float(c), "c_fitted": True}
        except (RuntimeError, ValueError) as e:  # keep the c = 1 fit, say so
            log.warning("ceiling: power-law fit failed (%s); c = 1 kept", e)
    return out


# ----------------------------------------------------------------------------- curves per video

def nested_predictions(*, pts, prior, sigma: float, w: float, gh: int, gw: int) -> np.ndarray:
    """[N, K, cells]: for each of N ordered point sets ``pts`` [N, K, 2], the predictor from its first
    k points for k = 1..K (:func:`subset_prediction`, all at once: cumulative means of the Gaussians)."""
    pts = np.asarray(pts, np.float64)
    n, k_max = pts.shape[:2]
    if n == 0:
        return np.zeros((0, k_max, gh * gw))
    gs = gaussian_cells(xy=pts.reshape(-1, 2), gh=gh, gw=gw, sigma=sigma).reshape(n, k_max, gh * gw)
    mean_k = np.cumsum(gs, 1) / np.arange(1, k_max + 1)[None, :, None]
    return (1 - w) * mean_k + w * np.asarray(prior, np.float64)[None, None]


def bench_curve_video(*, lab: dict, video_id: str, prior_cells, prior_eval, io: dict, gh: int, gw: int,
                      hw: tuple[int, int], sigma_px, other, ks: list[int], splits: int, seed: int) -> dict:
    """One video's benchmark-family curve: key -> [len(ks)] means over its frames and splits at k in
    ``ks`` observers (half A = the first max(ks)), and the number of (frame, split) pairs."""
    k_max, sel = max(ks), np.asarray(ks) - 1
    ok = lab["valid"].astype(bool) & (lab["inout"] > 0)
    rng = _rng(seed, video_id)
    pts, fixes, gs = [], [], []
    for t in np.nonzero(ok.sum(0) >= 2 * k_max)[0]:
        who = np.nonzero(ok[:, t])[0]
        for _ in range(splits):
            perm = rng.permutation(who)
            a, b = perm[:k_max], perm[k_max:]
            f = fixation_pixels(xy=lab["gaze"][b, t], hw=hw)
            g = fixation_map(fix=f, hw=hw, sigma_px=sigma_px).ravel()
            pts.append(lab["gaze"][a, t])
            fixes += [f] * len(ks)
            gs += [g] * len(ks)
    n = len(pts)
    if n == 0:
        return {"n": 0, **{key: np.full(len(ks), np.nan) for key in BENCH_KEYS}}
    preds = nested_predictions(pts=np.asarray(pts), prior=prior_cells, sigma=io["sigma"], w=io["w"], gh=gh,
                               gw=gw)[:, sel]
    maps = resize_bilinear(maps=preds.reshape(-1, gh, gw), out_hw=hw)
    res = score_frames(maps=maps, targets={"fix": fixes, "g": np.asarray(gs)}, prior=prior_eval, other=other)
    return {"n": n, **{key: res[key].reshape(n, len(ks)).mean(0) for key in BENCH_KEYS}}


def viewer_curve_video(*, lab: dict, video_id: str, prior_cells, io: dict, gh: int, gw: int, ks: list[int],
                       splits: int, seed: int, score) -> dict:
    """One video's per-viewer-family curve at k in ``ks``: key -> ([len(ks)] sums, counts) over its samples.

    ``score(prob, p_in, lab)`` scores a [V, T, cells] prediction the way every row is scored
    (:func:`gazelib.eval.evaluate.score_rows` with this video's settings) and returns its table."""
    ok = lab["valid"].astype(bool) & (lab["inout"] > 0)
    n_v, n_t = ok.shape
    rng = _rng(seed + 1, video_id)
    k_max = max(ks)
    sums = {key: np.zeros(len(ks)) for key in VIEWER_KEYS}
    counts = {key: np.zeros(len(ks)) for key in VIEWER_KEYS}
    n_others = ok.sum(0)[None, :] - ok                      # in-frame others of each sample
    use = ok & (n_others >= k_max)
    if not use.any():
        return {"sums": sums, "counts": counts}
    sub_lab = {**lab, "valid": use, "inout": np.where(use, lab["inout"], 0)}
    p_in = np.ones((n_v, n_t), np.float32)
    vv, tt = np.nonzero(use)
    for _ in range(splits):
        pts = np.empty((vv.size, k_max, 2))
        for j, (v, t) in enumerate(zip(vv, tt)):
            others = np.nonzero(ok[:, t])[0]
            pts[j] = lab["gaze"][rng.permutation(others[others != v])[:k_max], t]
        probs = np.zeros((len(ks), n_v, n_t, gh * gw), np.float32)
        sel = np.asarray(ks) - 1
        for c0 in range(0, vv.size, CHUNK):              # [chunk, k_max, cells] at a time: bounded memory
            c = slice(c0, c0 + CHUNK)
            preds = nested_predictions(pts=pts[c], prior=prior_cells, sigma=io["sigma"], w=io["w"], gh=gh, gw=gw)
            probs[:, vv[c], tt[c]] = preds[:, sel].transpose(1, 0, 2)
        for i, k in enumerate(ks):
            df = score(probs[i], p_in, sub_lab)
            for key in VIEWER_KEYS:
                x = df[key].to_numpy(np.float64)
                sums[key][i] += np.nansum(x)
                counts[key][i] += np.isfinite(x).sum()
    return {"sums": sums, "counts": counts}


# ----------------------------------------------------------------------------- extrapolation

def extrapolate(*, per_video: list[dict], keys, videos: list[str], ks: list[int], ci: float = 0.95) -> dict:
    """Fit the curve on all videos and on each leave-one-video-out set; ``per_video``: one dict per
    video (named in ``videos``) with key -> ([K] sums, [K] counts). Returns per key: curve, s_inf
    with its jackknife t interval, the fit without each video (``s_inf_without``: for the intervals
    of % of ceiling, paired over videos with the rows), b, c."""
    n = len(per_video)
    w = leave_one_out_weights(n)
    out = {}
    for key in keys:
        sums = np.stack([pv[key][0] for pv in per_video])       # [n, K]
        cnts = np.stack([pv[key][1] for pv in per_video])
        with np.errstate(invalid="ignore", divide="ignore"):
            curves = (w @ np.nan_to_num(sums)) / (w @ cnts)     # [n + 1, K]
        k = np.asarray(ks, np.float64)
        fits = [fit_saturating(k=k, y=c) for c in curves]
        s_inf = np.array([f["s_inf"] for f in fits])[:, None]
        iv = contrast_interval(plus=[s_inf], ci=ci) if n >= 1 else {"estimate": None, "ci": [None, None]}
        c0 = curves[0]
        better = (c0[-1] < c0[0]) if key in BENCH_LOWER_IS_BETTER | LOWER_IS_BETTER else (c0[-1] > c0[0])
        out[key] = {"curve": [None if not np.isfinite(v) else float(v) for v in curves[0]],
                    "improves_with_k": bool(better),
                    "s_inf": iv["estimate"], "ci95": iv["ci"], "b": _f(fits[0]["b"]), "c": _f(fits[0]["c"]),
                    "c_fitted": fits[0]["c_fitted"],
                    "s_inf_without": {v: _f(x) for v, x in zip(videos, s_inf[1:, 0])}}
    return out


def _f(x):
    return float(x) if x is not None and np.isfinite(x) else None


# ----------------------------------------------------------------------------- stage helper

def ceiling_block(*, labels: dict, per_video: dict, floors: dict, gh: int, gw: int, cfg: dict, seed: int,
                  score_video) -> dict:
    """Both families' curves and extrapolated ceilings over the test videos.

    ``per_video[vid]``: eval_hw, prior_eval, sigma_px, other_pixels (as the benchmark uses them);
    ``score_video(vid)``: a function (prob, p_in, lab) -> per-sample table for that video;
    ``cfg``: splits (random observer orders per frame) and k_points (most numbers of observers scored)."""
    vids = sorted(labels)
    prior_cells = np.asarray(floors["prior"], np.float64)
    io = floors["inter_observer"]
    splits = int(cfg["splits"])
    n_viewers = {v: labels[v]["valid"].shape[0] for v in vids}
    out: dict = {"model": MODEL, "splits": splits, "n_test_videos": len(vids),
           "viewers_per_video": n_viewers, "predictor": (
               f"inter-observer predictor from k observers: (1 - w) mean N(g, sigma) + w centre prior on the grid, "
               f"sigma {io['sigma']:g}, w {io['w']:g} (fitted on train, as the inter_observer row)")}
    k_b = min(n_viewers.values()) // 2
    if k_b >= 2:
        ks = k_grid(k_max=k_b, n_points=int(cfg["k_points"]))
        curves = [bench_curve_video(lab=labels[v], video_id=v, prior_cells=prior_cells,
                                    prior_eval=per_video[v]["prior_eval"], io=io, gh=gh, gw=gw,
                                    hw=per_video[v]["eval_hw"], sigma_px=per_video[v]["sigma_px"],
                                    other=per_video[v]["other_pixels"], ks=ks, splits=splits, seed=seed)
                  for v in vids]
        used = [v for v, c in zip(vids, curves) if c["n"] > 0]
        pv = [{key: (np.nan_to_num(c[key]), np.isfinite(c[key]).astype(float)) for key in BENCH_KEYS}
              for c in curves if c["n"] > 0]
        out["benchmark"] = {"k": ks, "target": f"the other half's fixations (>= {k_b} observers)",
                            "n_frame_splits": int(sum(c["n"] for c in curves)), "videos_used": used,
                            "metrics": extrapolate(per_video=pv, keys=BENCH_KEYS, videos=used, ks=ks) if pv else {}}
        if not pv:
            out["benchmark"]["why_not"] = f"no frame has {2 * k_b} in-frame observers"
    else:
        out["benchmark"] = {"why_not": f"a test video has {min(n_viewers.values())} viewers: split halves need >= 4 "
                                       "(two points of the curve)"}
    k_v = min(n_viewers.values()) - 1
    if k_v >= 2:
        ks = k_grid(k_max=k_v, n_points=int(cfg["k_points"]))
        pv = []
        for v in vids:
            r = viewer_curve_video(lab=labels[v], video_id=v, prior_cells=prior_cells, io=io, gh=gh, gw=gw,
                                   ks=ks, splits=splits, seed=seed, score=score_video(v))
            pv.append({key: (r["sums"][key], r["counts"][key]) for key in VIEWER_KEYS})
        out["per_viewer"] = {"k": ks, "target": "one viewer's fixation, predicted from k others",
                             "metrics": extrapolate(per_video=pv, keys=VIEWER_KEYS, videos=vids, ks=ks)}
    else:
        out["per_viewer"] = {"why_not": f"a test video has {min(n_viewers.values())} viewers: need >= 3"}
    return out
