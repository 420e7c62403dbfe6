r"""Benchmark-protocol saliency: one predicted map per frame against the fixations of *all* observers.

This is the protocol of the video-saliency benchmarks (DHF1K, DIEM and the audio-visual sets of
STAViS / DiffSal / CASP-Net, the MIT saliency benchmark for images), *beside* the per-viewer family
of :mod:`gazelib.metrics` (one viewer's one fixation per sample). Every name here starts with
``bench_`` so the two families are never mistaken for each other (docs/benchmark.md).

Per frame (one evaluation step of ``align.fps``):

- the **prediction** S [H, W]: the map a row predicts for that frame on the evaluation map
  (``evaluate.saliency_width`` columns, rows from the frame's aspect; grid -> bilinear resize as
  in the per-viewer family). For rows that predict per viewer (track variants, persistence) S is
  the mean over the video's viewers of their maps at that step;
- the **fixations** F: the set of distinct evaluation-map pixels hit by an in-frame valid gaze
  sample of any viewer at that step (the MIT code's binary ``fixationMap``: two observers on one
  pixel count once); pixel of a point: ``x_px = min(int(x W), W - 1)``, same for y;
- the **fixation map** G = ``gaussian_filter(B, sigma)`` of the binary map B (1 at F), zero padding
  (``mode="constant"``), truncated at 4 sigma (scipy.ndimage); sigma in pixels per axis, from
  degrees of visual angle when the corpus geometry is known, else a fraction of the frame width.

Metrics (S and G flattened over the P = H W pixels; ``EPS`` = 2.2204e-16, MATLAB's ``eps``):

- ``bench_cc``  = Pearson r(S, G); 0.0 when S is constant (max == min), nan when G is constant.
- ``bench_nss`` = mean_{f in F} (S_f - mean S) / std S  (population std); 0.0 for a constant S.
- ``bench_sim`` = sum_p min(S'_p, G'_p), with X' = X / sum X (S shifted by -min S first if negative;
  a zero map becomes uniform, pysaliency ``convert_saliency_map_to_density``).
- ``bench_kl``  = sum_p G'_p log(EPS + G'_p / (S'_p + EPS))   (MIT ``KLdiv``; nats; lower is better).
- ``bench_auc_judd`` (MIT ``AUC_Judd``): thresholds at the fixated values; for a threshold th,
  TP(th) = #{f in F: S_f >= th} / |F|, FP(th) = (#{p: S_p >= th} - #{f: S_f >= th}) / (P - |F|);
  the curve (0, 0), (FP, TP) for each distinct fixated value from the highest down, (1, 1);
  area by the trapezoid rule. MIT breaks ties with a random jitter of 1e-7; here tied values share
  one threshold (deterministic; identical when the fixated values are distinct, and equal to
  pysaliency ``roc.general_roc(S_F, S_rest, judd=1)`` with ties).
- ``bench_sauc`` (shuffled AUC, MIT ``AUC_shuffled``): positives S_f (f in F), negatives S at the
  distinct pixels of the fixations of *other* videos (``other_xy``); the exact Mann-Whitney AUC
  (#{neg < pos} + 0.5 #{neg == pos}) / (|pos| |neg|). MIT averages 100 random draws of |F|
  negatives with thresholds in steps of 0.1; this is the value those draws estimate, without the
  step quantisation and without randomness. nan without negatives.
- ``bench_ig`` (MIT ``InfoGain``; Kümmerer et al. 2015): mean_{f in F} log2(EPS + S'_f) - log2(EPS + Q'_f)
  in bits per fixation, Q the centre-bias prior fitted on train (the same prior as the per-viewer
  ``ig``), both normalised to sum 1.

Frames are averaged per video, then videos (each video weighs the same, as the benchmarks do);
intervals over videos are :mod:`gazelib.stats.intervals`'s (one "sample" per video and row: its frame mean).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

EPS = 2.2204e-16
TRUNCATE = 4.0
BENCH_KEYS = ("bench_cc", "bench_nss", "bench_sim", "bench_kl", "bench_auc_judd", "bench_sauc", "bench_ig")
BENCH_LOWER_IS_BETTER = frozenset({"bench_kl"})
# chance level of each metric with one that does not depend on the map (docs/benchmark.md): % of ceiling
CHANCE = {"bench_cc": 0.0, "bench_nss": 0.0, "bench_ig": 0.0, "bench_auc_judd": 0.5, "bench_sauc": 0.5,
          "auc_vat": 0.5, "nss": 0.0, "cc": 0.0, "ig": 0.0, "auc_judd": 0.5, "sauc": 0.5}


# ----------------------------------------------------------------------------- helpers

def _map(name: str, s) -> np.ndarray:
    a = np.asarray(s, np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty [H, W] map, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _fix_idx(fix, size: int) -> np.ndarray:
    f = np.unique(np.asarray(fix, np.int64).ravel())
    if f.size == 0:
        raise ValueError("at least one fixated pixel is needed")
    if f.min() < 0 or f.max() >= size:
        raise ValueError(f"fixated pixel indices must lie in [0, {size}), got [{f.min()}, {f.max()}]")
    return f


def density(s: np.ndarray) -> np.ndarray:
    """pysaliency ``convert_saliency_map_to_density``: shift a negative map to min 0, divide by the sum
    (a zero map becomes uniform)."""
    d = np.asarray(s, np.float64).ravel()
    if d.min() < 0:
        d = d - d.min()
    tot = d.sum()
    return d / tot if tot > 0 else np.full(d.size, 1.0 / d.size)


def fixation_pixels(*, xy, hw: tuple[int, int]) -> np.ndarray:
    """Distinct row-major pixel indices of normalised points ``xy`` [N, 2] on an (H, W) map
    (``x_px = min(int(x W), W - 1)``, clipped to >= 0; NaN rows are dropped)."""
    h, w = hw
    a = np.asarray(xy, np.float64).reshape(-1, 2)
    a = a[np.isfinite(a).all(1)]
    x = np.clip(a[:, 0] * w, 0, w - 1).astype(np.int64)
    y = np.clip(a[:, 1] * h, 0, h - 1).astype(np.int64)
    return np.unique(y * w + x)


def fixation_map(*, fix, hw: tuple[int, int], sigma_px: tuple[float, float]) -> np.ndarray:
    """G = gaussian_filter(B, (sigma_y, sigma_x), mode="constant", truncate=4) of the binary map B
    with 1 at the row-major pixels ``fix``; [H, W]."""
    h, w = hw
    b = np.zeros(h * w)
    b[_fix_idx(fix, h * w)] = 1.0
    sy, sx = (float(v) for v in sigma_px)
    if not (sy > 0 and sx > 0 and np.isfinite(sy) and np.isfinite(sx)):
        raise ValueError(f"sigma_px must be positive, got {sigma_px!r}")
    return gaussian_filter(b.reshape(h, w), (sy, sx), mode="constant", cval=0.0, truncate=TRUNCATE)


# ----------------------------------------------------------------------------- metrics

def bench_cc(*, s, g) -> float:
    """Pearson correlation of the two maps: sum (S - mean S)(G - mean G) / sqrt(sum (S - mean S)^2 sum (G - mean G)^2);
    0.0 when S is constant, nan when G is constant (MIT ``CC``, pysaliency ``CC``)."""
    a, b = _map("s", s).ravel(), _map("g", g).ravel()
    if a.shape != b.shape:
        raise ValueError(f"s and g must have the same shape, got {np.shape(s)} and {np.shape(g)}")
    if b.max() == b.min():
        return float("nan")
    if a.max() == a.min():
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def bench_nss(*, s, fix) -> float:
    """mean over the fixated pixels of (S - mean S) / std S (population std); 0.0 for a constant S."""
    a = _map("s", s).ravel()
    f = _fix_idx(fix, a.size)
    if a.max() == a.min():
        return 0.0
    return float(((a[f] - a.mean()) / a.std()).mean())


def bench_sim(*, s, g) -> float:
    """Histogram intersection sum_p min(S'_p, G'_p) of the two maps as densities (range [0, 1])."""
    a, b = _map("s", s), _map("g", g)
    if a.shape != b.shape:
        raise ValueError(f"s and g must have the same shape, got {a.shape} and {b.shape}")
    return float(np.minimum(density(a), density(b)).sum())


def bench_kl(*, s, g) -> float:
    """KL(G' || S') = sum_p G'_p log(EPS + G'_p / (S'_p + EPS)) in nats (MIT ``KLdiv``); >= about 0."""
    a, b = _map("s", s), _map("g", g)
    if a.shape != b.shape:
        raise ValueError(f"s and g must have the same shape, got {a.shape} and {b.shape}")
    p, q = density(a), density(b)
    return float((q * np.log(EPS + q / (p + EPS))).sum())


def bench_auc_judd(*, s, fix) -> float:
    """MIT AUC-Judd: ROC over thresholds at the fixated values (module docstring), trapezoid area."""
    a = _map("s", s).ravel()
    f = _fix_idx(fix, a.size)
    n_f, n_p = f.size, a.size
    if n_p == n_f:
        return float("nan")  # no unfixated pixel: FP undefined
    pos = np.sort(a[f])[::-1]
    th = np.unique(pos)[::-1]                              # distinct fixated values, high to low
    sorted_all = np.sort(a)
    above = n_p - np.searchsorted(sorted_all, th, side="left")   # #{p: S_p >= th}
    tp_n = n_f - np.searchsorted(pos[::-1], th, side="left")     # #{f: S_f >= th}
    tp = np.r_[0.0, tp_n / n_f, 1.0]
    fp = np.r_[0.0, (above - tp_n) / (n_p - n_f), 1.0]
    return float(np.sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1]) / 2.0))


