"""Evaluation of a trained variant on the test split, with floors and ceilings.

Predictions come from windows of ``window_s`` without overlap covering every step. The
floor is the centre-bias prior fitted on train gaze; the ceiling is inter-observer
agreement: viewer v at step t is predicted by Gaussians at the other viewers' gaze.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from gazelib.dataset import GazeWindows
from gazelib.metrics import (
    centre_prior,
    frame_saliency_metrics,
    gaussian_map,
    gaze_cell,
    inout_metrics,
    viewer_step_metrics,
)

log = logging.getLogger(__name__)
STEP_KEYS = ("l2", "auc", "hit1", "hit5")
FRAME_KEYS = ("nss", "cc", "sim", "kl", "auc_judd", "sauc", "ig")


@torch.no_grad()
def predict(*, model, ds: GazeWindows, batch_size: int = 32) -> dict[str, dict]:
    """Per video: ``prob`` [V,T,cells] heatmap probabilities and ``p_in`` [V,T]."""
    from torch.utils.data import DataLoader

    out: dict[str, dict] = {}
    dl = DataLoader(list(range(len(ds))), batch_size=batch_size, shuffle=False)
    for idx in dl:
        items = [ds[int(i)] for i in idx]
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        pred = model(batch)
        prob = torch.softmax(pred["heatmap_logits"], -1).numpy()
        p_in = torch.sigmoid(pred["inout_logits"]).numpy()
        for j, i in enumerate(idx):
            vid, v, _ = ds.index[int(i)]
            vt = ds.video(vid)
            rec = out.setdefault(vid, {"prob": np.zeros((len(vt.viewers), vt.t.size, prob.shape[-1]), np.float32),
                                       "p_in": np.zeros((len(vt.viewers), vt.t.size), np.float32)})
            steps = batch["step"][j].numpy()
            ok = steps >= 0
            rec["prob"][v, steps[ok]] = prob[j][ok]
            rec["p_in"][v, steps[ok]] = p_in[j][ok]
    return out


def score_video(*, prob: np.ndarray, p_in: np.ndarray, gaze: np.ndarray, inout: np.ndarray, valid: np.ndarray,
                prior: np.ndarray, other_cells: np.ndarray, gh: int, gw: int, sigma: float,
                held_out: bool = False) -> tuple[dict, pd.DataFrame]:
    """Mean metrics of one video. ``prob`` [V,T,cells]; labels [V,T(,2)].

    Frame metrics score the viewer-averaged map against all viewers' fixations, or, with
    ``held_out`` (inter-observer maps), each viewer's map against that viewer alone.
    """
    step_rows = []
    inframe = valid & (inout > 0)
    for v, t in zip(*np.nonzero(inframe)):
        step_rows.append({"viewer": int(v), "step": int(t),
                          **viewer_step_metrics(heatmap=prob[v, t], gaze=gaze[v, t], gh=gh, gw=gw)})
    frame_rows = []
    for t in range(prob.shape[1]):
        if not inframe[:, t].any():
            continue  # a frame with no valid in-frame gaze has nothing to score
        if held_out:
            # leave-one-out maps are scored on the held-out viewer's fixation only
            for v in np.nonzero(inframe[:, t])[0]:
                frame_rows.append(frame_saliency_metrics(sal=prob[v, t], fix_xy=gaze[v, t][None], prior=prior,
                                                         other_cells=other_cells, gh=gh, gw=gw, sigma=sigma))
            continue
        frame_rows.append(frame_saliency_metrics(sal=prob[:, t].mean(0), fix_xy=gaze[inframe[:, t], t],
                                                 other_cells=other_cells, prior=prior, gh=gh, gw=gw, sigma=sigma))
    res = {k: float(np.nanmean([r[k] for r in step_rows])) if step_rows else float("nan") for k in STEP_KEYS}
    res.update({k: float(np.nanmean([r[k] for r in frame_rows])) if frame_rows else float("nan")
                for k in FRAME_KEYS})
    res.update(inout_metrics(prob_in=p_in[valid], is_in=inout[valid]))
    res["n_steps"] = int(inframe.sum())
    res["n_frames"] = len(frame_rows)
    steps = pd.DataFrame(step_rows, columns=["viewer", "step", *STEP_KEYS])
    return res, steps


def prior_predictions(*, prior: np.ndarray, valid: np.ndarray, inout_rate: float) -> tuple[np.ndarray, np.ndarray]:
    v, t = valid.shape
    return np.broadcast_to(prior, (v, t, prior.size)).copy(), np.full((v, t), inout_rate, np.float32)


def inter_observer(*, gaze: np.ndarray, inout: np.ndarray, valid: np.ndarray, gh: int, gw: int,
                   sigma: float, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-viewer-out maps from the others' gaze (prior where no other viewer is in frame)."""
    n_v, n_t = valid.shape
    prob = np.zeros((n_v, n_t, gh * gw), np.float32)
    p_in = np.zeros((n_v, n_t), np.float32)
    inframe = valid & (inout > 0)
    for v in range(n_v):
        others = [o for o in range(n_v) if o != v]
        for t in range(n_t):
            pts = gaze[[o for o in others if inframe[o, t]], t]
            m = gaussian_map(pts, gh, gw, sigma) if len(pts) else prior * 0
            m = m / m.sum() if m.sum() > 0 else prior
            prob[v, t] = 0.99 * m + 0.01 * prior
            n_valid = sum(valid[o, t] for o in others)
            p_in[v, t] = sum(inframe[o, t] for o in others) / n_valid if n_valid else 0.5
    return prob, p_in


