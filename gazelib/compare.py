"""Compare variants against the baseline with a paired bootstrap.

For a metric m and variant v, the paired difference per resampling unit u is
d_u = mean m_v(u) - mean m_baseline(u) over the same (video, viewer, step) triples. The
95% interval is the 2.5 / 97.5 percentiles of the mean of d over units drawn with
replacement. Units are test videos when there are at least ``min_videos``; otherwise
blocks of ``block_s`` seconds of test time (the report says which).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LOWER_IS_BETTER = {"l2", "kl"}


def paired_units(*, steps_v: pd.DataFrame, steps_b: pd.DataFrame, metric: str, unit: str, block_steps: int) -> pd.DataFrame:
    key = ["video_id", "viewer", "step"]
    j = steps_v[key + [metric]].merge(steps_b[key + [metric]], on=key, suffixes=("_v", "_b")).dropna()
    j["unit"] = j["video_id"] if unit == "video" else j["video_id"] + ":" + (j["step"] // block_steps).astype(str)
    return j.groupby("unit")[[f"{metric}_v", f"{metric}_b"]].mean()


def bootstrap_delta(*, units: pd.DataFrame, metric: str, n_boot: int, seed: int) -> dict:
    d = (units[f"{metric}_v"] - units[f"{metric}_b"]).to_numpy()
    if d.size == 0:
        return {"delta": float("nan"), "ci95": [float("nan"), float("nan")], "n_units": 0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"delta": float(d.mean()), "ci95": [float(lo), float(hi)], "n_units": int(d.size),
            "excludes_zero": bool(lo > 0 or hi < 0)}


def compare_variants(*, evals: dict[str, dict], steps: dict[str, pd.DataFrame], baseline: str, n_boot: int,
                     seed: int, min_videos: int, block_steps: int, block_s: float) -> dict:
    """``evals``: per variant the eval JSON; ``steps``: per variant its per-step table (model rows)."""
    n_videos = steps[baseline]["video_id"].nunique() if baseline in steps else 0
    unit = "video" if n_videos >= min_videos else "block"
    out = {"baseline": baseline, "bootstrap": {"unit": unit, "n_test_videos": int(n_videos), "n_boot": n_boot,
                                               "block_s": block_s if unit == "block" else None},
           "variants": {}}
    for v, ev in sorted(evals.items()):
        entry = {"metrics": ev["model"], "floor_centre_prior": ev["centre_prior"],
                 "ceiling_inter_observer": ev["inter_observer"], "delta_vs_baseline": {}}
        if v != baseline and baseline in evals:
            for m in ("l2", "auc", "hit1", "hit5"):
                units = paired_units(steps_v=steps[v], steps_b=steps[baseline], metric=m, unit=unit,
                                     block_steps=block_steps)
                entry["delta_vs_baseline"][m] = bootstrap_delta(units=units, metric=m, n_boot=n_boot, seed=seed)
            for m in ("nss", "cc", "sim", "kl", "auc_judd", "sauc", "ig", "inout_ap", "inout_acc"):
                entry["delta_vs_baseline"][m] = {"delta": ev["model"][m] - evals[baseline]["model"][m]}
        out["variants"][v] = entry
    return out


def render_table(cmp: dict) -> str:
    cols = ["l2", "auc", "hit1", "nss", "cc", "sauc", "ig", "inout_ap"]
    head = "| variant | " + " | ".join(cols) + " | Δl2 vs baseline [95% CI] | ΔAUC vs baseline [95% CI] |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]

    def fmt(x):
        return "nan" if x is None or not np.isfinite(x) else f"{x:.3f}"

    first = next(iter(cmp["variants"].values()), None)
    for name, e in cmp["variants"].items():
        d = e["delta_vs_baseline"]
        ci = lambda m: (f"{d[m]['delta']:+.3f} [{d[m]['ci95'][0]:+.3f}, {d[m]['ci95'][1]:+.3f}]"  # noqa: E731
                        if m in d else "—")
        lines.append(f"| {name} | " + " | ".join(fmt(e["metrics"][c]) for c in cols) + f" | {ci('l2')} | {ci('auc')} |")
    if first is not None:
        for label, key in (("centre prior (floor)", "floor_centre_prior"), ("inter-observer (ceiling)", "ceiling_inter_observer")):
            lines.append(f"| {label} | " + " | ".join(fmt(first[key][c]) for c in cols) + " | | |")
    b = cmp["bootstrap"]
    unit = (f"test videos ({b['n_test_videos']})" if b["unit"] == "video"
            else f"{b['block_s']:.0f} s blocks of test time ({b['n_test_videos']} test videos are too few to resample)")
    return "\n".join(lines) + f"\n\nPaired bootstrap ({b['n_boot']} draws) over {unit}.\n"