def mann_whitney_auc(*, pos, neg) -> float:
    """(#{neg < pos} + 0.5 #{neg == pos}) / (|pos| |neg|) over all pairs; nan if either side is empty."""
    p, n = np.asarray(pos, np.float64).ravel(), np.sort(np.asarray(neg, np.float64).ravel())
    if p.size == 0 or n.size == 0:
        return float("nan")
    less = np.searchsorted(n, p, side="left")
    leq = np.searchsorted(n, p, side="right")
    return float((less + 0.5 * (leq - less)).sum() / (p.size * n.size))


def bench_sauc(*, s, fix, other) -> float:
    """Shuffled AUC: Mann-Whitney AUC of S at the fixated pixels against S at the distinct pixels
    ``other`` fixated in other videos (nan when ``other`` is empty)."""
    a = _map("s", s).ravel()
    f = _fix_idx(fix, a.size)
    o = np.unique(np.asarray(other, np.int64).ravel())
    if o.size and (o.min() < 0 or o.max() >= a.size):
        raise ValueError(f"other pixel indices must lie in [0, {a.size})")
    return mann_whitney_auc(pos=a[f], neg=a[o])


def bench_ig(*, s, fix, prior) -> float:
    """mean_{f in F} log2(EPS + S'_f) - log2(EPS + Q'_f), bits per fixation over the prior Q."""
    a, q = _map("s", s), _map("prior", prior)
    if a.shape != q.shape:
        raise ValueError(f"s and prior must have the same shape, got {a.shape} and {q.shape}")
    f = _fix_idx(fix, a.size)
    return float((np.log2(EPS + density(a)[f]) - np.log2(EPS + density(q)[f])).mean())