def train_fixation_stats(*, train_arrays: list[dict]) -> tuple[np.ndarray, float]:
    xy, n_in, n_valid = [], 0, 0
    for a in train_arrays:
        inf = a["valid"] & (a["inout"] > 0)
        xy.append(a["gaze"][inf])
        n_in += int(inf.sum())
        n_valid += int(a["valid"].sum())
    pts = np.concatenate(xy) if xy else np.zeros((0, 2))
    return pts, (n_in / n_valid if n_valid else 0.5)


def evaluate_all(*, preds: dict, labels: dict, train_xy: np.ndarray, inout_rate: float, gh: int, gw: int,
                 sigma: float) -> dict:
    """Model, centre prior and inter-observer scores per video; returns tables and means."""
    prior = centre_prior(train_xy=train_xy, gh=gh, gw=gw, sigma=sigma)
    all_cells = {vid: gaze_cell(l["gaze"][l["valid"] & (l["inout"] > 0)], gh, gw) for vid, l in labels.items()}
    rows, step_tables = [], []
    for vid in sorted(preds):
        lab = labels[vid]
        # shuffled-AUC negatives: fixations from the other test videos, or other time of this one
        others = np.concatenate([c for k, c in all_cells.items() if k != vid] or [all_cells[vid]])
        common = dict(gaze=lab["gaze"], inout=lab["inout"], valid=lab["valid"], prior=prior, other_cells=others,
                      gh=gh, gw=gw, sigma=sigma)
        pp, pi = prior_predictions(prior=prior, valid=lab["valid"], inout_rate=inout_rate)
        ip, ii = inter_observer(gaze=lab["gaze"], inout=lab["inout"], valid=lab["valid"], gh=gh, gw=gw,
                                sigma=sigma, prior=prior)
        for name, (prob, p_in) in {"model": (preds[vid]["prob"], preds[vid]["p_in"]),
                                   "centre_prior": (pp, pi), "inter_observer": (ip, ii)}.items():
            res, steps = score_video(prob=prob, p_in=p_in, held_out=name == "inter_observer", **common)
            rows.append({"video_id": vid, "model": name, **res})
            step_tables.append(steps.assign(video_id=vid, model=name))
    table = pd.DataFrame(rows)
    keys = [*STEP_KEYS, *FRAME_KEYS, "inout_ap", "inout_acc"]
    means = {}
    for name, g in table.groupby("model"):
        w = g["n_steps"].to_numpy(float)
        means[name] = {k: _wmean(g[k].to_numpy(float), w) for k in keys}
    return {"table": table, "means": means, "steps": pd.concat(step_tables, ignore_index=True),
            "prior": prior}


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    ok = np.isfinite(x) & (w > 0)
    return float(np.average(x[ok], weights=w[ok])) if ok.any() else float("nan")
