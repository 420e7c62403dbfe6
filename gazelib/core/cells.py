"""The model's output grid: cell centres, the cell a gaze point falls in, Gaussian maps over the
cells. One home for the grid geometry that the dataset, training, floors and metrics share
(coordinates are normalised: x, y in [0, 1] from the frame's top-left corner).

The Gaussians over the cells (numpy): :func:`gaussian_map` (a fixation map), the dataset's track
maps (:func:`gazelib.data.dataset.track_maps`), the floors (:func:`gazelib.model.floors.gaussian_cells`
and its blurred histogram) and the calibration targets (:func:`gazelib.eval.calibration.gaussian_targets`)
all start from :func:`centre_sq_dists` and :func:`gaussian_log_kernel`; each keeps its own dtype and
its own normalisation (peak 1, sum 1, max-subtracted), so their numbers are what they were. The
training targets are the torch twin (:func:`gazelib.model.train.heatmap_targets`: the same squared
distances and ``-d2 / (2 sigma^2)``, softmaxed)."""
from __future__ import annotations

import numpy as np


def cell_centres(gh: int, gw: int) -> np.ndarray:
    """[Gh*Gw, 2] (x, y) centres of the cells, row-major."""
    ys, xs = np.meshgrid((np.arange(gh) + 0.5) / gh, (np.arange(gw) + 0.5) / gw, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], 1)


def centre_sq_dists(xy: np.ndarray, gh: int, gw: int, dtype=np.float64) -> np.ndarray:
    """[..., Gh*Gw] squared distances from points ``xy`` [..., 2] to every cell centre, in ``dtype``
    (the centres are cast to it; float32 for the dataset's track maps, float64 elsewhere)."""
    c = cell_centres(gh, gw).astype(dtype, copy=False)
    return ((np.asarray(xy, dtype)[..., None, :] - c) ** 2).sum(-1)


def gaussian_log_kernel(d2: np.ndarray, sigma: float) -> np.ndarray:
    """``-d2 / (2 sigma^2)``: the log of an isotropic Gaussian of width ``sigma`` (unnormalised)."""
    return -d2 / (2 * sigma ** 2)


def gaze_cell(xy: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Row-major cell index of normalised points (clipped into the frame)."""
    xy = np.asarray(xy, np.float64)
    col = np.clip((xy[..., 0] * gw).astype(int), 0, gw - 1)
    row = np.clip((xy[..., 1] * gh).astype(int), 0, gh - 1)
    return row * gw + col


def gaussian_map(xy: np.ndarray, gh: int, gw: int, sigma: float) -> np.ndarray:
    """Sum of isotropic Gaussians (normalised units) at points ``xy`` [N, 2], as [Gh*Gw]."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if xy.size == 0:
        return np.zeros(gh * gw)
    return np.exp(gaussian_log_kernel(centre_sq_dists(xy, gh, gw), sigma)).sum(0)