# ----------------------------------------------------------------------------- per frame

def frame_targets(*, gaze, ok, hw: tuple[int, int], sigma_px: tuple[float, float]) -> dict:
    """Targets of every frame of one video: ``gaze`` [V, T, 2] normalised, ``ok`` [V, T] in-frame and valid.

    Returns {"steps": [F] steps with at least one fixation, "fix": list of F pixel arrays,
    "g": [F, H*W] fixation maps}."""
    gaze, ok = np.asarray(gaze, np.float64), np.asarray(ok, bool)
    steps = np.nonzero(ok.any(0))[0]
    fix = [fixation_pixels(xy=gaze[ok[:, t], t], hw=hw) for t in steps]
    g = np.stack([fixation_map(fix=f, hw=hw, sigma_px=sigma_px).ravel() for f in fix]) if fix else \
        np.zeros((0, hw[0] * hw[1]))
    return {"steps": steps, "fix": fix, "g": g}


def score_frames(*, maps, targets: dict, prior, other, chunk: int = 256) -> dict:
    """Every ``bench_*`` metric per frame, vectorised over frames (equal to the single-map functions
    above, which are the definitions; tests/test_benchmark.py checks it): ``maps`` [F, H, W] (one per
    target frame, same order), ``targets`` from :func:`frame_targets` (its ``fix`` and ``g``),
    ``prior`` [H, W], ``other`` distinct pixels of other videos' fixations. Returns key -> [F]."""
    m = np.asarray(maps, np.float64)
    n = len(targets["fix"])
    g_all = np.asarray(targets["g"], np.float64)
    if m.ndim != 3 or m.shape[0] != n or g_all.shape != (n, m.shape[1] * m.shape[2]):
        raise ValueError(f"maps must be [{n}, H, W] matching the targets, got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("maps must be finite")
    p_n = m.shape[1] * m.shape[2]
    q = _map("prior", prior)
    if q.size != p_n:
        raise ValueError(f"prior must have {p_n} pixels, got shape {q.shape}")
    log_q = np.log2(EPS + density(q))
    o = np.unique(np.asarray(other, np.int64).ravel())
    out = {k: np.empty(n) for k in BENCH_KEYS}
    for c0 in range(0, n, chunk):
        sl = slice(c0, min(n, c0 + chunk))
        _score_chunk(s=m[sl].reshape(-1, p_n), g=g_all[sl], fix=[_fix_idx(f, p_n) for f in targets["fix"][sl]],
                     log_q=log_q, other=o, out={k: v[sl] for k, v in out.items()})
    return out


def _densities(x: np.ndarray) -> np.ndarray:
    """Row-wise :func:`density` of [F, P]."""
    mn = x.min(1, keepdims=True)
    d = np.where(mn < 0, x - mn, x)
    tot = d.sum(1, keepdims=True)
    d = d / np.where(tot > 0, tot, 1.0)
    d[(tot <= 0)[:, 0]] = 1.0 / x.shape[1]
    return d


def _score_chunk(*, s, g, fix, log_q, other, out) -> None:
    f_n, p_n = s.shape
    counts = np.array([f.size for f in fix])
    fi = np.repeat(np.arange(f_n), counts)                     # frame of each fixation
    px = np.concatenate(fix)
    v = s[fi, px]                                              # S at each fixation
    const = s.max(1) == s.min(1)
    mean, std = s.mean(1), s.std(1)
    # CC
    a, b = s - mean[:, None], g - g.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1)), -1.0, 1.0)
    out["bench_cc"][:] = np.where(g.max(1) == g.min(1), np.nan, np.where(const, 0.0, r))
    # NSS
    z = (v - mean[fi]) / np.where(const, 1.0, std)[fi]
    out["bench_nss"][:] = np.where(const, 0.0, np.bincount(fi, z, f_n) / counts)
    # SIM, KL, IG
    ds, dg = _densities(s), _densities(g)
    out["bench_sim"][:] = np.minimum(ds, dg).sum(1)
    out["bench_kl"][:] = (dg * np.log(EPS + dg / (ds + EPS))).sum(1)
    out["bench_ig"][:] = np.bincount(fi, np.log2(EPS + ds[fi, px]) - log_q[px], f_n) / counts
    # AUC-Judd: one curve point per fixation (tied fixated values give the same point: no area)
    above = np.empty(v.size)
    tp_n = np.empty(v.size)
    starts = np.r_[0, np.cumsum(counts)]
    for i in range(f_n):
        lo, hi = starts[i], starts[i + 1]
        vi = v[lo:hi]
        srt = np.sort(s[i])
        above[lo:hi] = p_n - np.searchsorted(srt, vi, side="left")
        tp_n[lo:hi] = (vi[None, :] >= vi[:, None]).sum(1)
    order = np.lexsort((-v, fi))
    fi_o = fi[order]
    tp = tp_n[order] / counts[fi_o]
    with np.errstate(invalid="ignore", divide="ignore"):
        fp = (above[order] - tp_n[order]) / (p_n - counts[fi_o])
    first = np.r_[True, fi_o[1:] != fi_o[:-1]]
    tp_prev = np.where(first, 0.0, np.r_[0.0, tp[:-1]])
    fp_prev = np.where(first, 0.0, np.r_[0.0, fp[:-1]])
    area = np.bincount(fi_o, (fp - fp_prev) * (tp + tp_prev) / 2.0, f_n)
    last = np.r_[fi_o[1:] != fi_o[:-1], True]
    area += np.bincount(fi_o[last], (1.0 - fp[last]) * (1.0 + tp[last]) / 2.0, f_n)
    out["bench_auc_judd"][:] = np.where(counts == p_n, np.nan, area)
    # shuffled AUC: Mann-Whitney against S at the other videos' fixated pixels
    if other.size == 0:
        out["bench_sauc"][:] = np.nan
        return
    neg = np.sort(s[:, other], axis=1)
    mw = np.empty(v.size)
    for i in range(f_n):
        lo, hi = starts[i], starts[i + 1]
        less = np.searchsorted(neg[i], v[lo:hi], side="left")
        mw[lo:hi] = less + 0.5 * (np.searchsorted(neg[i], v[lo:hi], side="right") - less)
    out["bench_sauc"][:] = np.bincount(fi, mw, f_n) / (counts * other.size)


