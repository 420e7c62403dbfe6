"""gazelib.gaze.fixations: I-VT / I-DT labels (pymovements) in degrees or normalised units."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gazelib.gaze.fixations import detect_fixations

FIX = Path(__file__).parent / "fixtures" / "eyelink"


def three_fixations(hz=500.0, seed=0):
    """Fixations at x = 0.2, 0.5, 0.8 (0-0.6 s, 0.64-1.2 s, 1.24-2 s), 40 ms saccades, 20 ms track loss."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 2.0, 1 / hz)
    x = np.interp(t, [0, 0.6, 0.64, 1.2, 1.24, 2.0], [0.2, 0.2, 0.5, 0.5, 0.8, 0.8]) + rng.normal(0, 3e-4, t.size)
    y = np.full(t.size, 0.5) + rng.normal(0, 3e-4, t.size)
    valid = np.ones(t.size, bool)
    valid[(t >= 1.5) & (t < 1.52)] = False
    return t, x, y, valid


@pytest.mark.parametrize("method", ["ivt", "idt"])
def test_fixations_found_where_the_eye_rests(method):
    t, x, y, valid = three_fixations()
    r = detect_fixations(t=t, x=x, y=y, valid=valid, method=method, deg_per_unit=[40.0, 22.5])
    f = r.fixations
    assert r.units == "deg" and len(f) == 4           # the track loss splits the last fixation
    np.testing.assert_allclose(f["x"], [0.2, 0.5, 0.8, 0.8], atol=2e-3)
    np.testing.assert_allclose(f["onset_s"], [0.0, 0.64, 1.24, 1.52], atol=0.03)
    np.testing.assert_allclose(f["offset_s"], [0.6, 1.2, 1.5, 2.0], atol=0.03)
    assert (r.fixation_id[~valid] == -1).all()
    inside = r.fixation_id >= 0
    np.testing.assert_allclose(r.centroid_x[inside], f["x"].to_numpy()[r.fixation_id[inside]])
    assert np.isnan(r.centroid_x[~inside]).all()
    assert 0.85 < r.share_in_fixation <= 1.0
    assert r.share_in_fixation == pytest.approx(inside.sum() / valid.sum())


def test_thresholds_in_degrees_or_normalised_units():
    t, x, y, valid = three_fixations()
    # saccades move 0.3 units in 40 ms: 7.5 units/s = 300 deg/s at 40 deg per unit
    deg = detect_fixations(t=t, x=x, y=y, valid=valid, deg_per_unit=[40.0, 22.5], velocity_threshold=30.0)
    ppd = detect_fixations(t=t, x=x, y=y, valid=valid, pixels_per_degree=48.0, frame_px=[1920, 1080],
                           velocity_threshold=30.0)
    np.testing.assert_array_equal(deg.fixation_id, ppd.fixation_id)
    # a normalised threshold above the saccade speed merges everything into fixations split only by track loss
    norm = detect_fixations(t=t, x=x, y=y, valid=valid, velocity_threshold=10.0)
    assert norm.units == "norm" and len(norm.fixations) == 2
    # too strict a degree threshold finds nothing (the noise alone is faster)
    strict = detect_fixations(t=t, x=x, y=y, valid=valid, deg_per_unit=[40.0, 22.5], velocity_threshold=0.01)
    assert len(strict.fixations) == 0 and strict.share_in_fixation == 0.0
    with pytest.raises(ValueError, match="pixels_per_degree needs frame_px"):
        detect_fixations(t=t, x=x, y=y, pixels_per_degree=48.0)
    with pytest.raises(ValueError, match="method must be one of"):
        detect_fixations(t=t, x=x, y=y, method="ihmm")


def test_min_duration_drops_short_rests():
    t, x, y, valid = three_fixations()
    r = detect_fixations(t=t, x=x, y=y, valid=valid, method="idt", deg_per_unit=[40.0, 22.5], min_duration_s=0.4)
    # the 1.24-1.5 s piece (before the track loss) is shorter than 400 ms; the others are longer
    assert len(r.fixations) == 3 and (r.fixations["duration_s"] >= 0.39).all()
    np.testing.assert_allclose(r.fixations["onset_s"], [0.0, 0.64, 1.52], atol=0.03)


def test_real_eyelink_fixation_matches_the_trackers_own(tmp_path):
    """raccoons.asc: EyeLink's parser reports EFIX 147953-148207 at (1008.6, 1190.4) px."""
    from gazelib.gaze.importers import run_import
    import pandas as pd

    run_import(cfg={"format": "eyelink", "inputs": [str(FIX / "raccoons.asc")], "geometry": {"rect": "stretch"},
                    "sync": {"method": "recording", "video_id": "r"}}, out_dir=tmp_path)
    g = pd.read_csv(tmp_path / "gaze" / "r" / "raccoons.csv")
    # 1920 px over 53 cm at 60 cm: 37.9 px/deg
    r = detect_fixations(t=g["t"], x=g["x"], y=g["y"], valid=g["valid"], method="ivt",
                         pixels_per_degree=1920 / 53.0 * 60 * np.pi / 180, frame_px=[1920, 1080])
    first = r.fixations.iloc[0]
    assert first["onset_s"] == pytest.approx((147953 - 147946) / 1000, abs=0.01)
    assert first["offset_s"] == pytest.approx((148207 - 147946) / 1000, abs=0.01)
    assert first["x"] * 1920 == pytest.approx(1008.6, abs=3) and first["y"] * 1080 == pytest.approx(1190.4, abs=3)


