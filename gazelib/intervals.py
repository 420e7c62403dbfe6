"""Intervals over test videos (clusters) and training seeds, for compare, attribution and calibration.

Setup. Row r (a variant trained with seeds S_r, or a floor / the ceiling: one deterministic
"seed") has, per seed s and test video i, the sum and count of each per-sample metric over its
in-frame samples. Its value for a metric is the mean over seeds of the pooled mean over videos::

    theta_r = 1/|S_r| sum_s theta_{r,s},    theta_{r,s} = (sum_i sum_{r,s,i}) / (sum_i count_{r,s,i})

and, for the pooled metrics (``inout_ap``, ``out_ap``, ``inout_acc``), theta_{r,s} is the metric over
all valid samples of that seed.

Interval of a contrast D = sum_{r in plus} theta_r - sum_{r in minus} theta_r (a row's value, a
delta between two rows, a control against its model). Two sources of variation, added:

- **videos** (which videos were tested): the delete-one-video jackknife, *paired* across rows
  (video i leaves every row at once), ``V_video = (n-1)/n sum_i (D_(i) - D_(.))^2``;
- **seeds** (which training runs were drawn): per row with |S_r| >= 2 seeds,
  ``V_seed,r = var_s(theta_{r,s}) / |S_r|`` (sample variance, ddof 1); rows are trained independently.

``V = V_video + sum_r V_seed,r`` (conservative: the seed x video noise enters both terms), with
Welch-Satterthwaite degrees of freedom ``nu = V^2 / (V_video^2/(n-1) + sum_r V_seed,r^2/(|S_r|-1))``;
the interval is ``D +- t_{(1+ci)/2, nu} sqrt(V)`` and ``p = 2 (1 - F_t,nu(|D| / sqrt(V)))``.

Why not the percentile cluster bootstrap used before: with few clusters it undercovers (it has no
small-sample correction: with 2 test videos it printed "significant" intervals), and a bootstrap over
videos alone ignores that all videos share one trained model per seed. The coverage of this
interval is checked by simulation at 5, 8 and 16 test videos in ``tests/test_intervals.py``
(nominal 95 %, required >= 93 %), and a world with no effect must come out with no effect there.

Significance is only *assessed* with at least :data:`MIN_CLUSTERS` test videos; with fewer,
``excludes_zero`` is ``None`` and reports say why. Multiplicity: the primary metrics are named in
params (``compare.primary``) before the run; their p-values are Holm-adjusted within each
contrast (:func:`holm`); every other metric is descriptive.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sstats

from gazelib.metrics import LOWER_IS_BETTER, MEAN_KEYS, POOLED_KEYS, average_precision

ALL_KEYS = MEAN_KEYS + POOLED_KEYS
MIN_CLUSTERS = 5          # fewer test videos: intervals shown, no significance marks
METHOD = ("t interval: delete-one-video jackknife (paired across rows) + between-seed variance per row, "
          "Welch-Satterthwaite degrees of freedom")


def too_few_clusters(n_clusters: int) -> str | None:
    """Why significance is not assessed with ``n_clusters`` test videos (None: it is)."""
    if n_clusters >= MIN_CLUSTERS:
        return None
    return (f"{n_clusters} test video{'s' if n_clusters != 1 else ''}: fewer than {MIN_CLUSTERS}, so no interval is "
            "read as significant (no marks); add test videos (corpus.yaml splits or ingest.split_ratios)")


def leave_one_out_weights(n: int) -> np.ndarray:
    """[n + 1, n] video weights: row 0 every video, row 1 + i every video but i."""
    return np.vstack([np.ones((1, n)), 1.0 - np.eye(n)])


def pooled_means(*, sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """theta per weight row and seed: sums, counts [S, n] (seed x video), weights [B, n] -> [B, S]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ sums.T) / (weights @ counts.T)