def sigma_pixels(*, hw: tuple[int, int], sigma_deg: float, sigma_frame: float, geometry: dict | None,
                 video_id: str) -> dict:
    """The fixation-map sigma in evaluation-map pixels (rows, cols) and how it was chosen.

    With the corpus geometry's ``deg_per_unit`` for this video (screen size and distance known):
    sigma_x = sigma_deg / deg_per_unit[0] * W, sigma_y = sigma_deg / deg_per_unit[1] * H (the video's
    visual angle through its centre, :func:`gazelib.gaze.geometry.visual_geometry`). Otherwise
    sigma_x = sigma_y = sigma_frame * W (a fraction of the frame width)."""
    h, w = hw
    dpu = ((geometry or {}).get("deg_per_unit") or {}).get(video_id)
    if dpu is not None and "distance_cm" in (geometry or {}):
        return {"sigma_px": (sigma_deg / float(dpu[1]) * h, sigma_deg / float(dpu[0]) * w),
                "from": f"{sigma_deg:g} deg of visual angle (corpus geometry)"}
    return {"sigma_px": (sigma_frame * w, sigma_frame * w),
            "from": f"{sigma_frame:g} of the frame width (no screen geometry in corpus.yaml)"}


# ----------------------------------------------------------------------------- evaluate glue

