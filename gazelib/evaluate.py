"""Evaluation of a trained variant (every seed) on the test split, with floors and a ceiling.

One protocol for every row (model seeds, centre prior, persistence, inter-observer): each
row gives, per video, ``prob`` [V, T, Gh*Gw] and ``p_in`` [V, T]; :func:`score_rows` turns
every valid (viewer, step) sample into one table row with

- in-frame samples: ``auc_vat``, ``l2_vat`` (VideoAttentionTarget protocol on the heatmap
  resized to 64x64), ``hit1_cell`` / ``hit5_cell`` (grid-cell variants), and the saliency
  family (``nss``, ``cc``, ``sim``, ``kl``, ``auc_judd``, ``sauc``, ``ig``) of the map that row
  predicts for that viewer and frame, resized bilinearly to an evaluation map of
  ``saliency_width`` columns (rows from the frame's aspect), scored against that viewer's
  fixation (pysaliency definitions, per fixation; see :mod:`gazelib.metrics`);
- every valid sample: ``p_in`` and the label, for the pooled ``inout_ap`` / ``out_ap``.

Predictions come from non-overlapping windows of ``window_s`` covering every step.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from gazelib.dataset import GazeWindows, prepare_arrays, window_batch
from gazelib.metrics import cell_hits, inout_metrics, resize_bilinear, saliency_metrics, vat_metrics

log = logging.getLogger(__name__)
STEP_KEYS = ("auc_vat", "l2_vat", "hit1_cell", "hit5_cell")
FRAME_KEYS = ("nss", "cc", "sim", "kl", "auc_judd", "sauc", "ig")
MEAN_KEYS = STEP_KEYS + FRAME_KEYS
POOLED_KEYS = ("inout_ap", "out_ap", "inout_acc")
LOWER_IS_BETTER = {"l2_vat", "kl"}


@torch.no_grad()
def predict(*, model, ds: GazeWindows, batch_size: int = 32) -> dict[str, dict]:
    """Per video: ``prob`` [V,T,cells] heatmap probabilities and ``p_in`` [V,T]."""
    model.eval()
    out: dict[str, dict] = {}
    order = list(range(len(ds)))
    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        batch = ds.batch(idx)
        pred = model(batch)
        prob = torch.softmax(pred["heatmap_logits"], -1).numpy()
        p_in = torch.sigmoid(pred["inout_logits"]).numpy()
        for j, i in enumerate(idx):
            vid, v, _ = ds.index[i]
            vt = ds.video(vid)
            rec = out.setdefault(vid, {"prob": np.zeros((len(vt.viewers), vt.t.size, prob.shape[-1]), np.float32),
                                       "p_in": np.zeros((len(vt.viewers), vt.t.size), np.float32)})
            steps = batch["step"][j].numpy()
            ok = steps >= 0
            rec["prob"][v, steps[ok]] = prob[j][ok]
            rec["p_in"][v, steps[ok]] = p_in[j][ok]
    return out


def eval_map_shape(*, width: int, height: int, saliency_width: int) -> tuple[int, int]:
    """Evaluation map (rows, cols): ``saliency_width`` columns, rows from the frame's aspect."""
    return max(1, int(round(saliency_width * height / width))), saliency_width


def score_rows(*, prob: np.ndarray, p_in: np.ndarray, lab: dict, gh: int, gw: int, eval_hw: tuple[int, int],
               prior_eval: np.ndarray, other_xy: np.ndarray, fixation_sigma: float,
               chunk: int = 4000) -> pd.DataFrame:
    """One row per valid (viewer, step) sample; metric columns NaN where the gaze is out of frame."""
    valid = lab["valid"].astype(bool)
    inframe = valid & (lab["inout"] > 0)
    vv, tt = np.nonzero(valid)
    df = pd.DataFrame({"viewer": vv.astype(np.int32), "step": tt.astype(np.int32),
                       "inout": lab["inout"][vv, tt].astype(np.int8), "p_in": p_in[vv, tt].astype(np.float64)})
    rows = np.nonzero(inframe[vv, tt])[0]
    cols = {k: np.full(len(df), np.nan) for k in MEAN_KEYS}
    for c0 in range(0, rows.size, chunk):  # chunks keep the resized maps' memory flat in video length
        r = rows[c0:c0 + chunk]
        heat = prob[vv[r], tt[r]].astype(np.float64)
        gaze = lab["gaze"][vv[r], tt[r]].astype(np.float64)
        res = {**vat_metrics(heatmaps=heat.reshape(-1, gh, gw), gaze=gaze),
               **cell_hits(heatmaps=heat, gaze=gaze, gh=gh, gw=gw),
               **saliency_metrics(maps=resize_bilinear(maps=heat.reshape(-1, gh, gw), out_hw=eval_hw), fix_xy=gaze,
                                  prior=prior_eval, other_xy=other_xy, fixation_sigma=fixation_sigma)}
        for k in MEAN_KEYS:
            cols[k][r] = np.asarray(res[k], np.float64)
    return df.assign(**cols)


