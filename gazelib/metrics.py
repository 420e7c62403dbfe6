"""Gaze metrics on a grid of Gh x Gw cells (cells indexed row-major, centres at
((j + 0.5) / Gw, (i + 0.5) / Gh) in normalised frame coordinates).

Per viewer and step (gaze forecasting, VideoAttentionTarget style):

- ``l2``: || centre(argmax p) - g ||_2 in normalised units
- ``auc``: ROC AUC of the heatmap scores with the gaze cell as the single positive
  (ties count one half), as VideoAttentionTarget scores a heatmap against the gaze point
- ``hit@k``: the gaze cell is among the k highest-scoring cells
- in/out: average precision and accuracy (threshold 0.5) of P(in frame)

Per frame over all viewers (video saliency, pysaliency definitions), with ``S`` the
predicted map, ``F`` the set of fixated cells (with multiplicity) and ``G`` the fixation
map blurred by a Gaussian:

- NSS = mean_{f in F} (S_f - mean S) / std S
- CC = Pearson correlation of S and G
- SIM = sum_c min(S_c / sum S, G_c / sum G)
- KL = sum_c G'_c log(eps + G'_c / (eps + S'_c)), with S', G' normalised to sum 1
- AUC-Judd: positives S at fixated cells, negatives S at all other cells
- sAUC: positives S at fixated cells, negatives S at cells fixated in *other* frames
  (from this and other videos), which discounts centre bias
- IG = mean_{f in F} log2(p_model(f) + eps) - log2(p_prior(f) + eps), bits per fixation
  over the centre-bias prior fitted on train
"""
from __future__ import annotations

import numpy as np

EPS = 1e-12


def cell_centres(gh: int, gw: int) -> np.ndarray:
    """[Gh*Gw, 2] (x, y) centres of the cells, row-major."""
    ys, xs = np.meshgrid((np.arange(gh) + 0.5) / gh, (np.arange(gw) + 0.5) / gw, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], 1)


