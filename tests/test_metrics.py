"""Metrics on hand-computed cases, ties, empty frames; properties of the definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gazelib import metrics as M


def test_cell_geometry():
    c = M.cell_centres(2, 4)
    assert c.shape == (8, 2)
    np.testing.assert_allclose(c[0], [0.125, 0.25])
    np.testing.assert_allclose(c[5], [0.375, 0.75])
    assert M.gaze_cell(np.array([0.99, 0.99]), 2, 4) == 7
    assert M.gaze_cell(np.array([1.0, 1.0]), 2, 4) == 7  # the frame edge belongs to the last cell


def test_viewer_step_metrics_by_hand():
    heat = np.array([0.1, 0.7, 0.2, 0.0])  # grid 1x4
    r = M.viewer_step_metrics(heatmap=heat, gaze=np.array([0.3, 0.5]), gh=1, gw=4)
    assert r["hit1"] == 1.0 and r["auc"] == 1.0
    assert r["l2"] == pytest.approx(abs(0.375 - 0.3))
    r2 = M.viewer_step_metrics(heatmap=heat, gaze=np.array([0.6, 0.5]), gh=1, gw=4)
    assert r2["hit1"] == 0.0 and r2["auc"] == pytest.approx(2 / 3)  # beats 0.1 and 0.0, loses to 0.7


def test_auc_ties_count_half():
    assert M.roc_auc_single(np.array([1.0, 1.0, 1.0]), 0) == 0.5
    assert M.auc_pos_neg(np.array([1.0]), np.array([1.0, 0.0])) == 0.75


def test_saliency_metrics_by_hand():
    sal = np.array([0.0, 1.0, 0.0, 0.0])
    fix = np.array([1])
    # NSS: (1 - 0.25) / std([0,1,0,0]) = 0.75 / 0.4330
    assert M.nss(sal, fix) == pytest.approx(0.75 / np.std(sal))
    assert M.auc_judd(sal, fix) == 1.0
    fmap = np.array([0.0, 2.0, 0.0, 0.0])
    assert M.cc(sal, fmap) == pytest.approx(1.0)
    assert M.sim(sal, fmap) == pytest.approx(1.0)
    assert M.kl_div(sal, fmap) == pytest.approx(0.0, abs=1e-9)
    # uniform prior over 4 cells, model puts all mass on the fixated cell: log2(1/0.25) = 2 bits
    assert M.info_gain(sal, np.full(4, 0.25), fix) == pytest.approx(2.0, abs=1e-6)
    # shuffled AUC: negatives drawn at the same cell as the positive count half
    assert M.shuffled_auc(sal, fix, np.array([1, 0])) == pytest.approx(0.75)


def test_frame_with_no_fixation_is_nan_not_zero():
    r = M.frame_saliency_metrics(sal=np.ones(6), fix_xy=np.zeros((0, 2)), other_cells=np.array([0]),
                                 prior=np.full(6, 1 / 6), gh=2, gw=3, sigma=0.1)
    assert math.isnan(r["nss"]) and math.isnan(r["auc_judd"]) and math.isnan(r["ig"])


def test_inout_metrics():
    r = M.inout_metrics(prob_in=np.array([0.9, 0.8, 0.3, 0.1]), is_in=np.array([1, 1, 0, 0]))
    assert r["inout_ap"] == 1.0 and r["inout_acc"] == 1.0
    r2 = M.inout_metrics(prob_in=np.array([0.2, 0.9]), is_in=np.array([1, 0]))
    assert r2["inout_acc"] == 0.0 and r2["inout_ap"] == pytest.approx(0.5)


# values on a 0.01 lattice: affine rescaling must not merge distinct values by rounding
maps = arrays(np.float64, 12, elements=st.integers(0, 1000).map(lambda k: k / 100))


@settings(max_examples=100, deadline=None)
@given(maps, maps)
def test_metric_ranges_and_symmetries(a, b):
    assert 0 - 1e-9 <= M.sim(a, b) <= 1 + 1e-9
    assert -1 - 1e-9 <= M.cc(a, b) <= 1 + 1e-9
    assert M.cc(a, b) == pytest.approx(M.cc(b, a))
    assert M.kl_div(a + 1e-3, a + 1e-3) == pytest.approx(0.0, abs=1e-9)
    assert M.kl_div(a, b) >= -1e-9


@settings(max_examples=100, deadline=None)
@given(maps, st.lists(st.integers(0, 11), min_size=1, max_size=5))
def test_auc_and_nss_are_invariant_to_monotone_rescaling(a, cells):
    cells = np.array(cells)
    assert M.auc_judd(a, cells) == pytest.approx(M.auc_judd(3 * a + 1, cells))
    assert M.nss(a, cells) == pytest.approx(M.nss(3 * a + 1, cells), abs=1e-6)
    assert M.info_gain(a + 1e-3, a + 1e-3, cells) == pytest.approx(0.0, abs=1e-6)


def test_centre_prior_sums_to_one_and_peaks_where_gaze_is():
    rng = np.random.default_rng(0)
    centre = np.array([8.5 / 16, 4.5 / 9])  # the centre of cell (4, 8)
    xy = np.clip(rng.normal(centre, 0.05, (500, 2)), 0, 1)
    p = M.centre_prior(train_xy=xy, gh=9, gw=16, sigma=0.05)
    assert p.sum() == pytest.approx(1.0)
    assert M.gaze_cell(centre, 9, 16) == int(np.argmax(p))
    assert p.min() > 0