def summarise(df: pd.DataFrame) -> dict:
    """Pooled means over in-frame samples and pooled APs over valid samples (one seed or row)."""
    out = {k: float(df[k].mean()) if df[k].notna().any() else float("nan") for k in MEAN_KEYS}
    out.update(inout_metrics(prob_in=df["p_in"].to_numpy(), is_in=df["inout"].to_numpy()))
    out["n_samples"] = int(df["auc_vat"].notna().sum())
    out["n_valid"] = int(len(df))
    return out


def sauc_negatives(*, labels: dict, video_id: str, max_n: int, seed: int) -> np.ndarray:
    """In-frame fixations of the *other* test videos (this video's own if it is the only one),
    subsampled deterministically to ``max_n``: the shuffled-AUC negatives."""
    def fixations(lab):
        ok = lab["valid"] & (lab["inout"] > 0)
        return lab["gaze"][ok]

    others = [fixations(labels[k]) for k in sorted(labels) if k != video_id] or [fixations(labels[video_id])]
    xy = np.concatenate(others).astype(np.float64)
    if len(xy) > max_n:
        xy = xy[np.sort(np.random.default_rng(seed).choice(len(xy), max_n, replace=False))]
    return xy


@torch.no_grad()
def leak_check(*, model, arrays: dict, video_id: str, stats: dict, cfg: dict, fps: float, grid_hw: tuple[int, int],
               viewer: int = 0, n_positions: int = 4, seed: int = 0) -> dict:
    """Perturb every gaze-derived input after t - horizon and measure the change of the outputs at <= t.

    Through the real data path: the aligned labels of ``viewer`` whose raw gaze sample lies
    after ``t - horizon`` (and every missing label after it) are replaced by random
    in/out-of-frame gaze sampled after the cut, the inputs are rebuilt (:func:`prepare_arrays`) and the model
    is run again. Returns the largest |change| of any heatmap or in/out logit at steps <= t,
    and the largest probability mass moved (half the L1 distance of the heatmaps).
    """
    model.eval()
    rng = np.random.default_rng(seed)
    window = max(1, int(round(cfg["window_s"] * fps)))
    n_t = arrays["t"].size
    base = prepare_arrays(arrays=arrays, video_id=video_id, stats=stats, fps=fps, horizon_s=cfg["horizon_s"],
                          sigma=cfg["heatmap_sigma"], grid_hw=grid_hw)
    max_logit, max_mass = 0.0, 0.0
    positions = np.linspace(1, max(1, min(n_t, window) - 2), n_positions).astype(int)
    start = 0
    for k in positions:
        t_idx = start + int(k)
        cut = arrays["t"][t_idx] - cfg["horizon_s"]
        pert = {key: np.array(val, copy=True) for key, val in arrays.items()}
        # every label whose raw sample came after the cut, and every missing label after it
        after = np.nan_to_num(pert["gaze_t"][viewer], nan=-np.inf) > cut + 1e-9
        after |= ~pert["valid"][viewer] & (pert["t"] > cut + 1e-9)
        n = int(after.sum())
        pert["gaze"][viewer, after] = rng.uniform(-0.3, 1.3, (n, 2)).astype(pert["gaze"].dtype)
        pert["valid"][viewer, after] = True
        pert["inout"][viewer, after] = ((pert["gaze"][viewer, after] >= 0) & (pert["gaze"][viewer, after] <= 1)).all(1)
        pert["gaze_t"][viewer, after] = np.maximum(pert["t"][after], cut + 1e-6)
        other = prepare_arrays(arrays=pert, video_id=video_id, stats=stats, fps=fps, horizon_s=cfg["horizon_s"],
                               sigma=cfg["heatmap_sigma"], grid_hw=grid_hw)
        a = model(window_batch([(base, viewer, start)], window))
        b = model(window_batch([(other, viewer, start)], window))
        upto = slice(0, int(k) + 1)
        d_logit = max(float((a["heatmap_logits"][0, upto] - b["heatmap_logits"][0, upto]).abs().max()),
                      float((a["inout_logits"][0, upto] - b["inout_logits"][0, upto]).abs().max()))
        pa, pb = torch.softmax(a["heatmap_logits"][0, upto], -1), torch.softmax(b["heatmap_logits"][0, upto], -1)
        max_logit = max(max_logit, d_logit)
        max_mass = max(max_mass, float(0.5 * (pa - pb).abs().sum(-1).max()))
    return {"max_abs_dlogit": max_logit, "max_prob_mass_moved": max_mass, "n_positions": int(len(positions)),
            "video_id": video_id, "viewer": viewer}
