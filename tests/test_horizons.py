"""Forecasting across horizons (gazelib.eval.horizons): persistence refitted per horizon, track variants scored with
their track cut at each horizon, one protocol with evaluate, causal at every horizon."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.model.floors import fit_floors, fit_persistence, persistence_prediction
from gazelib.eval.horizons import check_horizons, crossover
from tests.test_floors import GH, GW, SIGMAS, WEIGHTS, _video

HORIZONS = [0.1, 0.25, 0.5, 1.0, 2.0]


def test_check_horizons_refuses_less_than_one_step():
    assert check_horizons(horizons=[1.0, 0.1, 0.5, 0.1], fps=10) == [0.1, 0.5, 1.0]
    with pytest.raises(ValueError, match="less than one step at align.fps=10"):
        check_horizons(horizons=[0.05], fps=10)
    with pytest.raises(ValueError, match="non-empty list"):
        check_horizons(horizons=[], fps=10)
    with pytest.raises(ValueError, match="not a number"):
        check_horizons(horizons=["soon"], fps=10)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=8), st.sampled_from([5.0, 10.0, 25.0]))
def test_check_horizons_keeps_every_whole_step(steps, fps):
    hs = [s / fps for s in steps]
    out = check_horizons(horizons=hs, fps=fps)
    assert out == sorted(set(hs))


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(3)
    train = [_video(rng) for _ in range(6)]
    test = [_video(rng) for _ in range(2)]
    floors = fit_floors(train=train, gh=GH, gw=GW, horizon_s=0.3, sigmas=SIGMAS, weights=WEIGHTS, eps=[0.01])
    return train, test, np.asarray(floors["prior"])


@pytest.mark.parametrize("h", HORIZONS)
def test_persistence_at_each_horizon_sees_only_gaze_before_t_minus_h(synthetic, h):
    train, test, prior = synthetic
    pf = fit_persistence(train=train, gh=GH, gw=GW, horizon_s=h, prior=prior, sigmas=SIGMAS, weights=WEIGHTS,
                         max_samples=20000, rng=np.random.default_rng(0))
    lab = test[0]
    prob, p_in = persistence_prediction(persistence=pf, prior=prior, lab=lab, horizon_s=h, gh=GH, gw=GW)
    i = 80
    cut = lab["t"][i] - h
    st_ = np.nan_to_num(lab["gaze_t"], nan=-np.inf)
    late = {k: v.copy() for k, v in lab.items()}
    late["gaze"][st_ > cut + 1e-9] = 0.97          # everything after t_i - h moved
    late["inout"][st_ > cut + 1e-9] = 0
    prob2, p_in2 = persistence_prediction(persistence=pf, prior=prior, lab=late, horizon_s=h, gh=GH, gw=GW)
    np.testing.assert_array_equal(prob[:, : i + 1], prob2[:, : i + 1])
    np.testing.assert_array_equal(p_in[:, : i + 1], p_in2[:, : i + 1])
    # the test can fail: moving the gaze just before the cut does change the prediction at t_i
    early = {k: v.copy() for k, v in lab.items()}
    window = (st_ <= cut + 1e-9) & (st_ > cut - 0.25)
    early["gaze"][window] = 0.03
    prob3, _ = persistence_prediction(persistence=pf, prior=prior, lab=early, horizon_s=h, gh=GH, gw=GW)
    assert np.abs(prob3[:, i] - prob[:, i]).max() > 1e-3


def test_persistence_loses_value_with_the_horizon(synthetic):
    """Targets jump every 1.5 s: the last seen gaze predicts worse (lower likelihood) the older it is."""
    from gazelib.core.cells import gaze_cell

    train, test, prior = synthetic
    ll = []
    for h in (0.1, 0.5, 2.0):
        pf = fit_persistence(train=train, gh=GH, gw=GW, horizon_s=h, prior=prior, sigmas=SIGMAS, weights=WEIGHTS,
                             max_samples=20000, rng=np.random.default_rng(0))
        tot = 0.0
        for lab in test:
            prob, _ = persistence_prediction(persistence=pf, prior=prior, lab=lab, horizon_s=h, gh=GH, gw=GW)
            ok = lab["valid"] & (lab["inout"] > 0)
            cells = gaze_cell(lab["gaze"][ok], GH, GW)
            tot += float(np.log(prob[ok][np.arange(cells.size), cells] + 1e-12).mean())
        ll.append(tot)
    assert ll[0] > ll[1] > ll[2]


def test_crossover_is_the_first_horizon_where_content_is_better():
    def d(delta, better):
        return {"delta": delta, "ci95": [delta - 0.1, delta + 0.1], "excludes_zero": False, "better": better}

    rows = {"deltas": {"content": {"vs_p@0.1s": {"auc_vat": d(-0.2, False)}, "vs_p@0.5s": {"auc_vat": d(0.01, True)},
                                   "vs_p@2s": {"auc_vat": d(0.1, True)}}}}
    out = crossover(rows=rows, persistence={0.1: "p@0.1s", 0.5: "p@0.5s", 2.0: "p@2s"}, content="content",
                    keys=("auc_vat",))
    assert out["auc_vat"]["content_better_from_s"] == 0.5
    assert list(out["auc_vat"]["delta_content_minus_persistence"]) == ["0.1", "0.5", "2"]


# ---------------------------------------------------------------- the stage on a tiny pipeline run
@pytest.fixture(scope="module")
def horizon_run(tmp_path_factory, tiny_corpus):
    from tests.tiny_pipeline import tiny_pipeline

    corpus, base = tiny_corpus
    root = tmp_path_factory.mktemp("horizon_run")
    # one horizon-conditioned model per variant (train.horizons_sampled)
    p, out = tiny_pipeline(root=root, corpus=corpus, base=base,
                           evaluate={"horizons": HORIZONS, "horizon_models": True, "workers": 2},
                           train={"horizons_sampled": HORIZONS}, compare=False, run_report=False, horizons=True)
    return root, p, out


@pytest.mark.slow  # a tiny pipeline run with the horizons stage
def test_horizon_stage_rows_and_files(horizon_run):
    root, p, m = horizon_run
    assert m["horizons_s"] == HORIZONS
    for h in HORIZONS:
        assert f"persistence@{h:g}s" in m["rows"] and f"baseline@{h:g}s" in m["rows"]
        assert m["rows"][f"baseline@{h:g}s"]["horizon_s"] == h
    for free in ("content_only", "centre_prior", "inter_observer"):
        assert m["rows"][free]["horizon_s"] is None
    assert "content_only" in m["crossover"] and "auc_vat" in m["crossover"]["content_only"]
    assert json.loads((root / "reports" / "metrics" / "horizons.json").read_text()) == json.loads(json.dumps(m))
    import pandas as pd

    pers = pd.read_csv(root / "reports" / "curves" / "horizons" / "persistence.csv")
    assert pers["horizon_s"].tolist() == HORIZONS
    assert pers["auc_vat"].tolist() == [m["rows"][f"persistence@{h:g}s"]["metrics"]["auc_vat"] for h in HORIZONS]
    flat = pd.read_csv(root / "reports" / "curves" / "horizons" / "content_only.csv")
    assert flat["horizon_s"].tolist() == HORIZONS and flat["auc_vat"].nunique() == 1
    md = (root / "reports" / "horizons.md").read_text()
    assert "persistence" in md and "content_only" in md
    assert (root / "reports" / "horizons.png").stat().st_size > 1000
    from gazelib.report.html import md_to_html

    html = md_to_html(md, base_dir=root / "reports")
    assert "<table" in html and "persistence" in html and "inout_ap" in html


@pytest.mark.slow  # a tiny pipeline run with the horizons stage
def test_horizon_rows_match_evaluate_at_the_trained_horizon(horizon_run):
    """Same protocol: at train.horizon_s, persistence and the model equal evaluate's own rows."""
    root, p, m = horizon_run
    ev_path = root / "reports" / "metrics" / "eval" / "baseline.json"     # where evaluate writes it since issue 25
    ev = json.loads((ev_path if ev_path.exists() else root / "reports" / "metrics" / "eval" / "baseline.json").read_text())
    h = p["train"]["horizon_s"]
    for k in ("auc_vat", "l2_vat", "nss"):
        assert m["rows"][f"persistence@{h:g}s"]["metrics"][k] == pytest.approx(ev["persistence"][k], abs=1e-9)
        assert m["rows"][f"baseline@{h:g}s"]["metrics"][k] == pytest.approx(ev["model"][k], abs=1e-9)
        assert m["rows"]["centre_prior"]["metrics"][k] == pytest.approx(ev["centre_prior"][k], abs=1e-9)


