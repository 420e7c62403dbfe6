"""Metrics against independent literal transcriptions of the references, known answers,
guard clauses and properties.

References transcribed below (not imported from gazelib):
- ejcgt/attention-target-detection: utils/imutils.py draw_labelmap, utils/evaluation.py
  (auc, argmax_pts, L2_dist), eval_on_videoatttarget.py; scipy<=1.2 misc.bytescale /
  misc.imresize (PIL 'L' + Image.resize BILINEAR);
- sklearn.metrics roc_auc_score / average_precision_score (called directly);
- matthias-k/pysaliency metrics.py (convert_saliency_map_to_density, NSS, CC, SIM,
  image_based_kl_divergence / MIT_KLDiv) and roc auc_for_one_positive.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from gazelib.core import cells as C
from gazelib import metrics as M

RES = 64


# ------------------------------------------------------------- literal reference ports

def draw_labelmap_ref(img, pt, sigma):
    """utils/imutils.py draw_labelmap(type='Gaussian'), line by line (to_numpy/to_torch dropped)."""
    ul = [int(pt[0] - 3 * sigma), int(pt[1] - 3 * sigma)]
    br = [int(pt[0] + 3 * sigma + 1), int(pt[1] + 3 * sigma + 1)]
    if (ul[0] >= img.shape[1] or ul[1] >= img.shape[0] or
            br[0] < 0 or br[1] < 0):
        return img
    size = 6 * sigma + 1
    x = np.arange(0, size, 1, float)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(- ((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))
    g_x = max(0, -ul[0]), min(br[0], img.shape[1]) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], img.shape[0]) - ul[1]
    img_x = max(0, ul[0]), min(br[0], img.shape[1])
    img_y = max(0, ul[1]), min(br[1], img.shape[0])
    img[img_y[0]:img_y[1], img_x[0]:img_x[1]] += g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
    img = img / np.max(img)
    return img


def bytescale_ref(data, cmin=None, cmax=None, high=255, low=0):
    """scipy.misc.bytescale (scipy 1.1)."""
    if data.dtype == np.uint8:
        return data
    if high < low:
        raise ValueError("`high` should be larger than `low`.")
    if cmin is None:
        cmin = data.min()
    if cmax is None:
        cmax = data.max()
    cscale = cmax - cmin
    if cscale < 0:
        raise ValueError("`cmax` should be larger than `cmin`.")
    elif cscale == 0:
        cscale = 1
    scale = float(high - low) / cscale
    bytedata = (data - cmin) * scale + low
    return (bytedata.clip(low, high) + 0.5).astype(np.uint8)


def imresize_ref(arr, size):
    """scipy.misc.imresize(arr, size, interp='bilinear') for a 2-D float array (toimage mode None)."""
    data = np.asarray(arr)
    shape = (data.shape[1], data.shape[0])
    bytedata = bytescale_ref(data)
    im = Image.frombytes('L', shape, bytedata.tobytes())
    size = (size[1], size[0])
    imnew = im.resize(size, resample=2)  # {'bilinear': 2}
    return np.array(imnew)


def resize_f_ref(arr, size):
    im = Image.frombytes('F', (arr.shape[1], arr.shape[0]), np.asarray(arr, np.float32).tobytes())
    return np.array(im.resize((size[1], size[0]), resample=2))


def argmax_pts(heatmap):
    idx = np.unravel_index(heatmap.argmax(), heatmap.shape)
    pred_y, pred_x = map(float, idx)
    return pred_x, pred_y


def L2_dist(p1, p2):
    return np.sqrt((p1[0] - p2[0]) ** 2 + (p1[1] - p2[1]) ** 2)


def vat_ref(heat, gaze_x, gaze_y):
    """The per-sample body of eval_on_videoatttarget.py (our grid resized for the argmax)."""
    multi_hot = np.zeros((RES, RES), np.float32)
    multi_hot = draw_labelmap_ref(multi_hot, [gaze_x * RES, gaze_y * RES], 3)
    multi_hot = (multi_hot > 0).astype(np.float32) * 1
    scaled_heatmap = imresize_ref(heat, (RES, RES))
    auc_score = roc_auc_score(np.reshape(multi_hot, multi_hot.size), np.reshape(scaled_heatmap, scaled_heatmap.size))
    pred_x, pred_y = argmax_pts(resize_f_ref(heat, (RES, RES)))
    norm_p = [pred_x / RES, pred_y / RES]
    return auc_score, L2_dist([gaze_x, gaze_y], norm_p), multi_hot > 0


def density_ref(saliency_map, minimum_value=0.0):
    """pysaliency convert_saliency_map_to_density."""
    if saliency_map.min() < 0:
        saliency_map = saliency_map - saliency_map.min()
    saliency_map = saliency_map + minimum_value
    saliency_map_sum = saliency_map.sum()
    if saliency_map_sum:
        saliency_map = saliency_map / saliency_map_sum
    else:
        saliency_map[:] = 1.0
        saliency_map /= saliency_map.sum()
    return saliency_map


def NSS_ref(saliency_map, xs, ys):
    xs = np.asarray(xs, dtype=int)
    ys = np.asarray(ys, dtype=int)
    mean = saliency_map.mean()
    std = saliency_map.std()
    value = saliency_map[ys, xs].copy()
    value -= mean
    if std:
        value /= std
    return value


def CC_ref(saliency_map_1, saliency_map_2):
    def normalize(saliency_map):
        saliency_map -= saliency_map.mean()
        std = saliency_map.std()
        if std:
            saliency_map /= std
        return saliency_map, std == 0

    smap1, constant1 = normalize(saliency_map_1.copy())
    smap2, constant2 = normalize(saliency_map_2.copy())
    if constant1 and not constant2:
        return 0.0
    else:
        return np.corrcoef(smap1.flatten(), smap2.flatten())[0, 1]


def SIM_ref(saliency_map_1, saliency_map_2):
    density_1 = density_ref(saliency_map_1, minimum_value=0)
    density_2 = density_ref(saliency_map_2, minimum_value=0)
    return np.min([density_1, density_2], axis=0).sum()


def MIT_KLDiv_ref(saliency_map_1, saliency_map_2):
    """image_based_kl_divergence(minimum_value=0, log_regularization=quotient_regularization=2.2204e-16)."""
    with np.errstate(divide="ignore"):
        logp1 = np.log(density_ref(saliency_map_1, minimum_value=0))
        logp2 = np.log(density_ref(saliency_map_2, minimum_value=0))
    lr = qr = 2.2204e-16
    return (np.exp(logp2) * np.log(lr + np.exp(logp2) / (np.exp(logp1) + qr))).sum()


def auc_for_one_positive_ref(positive, negatives):
    count = 0
    for negative in negatives:
        if negative < positive:
            count += 1
        elif negative == positive:
            count += 0.5
    return count / len(negatives)


def empirical_map_ref(h, w, x_px, y_px, sigma_px):
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    return np.exp(-((jj - (x_px + 0.5)) ** 2 + (ii - (y_px + 0.5)) ** 2) / (2 * sigma_px ** 2))


# ------------------------------------------------------------------- grid helpers kept

def test_cell_geometry_unchanged():
    c = C.cell_centres(2, 4)
    assert c.shape == (8, 2)
    np.testing.assert_allclose(c[0], [0.125, 0.25])
    np.testing.assert_allclose(c[5], [0.375, 0.75])
    assert C.gaze_cell(np.array([0.99, 0.99]), 2, 4) == 7
    assert C.gaze_cell(np.array([1.0, 1.0]), 2, 4) == 7  # the frame edge belongs to the last cell
    g = C.gaussian_map(np.array([[0.125, 0.25]]), 2, 4, 0.1)
    assert g.shape == (8,) and g[0] == pytest.approx(1.0) and g.argmax() == 0
    assert M.EPS == 1e-12


# ------------------------------------------------------------------ 1. VAT protocol

def _vat_cases(rng, n, gh, gw):
    """Heatmaps with ties / constants / float32, gaze at borders and near edges."""
    heat = rng.random((n, gh, gw))
    kinds = np.arange(n) % 5
    heat[kinds == 1] = rng.integers(0, 4, (int((kinds == 1).sum()), gh, gw))  # many ties
    heat[kinds == 2] = 0.3  # constant
    heat[kinds == 3] = rng.exponential(1.0, (int((kinds == 3).sum()), gh, gw)) ** 3  # peaky
    heat[kinds == 4] *= 1e-3
    edge = np.array([0.0, 0.999, 1.0, 0.01, 0.1, 0.14, 0.86, 0.9, 8.5 / 64, 9 / 64, 55 / 64, 0.5])
    gaze = rng.random((n, 2))
    pick = rng.random((n, 2)) < 0.5
    gaze[pick] = rng.choice(edge, int(pick.sum()))
    return heat, gaze


@pytest.mark.parametrize("gh,gw,dtype,seed", [(9, 16, np.float64, 0), (5, 7, np.float64, 1),
                                              (9, 16, np.float32, 2), (5, 7, np.float32, 3)])
def test_vat_matches_literal_reference(gh, gw, dtype, seed):
    rng = np.random.default_rng(seed)
    heat, gaze = _vat_cases(rng, 50, gh, gw)
    heat = heat.astype(dtype)
    out = M.vat_metrics(heatmaps=heat, gaze=gaze)
    masks = M.vat_positive_mask(gaze=gaze)
    scaled = M.imresize_uint8(maps=heat, out_hw=(RES, RES))
    for i in range(len(heat)):
        auc, l2, mask = vat_ref(heat[i], gaze[i, 0], gaze[i, 1])
        np.testing.assert_array_equal(masks[i], mask)
        np.testing.assert_array_equal(scaled[i], imresize_ref(heat[i], (RES, RES)))
        assert out["auc_vat"][i] == pytest.approx(auc, abs=1e-12)
        assert out["l2_vat"][i] == pytest.approx(l2, abs=1e-12)


def test_vat_positive_patch_sizes():
    g = np.array([[0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [0.999, 0.999], [8.5 / 64, 0.5], [9 / 64, 0.5],
                  [54.99 / 64, 0.5], [55 / 64, 0.5]])
    counts = M.vat_positive_mask(gaze=g).sum((1, 2))
    # unclipped 19 x 19; (0, 0): ul = int(-9) = -9, br = int(10) = 10 -> rows/cols [0, 10): 10 x 10;
    # (64, 64): ul = 55, br = 74 -> [55, 64): 9 x 9; 63.936: ul = 54 -> [54, 64): 10 x 10;
    # 8.5: ul = int(-0.5) = 0, br = int(18.5) = 18 -> 18 columns; 9: [0, 19) -> 19;
    # 54.99: [45, 64) -> 19; 55: [46, 64) -> 18.
    np.testing.assert_array_equal(counts, [361, 100, 81, 100, 18 * 19, 361, 361, 18 * 19])
    m = M.vat_positive_mask(gaze=np.array([[0.0, 0.0]]))[0]
    assert m[:10, :10].all() and not m[10:].any() and not m[:, 10:].any()


def test_vat_known_answers():
    # constant map: bytescale -> all 0 -> AUC one half
    const = np.full((3, 9, 16), 0.7)
    gaze = np.array([[0.5, 0.5], [0.0, 0.0], [1.0, 0.3]])
    np.testing.assert_array_equal(M.vat_metrics(heatmaps=const, gaze=gaze)["auc_vat"], 0.5)
    # the positive mask itself at native resolution: AUC 1; the argmax at the gaze: L2 0
    g = np.array([[20 / 64, 10 / 64]])
    mask = M.vat_positive_mask(gaze=g).astype(float)
    spike = np.zeros((1, 64, 64))
    spike[0, 10, 20] = 1.0
    assert M.vat_metrics(heatmaps=mask, gaze=g)["auc_vat"][0] == 1.0
    assert M.vat_metrics(heatmaps=spike, gaze=g)["l2_vat"][0] == 0.0
    assert M.vat_metrics(heatmaps=1.0 - mask, gaze=g)["auc_vat"][0] == 0.0


@pytest.mark.parametrize("gh,gw", [(9, 16), (5, 7)])
def test_vat_l2_of_a_peak_on_the_gaze_cell(gh, gw):
    """One-hot grid at an interior cell, gaze at its centre c. PIL bilinear (partition of unity
    away from the border) peaks at the output pixel whose centre (col + 0.5) / 64 is nearest c,
    i.e. |(col + 0.5) / 64 - c| <= 1/128, so col / 64 lies in [c - 1/64, c] on each axis and
    l2 <= sqrt(2) / 64. Border cells form a plateau up to the edge: |d| <= 0.5 / G per axis."""
    cells = [(i, j) for i in range(gh) for j in range(gw)]
    heat = np.zeros((len(cells), gh, gw))
    gaze = np.empty((len(cells), 2))
    for k, (i, j) in enumerate(cells):
        heat[k, i, j] = 1.0
        gaze[k] = ((j + 0.5) / gw, (i + 0.5) / gh)
    l2 = M.vat_metrics(heatmaps=heat, gaze=gaze)["l2_vat"]
    interior = np.array([0 < i < gh - 1 and 0 < j < gw - 1 for i, j in cells])
    assert (l2[interior] <= math.sqrt(2) / 64 + 1e-12).all()
    bound = math.hypot(max(0.5 / gw, 1 / 64), max(0.5 / gh, 1 / 64))
    assert (l2 <= bound + 1e-12).all()
    assert l2[~interior].max() > math.sqrt(2) / 64  # the border plateau is real (cell 0 -> col 0)


def test_resize_helpers_match_pil_directly():
    rng = np.random.default_rng(5)
    maps = rng.random((4, 5, 7))
    up = M.resize_bilinear(maps=maps, out_hw=(11, 13))
    assert up.shape == (4, 11, 13) and up.dtype == np.float64
    for i in range(4):
        np.testing.assert_array_equal(up[i], resize_f_ref(maps[i], (11, 13)))
    u8 = M.imresize_uint8(maps=maps, out_hw=(3, 20))
    assert u8.dtype == np.uint8 and u8.shape == (4, 3, 20)
    np.testing.assert_array_equal(u8[2], imresize_ref(maps[2], (3, 20)))


def test_chunking_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(6)
    heat, gaze = _vat_cases(rng, 23, 5, 7)
    maps = rng.random((23, 4, 6))
    kw = dict(maps=maps, fix_xy=gaze, prior=np.ones((4, 6)), other_xy=rng.random((9, 2)), fixation_sigma=0.1)
    a, s = M.vat_metrics(heatmaps=heat, gaze=gaze), M.saliency_metrics(**kw)
    monkeypatch.setattr(M, "CHUNK", 4)
    b, t = M.vat_metrics(heatmaps=heat, gaze=gaze), M.saliency_metrics(**kw)
    for d1, d2 in ((a, b), (s, t)):
        assert d1.keys() == d2.keys()
        for k in d1:
            np.testing.assert_array_equal(d1[k], d2[k])


def test_cell_hits_match_stable_argsort():
    rng = np.random.default_rng(7)
    gh, gw = 3, 4
    s = rng.integers(0, 3, (300, gh * gw)).astype(float)  # heavy ties
    gaze = rng.random((300, 2))
    gaze[:10] = 1.0
    r = M.cell_hits(heatmaps=s, gaze=gaze, gh=gh, gw=gw)
    r3 = M.cell_hits(heatmaps=s.reshape(-1, gh, gw), gaze=gaze, gh=gh, gw=gw)
    for i in range(300):
        order = np.argsort(-s[i], kind="stable")
        cell = C.gaze_cell(gaze[i], gh, gw)
        assert r["hit1_cell"][i] == float(cell == order[0])
        assert r["hit5_cell"][i] == float(cell in order[:5])
    np.testing.assert_array_equal(r["hit5_cell"], r3["hit5_cell"])


def test_vat_guard_clauses():
    h = np.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="gaze"):
        M.vat_metrics(heatmaps=h, gaze=np.array([[0.5, 0.5], [1.2, 0.5]]))
    with pytest.raises(ValueError, match="rows"):
        M.vat_metrics(heatmaps=h, gaze=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="heatmaps"):
        M.vat_metrics(heatmaps=np.zeros((2, 9)), gaze=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        M.vat_metrics(heatmaps=np.full((2, 3, 3), np.nan), gaze=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="sigma"):
        M.vat_positive_mask(gaze=np.zeros((1, 2)), sigma=0)
    with pytest.raises(ValueError, match="heatmaps"):
        M.cell_hits(heatmaps=np.zeros((2, 5)), gaze=np.zeros((2, 2)), gh=2, gw=3)


# ------------------------------------------------------------------- 2. AP / in-out

def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(8)
    for n in (1, 2, 7, 100, 1000):
        for _ in range(5):
            s = rng.random(n).round(1)  # ties
            y = rng.integers(0, 2, n)
            if y.sum() == 0:
                y[0] = 1
            assert M.average_precision(scores=s, labels=y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
            w = rng.integers(0, 4, n)
            if (w * y).sum() == 0:
                w[np.argmax(y)] = 1
            ref = average_precision_score(y, s, sample_weight=w)
            assert M.average_precision(scores=s, labels=y, weights=w) == pytest.approx(ref, abs=1e-12)
            # integer weights are multiplicities: same as repeating the samples
            rep = average_precision_score(np.repeat(y, w), np.repeat(s, w))
            assert M.average_precision(scores=s, labels=y, weights=w) == pytest.approx(rep, abs=1e-12)
            wf = rng.random(n)
            assert M.average_precision(scores=s, labels=y, weights=wf) == pytest.approx(
                average_precision_score(y, s, sample_weight=wf), abs=1e-12)


def test_average_precision_batched_rows(monkeypatch):
    rng = np.random.default_rng(9)
    n = 500
    s = rng.random(n).round(2)
    y = (rng.random(n) < s).astype(int)
    w = rng.multinomial(n, np.full(n, 1 / n), size=40)  # bootstrap multiplicities
    w[3] = 0
    w[4] = w[4] * (1 - y)  # no weighted positive
    monkeypatch.setattr(M, "_ELEMENT_BUDGET", 7 * n)  # several row chunks
    ap = M.average_precision(scores=s, labels=y, weights=w)
    assert ap.shape == (40,)
    assert np.isnan(ap[3]) and np.isnan(ap[4])
    for b in set(range(40)) - {3, 4}:
        assert ap[b] == pytest.approx(average_precision_score(y, s, sample_weight=w[b]), abs=1e-12)
    assert math.isnan(M.average_precision(scores=s, labels=np.zeros(n)))


def test_inout_metrics():
    rng = np.random.default_rng(10)
    p = rng.random(300).round(2)
    y = (rng.random(300) < p).astype(int)
    r = M.inout_metrics(prob_in=p, is_in=y)
    assert r["inout_ap"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert r["out_ap"] == pytest.approx(average_precision_score(1 - y, 1 - p), abs=1e-12)
    assert r["inout_acc"] == pytest.approx(np.mean((p >= 0.5) == y))
    r2 = M.inout_metrics(prob_in=np.array([0.2, 0.9]), is_in=np.array([1, 0]))
    assert r2["inout_acc"] == 0.0 and r2["inout_ap"] == pytest.approx(0.5) and r2["out_ap"] == pytest.approx(0.5)
    r3 = M.inout_metrics(prob_in=np.array([0.2, 0.9]), is_in=np.array([1, 1]))
    assert np.isnan(r3["inout_ap"]) and np.isnan(r3["out_ap"]) and r3["inout_acc"] == 0.5
    assert all(np.isnan(v) for v in M.inout_metrics(prob_in=np.zeros(0), is_in=np.zeros(0)).values())
    with pytest.raises(ValueError, match="0/1"):
        M.inout_metrics(prob_in=np.array([0.2, 0.9]), is_in=np.array([1, 2]))
    with pytest.raises(ValueError, match="non-negative"):
        M.average_precision(scores=p, labels=y, weights=-np.ones(300))
    with pytest.raises(ValueError, match="weights"):
        M.average_precision(scores=p, labels=y, weights=np.ones((2, 299)))


# ------------------------------------------------------------------- 3. saliency

def test_saliency_metrics_match_pysaliency_transcription():
    rng = np.random.default_rng(11)
    n, h, w, k = 60, 6, 10, 25
    maps = rng.random((n, h, w))
    maps[::4] = rng.integers(0, 3, (15, h, w))  # ties
    maps[1] = 0.0  # zero map: uniform density, constant
    maps[2] = rng.normal(size=(h, w))  # negative values: density shifts by the min
    maps[3] = maps[3] ** 8  # peaky
    fix = rng.random((n, 2))
    fix[:5] = [[0, 0], [1, 1], [0.999, 0], [0, 1], [0.5, 0.5]]
    other = rng.random((k, 2))
    other[0] = [1.0, 1.0]
    prior = rng.random((h, w)) + 0.1
    sigma = 0.08
    r = M.saliency_metrics(maps=maps, fix_xy=fix, prior=prior, other_xy=other, fixation_sigma=sigma)
    ox = np.array([min(int(x * w), w - 1) for x in other[:, 0]])
    oy = np.array([min(int(y * h), h - 1) for y in other[:, 1]])
    for i in range(n):
        s = maps[i]
        xp, yp = min(int(fix[i, 0] * w), w - 1), min(int(fix[i, 1] * h), h - 1)
        g = empirical_map_ref(h, w, xp, yp, sigma * w)
        assert r["nss"][i] == pytest.approx(NSS_ref(s, [xp], [yp])[0], rel=1e-12, abs=1e-12)
        assert r["auc_judd"][i] == auc_for_one_positive_ref(s[yp, xp], s.flatten())
        assert r["sauc"][i] == auc_for_one_positive_ref(s[yp, xp], s[oy, ox])
        ig = np.log2(density_ref(s)[yp, xp] + 1e-12) - np.log2(density_ref(prior)[yp, xp] + 1e-12)
        assert r["ig"][i] == pytest.approx(ig, rel=1e-12, abs=1e-12)
        assert r["cc"][i] == pytest.approx(CC_ref(s, g), abs=1e-12)
        assert r["sim"][i] == pytest.approx(SIM_ref(s, g), abs=1e-12)
        assert r["kl"][i] == pytest.approx(MIT_KLDiv_ref(s, g), rel=1e-12, abs=1e-12)


def test_saliency_known_values():
    h, w = 4, 5
    P = h * w
    fix = np.array([[0.5, 0.6], [0.1, 0.1]])  # pixels (2, 2) and (0, 0)
    onehot = np.zeros((2, h, w))
    onehot[0, 2, 2] = onehot[1, 0, 0] = 1.0
    prior = np.full((h, w), 1.0 / P)
    r = M.saliency_metrics(maps=onehot, fix_xy=fix, prior=prior, other_xy=np.array([[0.5, 0.6], [0.9, 0.9]]),
                           fixation_sigma=0.1)
    # mean 1/P, std sqrt((1/P)(1 - 1/P)): NSS = (1 - 1/P) / std = sqrt(P - 1)
    np.testing.assert_allclose(r["nss"], math.sqrt(P - 1), rtol=1e-12)
    np.testing.assert_array_equal(r["auc_judd"], (P - 1 + 0.5) / P)
    np.testing.assert_array_equal(r["sauc"], [(1 + 0.5) / 2, 1.0])  # other on the fixation ties
    np.testing.assert_allclose(r["ig"], math.log2(1 + 1e-12) - math.log2(1 / P + 1e-12), rtol=1e-12)

    uniform = np.full((2, h, w), 0.37)
    r = M.saliency_metrics(maps=uniform, fix_xy=fix, prior=uniform[0], other_xy=np.zeros((3, 2)),
                           fixation_sigma=0.1)
    np.testing.assert_array_equal(r["auc_judd"], 0.5)
    np.testing.assert_array_equal(r["sauc"], 0.5)
    np.testing.assert_array_equal(r["nss"], 0.0)  # constant map (max == min)
    np.testing.assert_array_equal(r["cc"], 0.0)
    np.testing.assert_allclose(r["ig"], 0.0, atol=1e-12)  # map == prior

    sigma = 0.15
    xs, ys = np.array([2, 0]), np.array([2, 0])
    gmaps = np.stack([3.0 * empirical_map_ref(h, w, x, y, sigma * w) for x, y in zip(xs, ys)])
    r = M.saliency_metrics(maps=gmaps, fix_xy=fix, prior=prior, other_xy=np.zeros((0, 2)), fixation_sigma=sigma)
    np.testing.assert_allclose(r["kl"], 0.0, atol=1e-12)
    np.testing.assert_allclose(r["sim"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(r["cc"], 1.0, rtol=1e-12)
    assert np.isnan(r["sauc"]).all()  # no shuffled negatives


def test_saliency_guard_clauses():
    m = np.ones((2, 3, 4))
    ok = dict(maps=m, fix_xy=np.zeros((2, 2)), prior=np.ones((3, 4)), other_xy=np.zeros((1, 2)), fixation_sigma=0.1)
    M.saliency_metrics(**ok)
    for key, bad, msg in [("prior", np.ones((4, 3)), "prior"), ("fix_xy", np.zeros((3, 2)), "rows"),
                          ("fixation_sigma", 0.0, "fixation_sigma"), ("other_xy", np.zeros(2), "other_xy"),
                          ("maps", np.ones((2, 12)), "maps"), ("fix_xy", np.full((2, 2), np.inf), "finite")]:
        with pytest.raises(ValueError, match=msg):
            M.saliency_metrics(**{**ok, key: bad})


# ------------------------------------------------------------------- properties

heat_values = st.one_of(st.just(0.0), st.floats(1e-3, 100))  # no subnormals: 2^k scaling stays exact


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, (5, 7), elements=heat_values),
       st.tuples(st.floats(0, 1), st.floats(0, 1)), st.integers(-8, 8))
def test_vat_auc_range_and_power_of_two_scaling(heat, g, k):
    """Scaling by 2^k is exact in floating point, so bytescale, PIL and argmax see the same
    ordering: auc_vat and l2_vat are unchanged bit for bit. (For a general a > 0 the same
    holds up to rounding: a uint8 level at a .5 boundary or a float32 near-tie can flip.)"""
    gaze = np.array([g])
    a = M.vat_metrics(heatmaps=heat[None], gaze=gaze)
    b = M.vat_metrics(heatmaps=(heat * 2.0 ** k)[None], gaze=gaze)
    assert 0.0 <= a["auc_vat"][0] <= 1.0
    assert a["auc_vat"][0] == b["auc_vat"][0]
    assert a["l2_vat"][0] == b["l2_vat"][0]
    assert 0.0 <= a["l2_vat"][0] <= math.sqrt(2)


# values on a 0.01 lattice: monotone / affine maps cannot merge distinct values by rounding
lattice = arrays(np.float64, (3, 4), elements=st.integers(0, 1000).map(lambda v: v / 100))
transforms = st.sampled_from([np.exp, np.sqrt, lambda x: x ** 3 + 2 * x, np.log1p, lambda x: 5 * x - 7])


@settings(max_examples=100, deadline=None)
@given(lattice, st.tuples(st.floats(0, 1), st.floats(0, 1)), transforms,
       st.floats(0.1, 10), st.floats(-10, 10))
def test_saliency_invariances(m, g, f, a, b):
    kw = dict(fix_xy=np.array([g]), prior=np.ones((3, 4)), other_xy=np.array([[0.1, 0.1], [0.9, 0.5]]),
              fixation_sigma=0.2)
    r = M.saliency_metrics(maps=m[None], **kw)
    rf = M.saliency_metrics(maps=f(m)[None], **kw)
    ra = M.saliency_metrics(maps=(a * m + b)[None], **kw)
    assert r["auc_judd"][0] == rf["auc_judd"][0] and r["sauc"][0] == rf["sauc"][0]
    assert ra["nss"][0] == pytest.approx(r["nss"][0], rel=1e-9, abs=1e-9)
    assert ra["cc"][0] == pytest.approx(r["cc"][0], rel=1e-9, abs=1e-9)
    assert 0.0 <= r["auc_judd"][0] <= 1.0 and -1.0 <= r["cc"][0] <= 1.0
    assert -1e-12 <= r["sim"][0] <= 1.0 + 1e-12 and r["kl"][0] >= -1e-12


@pytest.mark.parametrize("w, h", [(1920, 1080), (640, 480)])
def test_l2_diag_is_pixels_over_the_diagonal(w, h):
    """A move across the full width is W / diag on any frame; a unit of x is not a unit of y."""
    diag = np.hypot(w, h)
    across = M.l2_diag(pred_xy=np.array([[0.0, 0.5]]), gaze=np.array([[1.0, 0.5]]), width=w, height=h)
    down = M.l2_diag(pred_xy=np.array([[0.5, 0.0]]), gaze=np.array([[0.5, 1.0]]), width=w, height=h)
    corner = M.l2_diag(pred_xy=np.array([[0.0, 0.0]]), gaze=np.array([[1.0, 1.0]]), width=w, height=h)
    assert across[0] == pytest.approx(w / diag) and down[0] == pytest.approx(h / diag)
    assert corner[0] == pytest.approx(1.0)
    # the same pixel error reads the same on 16:9 and 4:3 relative to the diagonal
    px = 48.0
    d = M.l2_diag(pred_xy=np.array([[0.5, 0.5]]), gaze=np.array([[0.5 + px / w, 0.5]]), width=w, height=h)
    assert d[0] == pytest.approx(px / diag)


def test_l2_diag_differs_from_normalised_l2_on_wide_frames():
    pred, gaze = np.array([[0.2, 0.5], [0.5, 0.2]]), np.array([[0.4, 0.5], [0.5, 0.4]])
    d = M.l2_diag(pred_xy=pred, gaze=gaze, width=1920, height=1080)
    assert d[0] > d[1]        # 0.2 of the width is more pixels than 0.2 of the height on 16:9
    with pytest.raises(ValueError, match="positive"):
        M.l2_diag(pred_xy=pred, gaze=gaze, width=0, height=1080)
