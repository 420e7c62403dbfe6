"""Normalisation fitted on the train split only, with its inverse.

Per column, by kind: continuous ``z = (x - mu) / sigma`` (mu, sigma over the valid steps
of train videos; sigma floored at 1e-6), embeddings rescaled to unit length, binary /
discrete / count untouched. Grid channels are z-scored per channel over all cells.
"""
from __future__ import annotations

import numpy as np


def l2_normalise(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    v = np.asarray(v, np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12) * (n > 1e-12)).astype(np.float32, copy=False)


FEATURE_MODALITIES = ("audio", "text", "visual")


def fit_norm_stats(*, videos: list[dict]) -> dict:
    """``videos``: aligned dicts (of train videos). Returns a JSON-able stats dict."""
    stats: dict = {}
    for m_i, m in enumerate(FEATURE_MODALITIES):
        cols, kinds = _schema(videos, m)
        rows = [v[m][v["mask"][:, m_i]] for v in videos if v[m].shape[1] == len(cols) and len(cols)]
        x = np.concatenate(rows) if rows else np.zeros((0, len(cols)))
        mean, std = _moments(x, kinds)
        stats[m] = {"columns": cols, "kinds": kinds, "mean": mean, "std": std}
    grids = [v["grid"][v["mask"][:, 2]] for v in videos if "grid" in v]
    g = np.concatenate(grids) if grids else np.zeros((0, 1, 1, 1))
    if len(g):
        gm = g.mean(axis=(0, 2, 3))
        gs = np.maximum(g.std(axis=(0, 2, 3)), 1e-6)
    else:
        gm, gs = np.zeros(g.shape[1]), np.ones(g.shape[1])
    stats["grid"] = {"mean": gm.tolist(), "std": gs.tolist()}
    return stats


def _schema(videos: list[dict], m: str) -> tuple[list[str], list[str]]:
    for v in videos:
        if len(v[f"{m}_columns"]):
            return [str(c) for c in v[f"{m}_columns"]], [str(k) for k in v[f"{m}_kinds"]]
    return [], []


def _moments(x: np.ndarray, kinds: list[str]) -> tuple[list[float], list[float]]:
    cont = np.array([k == "continuous" for k in kinds], bool)
    mean = np.zeros(len(kinds))
    std = np.ones(len(kinds))
    if len(x) and cont.any():
        mean[cont] = x[:, cont].mean(0)
        std[cont] = np.maximum(x[:, cont].std(0), 1e-6)
    return mean.tolist(), std.tolist()


def normalise(*, x: np.ndarray, stats: dict, is_valid: np.ndarray | None = None) -> np.ndarray:
    """Apply one modality's stats to [T, D]; rows not valid stay zero."""
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    out = ((x - mean) / std).astype(np.float32)
    kinds = np.asarray(stats["kinds"])
    emb = kinds == "embedding"
    if emb.any():
        out[:, emb] = l2_normalise(x[:, emb])
    if is_valid is not None:
        out[~is_valid] = 0
    return out


def denormalise(*, z: np.ndarray, stats: dict) -> np.ndarray:
    """Inverse of :func:`normalise` for continuous and binary columns (embeddings stay unit)."""
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    return (z * std + mean).astype(np.float32)


def normalise_grid(*, grid: np.ndarray, stats: dict) -> np.ndarray:
    m = np.asarray(stats["mean"], np.float32)[:, None, None]
    s = np.asarray(stats["std"], np.float32)[:, None, None]
    return ((grid - m) / s).astype(np.float32)