@pytest.mark.slow  # a tiny pipeline run with the horizons stage
def test_model_is_causal_at_every_horizon(horizon_run):
    _, _, m = horizon_run
    assert set(m["leak_check"]) == {f"baseline@{h:g}s" for h in HORIZONS}
    for name, leak in m["leak_check"].items():
        assert leak["max_abs_dlogit"] == 0.0, name


# ---------------------------------------------------------------- training with sampled horizons
@pytest.mark.slow  # a tiny pipeline run with the horizons stage
def test_sampled_horizons_cut_each_window_at_its_own_horizon(horizon_run):
    """Every training window's track is the track at its sampled horizon, the draw is deterministic, several
    horizons occur, and moving the gaze after t - h_window leaves that window's inputs unchanged."""
    from gazelib.data.dataset import GazeWindows, track_history
    from gazelib.core.layout import index_grid, index_maps, read_index, read_norm_stats, split_files

    root, p, _ = horizon_run
    index, meta = read_index(root)
    maps = index_maps(index)
    files = split_files(root, index, "train")
    cfg = {k: v for k, v in p["train"].items() if k != "seeds"}
    args = dict(files=files, stats=read_norm_stats(root), cfg=cfg, grid_hw=tuple(index_grid(meta)[1:]),
                fps=meta["fps"], lengths=maps["length"], n_viewers=maps["viewers"])
    ds = GazeWindows(sample_horizons=HORIZONS, horizon_seed=0, **args)
    again = GazeWindows(sample_horizons=HORIZONS, horizon_seed=0, **args)
    hs = [ds.horizon_of(i) for i in range(len(ds))]
    assert hs == [again.horizon_of(i) for i in range(len(ds))]
    assert len(set(hs)) >= 3 and set(hs) <= set(HORIZONS)
    plain = GazeWindows(**args)
    assert plain.horizon_of(0) is None
    for i in range(min(len(ds), 12)):
        vid, v, s = ds.index[i]
        b = ds.batch([i])
        vt = ds.video(vid)
        n = b["track"].shape[1]
        want, _ = track_history(gaze=vt.gaze[v], inout=vt.inout[v], valid=vt.valid[v], sample_t=vt.gaze_t[v],
                                t=vt.t[s:s + n], horizon_s=hs[i])
        np.testing.assert_array_equal(b["track"][0, : want.shape[0]].numpy(), want)
        # causality at the window's own horizon: later gaze moved, the track unchanged
        late = np.nan_to_num(vt.gaze_t[v], nan=-np.inf) > vt.t[min(s + n, vt.t.size) - 1] - hs[i] + 1e-9
        g = vt.gaze.copy()
        g[v, late] = 0.99
        moved, _ = track_history(gaze=g[v], inout=vt.inout[v], valid=vt.valid[v], sample_t=vt.gaze_t[v],
                                 t=vt.t[s:s + n], horizon_s=hs[i])
        np.testing.assert_array_equal(moved, want)
    assert "horizon-conditioned" in horizon_run[2]["models_scored_at"]


