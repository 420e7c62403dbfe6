"""Intervals over test videos and seeds (gazelib.stats.intervals): coverage by simulation at the numbers
of clusters they are used with, a world with no effect, few clusters, and the table path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.stats.intervals import MIN_CLUSTERS, contrast_interval, holm, leave_one_out_weights, pooled_means
from gazelib.eval.contrasts import compare_rows

SEEDS = 3


def _world(rng, *, n: int, effect: float, video_sd: float, seed_sd: float, inter_sd: float, skew: bool,
           seeds_a: int = SEEDS, seeds_b: int = SEEDS):
    """Per-seed x video sums and counts of two rows (a = b + effect per video) in one simulated study.

    Each video has its own size (samples), level and true effect (normal or skewed around
    ``effect``); each training run (row, seed) shifts every video alike (seed_sd) plus a run x video
    part (inter_sd); samples add noise. The estimand is ``effect``: sizes are independent of effects."""
    m = rng.integers(30, 400, n).astype(float)
    level = rng.normal(0.75, 0.05, n)
    dev = rng.gamma(2.0, 1.0, n) - 2.0 if skew else rng.normal(0, 1.0, n)
    delta = effect + video_sd * dev / np.sqrt(2.0 if skew else 1.0)

    def row(mean_v, s):
        b = rng.normal(0, seed_sd, (s, 1)) + rng.normal(0, inter_sd, (s, n))
        per = mean_v[None] + b
        sums = m[None] * per + np.sqrt(m)[None] * 0.2 * rng.standard_normal((s, n))
        return sums, np.broadcast_to(m, (s, n)).copy()

    return row(level + delta, seeds_a), row(level, seeds_b)


def _interval(world, n):
    w = leave_one_out_weights(n)
    (sa, ca), (sb, cb) = world
    return contrast_interval(plus=[pooled_means(sums=sa, counts=ca, weights=w)],
                             minus=[pooled_means(sums=sb, counts=cb, weights=w)])


SCENARIOS = {  # video_sd, seed_sd, inter_sd, skew
    "videos dominate": (0.03, 0.002, 0.002, False),
    "seeds dominate": (0.005, 0.02, 0.002, False),
    "mixed, skewed effects": (0.03, 0.01, 0.005, True),
}


@pytest.mark.parametrize("n", [5, 8, 16])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_coverage_at_the_cluster_counts_used(n, scenario):
    video_sd, seed_sd, inter_sd, skew = SCENARIOS[scenario]
    rng = np.random.default_rng(1000 * n + len(scenario))
    reps, truth, hits = 1500, 0.02, 0
    for _ in range(reps):
        iv = _interval(_world(rng, n=n, effect=truth, video_sd=video_sd, seed_sd=seed_sd, inter_sd=inter_sd,
                              skew=skew), n)
        lo, hi = iv["ci"]
        hits += lo <= truth <= hi
    assert hits / reps >= 0.93, f"{scenario}, {n} videos: 95 % interval covered the truth in {hits / reps:.3f}"


@pytest.mark.parametrize("n", [5, 8, 16])
def test_a_world_with_no_effect_comes_out_with_no_effect(n):
    rng = np.random.default_rng(n)
    reps, false_pos = 1500, 0
    for _ in range(reps):
        iv = _interval(_world(rng, n=n, effect=0.0, video_sd=0.02, seed_sd=0.01, inter_sd=0.004, skew=False), n)
        lo, hi = iv["ci"]
        false_pos += lo > 0 or hi < 0
    assert false_pos / reps <= 0.07


def test_seed_variance_is_not_ignored():
    """With one video-level draw but noisy training runs, a videos-only interval would be too narrow."""
    rng = np.random.default_rng(7)
    n, reps, hits_full, hits_videos_only = 8, 1000, 0, 0
    for _ in range(reps):
        world = _world(rng, n=n, effect=0.0, video_sd=0.002, seed_sd=0.03, inter_sd=0.001, skew=False)
        iv = _interval(world, n)
        hits_full += iv["ci"][0] <= 0 <= iv["ci"][1]
        # the same estimate with the seed term dropped: per-seed means pooled first (one "seed")
        w = leave_one_out_weights(n)
        (sa, ca), (sb, cb) = world
        a = pooled_means(sums=sa, counts=ca, weights=w).mean(1, keepdims=True)
        b = pooled_means(sums=sb, counts=cb, weights=w).mean(1, keepdims=True)
        lo, hi = contrast_interval(plus=[a], minus=[b])["ci"]
        hits_videos_only += lo <= 0 <= hi
    assert hits_full / reps >= 0.93
    assert hits_videos_only / reps < 0.8   # the channel the seed term closes


def _table(rng, n_videos, rows):
    recs = []
    for r, (shift, seeds) in rows.items():
        for s in seeds:
            for v in range(n_videos):
                k = int(rng.integers(5, 40))
                recs.append(pd.DataFrame({"row": r, "seed": s, "video_id": f"v{v:02d}", "inout": rng.integers(0, 2, k),
                                          "p_in": rng.uniform(0, 1, k), "auc_vat": rng.uniform(0, 1, k) + shift,
                                          "ig": rng.normal(shift, 1, k)}))
    return pd.concat(recs, ignore_index=True)


def test_compare_rows_uses_the_simulated_interval_and_marks_nothing_below_five_videos():
    rng = np.random.default_rng(0)
    df = _table(rng, 6, {"a": (0.4, [0, 1, 2]), "b": (0.0, [0, 1, 2]), "floor": (0.0, [-1])})
    out = compare_rows(samples=df, rows={"a": "variant", "b": "variant", "floor": "floor"}, references=["b"],
                       keys=("auc_vat", "ig", "inout_ap"), primary=("auc_vat", "ig"))
    # the same contrast from the arrays, as the coverage simulation computes it
    videos = sorted(df["video_id"].unique())
    w = leave_one_out_weights(len(videos))

    def arr(r):
        d = df[df["row"] == r]
        sums = d.pivot_table(index="seed", columns="video_id", values="auc_vat", aggfunc="sum")[videos].to_numpy()
        cnts = d.pivot_table(index="seed", columns="video_id", values="auc_vat", aggfunc="count")[videos].to_numpy()
        return pooled_means(sums=sums, counts=cnts.astype(float), weights=w)

    ref = contrast_interval(plus=[arr("a")], minus=[arr("b")])
    got = out["deltas"]["a"]["vs_b"]["auc_vat"]
    assert got["delta"] == pytest.approx(ref["estimate"]) and got["ci95"] == pytest.approx(ref["ci"])
    assert got["excludes_zero"] is True and got["significant"] is True and got["p_holm"] >= got["p"]
    assert "p_holm" not in out["deltas"]["a"]["vs_b"]["inout_ap"]   # not primary: descriptive
    assert out["intervals"]["significance_not_assessed"] is None
    few = compare_rows(samples=df[df["video_id"].isin(videos[:2])], rows={"a": "variant", "b": "variant"},
                       references=["b"], keys=("auc_vat", "ig"), primary=("auc_vat", "ig"))
    assert few["intervals"]["n_test_videos"] == 2 < MIN_CLUSTERS
    assert "fewer than 5" in few["intervals"]["significance_not_assessed"]
    for e in few["deltas"]["a"]["vs_b"].values():
        assert e["excludes_zero"] is None and e["significant"] is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=6))
def test_holm_is_monotone_and_never_below_raw(ps):
    p = {f"k{i}": v for i, v in enumerate(ps)}
    adj = holm(p)
    assert all(adj[k] >= p[k] - 1e-15 and adj[k] <= 1 for k in p)
    order = sorted(p, key=p.get)
    assert all(adj[a] <= adj[b] + 1e-15 for a, b in zip(order, order[1:]))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(1, 4), st.floats(-1, 1))
def test_interval_is_shift_equivariant_and_contains_its_estimate(n, s, shift):
    rng = np.random.default_rng(n * 10 + s)
    a = rng.normal(0.5, 0.1, (n + 1, s))
    b = rng.normal(0.4, 0.1, (n + 1, s))
    iv = contrast_interval(plus=[a], minus=[b])
    iv2 = contrast_interval(plus=[a + shift], minus=[b])
    assert iv["ci"][0] <= iv["estimate"] <= iv["ci"][1]
    assert iv2["estimate"] == pytest.approx(iv["estimate"] + shift)
    assert iv2["ci"][0] == pytest.approx(iv["ci"][0] + shift) and iv2["ci"][1] == pytest.approx(iv["ci"][1] + shift)
