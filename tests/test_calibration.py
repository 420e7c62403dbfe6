"""Few-shot viewer calibration: K = 0 changes nothing, a real viewer offset is learnt, the
penalised fit is the optimum it claims to be, and the penalty is chosen on val."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import check_grad

from gazelib.eval.calibration import (
    calibrate_recording,
    calibration_samples,
    cell_basis,
    choose_lambda,
    fit_logit_correction,
    gaussian_targets,
)
from gazelib.metrics import vat_metrics

GH, GW = 9, 16


def _recording(*, seed: int, n: int = 200, offset=(0.0, 0.0), fps: float = 10.0, map_sigma: float = 0.08):
    """A model that sees the content point c_t; the viewer looks at c_t + offset (+ noise)."""
    rng = np.random.default_rng(seed)
    content = rng.uniform(0.2, 0.8, (n, 2))
    gaze = np.clip(content + np.asarray(offset) + rng.normal(0, 0.02, (n, 2)), 0.01, 0.99)
    prob = gaussian_targets(gaze=content, gh=GH, gw=GW, sigma=map_sigma).astype(np.float32)
    t = np.arange(n) / fps
    return {"prob": prob, "gaze": gaze.astype(np.float32), "t": t, "inframe": np.ones(n, bool)}


def _auc_l2(prob, gaze, scored):
    m = vat_metrics(heatmaps=prob[scored].reshape(-1, GH, GW).astype(np.float64), gaze=gaze[scored].astype(np.float64))
    return float(np.nanmean(m["auc_vat"])), float(np.mean(m["l2_vat"]))


def test_k0_and_empty_calibration_leave_the_prediction_unchanged():
    r = _recording(seed=0, offset=(0.1, 0.0))
    out = calibrate_recording(prob=r["prob"], t=r["t"], gaze=r["gaze"], is_inframe=r["inframe"], k_s=0.0,
                              lam=1.0, sigma=0.06, gh=GH, gw=GW)
    assert out["prob"] is r["prob"] and out["n_calibration"] == 0
    none_valid = calibrate_recording(prob=r["prob"], t=r["t"], gaze=r["gaze"], is_inframe=r["t"] >= 5, k_s=5.0,
                                     lam=1.0, sigma=0.06, gh=GH, gw=GW)
    assert none_valid["prob"] is r["prob"]
    fitted = calibrate_recording(prob=r["prob"], t=r["t"], gaze=r["gaze"], is_inframe=r["inframe"], k_s=5.0,
                                 lam=1.0, sigma=0.06, gh=GH, gw=GW)
    early = r["t"] < 5.0
    np.testing.assert_array_equal(fitted["prob"][early], r["prob"][early])  # calibration steps are not rescored
    assert not np.allclose(fitted["prob"][~early], r["prob"][~early])


def test_k0_rows_equal_the_uncalibrated_scores_exactly():
    recs = [_recording(seed=s, offset=(0.05, -0.03)) for s in range(2)]
    preds = {"a": {"prob": np.stack([r["prob"] for r in recs])}}
    labels = {"a": {"t": recs[0]["t"], "gaze": np.stack([r["gaze"] for r in recs]),
                    "valid": np.ones((2, recs[0]["t"].size), bool), "inout": np.ones((2, recs[0]["t"].size), np.int8)}}
    df = calibration_samples(preds=preds, labels=labels, ks=[0, 2, 5], lam=1.0, sigma=0.06, gh=GH, gw=GW,
                             frame_wh={"a": (320, 180)}, horizon_s=1.0)
    for k in (0, 2, 5):  # each K scores the in-frame steps from K + horizon on
        assert (df["k_s"] == k).sum() == 2 * (recs[0]["t"] >= k + 1.0).sum()
    scored = recs[0]["t"] >= 1.0
    for v, r in enumerate(recs):
        m = vat_metrics(heatmaps=r["prob"][scored].reshape(-1, GH, GW).astype(np.float64),
                        gaze=r["gaze"][scored].astype(np.float64))
        k0 = df[(df["k_s"] == 0) & (df["viewer"] == v)]
        np.testing.assert_array_equal(k0["auc_vat"].to_numpy(), m["auc_vat"])
        np.testing.assert_array_equal(k0["l2_vat"].to_numpy(), m["l2_vat"])


def test_no_gaze_after_t_minus_horizon_reaches_a_scored_prediction():
    """The correction for K uses gaze before K only, and scored steps start a horizon after max K."""
    r = _recording(seed=4, offset=(0.1, 0.05))
    rng = np.random.default_rng(0)
    for k in (2.0, 5.0):
        out = calibrate_recording(prob=r["prob"], t=r["t"], gaze=r["gaze"], is_inframe=r["inframe"], k_s=k,
                                  lam=0.1, sigma=0.06, gh=GH, gw=GW)
        gaze = r["gaze"].copy()
        gaze[r["t"] >= k] = rng.uniform(0, 1, ((r["t"] >= k).sum(), 2))
        again = calibrate_recording(prob=r["prob"], t=r["t"], gaze=gaze, is_inframe=r["inframe"], k_s=k,
                                    lam=0.1, sigma=0.06, gh=GH, gw=GW)
        np.testing.assert_array_equal(out["prob"], again["prob"])
    labels = {"a": {"t": r["t"], "gaze": r["gaze"][None], "valid": np.ones((1, r["t"].size), bool),
                    "inout": np.ones((1, r["t"].size), np.int8)}}
    df = calibration_samples(preds={"a": {"prob": r["prob"][None]}}, labels=labels, ks=[0, 2, 5], lam=1.0, sigma=0.06,
                             gh=GH, gw=GW, frame_wh={"a": (320, 180)}, horizon_s=1.5)
    for k, d in df.groupby("k_s"):
        assert r["t"][d["step"].to_numpy()].min() >= k + 1.5 - 1e-9
        np.testing.assert_array_equal(d["t"].to_numpy(), r["t"][d["step"].to_numpy()])


def test_a_viewer_offset_is_learnt_from_a_few_seconds():
    r = _recording(seed=1, offset=(0.12, 0.06))
    scored = r["t"] >= 10
    base = _auc_l2(r["prob"], r["gaze"], scored)
    for k in (2.0, 5.0, 10.0):
        out = calibrate_recording(prob=r["prob"], t=r["t"], gaze=r["gaze"], is_inframe=r["inframe"], k_s=k,
                                  lam=0.1, sigma=0.06, gh=GH, gw=GW)
        auc, l2 = _auc_l2(out["prob"], r["gaze"], scored)
        # measured: auc 0.928 -> 0.973 / 0.988 / 0.992, l2 0.144 -> 0.091 / 0.062 / 0.049 for K = 2 / 5 / 10
        assert auc > base[0] + 0.03 and l2 < base[1] - 0.04, (k, base, auc, l2)
        assert out["beta"][0] > 0 and out["beta"][1] > 0  # tilted right and down, as the viewer looks


def test_no_viewer_signal_costs_little_under_a_strong_penalty():
    r = _recording(seed=2, offset=(0.0, 0.0))
    scored = r["t"] >= 10
    base = _auc_l2(r["prob"], r["gaze"], scored)
    out = calibrate_recording(prob=r["prob"], t=r["t"], gaze=r["gaze"], is_inframe=r["inframe"], k_s=5.0,
                              lam=100.0, sigma=0.06, gh=GH, gw=GW)
    auc, l2 = _auc_l2(out["prob"], r["gaze"], scored)
    assert abs(auc - base[0]) < 0.01 and abs(l2 - base[1]) < 0.01


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.sampled_from([0.0, 0.5, 5.0]))
def test_fit_is_the_penalised_optimum(seed, lam):
    rng = np.random.default_rng(seed)
    n = 30
    log_p = np.log(rng.dirichlet(np.ones(GH * GW), n))
    q = gaussian_targets(gaze=rng.uniform(0, 1, (n, 2)), gh=GH, gw=GW, sigma=0.06)
    basis = cell_basis(gh=GH, gw=GW)

    def loss(beta):
        z = log_p + basis @ beta
        ls = z - z.max(1, keepdims=True)
        ls = ls - np.log(np.exp(ls).sum(1, keepdims=True))
        return -(q * ls).sum() + lam * beta @ beta

    beta = fit_logit_correction(log_prob=log_p, target=q, basis=basis, lam=lam)
    grad = lambda b: (basis.T @ (np.exp(log_p + basis @ b - np.log(np.exp(log_p + basis @ b).sum(1, keepdims=True))) - q).sum(0)  # noqa: E731
                      + 2 * lam * b)
    assert check_grad(loss, grad, beta + 0.1) < 1e-3 * max(1.0, np.abs(grad(beta + 0.1)).max())
    assert np.abs(grad(beta)).max() < 1e-3  # stationary, and the loss is convex: the optimum
    for _ in range(5):
        assert loss(beta) <= loss(beta + rng.normal(0, 0.05, beta.shape)) + 1e-9


def test_lambda_is_chosen_on_val_and_bad_inputs_fail():
    val = {0.1: pd.DataFrame({"k_s": [0, 2, 2], "auc_vat": [0.99, 0.6, 0.6]}),
           10.0: pd.DataFrame({"k_s": [0, 2, 2], "auc_vat": [0.1, 0.7, 0.7]})}
    assert choose_lambda(val_samples=val)["lambda"] == 10.0  # K = 0 rows do not vote
    with pytest.raises(ValueError, match="calibration_lambda"):
        fit_logit_correction(log_prob=np.zeros((2, 4)), target=np.full((2, 4), 0.25), basis=np.zeros((4, 5)), lam=-1)
    with pytest.raises(ValueError, match="calibration_s"):
        calibration_samples(preds={}, labels={}, ks=[], lam=1.0, sigma=0.06, gh=GH, gw=GW, frame_wh={}, horizon_s=1.0)


def test_an_optimiser_failure_is_logged_and_counted(caplog):
    """A NaN map in the calibration window makes L-BFGS-B fail: the fit is flagged (no correction
    from a non-finite beta), logged with the optimiser's message and counted for the metrics."""
    import logging

    from gazelib.eval.evaluate import calibration_fit_failures

    r = _recording(seed=3, offset=(0.05, 0.0))
    prob = r["prob"].copy()
    prob[4] = np.nan
    out = calibrate_recording(prob=prob, t=r["t"], gaze=r["gaze"], is_inframe=r["inframe"], k_s=5.0, lam=1.0,
                              sigma=0.06, gh=GH, gw=GW)
    assert out["fit_failed"] and out["fit_message"]
    assert np.all(np.isfinite(out["beta"]))
    ok = calibrate_recording(prob=r["prob"], t=r["t"], gaze=r["gaze"], is_inframe=r["inframe"], k_s=5.0, lam=1.0,
                             sigma=0.06, gh=GH, gw=GW)
    assert not ok["fit_failed"]
    n = r["t"].size
    labels = {"a": {"t": r["t"], "gaze": np.stack([r["gaze"]] * 2), "valid": np.ones((2, n), bool),
                    "inout": np.ones((2, n), np.int8)}}
    preds = {"a": {"prob": np.stack([prob, r["prob"]])}}
    caplog.set_level(logging.WARNING, logger="gazelib.eval.calibration")
    df = calibration_samples(preds=preds, labels=labels, ks=[0, 2, 5], lam=1.0, sigma=0.06, gh=GH, gw=GW,
                             frame_wh={"a": (640, 360)}, horizon_s=1.0).assign(seed=0)
    assert "a viewer 0, K = 2 s (lambda 1): calibration fit failed: " + out["fit_message"].split(" (")[0] in caplog.text
    assert calibration_fit_failures(test=df, val={1.0: df, 10.0: df}) == {"test": 2, "val": 4,
                                                                         "test_fits": 4, "val_fits": 8}