def gaze_cell(xy: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Row-major cell index of normalised points (clipped into the frame)."""
    xy = np.asarray(xy, np.float64)
    col = np.clip((xy[..., 0] * gw).astype(int), 0, gw - 1)
    row = np.clip((xy[..., 1] * gh).astype(int), 0, gh - 1)
    return row * gw + col


def gaussian_map(xy: np.ndarray, gh: int, gw: int, sigma: float) -> np.ndarray:
    """Sum of isotropic Gaussians (normalised units) at points ``xy`` [N, 2], as [Gh*Gw]."""
    c = cell_centres(gh, gw)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if xy.size == 0:
        return np.zeros(gh * gw)
    d2 = ((c[None, :, :] - xy[:, None, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma ** 2)).sum(0)


def roc_auc_single(scores: np.ndarray, pos: int) -> float:
    """AUC with one positive: P(s_pos > s_neg) + 0.5 P(s_pos = s_neg) over the negatives."""
    s = np.asarray(scores, np.float64)
    neg = np.delete(s, pos)
    if neg.size == 0:
        return float("nan")
    return float(((s[pos] > neg).sum() + 0.5 * (s[pos] == neg).sum()) / neg.size)


def auc_pos_neg(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC = P(pos > neg) + 0.5 P(pos = neg), by ranking (ties get average ranks)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[pos, neg])
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def viewer_step_metrics(*, heatmap: np.ndarray, gaze: np.ndarray, gh: int, gw: int) -> dict:
    """Metrics for one step: ``heatmap`` [Gh*Gw] scores, ``gaze`` (x, y) in frame."""
    cell = int(gaze_cell(gaze, gh, gw))
    order = np.argsort(-heatmap, kind="stable")
    top = cell_centres(gh, gw)[order[0]]
    return {"l2": float(np.linalg.norm(top - np.asarray(gaze))), "auc": roc_auc_single(heatmap, cell),
            "hit1": float(cell == order[0]), "hit5": float(cell in order[:5])}


def inout_metrics(*, prob_in: np.ndarray, is_in: np.ndarray) -> dict:
    """Average precision (in-frame as positive) and accuracy at 0.5."""
    from sklearn.metrics import average_precision_score

    prob_in, is_in = np.asarray(prob_in, np.float64), np.asarray(is_in, int)
    if is_in.size == 0:
        return {"inout_ap": float("nan"), "inout_acc": float("nan")}
    ap = float(average_precision_score(is_in, prob_in)) if 0 < is_in.sum() < is_in.size else float("nan")
    return {"inout_ap": ap, "inout_acc": float(((prob_in >= 0.5) == is_in).mean())}


def nss(sal: np.ndarray, fix_cells: np.ndarray) -> float:
    s = np.asarray(sal, np.float64)
    if len(fix_cells) == 0 or s.std() < EPS:
        return float("nan") if len(fix_cells) == 0 else 0.0
    return float(((s - s.mean()) / s.std())[fix_cells].mean())


def cc(sal: np.ndarray, fix_map: np.ndarray) -> float:
    a, b = np.asarray(sal, np.float64), np.asarray(fix_map, np.float64)
    if a.std() < EPS or b.std() < EPS:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def sim(sal: np.ndarray, fix_map: np.ndarray) -> float:
    a = np.asarray(sal, np.float64)
    b = np.asarray(fix_map, np.float64)
    return float(np.minimum(a / max(a.sum(), EPS), b / max(b.sum(), EPS)).sum())


def kl_div(sal: np.ndarray, fix_map: np.ndarray, eps: float = 2.2e-16) -> float:
    """KL(G || S) as in the MIT saliency benchmark (pysaliency ``KLDiv``)."""
    s = np.asarray(sal, np.float64)
    g = np.asarray(fix_map, np.float64)
    s = s / max(s.sum(), EPS)
    g = g / max(g.sum(), EPS)
    return float((g * np.log(eps + g / (s + eps))).sum())


def auc_judd(sal: np.ndarray, fix_cells: np.ndarray) -> float:
    s = np.asarray(sal, np.float64)
    if len(fix_cells) == 0:
        return float("nan")
    neg_mask = np.ones(s.size, bool)
    neg_mask[np.unique(fix_cells)] = False
    return auc_pos_neg(s[fix_cells], s[neg_mask])


def shuffled_auc(sal: np.ndarray, fix_cells: np.ndarray, other_cells: np.ndarray) -> float:
    s = np.asarray(sal, np.float64)
    if len(fix_cells) == 0 or len(other_cells) == 0:
        return float("nan")
    return auc_pos_neg(s[fix_cells], s[np.asarray(other_cells)])


def info_gain(prob: np.ndarray, prior: np.ndarray, fix_cells: np.ndarray) -> float:
    """Bits per fixation of the model distribution over the prior (both normalised here)."""
    if len(fix_cells) == 0:
        return float("nan")
    p = np.asarray(prob, np.float64)
    q = np.asarray(prior, np.float64)
    p, q = p / max(p.sum(), EPS), q / max(q.sum(), EPS)
    return float((np.log2(p[fix_cells] + EPS) - np.log2(q[fix_cells] + EPS)).mean())


def frame_saliency_metrics(*, sal: np.ndarray, fix_xy: np.ndarray, other_cells: np.ndarray,
                           prior: np.ndarray, gh: int, gw: int, sigma: float) -> dict:
    """All per-frame saliency metrics for predicted probability map ``sal`` [Gh*Gw]."""
    cells = gaze_cell(fix_xy, gh, gw) if len(fix_xy) else np.zeros(0, int)
    fmap = gaussian_map(fix_xy, gh, gw, sigma)
    return {"nss": nss(sal, cells), "cc": cc(sal, fmap), "sim": sim(sal, fmap), "kl": kl_div(sal, fmap),
            "auc_judd": auc_judd(sal, cells), "sauc": shuffled_auc(sal, cells, other_cells),
            "ig": info_gain(sal, prior, cells)}


def centre_prior(*, train_xy: np.ndarray, gh: int, gw: int, sigma: float) -> np.ndarray:
    """Centre-bias prior: train gaze histogram smoothed by a Gaussian, normalised to sum 1.

    A small uniform share (1%) keeps every cell possible, so log-likelihoods stay finite.
    """
    if len(train_xy):
        counts = np.bincount(gaze_cell(train_xy, gh, gw), minlength=gh * gw).astype(np.float64)
        c = cell_centres(gh, gw)
        kernel = np.exp(-((c[:, None] - c[None]) ** 2).sum(-1) / (2 * sigma ** 2))
        m = kernel @ counts
    else:
        m = np.ones(gh * gw)
    m = m / max(m.sum(), EPS)
    return 0.99 * m + 0.01 / (gh * gw)
