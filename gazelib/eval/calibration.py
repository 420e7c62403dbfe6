r"""Few-shot per-viewer calibration: how much of gaze is the viewer, not the video?

For every test recording (one viewer watching one video) and every K in
``evaluate.calibration_s``, the viewer's valid in-frame samples with t < K seconds are the
calibration set. On them a ridge-penalised correction of the heatmap logits is fitted,

    s'_t(c) = s_t(c) + beta . phi(c),   phi(c) = (u, v, u^2, v^2, u v),  (u, v) = x_c - (0.5, 0.5),

with s_t = log p_t the model's log-probabilities over the cells and x_c the cell centres: a
viewer's own log-prior over the frame, a tilt (a systematic offset: tracker bias, a habit of
looking below faces) and a curvature (a stronger or weaker centre bias than the average viewer).
beta minimises the cross-entropy of the corrected maps against the same Gaussian targets the
model was trained on (``train.heatmap_sigma``), plus ``lambda * ||beta||^2``
(``evaluate.calibration_lambda``):

    L(beta) = sum_{t in calib} -sum_c q_t(c) log softmax(s_t + Phi beta)(c) + lambda ||beta||^2.

L is convex in beta (multinomial logistic regression with the model's logits as offset); it is
minimised with L-BFGS on the exact gradient sum_t Phi^T (p'_t - q_t) + 2 lambda beta. The
corrected maps p'_t = softmax(s_t + Phi beta) are used for every step t >= K.

Why not the webcam eye-tracking recipe (ridge from embeddings to a gaze point) moving the
map by the predicted offset: tried on the demo, it lowered auc_vat by 0.05-0.16 even with 10 s of
calibration, because the residual of a diffuse or multi-modal map is dominated by what is on
screen, not by the viewer, and moving the whole map moves its correct modes too. The logit
correction only re-weights regions, and shrinks to no change when the calibration samples carry
no viewer-specific signal.

K = 0, or a calibration window with no valid in-frame sample, leaves the prediction unchanged
bit for bit. Each K is scored on the valid in-frame steps with t >= K + train.horizon_s
(calibration gaze, like the track, ends a horizon before the steps it informs), so a short clip
still scores the K it is long enough for. A K is compared with K = 0 *on its own samples*
(K = 0 scores every step with t >= horizon, a superset), so each delta is paired and differs only
by the correction. A K with no such step in any recording cannot be scored and is reported as such
(:func:`unscorable_ks`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from gazelib.core.cells import centre_sq_dists, gaussian_log_kernel

N_BASIS = 5
log = logging.getLogger(__name__)


def cell_basis(*, gh: int, gw: int) -> np.ndarray:
    """[cells, 5] phi(c) = (u, v, u^2, v^2, u v) of the centred cell centres, row-major cells."""
    yy, xx = np.meshgrid((np.arange(gh) + 0.5) / gh - 0.5, (np.arange(gw) + 0.5) / gw - 0.5, indexing="ij")
    u, v = xx.ravel(), yy.ravel()
    return np.stack([u, v, u * u, v * v, u * v], 1)


def gaussian_targets(*, gaze: np.ndarray, gh: int, gw: int, sigma: float) -> np.ndarray:
    """[N, 2] -> [N, cells] Gaussian over the cell centres (sum 1), as the training targets."""
    z = gaussian_log_kernel(centre_sq_dists(np.asarray(gaze, np.float64), gh, gw), sigma)
    z -= z.max(1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(1, keepdims=True)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@dataclass
class CorrectionFit:
    """The fitted ``beta`` and whether L-BFGS-B said it converged (``message``: its reason). A
    failed fit keeps its last beta when finite, else no correction (zeros)."""

    beta: np.ndarray
    converged: bool
    message: str


def fit_logit_correction(*, log_prob: np.ndarray, target: np.ndarray, basis: np.ndarray, lam: float) -> np.ndarray:
    """beta [5] minimising the penalised cross-entropy above (``log_prob``, ``target``: [N, cells])."""
    return fit_correction(log_prob=log_prob, target=target, basis=basis, lam=lam).beta


def fit_correction(*, log_prob: np.ndarray, target: np.ndarray, basis: np.ndarray, lam: float) -> CorrectionFit:
    """:func:`fit_logit_correction` with the optimiser's verdict (see :class:`CorrectionFit`)."""
    if lam < 0:
        raise ValueError(f"evaluate.calibration_lambda must be >= 0, got {lam}")
    if len(log_prob) == 0:
        raise ValueError("no calibration sample to fit a viewer correction on")

    def loss_grad(beta):
        ls = _log_softmax(log_prob + basis @ beta)
        loss = -(target * ls).sum() + lam * beta @ beta
        grad = basis.T @ (np.exp(ls) - target).sum(0) + 2 * lam * beta
        return loss, grad

    res = minimize(loss_grad, np.zeros(basis.shape[1]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500, "gtol": 1e-10, "ftol": 1e-15})  # stop on the gradient, not on a flat loss
    finite = bool(np.all(np.isfinite(res.x)))
    message = f"L-BFGS-B: {str(res.message).strip() or 'no message'}"
    if res.status == 2:   # ABNORMAL: the line search found no lower loss from the last beta, which is kept
        message += " (the line search found no lower loss; the last beta is used)"
    return CorrectionFit(beta=res.x if finite else np.zeros(basis.shape[1]), converged=bool(res.success) and finite,
                         message=message + ("" if finite else " (non-finite beta: no correction)"))