def contrast_interval(*, plus: list[np.ndarray], minus: list[np.ndarray] = (), ci: float = 0.95,
                      n_clusters: int | None = None) -> dict:
    """Point, interval, standard error, degrees of freedom and p-value of a contrast.

    Each entry of ``plus`` / ``minus`` is one row's per-seed values [n + 1, S_r] under
    :func:`leave_one_out_weights` (row 0: all videos). NaN seeds are left out of that row."""
    arrs = [(np.asarray(a, np.float64), +1.0) for a in plus] + [(np.asarray(a, np.float64), -1.0) for a in minus]
    n = arrs[0][0].shape[0] - 1
    n_clusters = n if n_clusters is None else n_clusters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a row with every seed NaN: nanmean of nothing
        d_all = sum(sign * np.nanmean(a, 1) for a, sign in arrs)     # [n + 1]
    point = float(d_all[0])
    loo = d_all[1:]
    v_video = float((n - 1) / n * np.sum((loo - loo.mean()) ** 2)) if n >= 2 and np.isfinite(loo).all() else math.nan
    v_seed, dfs = 0.0, []
    for a, _ in arrs:
        s = a[0][np.isfinite(a[0])]
        if s.size >= 2:
            v = float(np.var(s, ddof=1) / s.size)
            v_seed += v
            dfs.append((v, s.size - 1))
    var = v_video + v_seed
    out = {"estimate": _f(point), "ci": [None, None], "se": None, "df": None, "p": None}
    if not (np.isfinite(point) and np.isfinite(var)):
        return out
    if var <= 0:
        out.update(ci=[_f(point), _f(point)], se=0.0, df=None, p=None if point == 0 else 0.0)
        return out
    denom = (v_video ** 2 / (n - 1) if n >= 2 else 0.0) + sum(v ** 2 / d for v, d in dfs)
    df = var ** 2 / denom if denom > 0 else float(n - 1)
    se = math.sqrt(var)
    half = float(sstats.t.ppf(0.5 + ci / 2, df)) * se
    p = float(2 * sstats.t.sf(abs(point) / se, df))
    out.update(ci=[_f(point - half), _f(point + half)], se=_f(se), df=_f(df), p=_f(p))
    return out


