"""Normalisation fitted on the train split only, with its inverse.

Per column, by kind: continuous ``z = (x - mu) / sigma`` (mu, sigma over the valid steps
of train videos; sigma floored at 1e-6), embeddings rescaled to unit length, binary /
discrete / count untouched. Grid channels are z-scored per channel over all cells.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np


def l2_normalise(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    v = np.asarray(v, np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12) * (n > 1e-12)).astype(np.float32, copy=False)


FEATURE_MODALITIES = ("audio", "text", "visual")


def stats_hash(stats: dict) -> str:
    """The 16-hex-digit hash of a norm-stats dict that checkpoints (``meta["norm_stats_hash"]``) and
    model bundles (``bundle.json``) record, so a model is only ever fed inputs scaled as in training."""
    return hashlib.sha256(json.dumps(stats, sort_keys=True).encode()).hexdigest()[:16]


def fit_norm_stats(*, videos: list[dict]) -> dict:
    """``videos``: aligned dicts (of train videos). Returns a JSON-able stats dict."""
    acc = NormAccumulator()
    for v in videos:
        acc.add_video(v)
    return acc.stats()


class _Moments:
    """Count, mean and sum of squared deviations per column, merged batch by batch (Chan et al.),
    so the statistics of a corpus never need the corpus in memory."""

    def __init__(self, width: int):
        self.n, self.mean, self.m2 = 0, np.zeros(width), np.zeros(width)

    def add(self, x: np.ndarray, block: int = 4096) -> None:
        """``x`` [n, width], merged ``block`` rows at a time (float64 internally, so the float64
        temporaries are bounded by the block, not by the video's length)."""
        if len(x) > block:
            for b in range(0, len(x), block):
                self.add(x[b:b + block], block)
            return
        if not len(x):
            return
        x = np.asarray(x, np.float64)
        n_b, mean_b = x.shape[0], x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.n * n_b / n)
        self.n = n

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.n) if self.n else np.ones_like(self.mean)


class NormAccumulator:
    """Norm statistics fitted video by video (and grids chunk by chunk): memory flat in corpus size
    and video length. ``add_video`` takes an aligned dict; ``add_grid`` rows [n, C, Gh, Gw]."""

    def __init__(self):
        self.schema: dict[str, tuple[list[str], list[str]]] = {}
        self.moments: dict[str, _Moments] = {}
        self.grid: _Moments | None = None

    def add_video(self, v: dict) -> None:
        for m_i, m in enumerate(FEATURE_MODALITIES):
            cols = [str(c) for c in v[f"{m}_columns"]]
            if not cols:
                continue
            if m not in self.schema:
                self.schema[m] = (cols, [str(k) for k in v[f"{m}_kinds"]])
                self.moments[m] = _Moments(len(cols))
            if v[m].shape[1] == len(self.schema[m][0]):
                self.moments[m].add(v[m][v["mask"][:, m_i]])
        if "grid" in v:
            self.add_grid(v["grid"][v["mask"][:, 2]])

    def add_grid(self, rows: np.ndarray) -> None:
        if self.grid is None:
            self.grid = _Moments(rows.shape[1])
        # per channel over time and cells
        self.grid.add(np.moveaxis(rows, 1, -1).reshape(-1, rows.shape[1]))

    def stats(self) -> dict:
        stats: dict = {}
        for m in FEATURE_MODALITIES:
            cols, kinds = self.schema.get(m, ([], []))
            cont = np.array([k == "continuous" for k in kinds], bool)
            mean, std = np.zeros(len(kinds)), np.ones(len(kinds))
            mo = self.moments.get(m)
            if mo is not None and mo.n and cont.any():
                mean[cont] = mo.mean[cont]
                std[cont] = np.maximum(mo.std()[cont], 1e-6)
            stats[m] = {"columns": cols, "kinds": kinds, "mean": mean.tolist(), "std": std.tolist()}
        if self.grid is not None and self.grid.n:
            gm, gs = self.grid.mean, np.maximum(self.grid.std(), 1e-6)
        else:
            width = self.grid.mean.size if self.grid is not None else 1
            gm, gs = np.zeros(width), np.ones(width)
        stats["grid"] = {"mean": gm.tolist(), "std": gs.tolist()}
        return stats


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


def normalise_grid(*, grid: np.ndarray, stats: dict, out: np.ndarray | None = None) -> np.ndarray:
    """Per-channel z-score of grid rows [n, C, Gh, Gw] in float32; into ``out`` (e.g. ``grid`` itself,
    when the caller owns it) for a float32 grid."""
    m = np.asarray(stats["mean"], np.float32)[:, None, None]
    s = np.asarray(stats["std"], np.float32)[:, None, None]
    if grid.dtype != np.float32:
        return ((grid - m) / s).astype(np.float32)
    z = np.subtract(grid, m, out=out)
    return np.divide(z, s, out=z)
