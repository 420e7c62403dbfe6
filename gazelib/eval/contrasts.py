"""Rows compared on the metrics: per-seed values of every metric over the test videos, and each
contrast's interval, p-value (Holm within the primary metrics) and direction
(:mod:`gazelib.stats.intervals` holds the statistics; this module knows the metrics)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from gazelib.metrics import LOWER_IS_BETTER, MEAN_KEYS, POOLED_KEYS, average_precision
from gazelib.stats.intervals import MIN_CLUSTERS, METHOD, contrast_interval, holm, leave_one_out_weights, pooled_means, too_few_clusters


ALL_KEYS = MEAN_KEYS + POOLED_KEYS


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
    out: dict = {"intervals": {"method": METHOD, "unit": "test videos (clusters, paired across rows) x training seeds "
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