def _short_clips(*, n_videos: int, seconds: float, offset=(0.1, 0.05)):
    """``n_videos`` clips of ``seconds`` at 10 fps, two viewers each: preds and labels as evaluate has them."""
    preds, labels = {}, {}
    for i in range(n_videos):
        recs = [_recording(seed=10 * i + v, n=int(seconds * 10), offset=offset) for v in range(2)]
        preds[f"clip{i}"] = {"prob": np.stack([r["prob"] for r in recs])}
        n = recs[0]["t"].size
        labels[f"clip{i}"] = {"t": recs[0]["t"], "gaze": np.stack([r["gaze"] for r in recs]),
                              "valid": np.ones((2, n), bool), "inout": np.ones((2, n), np.int8)}
    return preds, labels


def _summary(tmp_path, *, seconds: float, ks: list, horizon_s: float = 1.0):
    from gazelib.eval.evaluate import calibration_summary

    preds, labels = _short_clips(n_videos=3, seconds=seconds)
    frame_wh = {vid: (320, 180) for vid in preds}

    def samples(lam):
        return calibration_samples(preds=preds, labels=labels, ks=ks, lam=lam, sigma=0.06, gh=GH, gw=GW,
                                   frame_wh=frame_wh, horizon_s=horizon_s).assign(seed=0)

    model = samples(1.0)
    model = model[model["k_s"] == 0] if 0 in ks else model.iloc[:0]
    res = calibration_summary(test=samples, val={lam: samples(lam) for lam in (0.1, 10.0)}, model_samples=model,
                              ks=ks, horizon_s=horizon_s, out=tmp_path, curve=tmp_path / "curve.csv", variant="v",
                              longest_s=max(float(lab["t"][-1]) for lab in labels.values()))
    return res, samples(res["lambda"]), (tmp_path / "v.md").read_text()


