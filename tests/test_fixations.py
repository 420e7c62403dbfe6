"""gazelib.fixations: I-VT / I-DT labels (pymovements) in degrees or normalised units."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gazelib.fixations import detect_fixations

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
    from gazelib.importers import run_import
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
