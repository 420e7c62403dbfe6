"""An AOI as keyframes: a box or polygon per keyframe time, visible or not, interpolated between.

Semantics (as Tobii Pro Lab's keyframed AOIs): the AOI does not exist before its first keyframe;
between two consecutive *visible* keyframes its vertices move linearly (``interpolate``) or are
held; a keyframe with ``visible = False`` switches it off from that time until the next visible
keyframe; after the last keyframe the last state holds. ``segment`` splits the AOI's life into
activation intervals (a speaker AOI: one per turn), the unit of :func:`Aoi.intervals`.

Point-in-AOI tests are vectorised over samples, each with its own time (so its own polygon):
boxes by comparison, polygons by even-odd ray casting. shapely/matplotlib test many points
against one polygon, not one point per polygon, so the ~10 lines are written here. Where many
points share a time (the cell points of a heatmap, the viewers at one step) they are passed as
[N, M]: each shape is interpolated once per time and tested against its M points by broadcasting
(the model level's cell shares: ~55x faster than one shape per point, bit-identical;
tests/aoi_reference.py keeps the one-shape-per-point code the tests compare with).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

KINDS = ("face", "speaker", "user")


@dataclass
class Aoi:
    name: str
    kind: str                      # face | speaker | user
    t: np.ndarray                  # [K] keyframe times, strictly increasing
    verts: np.ndarray              # [K, P, 2] normalised (x, y); a box is its 4 corners
    visible: np.ndarray            # [K] bool
    is_box: bool = True
    interpolate: bool = True
    segment: np.ndarray = field(default=None)   # [K] int: activation interval id (default: one per visible run)

    def __post_init__(self):
        self.t = np.asarray(self.t, np.float64)
        self.verts = np.asarray(self.verts, np.float64).reshape(len(self.t), -1, 2)
        self.visible = np.asarray(self.visible, bool)
        if self.segment is None:
            self.segment = np.zeros(len(self.t), np.int64)
        self.segment = np.asarray(self.segment, np.int64)
        if len(self.t) and np.any(np.diff(self.t) <= 0):
            raise ValueError(f"AOI {self.name!r}: keyframe times must be strictly increasing")

    def at(self, times) -> tuple[np.ndarray, np.ndarray]:
        """Vertices [N, P, 2] and presence [N] at ``times``."""
        times = np.asarray(times, np.float64)
        k = np.searchsorted(self.t, times, side="right") - 1
        present = k >= 0
        kc = np.clip(k, 0, len(self.t) - 1)
        present &= self.visible[kc]
        verts = self.verts[kc]                      # fancy indexing: already a copy
        if self.interpolate and len(self.t) > 1:
            nxt = np.minimum(kc + 1, len(self.t) - 1)
            ok = present & (nxt > kc) & self.visible[nxt] & (self.segment[nxt] == self.segment[kc])
            if ok.any():
                w = ((times[ok] - self.t[kc[ok]]) / (self.t[nxt[ok]] - self.t[kc[ok]]))[:, None, None]
                verts[ok] = self.verts[kc[ok]] + w * (self.verts[nxt[ok]] - self.verts[kc[ok]])
        return verts, present

    def contains(self, times, x, y) -> np.ndarray:
        """Is point i inside the AOI at ``times[i]``? ``x``, ``y`` may also be [N, M]: M points per
        time (one shape per time serves them all)."""
        verts, present = self.at(times)
        return _per_shape(present, max(np.ndim(x), np.ndim(y), 1)) & inside_shapes(verts, self.is_box, x, y)

    def area(self, times) -> np.ndarray:
        verts, present = self.at(times)
        return np.where(present, polygon_area(verts), np.nan)

    def intervals(self, end_t: float) -> list[tuple[float, float, int]]:
        """Activation intervals (start, end, segment): maximal runs of visible keyframes of one segment."""
        out: list[tuple[float, float, int]] = []
        for k in range(len(self.t)):
            if not self.visible[k]:
                continue
            start_new = (not out or out[-1][1] < self.t[k] - 1e-12 or out[-1][2] != self.segment[k])
            end = float(self.t[k + 1]) if k + 1 < len(self.t) else float(end_t)
            if start_new:
                out.append((float(self.t[k]), end, int(self.segment[k])))
            else:
                out[-1] = (out[-1][0], end, out[-1][2])
        return [iv for iv in out if iv[1] > iv[0]]


def box_verts(boxes) -> np.ndarray:
    """[N, 4] (x0, y0, x1, y1) -> [N, 4, 2] corners."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], 1)


def _per_shape(a: np.ndarray, ndim: int) -> np.ndarray:
    """[N] per-shape values shaped to broadcast against points [N] or [N, M]."""
    return a.reshape(a.shape[:1] + (1,) * (ndim - 1))


