"""Floors and ceilings: predictors with no learned content, fitted on the train split only.

Each returns what a model returns, per video: ``prob`` [V, T, Gh*Gw] (a distribution over
grid cells) and ``p_in`` [V, T], so every row of the comparison goes through the same
scoring code (:mod:`gazelib.eval.evaluate`). With ``N(mu, s)`` an isotropic Gaussian evaluated at
the cell centres and normalised to sum 1 over cells, and ``c`` the centre prior:

- **centre prior**: ``c = (1 - e) * normalise(K_s * H) + e / n_cells``, with H the histogram of
  in-frame train gaze over cells and K_s a Gaussian blur; p_in = train in-frame rate.
- **persistence**: the viewer's last gaze label with raw sample time <= t - horizon (the same
  cut the model's track input uses, :func:`gazelib.data.dataset.track_history`):
  ``(1 - w) N(last, s) + w c`` when it was in frame, else ``c``; p_in = P(in | last in / last
  out / none) from train counts (add-one smoothing).
- **inter-observer** (ceiling): the *other* viewers' in-frame gaze at t:
  ``(1 - w) mean_o N(g_o, s) + w c`` (``c`` when no other viewer is in frame);
  p_in = (n_in + r) / (n_valid + 1) over the other viewers, r the train in-frame rate.

Blur widths and mixing weights are chosen on the train split by maximum log-likelihood of
the in-frame gaze labels over a grid of candidates (the centre prior leave-one-video-out,
so its blur is not fitted to the very videos it is scored on).
"""
from __future__ import annotations

import logging

import numpy as np

from gazelib.data.dataset import track_history
from gazelib.core.cells import cell_centres, centre_sq_dists, gaussian_log_kernel, gaze_cell
from pathlib import Path
from gazelib.core.io import write_json
from gazelib.core.layout import FLOORS, index_grid, read_index, read_labels, split_files

log = logging.getLogger(__name__)
EPS = 1e-12


def gaussian_cells(*, xy: np.ndarray, gh: int, gw: int, sigma: float) -> np.ndarray:
    """[N, Gh*Gw] Gaussians at ``xy`` [N, 2] normalised to sum 1 over the cells."""
    d2 = centre_sq_dists(np.asarray(xy, np.float64), gh, gw)
    g = np.exp(gaussian_log_kernel(d2 - d2.min(1, keepdims=True), sigma))
    return g / g.sum(1, keepdims=True)


def _blurred_histogram(counts: np.ndarray, gh: int, gw: int, sigma: float) -> np.ndarray:
    kernel = np.exp(gaussian_log_kernel(centre_sq_dists(cell_centres(gh, gw), gh, gw), sigma))
    m = kernel @ counts
    return m / m.sum() if m.sum() > 0 else np.full(gh * gw, 1.0 / (gh * gw))


def _inframe(lab: dict) -> np.ndarray:
    return lab["valid"] & (lab["inout"] > 0)


def fit_centre_prior(*, train: list[dict], gh: int, gw: int, sigmas: list[float], eps: list[float]) -> dict:
    """Choose (sigma, eps) by leave-one-video-out log-likelihood; return the prior fitted on all train."""
    n_cells = gh * gw
    counts = [np.bincount(gaze_cell(lab["gaze"][_inframe(lab)], gh, gw), minlength=n_cells).astype(np.float64)
              for lab in train]
    total = np.sum(counts, axis=0) if counts else np.zeros(n_cells)
    best = (-np.inf, sigmas[0], eps[0])
    if len(counts) >= 2 and total.sum() > 0:
        for s in sigmas:
            for e in eps:
                ll = 0.0
                for k in counts:
                    p = (1 - e) * _blurred_histogram(total - k, gh, gw, s) + e / n_cells
                    ll += float(k @ np.log(p + EPS))
                if ll > best[0]:
                    best = (ll, s, e)
    _, s, e = best
    prior = (1 - e) * _blurred_histogram(total, gh, gw, s) + e / n_cells
    n_valid = sum(int(lab["valid"].sum()) for lab in train)
    n_in = sum(int(_inframe(lab).sum()) for lab in train)
    return {"prior": prior, "sigma": float(s), "eps": float(e), "inout_rate": n_in / n_valid if n_valid else 0.5}