@pytest.mark.slow  # a tiny pipeline run with the horizons stage
def test_scoring_workers_give_the_same_bytes(horizon_run, tmp_path):
    """evaluate.workers (the scoring jobs of evaluate and horizons in parallel processes) changes no byte:
    the fixture ran with the default 2 workers; rerun evaluate and horizons with 1 on a copy."""
    import copy
    import hashlib
    import shutil

    from gazelib.eval.evaluate import run_evaluate, run_score_floors
    from gazelib.eval.horizons import run_horizons

    root, p, _ = horizon_run
    assert p["evaluate"]["workers"] == 2
    copy_root = tmp_path / "serial"
    shutil.copytree(root, copy_root, symlinks=True)
    q = copy.deepcopy(p)
    q["evaluate"]["workers"] = 1
    run_score_floors(params=q, root=copy_root)
    for v in q["variants"]:
        run_evaluate(params=q, variant=v, root=copy_root)
    run_horizons(params=q, root=copy_root)

    def digests(r):
        files = [f for d in ("reports/eval", "reports/metrics", "reports/calibration", "reports/curves")
                 for f in sorted((r / d).rglob("*")) if f.is_file() and f.suffix != ".png"]
        return {str(f.relative_to(r)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    parallel, serial = digests(root), digests(copy_root)
    assert any("samples.parquet" in f for f in serial) and any("horizons.json" in f for f in serial)
    assert parallel == serial