PROTOCOL = ("Benchmark protocol (bench_*; docs/benchmark.md), beside the per-viewer family: per evaluation step, "
            "each row's map (rows that predict per viewer, i.e. track variants and persistence: the mean of the "
            "video's viewers' maps) on the evaluation map against the fixations of all observers at that step "
            "(distinct pixels) and their fixation map blurred with sigma {sigma}; CC, NSS, SIM, KL, AUC-Judd (MIT: "
            "thresholds at the fixated values), shuffled AUC (negatives: other test videos' fixations) and IG "
            "over the train centre prior (bits per fixation); frames averaged per video, then videos. The "
            "inter_observer row is not scored here (its per-viewer maps, averaged, contain every target fixation); "
            "the split-half ceiling takes its place.")


def video_targets(*, lab: dict, video_id: str, hw: tuple[int, int], other_xy, cfg: dict, geometry: dict | None) -> dict:
    """What every row of one video is scored against: sigma, frame targets and sAUC negative pixels."""
    sig = sigma_pixels(hw=hw, sigma_deg=cfg["sigma_deg"], sigma_frame=cfg["sigma_frame"], geometry=geometry,
                       video_id=video_id)
    ok = lab["valid"].astype(bool) & (lab["inout"] > 0)
    return {**sig, "targets": frame_targets(gaze=lab["gaze"], ok=ok, hw=hw, sigma_px=sig["sigma_px"]),
            "other_pixels": fixation_pixels(xy=other_xy, hw=hw)}


