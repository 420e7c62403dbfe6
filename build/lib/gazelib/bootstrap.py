"""Cluster bootstrap over test videos and training seeds (used by compare and by evaluate's
viewer calibration).

A row r (a variant trained with seeds S_r, or a floor / the ceiling, one deterministic
"seed") has per seed s and test video i the sum and count of each per-sample metric over
its in-frame samples. Its value for a metric m is the mean over seeds of the pooled mean over
videos::

    m_r = 1/|S_r| sum_s  (sum_i sum_{r,s,i}) / (sum_i count_{r,s,i})

and for the pooled metrics (``inout_ap``, ``out_ap``, ``inout_acc``) the mean over seeds of
the metric over all valid samples. One bootstrap draw b resamples the **test videos** with
replacement (multiplicities M_b,i, shared by every row, so deltas are paired over videos) and,
independently for each row, its **training seeds** with replacement (multiplicities N_b,s),
and recomputes every row's value with those weights. The delta of r against a reference R is
``m_r - m_R`` per draw; the 95 % interval is its 2.5 / 97.5 percentiles. Resampling videos
makes the interval speak to new videos, resampling seeds to a new training run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gazelib.metrics import LOWER_IS_BETTER, MEAN_KEYS, POOLED_KEYS, average_precision

ALL_KEYS = MEAN_KEYS + POOLED_KEYS


def _draws(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """[n_boot, n] multiplicities of n units drawn n times with replacement."""
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64)


def _row_values(df: pd.DataFrame, videos: list[str], seeds: list, w_video: np.ndarray,
                w_seed: np.ndarray, keys: tuple[str, ...] = ALL_KEYS) -> dict[str, np.ndarray]:
    """Every metric of one row under weights: w_video [B, n_videos], w_seed [B, n_seeds] -> [B]."""
    vid_pos = {v: i for i, v in enumerate(videos)}
    out: dict[str, np.ndarray] = {}
    per_seed: dict[str, list[np.ndarray]] = {k: [] for k in ALL_KEYS}
    pooled = any(k in POOLED_KEYS for k in keys)
    for s in seeds:
        d = df[df["seed"] == s]
        vi = d["video_id"].map(vid_pos).to_numpy()
        for k in (k for k in keys if k in MEAN_KEYS):
            x = d[k].to_numpy(np.float64)
            ok = np.isfinite(x)
            sums = np.bincount(vi[ok], weights=x[ok], minlength=len(videos))
            cnts = np.bincount(vi[ok], minlength=len(videos)).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                per_seed[k].append((w_video @ sums) / (w_video @ cnts))
        if not pooled:
            continue
        w = w_video[:, vi]
        y = d["inout"].to_numpy().astype(int)
        p = d["p_in"].to_numpy(np.float64)
        per_seed["inout_ap"].append(np.asarray(average_precision(scores=p, labels=y, weights=w), np.float64))
        per_seed["out_ap"].append(np.asarray(average_precision(scores=1 - p, labels=1 - y, weights=w), np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed["inout_acc"].append((w @ ((p >= 0.5) == y).astype(np.float64)) / w.sum(1))
    for k in keys:
        vals = np.stack(per_seed[k], 1)                  # [B, n_seeds]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.nansum(vals * w_seed, 1) / (np.isfinite(vals) * w_seed).sum(1)
    return out


def compare_rows(*, samples: pd.DataFrame, rows: dict[str, str], references: list[str], n_boot: int, seed: int,
                 chunk: int = 100, keys: tuple[str, ...] = ALL_KEYS) -> dict:
    """``samples``: per-sample table with columns row, seed, video_id, inout, p_in and the metrics
    (only ``keys`` are needed and reported); ``rows``: row name -> kind (variant | floor | ceiling).
    Returns values (with percentile intervals) and deltas with intervals."""
    missing = [r for r in list(rows) + references if r not in set(samples["row"])]
    if missing:
        raise ValueError(f"compare: no samples for {missing}; rows present: {sorted(set(samples['row']))}")
    videos = sorted(samples["video_id"].unique())
    seeds = {r: sorted(samples.loc[samples["row"] == r, "seed"].unique()) for r in rows}
    rng = np.random.default_rng(seed)
    w_video = _draws(rng, len(videos), n_boot)
    w_seed = {r: _draws(rng, len(seeds[r]), n_boot) for r in rows}
    by_row = {r: samples[samples["row"] == r] for r in rows}
    point = {r: _row_values(by_row[r], videos, seeds[r], np.ones((1, len(videos))), np.ones((1, len(seeds[r]))), keys)
             for r in rows}
    boot: dict[str, dict[str, list]] = {r: {k: [] for k in keys} for r in rows}
    for b0 in range(0, n_boot, chunk):
        for r in rows:
            vals = _row_values(by_row[r], videos, seeds[r], w_video[b0:b0 + chunk], w_seed[r][b0:b0 + chunk], keys)
            for k in keys:
                boot[r][k].append(vals[k])
    boot_arr = {r: {k: np.concatenate(v) for k, v in d.items()} for r, d in boot.items()}
    out = {"bootstrap": {"unit": "test videos (cluster, paired across rows) x training seeds (per row)",
                         "n_test_videos": len(videos), "test_videos": videos, "n_boot": n_boot, "ci": 0.95,
                         "seeds": {r: [int(s) for s in seeds[r]] for r in rows}},
           "rows": {}, "deltas": {}}
    for r, kind in rows.items():
        out["rows"][r] = {"kind": kind, "n_seeds": len(seeds[r]),
                          "metrics": {k: _f(point[r][k][0]) for k in keys},
                          "ci95": {k: [_f(x) for x in _interval(boot_arr[r][k])] for k in keys}}
        out["deltas"][r] = {}
        for ref in references:
            if ref == r:
                continue
            entry = {}
            for k in keys:
                d = boot_arr[r][k] - boot_arr[ref][k]
                d = d[np.isfinite(d)]
                delta = point[r][k][0] - point[ref][k][0]
                lo, hi = (np.percentile(d, [2.5, 97.5]) if d.size else (np.nan, np.nan))
                entry[k] = {"delta": _f(delta), "ci95": [_f(lo), _f(hi)],
                            "excludes_zero": bool(d.size and (lo > 0 or hi < 0)),
                            "better": None if not np.isfinite(delta) else bool((delta < 0) == (k in LOWER_IS_BETTER))}
            out["deltas"][r][f"vs_{ref}"] = entry
    return out


def _interval(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    return tuple(np.percentile(x, [2.5, 97.5])) if x.size else (np.nan, np.nan)


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