def calibrate_recording(*, prob: np.ndarray, t: np.ndarray, gaze: np.ndarray, is_inframe: np.ndarray,
                        k_s: float, lam: float, sigma: float, gh: int, gw: int) -> dict:
    """One recording: ``prob`` [T, cells], ``t`` [T], ``gaze`` [T, 2], ``is_inframe`` [T] (valid and
    in frame). Returns ``prob`` corrected at steps t >= k_s (the input array itself when nothing
    is fitted), ``n_calibration`` samples used, the fitted ``beta`` and ``fit_failed`` /
    ``fit_message`` (the optimiser's verdict)."""
    calib = is_inframe & (t < k_s)
    n = int(calib.sum())
    if k_s <= 0 or n == 0:
        return {"prob": prob, "n_calibration": n, "beta": [0.0] * N_BASIS, "fit_failed": False, "fit_message": ""}
    basis = cell_basis(gh=gh, gw=gw)
    log_p = np.log(np.clip(np.asarray(prob, np.float64), 1e-30, None))
    fit = fit_correction(log_prob=log_p[calib], target=gaussian_targets(gaze=gaze[calib], gh=gh, gw=gw, sigma=sigma),
                         basis=basis, lam=lam)
    beta = fit.beta
    out = np.array(prob, copy=True)
    later = t >= k_s
    out[later] = np.exp(_log_softmax(log_p[later] + basis @ beta)).astype(out.dtype)
    return {"prob": out, "n_calibration": n, "beta": beta.tolist(), "fit_failed": not fit.converged,
            "fit_message": fit.message}


def scored_steps(*, t: np.ndarray, is_inframe: np.ndarray, k_s: float, horizon_s: float) -> np.ndarray:
    """The steps a correction fitted on the first ``k_s`` seconds is scored on: valid, in frame and
    at t >= k_s + ``horizon_s`` (the calibration gaze ends a horizon before them)."""
    return is_inframe & (t >= k_s + horizon_s)


def calibration_samples(*, preds: dict, labels: dict, ks: list[float], lam: float, sigma: float, gh: int, gw: int,
                        frame_wh: dict[str, tuple[int, int]], horizon_s: float) -> pd.DataFrame:
    """One row per K and scored sample (:func:`scored_steps`: valid, in frame, t >= K + ``horizon_s``): auc_vat,
    l2_vat, l2_diag of the map calibrated on that recording's first K seconds, with the step's time ``t``,
    and ``fit_failed`` (the optimiser did not converge: logged with its message).
    ``preds``: video -> {"prob": [V,T,cells]}; ``labels``: video -> aligned labels (t, gaze, valid, inout)."""
    return calibration_samples_by_lambda(preds=preds, labels=labels, ks=ks, lambdas=[lam], sigma=sigma, gh=gh, gw=gw,
                                         frame_wh=frame_wh, horizon_s=horizon_s)[float(lam)]