def _persistence_sources(lab: dict, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    """[V, T] step of the last gaze seen at t - horizon (-1: none) and its track features."""
    n_v, n_t = lab["valid"].shape
    src = np.full((n_v, n_t), -1)
    feat = np.zeros((n_v, n_t, 5), np.float32)
    for v in range(n_v):
        feat[v], src[v] = track_history(gaze=lab["gaze"][v], inout=lab["inout"][v], valid=lab["valid"][v],
                                        sample_t=lab["gaze_t"][v], t=lab["t"], horizon_s=horizon_s)
    return src, feat


def _mixture_ll(target_cells: np.ndarray, means: np.ndarray, prior: np.ndarray, gh: int, gw: int,
                sigmas: list[float], weights: list[float]) -> tuple[float, float]:
    """Best (sigma, w) for p = (1-w) N(mean, sigma) + w prior on the target cells."""
    best = (-np.inf, sigmas[0], weights[0])
    if len(target_cells) == 0:
        return best[1], best[2]
    for s in sigmas:
        g = gaussian_cells(xy=means, gh=gh, gw=gw, sigma=s)[np.arange(len(target_cells)), target_cells]
        for w in weights:
            ll = float(np.log((1 - w) * g + w * prior[target_cells] + EPS).sum())
            if ll > best[0]:
                best = (ll, s, w)
    return best[1], best[2]


def fit_persistence(*, train: list[dict], gh: int, gw: int, horizon_s: float, prior: np.ndarray,
                    sigmas: list[float], weights: list[float], max_samples: int, rng) -> dict:
    """Persistence at ``horizon_s`` fitted on train: (sigma, w) by log-likelihood of the in-frame labels
    given the last gaze seen at t - horizon, and P(in | last in / last out / none) (add-one)."""
    pairs, io_counts = [], np.zeros((3, 2))  # rows: last in, last out, none; cols: out, in
    for lab in train:
        src, feat = _persistence_sources(lab, horizon_s)
        ok = lab["valid"]
        has = src >= 0
        state = np.where(has, np.where(feat[..., 2] > 0, 0, 1), 2)
        np.add.at(io_counts, (state[ok], lab["inout"][ok].astype(int)), 1)
        use = _inframe(lab) & has & (feat[..., 2] > 0)
        pairs.append((gaze_cell(lab["gaze"][use], gh, gw), feat[..., :2][use]))
    cells = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, int)
    means = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros((0, 2))
    if len(cells) > max_samples:
        keep = np.sort(rng.choice(len(cells), max_samples, replace=False))
        cells, means = cells[keep], means[keep]
    p_sigma, p_w = _mixture_ll(cells, means, prior, gh, gw, sigmas, weights)
    p_in_given = ((io_counts[:, 1] + 1) / (io_counts.sum(1) + 2)).tolist()
    return {"sigma": p_sigma, "w": p_w, "p_in_given_last_in_out_none": p_in_given}


def fit_floors(*, train: list[dict], gh: int, gw: int, horizon_s: float, sigmas: list[float],
               weights: list[float], eps: list[float], max_samples: int = 20000, seed: int = 0) -> dict:
    """Fit the centre prior, persistence and inter-observer predictors on train label arrays."""
    centre = fit_centre_prior(train=train, gh=gh, gw=gw, sigmas=sigmas, eps=eps)
    prior = centre["prior"]
    rng = np.random.default_rng(seed)
    pers = fit_persistence(train=train, gh=gh, gw=gw, horizon_s=horizon_s, prior=prior, sigmas=sigmas,
                           weights=weights, max_samples=max_samples, rng=rng)
    p_sigma, p_w, p_in_given = pers["sigma"], pers["w"], pers["p_in_given_last_in_out_none"]
    io_pairs = []
    for lab in train:
        # inter-observer: each viewer predicted from the others at the same step
        infr = _inframe(lab)
        for v in range(infr.shape[0]):
            others = np.delete(np.arange(infr.shape[0]), v)
            for t in np.nonzero(infr[v] & infr[others].any(0))[0] if len(others) else []:
                pts = lab["gaze"][others[infr[others, t]], t]
                io_pairs.append((int(gaze_cell(lab["gaze"][v, t], gh, gw)), pts))
    io_sigma, io_w = _fit_inter_observer(io_pairs, prior, gh, gw, sigmas, weights, max_samples, rng)
    out = {"centre_prior": {"sigma": centre["sigma"], "eps": centre["eps"]},
           "prior": prior.tolist(), "inout_rate": centre["inout_rate"],
           "persistence": {"sigma": p_sigma, "w": p_w, "p_in_given_last_in_out_none": p_in_given},
           "inter_observer": {"sigma": io_sigma, "w": io_w},
           "horizon_s": horizon_s, "grid": [gh, gw], "n_train_videos": len(train)}
    log.info("floors fitted on %d train videos: %s", len(train),
             {k: out[k] for k in ("centre_prior", "persistence", "inter_observer")})
    for name, value, grid in (("centre prior eps", centre["eps"], eps), ("persistence w", p_w, weights),
                              ("persistence sigma", p_sigma, sigmas), ("inter-observer w", io_w, weights),
                              ("inter-observer sigma", io_sigma, sigmas), ("centre prior sigma", centre["sigma"], sigmas)):
        if len(grid) > 1 and value == max(grid):
            log.warning("floors: %s = %g is the largest candidate; widen its grid in params.yaml", name, value)
    return out


