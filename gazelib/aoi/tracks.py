"""Face boxes per frame -> identities (tracks), with short misses bridged.

SORT-style tracking-by-detection (Bewley et al. 2016) with the assignment done by
``scipy.optimize.linear_sum_assignment`` (the Hungarian / Jonker-Volgenant solver): at each
frame, every open track predicts its box by constant velocity (the displacement over the last
``velocity_window_s`` of its detections; SORT uses a Kalman filter, whose extra smoothing buys
nothing on boxes that are detected every frame), the cost of pairing track i and detection j is
1 - IoU(prediction_i, detection_j), and pairs cheaper than 1 - ``iou_min`` are accepted. A
detection left over opens a track; a track unmatched for more than ``max_gap_s`` is closed. The
frames a track missed inside its life are filled by linear interpolation of its boxes (flagged
``detected = False``); tracks shorter than ``min_track_s`` are dropped (spurious detections).

Why not a packaged tracker: none is in the project's lock (norfair, motpy, boxmot are not), and
what they add (Kalman smoothing, appearance re-identification) is not needed for faces detected
at 5-10 Hz; the solver, the part that is easy to get wrong, is scipy's.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

log = logging.getLogger(__name__)

TRACK_COLUMNS = ["t", "track", "x0", "y0", "x1", "y1", "mouth_motion", "detected"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


class _Track:
    def __init__(self, tid: int, t: float, box: np.ndarray, row: int):
        self.id, self.times, self.boxes, self.rows = tid, [t], [box], [row]

    def predict(self, t: float, window_s: float) -> np.ndarray:
        t_last, b_last = self.times[-1], self.boxes[-1]
        k = len(self.times) - 1
        while k > 0 and t_last - self.times[k - 1] <= window_s + 1e-9:
            k -= 1
        if k == len(self.times) - 1:
            return b_last
        vel = (b_last - self.boxes[k]) / (t_last - self.times[k])
        return b_last + vel * (t - t_last)


def track_faces(*, faces: pd.DataFrame, iou_min: float = 0.2, max_gap_s: float = 1.0, min_track_s: float = 0.5,
                velocity_window_s: float = 0.5, frame_times: np.ndarray | None = None) -> pd.DataFrame:
    """``faces``: one row per detected box (t, x0, y0, x1, y1[, mouth_motion]). Returns one row per
    track and frame (TRACK_COLUMNS), tracks named ``face0, face1, ...`` by first appearance, then x.
    ``frame_times``: every sampled frame (also those without a face), where gaps are filled."""
    if not 0 < iou_min <= 1:
        raise ValueError(f"aoi.track_iou_min must be in (0, 1], got {iou_min}")
    faces = faces.sort_values(["t", "x0", "y0"], kind="stable").reset_index(drop=True)
    if "mouth_motion" not in faces:
        faces = faces.assign(mouth_motion=np.nan)
    boxes = faces[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
    open_tracks: list[_Track] = []
    done: list[_Track] = []
    n_next = 0
    for t, idx in faces.groupby("t", sort=True).indices.items():
        t = float(t)
        still = []
        for tr in open_tracks:
            (still if t - tr.times[-1] <= max_gap_s + 1e-9 else done).append(tr)
        open_tracks = still
        det = boxes[idx]
        matched_det = set()
        if open_tracks and len(idx):
            pred = np.stack([tr.predict(t, velocity_window_s) for tr in open_tracks])
            cost = 1.0 - iou_matrix(pred, det)
            ri, ci = linear_sum_assignment(cost)
            for i, j in zip(ri, ci):
                if cost[i, j] <= 1.0 - iou_min:
                    tr = open_tracks[i]
                    tr.times.append(t), tr.boxes.append(det[j]), tr.rows.append(int(idx[j]))
                    matched_det.add(j)
        for j in range(len(idx)):
            if j not in matched_det:
                open_tracks.append(_Track(n_next, t, det[j], int(idx[j])))
                n_next += 1
    done += open_tracks
    frame_times = np.unique(np.concatenate([np.asarray(frame_times if frame_times is not None else [], np.float64),
                                            faces["t"].to_numpy(np.float64)]))
    kept = [tr for tr in done if tr.times[-1] - tr.times[0] >= min_track_s - 1e-9]
    kept.sort(key=lambda tr: (tr.times[0], float(tr.boxes[0][0])))
    rows = []
    for k, tr in enumerate(kept):
        name = f"face{k}"
        tt = np.asarray(tr.times)
        fill = frame_times[(frame_times > tt[0]) & (frame_times < tt[-1])]
        fill = fill[~np.isin(fill, tt)]
        bb = np.stack(tr.boxes)
        for t, b, r in zip(tt, bb, tr.rows):
            rows.append((float(t), name, *map(float, b), float(faces.at[r, "mouth_motion"]), True))
        for t in fill:  # bridged misses (at most max_gap_s long by construction)
            b = [float(np.interp(t, tt, bb[:, c])) for c in range(4)]
            rows.append((float(t), name, *b, float("nan"), False))
    out = pd.DataFrame(rows, columns=TRACK_COLUMNS)
    order = np.lexsort((out["t"].to_numpy(), out["track"].str.slice(4).astype(int).to_numpy()))
    out = out.iloc[order].reset_index(drop=True)
    log.info("tracked %d face detections into %d identities (%d dropped as shorter than %.2f s, %d frames bridged)",
             len(faces), len(kept), len(done) - len(kept), min_track_s, int((~out["detected"]).sum()))
    return out


def track_aois(tracks: pd.DataFrame, frame_dt: float) -> list:
    """One face AOI per track: a box keyframe per frame, switched off one frame after its last."""
    from gazelib.aoi.shapes import Aoi, box_verts

    out = []
    for name, g in tracks.groupby("track", sort=False):
        t = g["t"].to_numpy(np.float64)
        verts = box_verts(g[["x0", "y0", "x1", "y1"]].to_numpy())
        t = np.append(t, t[-1] + frame_dt)
        verts = np.concatenate([verts, verts[-1:]])
        vis = np.append(np.ones(len(g), bool), False)
        out.append(Aoi(name=str(name), kind="face", t=t, verts=verts, visible=vis, is_box=True, interpolate=True))
    return out