def holm(p: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-Bonferroni adjusted p-values of one family (None stays None)."""
    known = sorted((v, k) for k, v in p.items() if v is not None)
    m, out, running = len(known), {k: None for k in p}, 0.0
    for i, (v, k) in enumerate(known):
        running = max(running, min(1.0, (m - i) * v))
        out[k] = running
    return out


def row_seed_values(*, df: pd.DataFrame, videos: list[str], seeds: list,
                    keys: tuple[str, ...] = ALL_KEYS) -> dict[str, np.ndarray]:
    """Every metric of one row per leave-one-video-out weight row and seed: key -> [n + 1, S]."""
    vid_pos = {v: i for i, v in enumerate(videos)}
    w_video = leave_one_out_weights(len(videos))
    per_seed: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for s in seeds:
        d = df[df["seed"] == s]
        vi = d["video_id"].map(vid_pos).to_numpy()
        for k in (k for k in keys if k not in POOLED_KEYS):   # per-sample means (incl. bench_*)
            x = d[k].to_numpy(np.float64)
            ok = np.isfinite(x)
            sums = np.bincount(vi[ok], weights=x[ok], minlength=len(videos))
            cnts = np.bincount(vi[ok], minlength=len(videos)).astype(np.float64)
            per_seed[k].append(pooled_means(sums=sums[None], counts=cnts[None], weights=w_video)[:, 0])
        if not any(k in POOLED_KEYS for k in keys):
            continue
        w = w_video[:, vi]
        y = d["inout"].to_numpy().astype(int)
        p = d["p_in"].to_numpy(np.float64)
        if "inout_ap" in keys:
            per_seed["inout_ap"].append(np.asarray(average_precision(scores=p, labels=y, weights=w), np.float64))
        if "out_ap" in keys:
            per_seed["out_ap"].append(np.asarray(average_precision(scores=1 - p, labels=1 - y, weights=w), np.float64))
        if "inout_acc" in keys:
            with np.errstate(invalid="ignore", divide="ignore"):
                per_seed["inout_acc"].append((w @ ((p >= 0.5) == y).astype(np.float64)) / w.sum(1))
    return {k: np.stack(v, 1) for k, v in per_seed.items()}


def compare_rows(*, samples: pd.DataFrame, rows: dict[str, str], references: list[str],
                 keys: tuple[str, ...] = ALL_KEYS, primary: tuple[str, ...] = (), ci: float = 0.95) -> dict:
    """``samples``: per-sample table with columns row, seed, video_id, inout, p_in and the metrics
    (only ``keys`` are needed and reported); ``rows``: row name -> kind (variant | floor | ceiling |
    control | ...). Returns every row's values with intervals and its deltas vs each reference.
    Each delta entry: delta, ci95, se, df, p, p_holm (primary metrics, Holm within the row's
    contrast), excludes_zero (None with fewer than :data:`MIN_CLUSTERS` videos), better."""
    missing = [r for r in list(rows) + list(references) if r not in set(samples["row"])]
    if missing:
        raise ValueError(f"compare: no samples for {missing}; rows present: {sorted(set(samples['row']))}")
    videos = sorted(samples["video_id"].unique())
    seeds = {r: sorted(samples.loc[samples["row"] == r, "seed"].unique()) for r in set(rows) | set(references)}
    vals = {r: row_seed_values(df=samples[samples["row"] == r], videos=videos, seeds=seeds[r], keys=keys)
            for r in seeds}
    why_not = too_few_clusters(len(videos))
    out = {"intervals": {"method": METHOD, "unit": "test videos (clusters, paired across rows) x training seeds "
                                                  "(per row)",
                         "n_test_videos": len(videos), "test_videos": videos, "ci": ci,
                         "min_test_videos_for_significance": MIN_CLUSTERS, "significance_not_assessed": why_not,
                         "primary": list(primary),
                         "seeds": {r: [int(s) for s in seeds[r]] for r in rows}},
           "rows": {}, "deltas": {}}
    for r, kind in rows.items():
        iv = {k: contrast_interval(plus=[vals[r][k]], ci=ci) for k in keys}
        out["rows"][r] = {"kind": kind, "n_seeds": len(seeds[r]), "metrics": {k: iv[k]["estimate"] for k in keys},
                          "ci95": {k: iv[k]["ci"] for k in keys}}
        out["deltas"][r] = {}
        for ref in references:
            if ref != r:
                out["deltas"][r][f"vs_{ref}"] = delta_entries(plus=vals[r], minus=vals[ref], keys=keys,
                                                              primary=primary, why_not=why_not, ci=ci)
    return out


def delta_entries(*, plus: dict, minus: dict, keys, primary, why_not: str | None, ci: float) -> dict:
    """Per metric: the contrast ``plus - minus`` (per-seed value arrays per key) with its interval."""
    entry = {}
    for k in keys:
        iv = contrast_interval(plus=[plus[k]], minus=[minus[k]], ci=ci)
        lo, hi = iv["ci"]
        d = iv["estimate"]
        entry[k] = {"delta": d, "ci95": [lo, hi], "se": iv["se"], "df": iv["df"], "p": iv["p"],
                    "excludes_zero": None if why_not or lo is None else bool(lo > 0 or hi < 0),
                    "better": None if d is None else bool((d < 0) == (k in LOWER_IS_BETTER))}
    adj = holm({k: entry[k]["p"] for k in primary if k in entry})
    for k, p in adj.items():
        entry[k]["p_holm"] = p
        entry[k]["significant"] = None if why_not or p is None else bool(p < 1 - ci)
    return entry


def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None
