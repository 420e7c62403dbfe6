"""The model's output grid: cell centres, the cell a gaze point falls in, Gaussian maps over the
cells. One home for the grid geometry that the dataset, training, floors and metrics share
(coordinates are normalised: x, y in [0, 1] from the frame's top-left corner)."""
from __future__ import annotations

import numpy as np


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

