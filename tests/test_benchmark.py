"""Benchmark-protocol saliency metrics (gazelib.eval.benchmark): hand cases, independent implementations
(a literal port of the MIT benchmark's AUC_Judd, sklearn's ROC AUC, numpy's corrcoef, scipy's KL,
an explicit sum of Gaussians) and properties.

pysaliency is not installed in this environment (requirements.lock); the MIT definitions are the
reference here, ported line by line from the MATLAB code of the MIT saliency benchmark."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gazelib.eval import benchmark as bm


def mit_auc_judd(s: np.ndarray, fixation_map: np.ndarray) -> float:
    """AUC_Judd.m of the MIT saliency benchmark (jitter = 0), line by line."""
    s = (s - s.min()) / (s.max() - s.min())
    S, F = s.ravel(), fixation_map.ravel()
    sth = S[F > 0]
    n_fix, n_pix = len(sth), len(S)
    allthreshes = np.sort(sth)[::-1]
    tp, fp = np.zeros(n_fix + 2), np.zeros(n_fix + 2)
    tp[-1], fp[-1] = 1, 1
    for i in range(1, n_fix + 1):
        thresh = allthreshes[i - 1]
        aboveth = (S >= thresh).sum()
        tp[i] = i / n_fix
        fp[i] = (aboveth - i) / (n_pix - n_fix)
    return float(np.trapezoid(tp, fp))


def _case(seed: int, hw=(18, 32), n_fix=6):
    rng = np.random.default_rng(seed)
    s = rng.random(hw)
    fix = np.unique(rng.integers(0, hw[0] * hw[1], n_fix))
    return s, fix


@pytest.mark.parametrize("seed", range(5))
def test_auc_judd_is_the_mit_code(seed):
    s, fix = _case(seed)
    fmap = np.zeros(s.size)
    fmap[fix] = 1
    assert bm.bench_auc_judd(s=s, fix=fix) == pytest.approx(mit_auc_judd(s, fmap.reshape(s.shape)), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_auc_is_sklearn_roc_auc(seed):
    from sklearn.metrics import roc_auc_score

    s, fix = _case(seed)
    s = np.round(s * 20) / 20                      # ties between positives and negatives
    other = np.unique(np.random.default_rng(100 + seed).integers(0, s.size, 40))
    y = np.r_[np.ones(fix.size), np.zeros(other.size)]
    x = np.r_[s.ravel()[fix], s.ravel()[other]]
    assert bm.bench_sauc(s=s, fix=fix, other=other) == pytest.approx(roc_auc_score(y, x), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_cc_kl_sim_against_numpy_and_scipy(seed):
    from scipy.special import rel_entr

    s, fix = _case(seed)
    g = bm.fixation_map(fix=fix, hw=s.shape, sigma_px=(2.0, 2.0))
    assert bm.bench_cc(s=s, g=g) == pytest.approx(np.corrcoef(s.ravel(), g.ravel())[0, 1], abs=1e-12)
    sd, gd = s / s.sum(), g / g.sum()
    kl_scipy = rel_entr(gd, sd).sum()                # no zero in s: the eps terms are negligible
    assert bm.bench_kl(s=s, g=g) == pytest.approx(kl_scipy, rel=1e-9, abs=1e-9)
    assert bm.bench_sim(s=s, g=g) == pytest.approx(np.minimum(sd, gd).sum(), abs=1e-12)


def test_nss_and_ig_hand_cases():
    s = np.zeros((4, 5))
    s[1, 2] = 1.0                                    # one hot pixel: mean 1/20, std sqrt(19)/20
    assert bm.bench_nss(s=s, fix=[7]) == pytest.approx((1 - 0.05) / (np.sqrt(19) / 20))
    assert bm.bench_nss(s=s, fix=[7, 7, 0]) == pytest.approx(((0.95 - 0.05) / (np.sqrt(19) / 20)) / 2)  # 7 once
    assert bm.bench_nss(s=np.ones((4, 5)), fix=[3]) == 0.0
    prior = np.ones((4, 5))
    assert bm.bench_ig(s=prior * 3, fix=[0, 5], prior=prior) == pytest.approx(0.0, abs=1e-12)
    half = np.zeros((4, 5))
    half[:2] = 1.0                                    # all mass on 10 of 20 pixels: +1 bit where it is
    assert bm.bench_ig(s=half, fix=[0, 9], prior=prior) == pytest.approx(1.0)
    assert bm.bench_ig(s=half, fix=[19], prior=prior) < -40   # zero density at a fixation: eps-regularised


def test_fixation_map_is_the_sum_of_gaussians_away_from_the_border():
    hw, fix = (40, 60), [20 * 60 + 20, 25 * 60 + 35]
    g = bm.fixation_map(fix=fix, hw=hw, sigma_px=(3.0, 3.0))
    yy, xx = np.mgrid[:40, :60]
    ref = sum(np.exp(-((yy - f // 60) ** 2 + (xx - f % 60) ** 2) / 18.0) for f in fix) / (2 * np.pi * 9)
    assert np.abs(g - ref).max() < 1e-3 * ref.max()
    assert np.corrcoef(g.ravel(), ref.ravel())[0, 1] > 0.9999
    # anisotropic sigma (degrees on a non-square picture): wider along x
    a = bm.fixation_map(fix=[20 * 60 + 30], hw=hw, sigma_px=(1.0, 4.0))
    assert a[20, 34] > a[24, 30]


def test_fixation_pixels_are_distinct_and_clipped():
    px = bm.fixation_pixels(xy=[[0.0, 0.0], [0.01, 0.01], [1.0, 1.0], [np.nan, 0.5]], hw=(10, 20))
    assert px.tolist() == [0, 199]


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="at least one fixated pixel"):
        bm.bench_nss(s=np.ones((2, 2)), fix=[])
    with pytest.raises(ValueError, match="same shape"):
        bm.bench_cc(s=np.ones((2, 2)), g=np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        bm.bench_sim(s=np.full((2, 2), np.nan), g=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        bm.bench_auc_judd(s=np.ones((2, 2)), fix=[4])


def test_sigma_from_degrees_when_geometry_is_known():
    geo = {"distance_cm": 60.0, "screen_cm": [50.0, 30.0], "deg_per_unit": {"v": [40.0, 20.0]}}
    d = bm.sigma_pixels(hw=(36, 64), sigma_deg=1.0, sigma_frame=0.033, geometry=geo, video_id="v")
    assert d["sigma_px"] == pytest.approx((36 / 20.0, 64 / 40.0)) and "deg" in d["from"]
    d = bm.sigma_pixels(hw=(36, 64), sigma_deg=1.0, sigma_frame=0.05, geometry={}, video_id="v")
    assert d["sigma_px"] == pytest.approx((3.2, 3.2)) and "frame width" in d["from"]


# ----------------------------------------------------------------------------- properties
maps = arrays(np.int64, st.tuples(st.integers(2, 8), st.integers(2, 8)), elements=st.integers(0, 50))


@settings(max_examples=60, deadline=None)
@given(s=maps, data=st.data())
def test_rank_and_correlation_metrics_ignore_positive_affine_changes(s, data):
    n = s.size
    fix = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n - 1, unique=True)))
    other = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)))
    a, b = data.draw(st.integers(1, 5)), data.draw(st.integers(-20, 20))
    t = (a * s + b).astype(np.float64)
    s = s.astype(np.float64)
    g = bm.fixation_map(fix=fix, hw=s.shape, sigma_px=(1.0, 1.0))
    assert bm.bench_auc_judd(s=t, fix=fix) == bm.bench_auc_judd(s=s, fix=fix)
    assert bm.bench_sauc(s=t, fix=fix, other=other) == bm.bench_sauc(s=s, fix=fix, other=other)
    assert bm.bench_nss(s=t, fix=fix) == pytest.approx(bm.bench_nss(s=s, fix=fix), abs=1e-9)
    cc = bm.bench_cc(s=s, g=g)
    assert bm.bench_cc(s=t, g=g) == pytest.approx(cc, abs=1e-9) or np.isnan(cc)
    for v in (bm.bench_auc_judd(s=s, fix=fix), bm.bench_sauc(s=s, fix=fix, other=other)):
        assert 0.0 <= v <= 1.0
    assert -1.0 <= bm.bench_cc(s=s, g=g) <= 1.0 or np.isnan(cc)


@settings(max_examples=60, deadline=None)
@given(s=arrays(np.float64, st.tuples(st.integers(2, 8), st.integers(2, 8)),
                elements=st.floats(0, 10, allow_nan=False)), data=st.data())
def test_distribution_metrics_ranges_and_identities(s, data):
    n = s.size
    fix = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)))
    g = bm.fixation_map(fix=fix, hw=s.shape, sigma_px=(1.5, 1.5))
    sim = bm.bench_sim(s=s, g=g)
    assert -1e-12 <= sim <= 1 + 1e-12
    assert bm.bench_sim(s=g, g=g) == pytest.approx(1.0)
    assert bm.bench_kl(s=s, g=g) >= -1e-9
    assert bm.bench_kl(s=g, g=g) == pytest.approx(0.0, abs=1e-9)
    # the binary fixation map itself ranks every fixated pixel first: AUC-Judd 1 (nan: no unfixated pixel)
    b = np.zeros(n)
    b[fix] = 1.0
    auc = bm.bench_auc_judd(s=b.reshape(s.shape), fix=fix)
    assert auc == pytest.approx(1.0) if fix.size < n else np.isnan(auc)
    # IG of the prior itself is zero; a map equal to the prior scaled is the same density
    assert bm.bench_ig(s=s + 1.0, fix=fix, prior=2 * (s + 1.0)) == pytest.approx(0.0, abs=1e-9)
    # shuffled AUC against the same pixels as negatives is exactly one half
    assert bm.bench_sauc(s=s, fix=fix, other=fix) == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["float", "ties", "constant"])
def test_score_frames_matches_the_single_metric_functions(kind):
    rng = np.random.default_rng(3)
    gaze = rng.uniform(0, 1, (5, 30, 2))
    ok = rng.random((5, 30)) > 0.3
    ok[:, 2] = False                                       # a step with no fixation is not a frame
    tg = bm.frame_targets(gaze=gaze, ok=ok, hw=(9, 16), sigma_px=(1.0, 1.0))
    assert 2 not in tg["steps"].tolist()
    maps = rng.random((len(tg["steps"]), 9, 16))
    if kind == "ties":
        maps = np.round(maps * 4) - 1.0                    # few levels, some negative
    if kind == "constant":
        maps[::2] = 0.25
    prior = rng.random((9, 16)) + 0.1
    other = np.array([1, 2, 3, 40, 80, 81, 100])
    res = bm.score_frames(maps=maps, targets=tg, prior=prior, other=other, chunk=7)
    for i, t in enumerate(tg["steps"]):
        f = bm.fixation_pixels(xy=gaze[ok[:, t], t], hw=(9, 16))
        g = bm.fixation_map(fix=f, hw=(9, 16), sigma_px=(1.0, 1.0))
        s = maps[i]
        want = {"bench_cc": bm.bench_cc(s=s, g=g), "bench_nss": bm.bench_nss(s=s, fix=f),
                "bench_sim": bm.bench_sim(s=s, g=g), "bench_kl": bm.bench_kl(s=s, g=g),
                "bench_auc_judd": bm.bench_auc_judd(s=s, fix=f), "bench_sauc": bm.bench_sauc(s=s, fix=f, other=other),
                "bench_ig": bm.bench_ig(s=s, fix=f, prior=prior)}
        for k, w in want.items():
            assert res[k][i] == pytest.approx(w, abs=1e-12, nan_ok=True), (k, i)


def test_params_are_validated_by_name():
    from gazelib.core.params import check_benchmark_params, load_params

    ok = load_params("params.yaml")["evaluate"]["benchmark"]
    assert check_benchmark_params(ok) == ok
    for bad, msg in (({**ok, "sigma_deg": 0}, "sigma_deg must be a positive number"),
                     ({**ok, "sigma_frame": 1.5}, "sigma_frame is a fraction"),
                     ({**ok, "ceiling_splits": 0}, "ceiling_splits must be an integer >= 1"),
                     ({**ok, "ceiling_k_points": 1}, "ceiling_k_points must be an integer >= 2"),
                     ({"sigma_deg": 1.0}, "is missing"), (None, "must be a mapping")):
        with pytest.raises(ValueError, match=msg):
            check_benchmark_params(bad)