def _fit_inter_observer(io_pairs, prior, gh, gw, sigmas, weights, max_samples, rng) -> tuple[float, float]:
    if not io_pairs:
        return sigmas[0], weights[0]
    if len(io_pairs) > max_samples:
        io_pairs = [io_pairs[i] for i in np.sort(rng.choice(len(io_pairs), max_samples, replace=False))]
    cells = np.array([c for c, _ in io_pairs])
    counts = np.array([len(p) for _, p in io_pairs])
    pts = np.concatenate([p for _, p in io_pairs])
    owner = np.repeat(np.arange(len(io_pairs)), counts)
    best = (-np.inf, sigmas[0], weights[0])
    for s in sigmas:
        g_pts = gaussian_cells(xy=pts, gh=gh, gw=gw, sigma=s)[np.arange(len(pts)), cells[owner]]
        g = np.bincount(owner, weights=g_pts, minlength=len(io_pairs)) / counts
        for w in weights:
            ll = float(np.log((1 - w) * g + w * prior[cells] + EPS).sum())
            if ll > best[0]:
                best = (ll, s, w)
    return best[1], best[2]


def persistence_prediction(*, persistence: dict, prior: np.ndarray, lab: dict, horizon_s: float, gh: int,
                           gw: int) -> tuple[np.ndarray, np.ndarray]:
    """(prob [V, T, cells], p_in [V, T]) of the persistence floor at ``horizon_s`` for one video."""
    n_v, n_t = lab["valid"].shape
    pf = persistence
    src, feat = _persistence_sources(lab, horizon_s)
    prob = np.broadcast_to(prior, (n_v, n_t, prior.size)).copy()
    use = (src >= 0) & (feat[..., 2] > 0)
    if use.any():
        prob[use] = (1 - pf["w"]) * gaussian_cells(xy=feat[..., :2][use], gh=gh, gw=gw, sigma=pf["sigma"]) \
            + pf["w"] * prior
    p_given = np.asarray(pf["p_in_given_last_in_out_none"])
    state = np.where(src >= 0, np.where(feat[..., 2] > 0, 0, 1), 2)
    return prob.astype(np.float32), p_given[state].astype(np.float32)


def floor_predictions(*, floors: dict, lab: dict, gh: int, gw: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per floor name: (prob [V, T, cells], p_in [V, T]) for one video's label arrays."""
    prior = np.asarray(floors["prior"], np.float64)
    n_v, n_t = lab["valid"].shape
    rate = floors["inout_rate"]
    out = {"centre_prior": (np.broadcast_to(prior, (n_v, n_t, prior.size)).astype(np.float32),
                            np.full((n_v, n_t), rate, np.float32))}
    out["persistence"] = persistence_prediction(persistence=floors["persistence"], prior=prior, lab=lab,
                                                horizon_s=floors["horizon_s"], gh=gh, gw=gw)
    # inter-observer
    io = floors["inter_observer"]
    infr = _inframe(lab)
    prob = np.broadcast_to(prior, (n_v, n_t, prior.size)).copy()
    p_in = np.full((n_v, n_t), rate, np.float32)
    for v in range(n_v):
        others = np.delete(np.arange(n_v), v)
        if not len(others):
            continue
        n_in = infr[others].sum(0)
        n_valid = lab["valid"][others].sum(0)
        p_in[v] = (n_in + rate) / (n_valid + 1)
        for t in np.nonzero(n_in > 0)[0]:
            pts = lab["gaze"][others[infr[others, t]], t]
            prob[v, t] = (1 - io["w"]) * gaussian_cells(xy=pts, gh=gh, gw=gw, sigma=io["sigma"]).mean(0) \
                + io["w"] * prior
    out["inter_observer"] = (prob.astype(np.float32), p_in)
    return out


# ---------------------------------------------------------------- DVC stage
def run_fit_floors(*, params: dict, root: Path = Path(".")) -> dict:
    """Fit the centre prior, persistence and inter-observer predictors on the train split."""
    index, meta = read_index(root)
    train_files = split_files(root, index, "train")
    if not train_files:
        raise ValueError("no train video with gaze recordings: floors cannot be fitted")
    ecfg = params["evaluate"]
    _, gh, gw = index_grid(meta)
    floors = fit_floors(train=list(read_labels(train_files).values()), gh=gh, gw=gw,
                        horizon_s=params["train"]["horizon_s"], sigmas=ecfg["floor_sigmas"],
                        weights=ecfg["floor_weights"], eps=ecfg["prior_eps"], seed=params["seed"])
    write_json(root / FLOORS, floors)
    return floors