@pytest.mark.parametrize("method", ["ivt", "idt"])
def test_a_fixation_label_is_known_only_when_the_fixation_has_ended(method):
    """known_t is at or after the fixation's end, and samples after it cannot change the label."""
    t, x, y, valid = three_fixations()
    kw = dict(method=method, deg_per_unit=[40.0, 22.5])
    r = detect_fixations(t=t, x=x, y=y, valid=valid, **kw)
    inside = r.fixation_id >= 0
    assert np.isnan(r.known_t[~inside]).all()
    off = r.fixations["offset_s"].to_numpy()[r.fixation_id[inside]]
    ends_open = off == t[-1]  # a fixation the recording's end cuts is known at that end
    assert (r.known_t[inside][~ends_open] > off[~ends_open]).all()  # the breaking sample is read too
    assert (r.known_t[inside][ends_open] == t[-1]).all()
    rng = np.random.default_rng(1)
    for cut in (0.7, 1.3, 1.6):
        x2 = x.copy()
        x2[t > cut] = rng.uniform(0, 1, (t > cut).sum())
        r2 = detect_fixations(t=t, x=x2, y=y, valid=valid, **kw)
        known = inside & (r.known_t <= cut)
        assert known.any()
        np.testing.assert_array_equal(r2.fixation_id[known], r.fixation_id[known])
        np.testing.assert_array_equal(r2.centroid_x[known], r.centroid_x[known])
        np.testing.assert_array_equal(r2.known_t[known], r.known_t[known])


def _track_after_ingest(corpus: Path, params: dict, *, use_known_t: bool = True):
    """ingest (fixation labels) -> align (no features: masked) -> prepare_arrays: the track inputs."""
    from gazelib.data.align import align_video
    from gazelib.data.dataset import prepare_arrays
    from gazelib.gaze.ingest import ingest_corpus

    res = ingest_corpus(corpus=corpus, params=params["ingest"], on_error="raise")
    (vid,) = res.gaze
    gaze = res.gaze[vid] if use_known_t else res.gaze[vid].drop(columns="t_known")  # the old behaviour
    duration = float(res.manifest.set_index("video_id").loc[vid, "duration_s"])
    grid = (2, params["visual"]["grid_h"], params["visual"]["grid_w"])
    arrays = align_video(video_id=vid, duration_s=duration, feat_dir=corpus / "no_features", gaze=gaze,
                         cfg=params["align"], grid_shape=grid)
    stats = {**{m: {"columns": [], "kinds": [], "mean": [], "std": []} for m in ("audio", "text", "visual")},
             "grid": {"mean": [0.0] * grid[0], "std": [1.0] * grid[0]}}
    return prepare_arrays(arrays=arrays, video_id=vid, stats=stats, fps=params["align"]["fps"],
                          horizon_s=params["train"]["horizon_s"], sigma=params["train"]["heatmap_sigma"],
                          grid_hw=grid[1:])


def test_fixation_labels_leak_no_gaze_after_t_minus_horizon_into_the_track(tmp_path, tiny_corpus):
    """Perturb one viewer's raw gaze samples after t - horizon in the gaze file, re-run ingest with
    fixation labels and the input preparation: the track inputs at steps <= t do not move. With the
    sample's own time as gaze_t (the old behaviour) they do: a fixation that straddles the cut takes a
    centroid over samples after it."""
    import shutil

    import pandas as pd

    src, params = tiny_corpus
    params = {**params, "ingest": {**params["ingest"], "labels": "fixations"}}
    corpus = tmp_path / "corpus"
    vid = "demo000"
    (corpus / "videos").mkdir(parents=True)
    shutil.copy2(src / "videos" / f"{vid}.mp4", corpus / "videos" / f"{vid}.mp4")
    shutil.copytree(src / "gaze" / vid, corpus / "gaze" / vid)
    viewer = sorted((corpus / "gaze" / vid).glob("*.csv"))[0]
    raw = pd.read_csv(viewer)
    base = {k: _track_after_ingest(corpus, params, use_known_t=k) for k in (True, False)}
    horizon, rng = params["train"]["horizon_s"], np.random.default_rng(0)
    old_moved = 0
    for step in (25, 42, 58, 77, 93):
        cut = base[True].t[step] - horizon
        pert = raw.copy()
        late = pert["t"] > cut
        pert.loc[late, ["x", "y"]] = rng.uniform(0.05, 0.95, (int(late.sum()), 2))
        pert.to_csv(viewer, index=False)
        for use_known in (True, False):
            got = _track_after_ingest(corpus, params, use_known_t=use_known)
            same = (np.array_equal(got.track[:, :step + 1], base[use_known].track[:, :step + 1])
                    and np.array_equal(got.track_map[:, :step + 1], base[use_known].track_map[:, :step + 1]))
            if use_known:
                assert same, f"step {step}: the track moved when gaze after t - horizon changed"
                assert not np.array_equal(got.gaze, base[True].gaze)  # the perturbation did reach the labels
            else:
                old_moved += not same
        raw.to_csv(viewer, index=False)
    assert old_moved >= 3, "the check cannot fail: the sample-time gaze_t also kept the track unchanged"
