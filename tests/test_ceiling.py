"""The infinite-observer ceiling (gazelib.eval.ceiling): the curve model, the k-observer predictor (the
inter-observer floor's own formula) and the extrapolation on a world whose achievable value is known
to lie above every finite number of observers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.eval import ceiling as cl

GH, GW = 9, 16


def test_fit_recovers_known_curves():
    k = np.arange(1, 7)
    f = cl.fit_saturating(k=k, y=0.9 - 0.4 * k ** -0.6)
    assert f["c_fitted"] and f["s_inf"] == pytest.approx(0.9, abs=1e-6) and f["c"] == pytest.approx(0.6, abs=1e-5)
    f = cl.fit_saturating(k=[1, 2, 3], y=[0.5, 0.65, 0.7])             # c = 1 with fewer than 4 points
    assert not f["c_fitted"] and f["c"] == 1.0
    assert f["s_inf"] == pytest.approx(np.polyfit([1, 1 / 2, 1 / 3], [0.5, 0.65, 0.7], 1)[1])
    assert np.isnan(cl.fit_saturating(k=[1], y=[0.5])["s_inf"])


@settings(max_examples=40, deadline=None)
@given(s_inf=st.floats(-2, 5), b=st.floats(0.01, 3), c=st.floats(0.2, 2.5))
def test_fit_is_exact_on_its_own_model_and_above_every_point(s_inf, b, c):
    k = np.arange(1, 9)
    y = s_inf - b * k ** -c
    f = cl.fit_saturating(k=k, y=y)
    assert f["s_inf"] == pytest.approx(s_inf, abs=1e-4 * (1 + abs(s_inf)))
    assert f["s_inf"] >= y.max() - 1e-6


def test_percent_of_ceiling_uses_the_chance_level():
    assert cl.percent_of_ceiling(value=0.75, ceiling=1.0, key="bench_auc_judd") == pytest.approx(50.0)
    assert cl.percent_of_ceiling(value=1.0, ceiling=2.0, key="bench_nss") == pytest.approx(50.0)
    assert cl.percent_of_ceiling(value=0.5, ceiling=0.6, key="bench_sim") is None     # no chance level
    assert cl.percent_of_ceiling(value=None, ceiling=0.6, key="bench_cc") is None


def _world(n_v=8, n_t=12, seed=0, spread=0.08):
    """Viewers look near one moving target per step (the true density), with individual scatter."""
    rng = np.random.default_rng(seed)
    target = np.c_[np.linspace(0.2, 0.8, n_t), 0.5 + 0.2 * np.sin(np.arange(n_t))]
    gaze = np.clip(target[None] + rng.normal(0, spread, (n_v, n_t, 2)), 0, 1)
    valid = rng.random((n_v, n_t)) > 0.05
    return {"gaze": gaze, "valid": valid, "inout": np.ones((n_v, n_t), np.int8), "t": np.arange(n_t) / 10.0,
            "gaze_t": np.tile(np.arange(n_t) / 10.0, (n_v, 1))}


def _floors():
    prior = np.full(GH * GW, 1.0 / (GH * GW))
    return {"prior": prior.tolist(), "inter_observer": {"sigma": 0.05, "w": 0.05}, "inout_rate": 0.9,
            "persistence": {"sigma": 0.05, "w": 0.1, "p_in_given_last_in_out_none": [0.9, 0.1, 0.5]},
            "horizon_s": 0.1}


def test_k_observer_predictor_is_the_inter_observer_floor_with_all_others():
    from gazelib.model.floors import floor_predictions

    lab, floors = _world(n_v=4), _floors()
    prob, _ = floor_predictions(floors=floors, lab=lab, gh=GH, gw=GW)["inter_observer"]
    v, t = 1, 3
    ok = lab["valid"][:, t]
    others = [o for o in range(4) if o != v and ok[o]]
    p = cl.subset_prediction(pts=lab["gaze"][others, t], prior=floors["prior"], sigma=0.05, w=0.05, gh=GH, gw=GW)
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p, prob[v, t], rtol=1e-5, atol=1e-7)   # float32 in the floor
    np.testing.assert_array_equal(cl.subset_prediction(pts=np.zeros((0, 2)), prior=floors["prior"], sigma=0.05,
                                                       w=0.05, gh=GH, gw=GW), floors["prior"])


def _ceiling(labels, splits=2, k_points=8):
    from gazelib.eval import benchmark as bm
    from gazelib.eval.evaluate import score_rows

    floors = _floors()
    hw = (18, 32)
    prior_eval = np.ones(hw)
    cfg = {"sigma_deg": 1.0, "sigma_frame": 0.04}
    per_video = {}
    for vid, lab in labels.items():
        other = np.concatenate([labels[o]["gaze"][labels[o]["valid"]] for o in labels if o != vid])
        per_video[vid] = {"eval_hw": hw, "prior_eval": prior_eval,
                          **bm.video_targets(lab=lab, video_id=vid, hw=hw, other_xy=other, cfg=cfg, geometry={})}

    def score_video(vid):
        return lambda prob, p_in, lab: score_rows(prob=prob, p_in=p_in, lab=lab, gh=GH, gw=GW, eval_hw=hw,
                                                  prior_eval=prior_eval, other_xy=np.array([[0.1, 0.1], [0.9, 0.9]]),
                                                  fixation_sigma=0.04)
    return cl.ceiling_block(labels=labels, per_video=per_video, floors=floors, gh=GH, gw=GW,
                            cfg={"splits": splits, "k_points": k_points},
                            seed=0, score_video=score_video)


def test_more_observers_predict_better_and_the_ceiling_lies_beyond():
    labels = {"a": _world(seed=1), "b": _world(seed=2), "c": _world(seed=3)}
    out = _ceiling(labels)
    bench = out["benchmark"]
    assert bench["k"] == [1, 2, 3, 4] and bench["videos_used"] == ["a", "b", "c"]
    for key in ("bench_cc", "bench_nss", "bench_sim"):
        m = bench["metrics"][key]
        assert m["curve"][-1] > m["curve"][0]                      # more observers: a better map
        assert m["s_inf"] > m["curve"][-1]                         # the limit is beyond the measured points
        lo, hi = m["ci95"]
        assert lo is not None and lo <= m["s_inf"] <= hi           # three videos: a jackknife t interval
    pv = out["per_viewer"]
    assert pv["k"] == list(range(1, 8))
    auc = pv["metrics"]["auc_vat"]
    assert auc["curve"][-1] > auc["curve"][0] and auc["s_inf"] >= auc["curve"][-1] - 1e-9
    assert out == _ceiling(labels)                                 # deterministic


def test_too_few_viewers_say_why():
    out = _ceiling({"a": _world(n_v=3, seed=1), "b": _world(n_v=3, seed=2)}, splits=1)
    assert "split halves need >= 4" in out["benchmark"]["why_not"]
    assert out["per_viewer"]["k"] == [1, 2]


def test_nested_predictions_are_the_k_observer_predictor_for_every_k():
    rng = np.random.default_rng(5)
    pts = rng.uniform(0, 1, (6, 4, 2))
    prior = np.full(GH * GW, 1.0 / (GH * GW))
    got = cl.nested_predictions(pts=pts, prior=prior, sigma=0.07, w=0.2, gh=GH, gw=GW)
    for n in range(6):
        for k in range(1, 5):
            np.testing.assert_allclose(got[n, k - 1], cl.subset_prediction(pts=pts[n, :k], prior=prior, sigma=0.07,
                                                                           w=0.2, gh=GH, gw=GW), atol=1e-15)


def test_percent_of_ceiling_interval_is_the_jackknife_of_the_ratio():
    import pandas as pd
    from scipy import stats

    from gazelib.eval.benchmark import _pct_intervals

    x = {"a": 1.0, "b": 1.6, "c": 1.3, "d": 0.7}                 # one value (frame mean) per video, one seed
    df = pd.DataFrame({"row": "m", "seed": 0, "video_id": list(x), "bench_nss": list(x.values())})
    ceil = {"bench_nss": {"s_inf": 2.5, "s_inf_without": {"a": 2.4, "b": 2.7, "c": 2.5, "d": 2.3}}}
    lo, hi = _pct_intervals(df=df, ceil=ceil, keys=("bench_nss",), ci=0.95)["bench_nss"]
    vids = sorted(x)
    loo = np.array([np.mean([x[o] for o in vids if o != v]) / ceil["bench_nss"]["s_inf_without"][v] * 100
                    for v in vids])
    point = np.mean(list(x.values())) / 2.5 * 100
    se = np.sqrt(3 / 4 * ((loo - loo.mean()) ** 2).sum())
    half = stats.t.ppf(0.975, 3) * se
    assert (lo, hi) == pytest.approx((point - half, point + half))


def test_k_grid_is_every_k_or_a_geometric_subset():
    assert cl.k_grid(k_max=4, n_points=6) == [1, 2, 3, 4]
    g = cl.k_grid(k_max=40, n_points=6)
    assert g[0] == 1 and g[-1] == 40 and len(g) == 6 and g == sorted(set(g))


def test_a_k_subset_gives_the_same_curve_points():
    labels = {"a": _world(seed=1), "b": _world(seed=2)}
    full, sub = _ceiling(labels, splits=1), _ceiling(labels, splits=1, k_points=3)
    assert sub["per_viewer"]["k"] == [1, 3, 7] and sub["benchmark"]["k"] == [1, 2, 4]
    for fam, keep in (("per_viewer", [0, 2, 6]), ("benchmark", [0, 1, 3])):
        for key, m in sub[fam]["metrics"].items():
            want = [full[fam]["metrics"][key]["curve"][i] for i in keep]
            assert m["curve"] == pytest.approx(want, abs=1e-12, nan_ok=True), (fam, key)


def test_chunked_predictions_change_nothing(monkeypatch):
    labels = {"a": _world(n_v=5, seed=4), "b": _world(n_v=5, seed=5)}
    whole = _ceiling(labels, splits=1)
    monkeypatch.setattr(cl, "CHUNK", 7)
    assert _ceiling(labels, splits=1) == whole