def test_calibration_on_10s_clips_scores_each_k_on_its_own_samples_paired_with_k0(tmp_path):
    """10 s clips with the default K (0, 2, 5, 10 s) and a 1 s horizon: K = 10 cannot be scored and
    the report says why; every other K is scored from K + horizon on, against K = 0 on the same samples."""
    res, df, md = _summary(tmp_path, seconds=10.0, ks=[0, 2, 5, 10])
    assert res["applicable"] and set(res["rows"]) == {"K=0s", "K=2s", "K=5s"}
    assert list(res["not_scored"]) == ["K=10s"] and "shorter than K + train.horizon_s = 11 s" in res["not_scored"]["K=10s"]
    assert "K=10s: the videos are shorter" in md and "| 5 | 6 |" in md
    assert (tmp_path / "v.png").stat().st_size > 0
    # the curve DVC plots: one line per scored K, the same numbers as the table
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["k_s"].tolist() == [0, 2, 5]
    assert curve["auc_vat"].tolist() == [res["rows"][f"K={k}s"]["auc_vat"] for k in (0, 2, 5)]
    assert curve["auc_vat_lo"].tolist() == [res["rows"][f"K={k}s"]["ci95"]["auc_vat"][0] for k in (0, 2, 5)]
    k0 = df[df["k_s"] == 0]
    for k in (2, 5):
        row = res["rows"][f"K={k}s"]
        mine = df[df["k_s"] == k]
        same = k0[k0["t"] >= k + 1.0]
        assert row["n_samples"] == len(mine) == len(same) and row["scored_from_s"] == k + 1.0
        assert row["auc_vat"] == pytest.approx(mine["auc_vat"].mean())
        assert row["K0_same_samples"]["auc_vat"] == pytest.approx(same["auc_vat"].mean())  # paired, not all of K = 0
        assert row["vs_K0"]["auc_vat"]["delta"] == pytest.approx(row["auc_vat"] - same["auc_vat"].mean())
        assert row["vs_K0"]["auc_vat"]["delta"] > 0  # the viewers' offset is learnt
    assert res["k0_max_abs_diff_vs_uncalibrated"] == 0.0 and res["lambda"] in (0.1, 10.0)


def test_calibration_that_cannot_apply_writes_its_outputs_and_says_why(tmp_path):
    res, df, md = _summary(tmp_path, seconds=4.0, ks=[5, 10])
    assert df.empty and not res["applicable"] and res["rows"] == {}
    assert set(res["not_scored"]) == {"K=5s", "K=10s"} and "K + train.horizon_s = 6 s" in res["skipped"]
    assert "Not applicable on this corpus" in md and "K=10s: the videos are shorter" in md
    assert "largest penalty" in res["lambda_chosen_on"] and res["lambda"] == 10.0  # val could not choose
    assert (tmp_path / "v.png").stat().st_size > 0
    assert (tmp_path / "curve.csv").read_text().splitlines() == [
        "k_s,auc_vat,auc_vat_lo,auc_vat_hi,l2_vat,l2_vat_lo,l2_vat_hi"]  # the declared plot exists, empty