def inside_shapes(verts: np.ndarray, is_box: bool, x, y) -> np.ndarray:
    """Is (x[i], y[i]) inside shape ``verts[i]`` ([N, P, 2]; a box: its corners)? ``x``, ``y``
    are [N] or [N, M] (M points tested against each shape), broadcast as numpy does."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not is_box:
        return points_in_polygons(verts, x, y)
    nd = max(x.ndim, y.ndim, 1)
    lo, hi = verts.min(1), verts.max(1)
    return ((x >= _per_shape(lo[:, 0], nd)) & (x <= _per_shape(hi[:, 0], nd))
            & (y >= _per_shape(lo[:, 1], nd)) & (y <= _per_shape(hi[:, 1], nd)))


def points_in_polygons(verts: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd rule: is (x[i], y[i]) inside polygon verts[i] ([N, P, 2])? ``x``, ``y``: [N] or
    [N, M] (M points per polygon)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    nd = max(x.ndim, y.ndim, 1)
    inside = np.zeros(np.broadcast_shapes(x.shape, y.shape, verts.shape[:1] + (1,) * (nd - 1)), bool)
    p = verts.shape[1]
    for k in range(p):
        x1, y1 = _per_shape(verts[:, k, 0], nd), _per_shape(verts[:, k, 1], nd)
        x2, y2 = _per_shape(verts[:, (k + 1) % p, 0], nd), _per_shape(verts[:, (k + 1) % p, 1], nd)
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (y - y1) / (y2 - y1) + x1
        inside ^= crosses & (x < xint)
    return inside


def polygon_area(verts: np.ndarray) -> np.ndarray:
    x, y = verts[..., 0], verts[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y, -1))


def exclusive_labels(aois: list[Aoi], times, x, y) -> np.ndarray:
    """Index into ``aois`` of the AOI each point is in (the smallest by area where several
    overlap, ties to the first), -1 for none: one label per sample, for the scarf and hit rate.

    ``x``, ``y`` are [N] (point i at ``times[i]``) or [N, M] (M points at each of the N times:
    the shapes are interpolated once per time, not once per point); the labels have their shape."""
    times = np.asarray(times, np.float64)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    nd = max(x.ndim, y.ndim, 1)
    shape = np.broadcast_shapes(x.shape, y.shape, times.shape + (1,) * (nd - 1))
    best = np.full(shape, -1, np.int64)
    best_area = np.full(shape, np.inf)
    for i, a in enumerate(aois):
        verts, present = a.at(times)
        if not present.any():
            continue
        hit = _per_shape(present, nd) & inside_shapes(verts, a.is_box, x, y)
        if not hit.any():
            continue
        area = _per_shape(polygon_area(verts), nd)
        take = hit & (area < best_area)
        best[take] = i
        best_area[take] = np.broadcast_to(area, shape)[take]
    return best


# ---------------------------------------------------------------- table form (data/aoi/<video_id>.parquet)
TABLE_COLUMNS = ["aoi", "kind", "t", "visible", "segment", "interpolate", "x0", "y0", "x1", "y1", "polygon"]


def aois_to_table(aois: list[Aoi]) -> pd.DataFrame:
    rows = []
    for a in aois:
        for k in range(len(a.t)):
            v = a.verts[k]
            poly = "" if a.is_box else ";".join(f"{px:.6f} {py:.6f}" for px, py in v)
            rows.append({"aoi": a.name, "kind": a.kind, "t": float(a.t[k]), "visible": bool(a.visible[k]),
                         "segment": int(a.segment[k]), "interpolate": bool(a.interpolate),
                         "x0": float(v[:, 0].min()), "y0": float(v[:, 1].min()),
                         "x1": float(v[:, 0].max()), "y1": float(v[:, 1].max()), "polygon": poly})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def aois_from_table(df: pd.DataFrame) -> list[Aoi]:
    out = []
    for name, g in df.groupby("aoi", sort=False):
        g = g.sort_values("t")
        is_box = not (g["polygon"].astype(str) != "").any()
        if is_box:
            verts = box_verts(g[["x0", "y0", "x1", "y1"]].to_numpy())
        else:
            verts = np.array([[list(map(float, p.split())) for p in s.split(";")] for s in g["polygon"]])
        out.append(Aoi(name=str(name), kind=str(g["kind"].iloc[0]), t=g["t"].to_numpy(), verts=verts,
                       visible=g["visible"].to_numpy(bool), is_box=is_box,
                       interpolate=bool(g["interpolate"].iloc[0]), segment=g["segment"].to_numpy()))
    return out
