"""Floors and ceiling: fitted on train only, built like model predictions, scored by the same code."""
from __future__ import annotations

import numpy as np
import pytest

from gazelib.eval.evaluate import score_rows, summarise
from gazelib.model.floors import fit_floors, floor_predictions, gaussian_cells
from gazelib.core.cells import gaze_cell
from gazelib.metrics import resize_bilinear

GH, GW = 9, 16
SIGMAS = [0.02, 0.03, 0.05, 0.08, 0.12, 0.18]
WEIGHTS = [0.02, 0.1, 0.4]


def _video(rng, n_v=4, n_t=120, fps=10.0, jump_every=15, spread=0.05, horizon_steps=3):
    """Viewers share a target that jumps every ``jump_every`` steps; gaze = target + noise."""
    t = np.arange(n_t) / fps
    targets = rng.uniform(0.15, 0.85, (n_t // jump_every + 1, 2)).repeat(jump_every, 0)[:n_t]
    gaze = (targets[None] + rng.normal(0, spread, (n_v, n_t, 2))).astype(np.float32)
    valid = rng.uniform(size=(n_v, n_t)) > 0.05
    inout = (valid & ((gaze >= 0) & (gaze <= 1)).all(-1)).astype(np.int8)
    gaze_t = np.where(valid, t[None] + rng.uniform(-0.01, 0.01, (n_v, n_t)), np.nan)
    return {"t": t, "gaze": gaze, "inout": inout, "valid": valid, "gaze_t": gaze_t}


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    train = [_video(rng) for _ in range(6)]
    test = [_video(rng) for _ in range(2)]
    floors = fit_floors(train=train, gh=GH, gw=GW, horizon_s=0.3, sigmas=SIGMAS, weights=WEIGHTS,
                        eps=[0.001, 0.01, 0.05])
    return train, test, floors


def test_gaussian_cells_are_distributions_peaking_at_the_point():
    g = gaussian_cells(xy=np.array([[0.1, 0.9], [0.53, 0.47]]), gh=GH, gw=GW, sigma=0.05)
    np.testing.assert_allclose(g.sum(1), 1.0)
    assert g[1].argmax() == gaze_cell(np.array([0.53, 0.47]), GH, GW)
    assert g[0].argmax() == gaze_cell(np.array([0.1, 0.9]), GH, GW)


def test_centre_prior_is_a_distribution_fitted_on_train(corpus):
    train, _, floors = corpus
    prior = np.asarray(floors["prior"])
    assert prior.shape == (GH * GW,) and np.all(prior > 0)
    np.testing.assert_allclose(prior.sum(), 1.0)
    assert floors["centre_prior"]["sigma"] in SIGMAS
    # train gaze is uniform-ish in [0.15, 0.85]: the corners get less mass than the middle
    assert prior[gaze_cell(np.array([0.5, 0.5]), GH, GW)] > 3 * prior[0]


def test_fitted_widths_follow_the_data(corpus):
    """Gaze = shared target + N(0, 0.05): the inter-observer blur should be near 0.05 * sqrt(2)."""
    _, _, floors = corpus
    assert floors["inter_observer"]["sigma"] in (0.05, 0.08)
    assert floors["persistence"]["sigma"] in SIGMAS and floors["persistence"]["w"] in WEIGHTS


def test_persistence_uses_only_gaze_before_t_minus_horizon(corpus):
    _, test, floors = corpus
    lab = test[0]
    prob, p_in = floor_predictions(floors=floors, lab=lab, gh=GH, gw=GW)["persistence"]
    np.testing.assert_allclose(prob.sum(-1), 1.0, rtol=1e-5)
    pert = {k: v.copy() for k, v in lab.items()}
    i = 60
    cut = lab["t"][i] - floors["horizon_s"]
    late = np.nan_to_num(pert["gaze_t"], nan=-np.inf) > cut + 1e-9
    pert["gaze"][late] = 0.9
    prob2, p_in2 = floor_predictions(floors=floors, lab=pert, gh=GH, gw=GW)["persistence"]
    np.testing.assert_array_equal(prob[:, : i + 1], prob2[:, : i + 1])
    np.testing.assert_array_equal(p_in[:, : i + 1], p_in2[:, : i + 1])
    # no history at the very start: the centre prior
    np.testing.assert_allclose(prob[0, 0], floors["prior"], rtol=1e-5)


def test_inter_observer_never_uses_the_viewer_it_predicts(corpus):
    _, test, floors = corpus
    lab = test[1]
    prob, _ = floor_predictions(floors=floors, lab=lab, gh=GH, gw=GW)["inter_observer"]
    pert = {k: v.copy() for k, v in lab.items()}
    pert["gaze"][0] = np.float32(0.02)
    prob2, _ = floor_predictions(floors=floors, lab=pert, gh=GH, gw=GW)["inter_observer"]
    np.testing.assert_array_equal(prob[0], prob2[0])        # viewer 0's own row: unchanged
    assert np.abs(prob[1] - prob2[1]).max() > 1e-3          # the others' rows use viewer 0


def test_floors_score_through_the_model_path(corpus):
    """The centre prior scored against itself has IG exactly 0; the ceiling beats the prior."""
    _, test, floors = corpus
    prior = np.asarray(floors["prior"]).reshape(1, GH, GW)
    hw = (9, 16)
    prior_eval = resize_bilinear(maps=prior, out_hw=hw)[0]
    rows = {}
    for name, (prob, p_in) in floor_predictions(floors=floors, lab=test[0], gh=GH, gw=GW).items():
        df = score_rows(prob=prob, p_in=p_in, lab=test[0], gh=GH, gw=GW, eval_hw=hw, prior_eval=prior_eval,
                        other_xy=test[1]["gaze"][test[1]["valid"]].reshape(-1, 2).clip(0, 1), fixation_sigma=0.04)
        rows[name] = summarise(df)
    assert rows["centre_prior"]["ig"] == pytest.approx(0.0, abs=1e-12)
    assert rows["inter_observer"]["auc_vat"] > rows["centre_prior"]["auc_vat"]
    assert rows["inter_observer"]["l2_vat"] < rows["centre_prior"]["l2_vat"]
    assert rows["inter_observer"]["ig"] > 0.5
