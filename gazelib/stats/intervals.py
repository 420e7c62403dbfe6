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
from collections.abc import Sequence

import numpy as np
from scipy import stats as sstats

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


def contrast_interval(*, plus: list[np.ndarray], minus: Sequence[np.ndarray] = (), ci: float = 0.95,
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
    out: dict[str, float | None] = {k: None for k in p}
    m, running = len(known), 0.0
    for i, (v, k) in enumerate(known):
        running = max(running, min(1.0, (m - i) * v))
        out[k] = running
    return out



def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None