def calibration_samples_by_lambda(*, preds: dict, labels: dict, ks: list[float], lambdas: list[float], sigma: float,
                                  gh: int, gw: int, frame_wh: dict[str, tuple[int, int]],
                                  horizon_s: float) -> dict[float, pd.DataFrame]:
    """:func:`calibration_samples` for each penalty of ``lambdas`` (lambda -> table, the same rows in the
    same order as one call per lambda). K = 0 fits nothing, so its rows are scored once and shared."""
    from gazelib.metrics import l2_diag, vat_metrics

    if not ks or min(ks) < 0:
        raise ValueError(f"evaluate.calibration_s must list seconds >= 0, got {ks}")
    lambdas = [float(x) for x in lambdas]
    frames: dict[float, list] = {lam: [] for lam in lambdas}
    for vid in sorted(preds):
        lab = labels[vid]
        for v in range(preds[vid]["prob"].shape[0]):
            inframe = lab["valid"][v].astype(bool) & (lab["inout"][v] > 0)
            for k in ks:
                # the viewer's calibration gaze ends at least a horizon before the first scored step, so no
                # gaze after t - horizon reaches the prediction at t (as for the track)
                scored = scored_steps(t=lab["t"], is_inframe=inframe, k_s=float(k), horizon_s=horizon_s)
                if not scored.any():
                    continue
                gaze = lab["gaze"][v][scored].astype(np.float64)
                shared = None
                for lam in lambdas:
                    if shared is not None:   # nothing fitted (K = 0 or no calibration sample): the same rows
                        frames[lam].append(shared)
                        continue
                    r = calibrate_recording(prob=preds[vid]["prob"][v], t=lab["t"], gaze=lab["gaze"][v],
                                            is_inframe=inframe, k_s=float(k), lam=lam, sigma=sigma, gh=gh, gw=gw)
                    if r["fit_failed"]:
                        log.warning("%s viewer %d, K = %g s (lambda %g): calibration fit failed: %s", vid, v, k, lam,
                                    r["fit_message"])
                    m = vat_metrics(heatmaps=r["prob"][scored].reshape(-1, gh, gw).astype(np.float64), gaze=gaze)
                    df = pd.DataFrame({
                        "video_id": vid, "viewer": v, "step": np.nonzero(scored)[0].astype(np.int32),
                        "t": np.asarray(lab["t"], np.float64)[scored], "k_s": float(k),
                        "n_calibration": r["n_calibration"], "auc_vat": m["auc_vat"], "l2_vat": m["l2_vat"],
                        "l2_diag": l2_diag(pred_xy=m["pred_xy"], gaze=gaze, width=frame_wh[vid][0],
                                           height=frame_wh[vid][1]), "fit_failed": r["fit_failed"]})
                    frames[lam].append(df)
                    if float(k) <= 0 or r["n_calibration"] == 0:   # calibrate_recording left the map as it was
                        shared = df
    cols = ["video_id", "viewer", "step", "t", "k_s", "n_calibration", "auc_vat", "l2_vat", "l2_diag", "fit_failed"]
    return {lam: pd.concat(f, ignore_index=True) if f else pd.DataFrame(columns=cols) for lam, f in frames.items()}


def unscorable_ks(*, samples: pd.DataFrame, ks: list[float], horizon_s: float, longest_s: float) -> dict[str, str]:
    """``K=<k>s`` -> why that K has no scored sample in ``samples`` (:func:`calibration_samples`):
    the videos end before K + horizon (``longest_s``: the last step time of the longest), or no valid
    in-frame gaze lies after it."""
    have = set(samples["k_s"].astype(float)) if len(samples) else set()
    out = {}
    for k in (float(k) for k in ks):
        if k in have:
            continue
        start = k + horizon_s
        out[f"K={k:g}s"] = (f"the videos are shorter than K + train.horizon_s = {start:g} s (the longest ends at "
                            f"{longest_s:g} s)" if longest_s < start else
                            f"no valid in-frame gaze at t >= K + train.horizon_s = {start:g} s")
    return out


def choose_lambda(*, val_samples: dict[float, pd.DataFrame]) -> dict:
    """The ridge penalty with the highest mean auc_vat over every K > 0 on the validation videos
    (ties: the larger penalty, the smaller change; with no scored val sample for any K > 0, every
    score is -inf and the largest penalty is taken, ``chosen_on_val`` False).
    ``val_samples``: lambda -> calibration_samples."""
    score = {}
    for lam, df in val_samples.items():
        d = df[df["k_s"] > 0]
        score[float(lam)] = float(d["auc_vat"].mean()) if len(d) and d["auc_vat"].notna().any() else -np.inf
    best = max(score, key=lambda lam: (score[lam], lam))
    k0 = next(iter(val_samples.values()))
    k0 = k0[k0["k_s"] == 0]
    return {"lambda": best, "val_auc_vat": score, "chosen_on_val": bool(np.isfinite(score[best])),
            "val_auc_vat_uncalibrated": float(k0["auc_vat"].mean()) if len(k0) else float("nan")}
