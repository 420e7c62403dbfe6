"""Track history: only gaze sampled at or before t - horizon reaches step t (property tests)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.align import resample_gaze
from gazelib.dataset import TRACK_DIM, track_history, track_maps


@st.composite
def recordings(draw):
    n = draw(st.integers(5, 60))
    fps = draw(st.sampled_from([5.0, 10.0, 25.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    # a raw recording at any rate, with gaps; labels come from the nearest sample (as align does)
    hz = draw(st.sampled_from([7.0, 30.0, 60.0, 250.0]))
    raw_t = np.sort(rng.uniform(-0.2, t[-1] + 0.3, int(hz * (t[-1] + 0.5)) + 1))
    raw_xy = rng.uniform(-0.3, 1.3, (raw_t.size, 2))
    raw_valid = rng.uniform(size=raw_t.size) > draw(st.floats(0.0, 0.6))
    gaze, inout, valid, sample_t = resample_gaze(t=raw_t, x=raw_xy[:, 0], y=raw_xy[:, 1], valid=raw_valid,
                                                 dst_t=t, max_gap_s=draw(st.sampled_from([0.02, 0.1, 0.3])),
                                                 return_sample_t=True)
    horizon = draw(st.sampled_from([1 / fps, 2 / fps, 0.5, 1.0]))
    return dict(t=t, gaze=gaze, inout=inout, valid=valid, sample_t=sample_t, horizon=horizon, raw_t=raw_t, rng=rng)


@settings(max_examples=150, deadline=None)
@given(recordings())
def test_track_at_t_comes_from_the_last_sample_before_t_minus_horizon(rec):
    feat, src = track_history(gaze=rec["gaze"], inout=rec["inout"], valid=rec["valid"], sample_t=rec["sample_t"],
                              t=rec["t"], horizon_s=rec["horizon"])
    assert feat.shape == (rec["t"].size, TRACK_DIM)
    for i, ti in enumerate(rec["t"]):
        cut = ti - rec["horizon"]
        allowed = np.nonzero(rec["valid"] & (np.nan_to_num(rec["sample_t"], nan=np.inf) <= cut + 1e-9))[0]
        if allowed.size == 0:
            assert src[i] == -1 and not feat[i].any()
        else:
            assert src[i] == allowed[-1]
            assert rec["sample_t"][src[i]] <= cut + 1e-9
            np.testing.assert_allclose(feat[i, :2], np.clip(rec["gaze"][src[i]], -0.5, 1.5))
            assert feat[i, 4] == 1.0 and 0.0 <= feat[i, 3] <= 1.0


@settings(max_examples=100, deadline=None)
@given(recordings(), st.integers(0, 10_000))
def test_perturbing_gaze_after_t_minus_horizon_leaves_step_t_unchanged(rec, pick):
    n = rec["t"].size
    i = pick % n
    cut = rec["t"][i] - rec["horizon"]
    args = dict(gaze=rec["gaze"], inout=rec["inout"], valid=rec["valid"], sample_t=rec["sample_t"], t=rec["t"],
                horizon_s=rec["horizon"])
    feat, _ = track_history(**args)
    # every label that comes from a raw sample after the cut, and every missing label after it
    # (which a perturbation may fill): values, in/out, validity and sample time
    late = np.nan_to_num(rec["sample_t"], nan=-np.inf) > cut + 1e-9
    late |= ~rec["valid"] & (rec["t"] > cut + 1e-9)
    g2, io2, v2, st2 = (rec["gaze"].copy(), rec["inout"].copy(), rec["valid"].copy(), rec["sample_t"].copy())
    g2[late] = rec["rng"].uniform(-1, 2, (int(late.sum()), 2))
    io2[late] = 1 - io2[late]
    v2[late] = ~v2[late]
    st2[late] = np.maximum(rec["t"][late], cut + 1e-6)
    feat2, _ = track_history(gaze=g2, inout=io2, valid=v2, sample_t=st2, t=rec["t"], horizon_s=rec["horizon"])
    np.testing.assert_array_equal(feat[i], feat2[i])
    maps = track_maps(track=np.stack([feat, feat2]), gh=3, gw=4, sigma=0.2)
    np.testing.assert_array_equal(maps[0, i], maps[1, i])


def test_a_label_from_a_later_raw_sample_is_not_seen_early():
    """Nearest-sample labels may come from after their step: the cut uses the raw time."""
    t = np.arange(5) / 10.0
    sample_t = np.array([0.0, 0.1, 0.2, 0.34, 0.4])   # step 3's label was sampled at 0.34 s
    gaze = np.tile([[0.5, 0.5]], (5, 1)).astype(np.float32)
    feat, src = track_history(gaze=gaze, inout=np.ones(5, np.int8), valid=np.ones(5, bool), sample_t=sample_t,
                              t=t, horizon_s=0.1)
    # at t=0.4 the cut is 0.3: step 3 (sampled 0.34) is too late, step 2 is the last one seen
    assert src[4] == 2 and src[3] == 2 and src[0] == -1