def score_row(*, row: str, seed: int, probs: dict, per_video: dict, gh: int, gw: int):
    """Per-frame table of one row: ``probs[vid]`` [V, T, cells] (or [T, cells]); columns row, seed,
    video_id, step and every ``bench_*``."""
    import pandas as pd

    from gazelib.metrics import resize_bilinear

    frames = []
    for vid in sorted(probs):
        pv = per_video[vid]
        tg = pv["targets"]
        if not len(tg["steps"]):
            continue
        p = np.asarray(probs[vid], np.float64)
        p = p.mean(0) if p.ndim == 3 else p                    # the mean over the video's viewers
        maps = resize_bilinear(maps=p[tg["steps"]].reshape(-1, gh, gw), out_hw=pv["eval_hw"])
        res = score_frames(maps=maps, targets=tg, prior=pv["prior_eval"], other=pv["other_pixels"])
        frames.append(pd.DataFrame({"row": row, "seed": int(seed), "video_id": vid,
                                    "step": tg["steps"].astype(np.int32), **res}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["row", "seed", "video_id", "step", *BENCH_KEYS])


def _exact_mean(x) -> float:
    """Mean by exactly rounded summation (math.fsum): the same value whatever the table around it."""
    import math

    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return math.fsum(x.tolist()) / x.size if x.size else float("nan")


def video_means(frames):
    """Frames averaged per (row, seed, video): the unit the benchmark averages and intervals resample."""
    import pandas as pd

    out = [{"row": r, "seed": s, "video_id": v, **{k: _exact_mean(g[k]) for k in BENCH_KEYS}}
           for (r, s, v), g in frames.groupby(["row", "seed", "video_id"], sort=True)]
    return pd.DataFrame(out, columns=["row", "seed", "video_id", *BENCH_KEYS])


def summary(frames) -> dict:
    """Per row: the mean over videos of the frame means (model rows: then over seeds), and per seed."""
    vm = video_means(frames)
    out = {}
    for row, g in vm.groupby("row", sort=True):
        per_seed = {int(s): {k: _exact_mean(gs[k]) for k in BENCH_KEYS} for s, gs in g.groupby("seed", sort=True)}
        out[row] = {k: _num(_exact_mean([v[k] for v in per_seed.values()])) for k in BENCH_KEYS}
        out[row]["n_frames"] = int((frames["row"] == row).sum() // max(1, len(per_seed)))
        if len(per_seed) > 1:
            out[row]["per_seed"] = {f"seed{s}": {k: _num(v[k]) for k in BENCH_KEYS} for s, v in per_seed.items()}
    return out


def _num(x):
    x = float(x)
    return x if np.isfinite(x) else None


# ----------------------------------------------------------------------------- compare glue

def saturating_curve(k, s_inf: float, b: float, c: float):
    """The ceiling's curve model (gazelib.eval.ceiling, docs/benchmark.md): s(k) = s_inf - b k^(-c)."""
    return s_inf - b * np.asarray(k, np.float64) ** (-c)


def percent_of_ceiling(*, value, ceiling, key: str):
    """100 (value - chance) / (ceiling - chance); None without a chance level or a usable ceiling."""
    z = CHANCE.get(key)
    if z is None or value is None or ceiling is None or not np.isfinite(value) or ceiling == z:
        return None
    return float(100.0 * (value - z) / (ceiling - z))



def compare_block(*, root, variants: list[str], baseline: str, per_viewer_rows: dict, per_viewer_samples=None,
                  ci: float = 0.95) -> dict:
    """The benchmark family in ``metrics/compare.json``: every variant (its seeds), centre prior and
    persistence with intervals over test videos and deltas vs the baseline and persistence
    (:func:`gazelib.stats.intervals.compare_rows` on per-video frame means), the infinite-observer ceiling
    of both families (from ``reports/metrics/eval/<baseline>.json``) and every row as % of it, with a 95 %
    interval when ``per_viewer_samples`` (compare's per-sample table) is given for the per-viewer rows."""
    import json
    from pathlib import Path

    import pandas as pd

    from gazelib.eval.contrasts import compare_rows
    from gazelib.core.io import read_table
    from gazelib.core.layout import eval_metrics

    root = Path(root)
    tables = []
    for v in variants:
        p = root / "reports" / "eval" / v / "benchmark_frames.parquet"
        if not p.exists():
            raise FileNotFoundError(f"{p} missing: run evaluate@{v} (benchmark protocol)")
        df = read_table(p)[0]
        tables.append(df if v == baseline else df[df["row"] == v])      # floors from the baseline's file
    vm = video_means(pd.concat(tables, ignore_index=True))
    rows = {v: "variant" for v in variants} | {"centre_prior": "floor", "persistence": "floor"}
    out = compare_rows(samples=vm, rows=rows, references=[baseline, "persistence"], keys=BENCH_KEYS, ci=ci)
    out["unit"] = "per video: the mean over its frames; rows: the mean over videos (model rows: over seeds)"
    ev = json.loads((root / eval_metrics(baseline)).read_text()).get("benchmark", {})
    out["protocol"] = ev.get("protocol", "")
    ceiling = ev.get("ceiling") if isinstance(ev.get("ceiling"), dict) else {}
    pct, pct_ci = {"benchmark": {}, "per_viewer": {}}, {"benchmark": {}, "per_viewer": {}}
    fam = {"benchmark": (out["rows"], ceiling.get("benchmark", {}).get("metrics", {}), vm),
           "per_viewer": (per_viewer_rows, ceiling.get("per_viewer", {}).get("metrics", {}), per_viewer_samples)}
    for name, (rws, ceil, table) in fam.items():
        keys = tuple(k for k in ceil if k in CHANCE)
        for r, e in rws.items():
            pct[name][r] = {k: percent_of_ceiling(value=e["metrics"].get(k), ceiling=ceil[k]["s_inf"], key=k)
                            for k in keys}
            if table is not None and keys and (table["row"] == r).any():
                pct_ci[name][r] = _pct_intervals(df=table[table["row"] == r], ceil=ceil, keys=keys, ci=ci)
    return {"benchmark": out, "ceiling": {**ceiling, "pct_of_ceiling": pct, "pct_of_ceiling_ci95": pct_ci,
                                          "pct_definition": "100 (value - chance) / (ceiling - chance); chance: "
                                          + ", ".join(f"{k} {v:g}" for k, v in CHANCE.items())
                                          + "; interval: the jackknife over test videos of the ratio (row and "
                                            "ceiling refitted without each video) plus the row's seed variance"}}


def _pct_intervals(*, df, ceil: dict, keys, ci: float) -> dict:
    """95 % interval of each % of ceiling: per leave-one-video-out set and seed, the row's value over
    the ceiling fitted without that video (:func:`gazelib.stats.intervals.contrast_interval`)."""
    from gazelib.stats.intervals import contrast_interval
    from gazelib.eval.contrasts import row_seed_values

    videos = sorted(df["video_id"].unique())
    vals = row_seed_values(df=df, videos=videos, seeds=sorted(df["seed"].unique()), keys=keys)
    out = {}
    for k in keys:
        s_inf, z = ceil[k]["s_inf"], CHANCE[k]
        without = ceil[k].get("s_inf_without") or {}
        c = np.array([s_inf] + [without.get(v, s_inf) for v in videos], np.float64)   # absent: not in the fit
        if s_inf is None or not np.isfinite(c).all() or (c == z).any():
            out[k] = [None, None]
            continue
        out[k] = contrast_interval(plus=[100.0 * (vals[k] - z) / (c[:, None] - z)], ci=ci)["ci"]
    return out


def render_markdown(block: dict) -> str:
    """compare.md's benchmark section: rows, deltas and the ceiling with % of ceiling."""
    b, c = block["benchmark"], block["ceiling"]
    keys = list(BENCH_KEYS)
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    lines = ["## Rows under the benchmark protocol (all observers per frame; bench_*)", "",
             "| row | kind | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for r, e in b["rows"].items():
        lines.append(f"| {r} | {e['kind']} | " + " | ".join(fmt(e["metrics"][k]) for k in keys) + " |")
    for r, d in b["deltas"].items():
        for ref, ent in d.items():
            lines.append(f"| {r} {ref.replace('_', ' ')} | Δ | " + " | ".join(
                "–" if ent[k]["delta"] is None else f"{ent[k]['delta']:+.3f}" + (
                    "" if ent[k]["ci95"][0] is None else f" [{ent[k]['ci95'][0]:+.3f}, {ent[k]['ci95'][1]:+.3f}]")
                for k in keys) + " |")
    lines += ["", b.get("protocol", ""), ""]
    for fam in ("benchmark", "per_viewer"):
        cf = c.get(fam, {})
        lines.append(f"### Ceiling at infinite observers: {fam.replace('_', '-')} family")
        if "metrics" not in cf or not cf["metrics"]:
            lines += ["", f"Not computed: {cf.get('why_not', 'no ceiling in the baseline evaluation')}.", ""]
            continue
        mk = list(cf["metrics"])
        lines += ["", f"k = {cf['k']} observers; curve model: {c.get('model', '')}.", "",
                  "| | " + " | ".join(mk) + " |", "|---" * (len(mk) + 1) + "|",
                  f"| curve at k = {', '.join(map(str, cf['k']))} | " + " | ".join(
                      " / ".join(fmt(x) for x in cf["metrics"][k]["curve"]) for k in mk) + " |",
                  "| ceiling (k → ∞) [95% CI] | " + " | ".join(
                      fmt(cf["metrics"][k]["s_inf"]) + ("" if cf["metrics"][k].get("improves_with_k", True) else " †") + ("" if cf["metrics"][k]["ci95"][0] is None else
                                                        f" [{cf['metrics'][k]['ci95'][0]:.3f}, "
                                                        f"{cf['metrics'][k]['ci95'][1]:.3f}]") for k in mk) + " |"]
        for r, p in c["pct_of_ceiling"][fam].items():
            ci_r = c.get("pct_of_ceiling_ci95", {}).get(fam, {}).get(r, {})
            lines.append(f"| {r}: % of ceiling | " + " | ".join(
                "–" if p.get(k) is None else f"{round(p[k]) + 0.0:.0f} %" + (
                    f" [{round(ci_r[k][0]) + 0.0:.0f}, {round(ci_r[k][1]) + 0.0:.0f}]"
                    if ci_r.get(k, [None])[0] is not None else "")
                for k in mk) + " |")
        lines.append("")
    lines.append("% of ceiling: " + c.get("pct_definition", "") + ". † the k-observer predictor does not improve "
                 "with k on this metric (e.g. its centre-prior share costs shuffled AUC, which discounts centre bias): "
                 "that value is not an upper bound, and a row can exceed 100 %.")
    return "\n".join(lines) + "\n"
