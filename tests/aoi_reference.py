"""The AOI hit tests and cell shares as they were before they were vectorised (issue 23): kept
verbatim as the reference the fast code in :mod:`gazelib.aoi.shapes` and
:mod:`gazelib.aoi.model_level` must match bit for bit (tests/test_aoi.py, bench/bench_aoi.py); and the
demo truth check before its per-frame pandas indexing became arrays (issue 24)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from gazelib.aoi.shapes import Aoi
from gazelib.aoi.tracks import iou_matrix


def points_in_polygons(verts: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(x), bool)
    p = verts.shape[1]
    for k in range(p):
        x1, y1 = verts[:, k, 0], verts[:, k, 1]
        x2, y2 = verts[:, (k + 1) % p, 0], verts[:, (k + 1) % p, 1]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (y - y1) / (y2 - y1) + x1
        inside ^= crosses & (x < xint)
    return inside


def polygon_area(verts: np.ndarray) -> np.ndarray:
    x, y = verts[..., 0], verts[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y, -1))


def ref_at(a: Aoi, times) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times, np.float64)
    k = np.searchsorted(a.t, times, side="right") - 1
    present = k >= 0
    kc = np.clip(k, 0, len(a.t) - 1)
    present &= a.visible[kc]
    verts = a.verts[kc].copy()
    if a.interpolate and len(a.t) > 1:
        nxt = np.minimum(kc + 1, len(a.t) - 1)
        ok = present & (nxt > kc) & a.visible[nxt] & (a.segment[nxt] == a.segment[kc])
        if ok.any():
            w = ((times[ok] - a.t[kc[ok]]) / (a.t[nxt[ok]] - a.t[kc[ok]]))[:, None, None]
            verts[ok] = a.verts[kc[ok]] + w * (a.verts[nxt[ok]] - a.verts[kc[ok]])
    return verts, present


def ref_contains(a: Aoi, times, x, y) -> np.ndarray:
    verts, present = ref_at(a, times)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.is_box:
        lo, hi = verts.min(1), verts.max(1)
        inside = (x >= lo[:, 0]) & (x <= hi[:, 0]) & (y >= lo[:, 1]) & (y <= hi[:, 1])
    else:
        inside = points_in_polygons(verts, x, y)
    return present & inside


def ref_area(a: Aoi, times) -> np.ndarray:
    verts, present = ref_at(a, times)
    return np.where(present, polygon_area(verts), np.nan)


def ref_exclusive_labels(aois: list[Aoi], times, x, y) -> np.ndarray:
    times = np.asarray(times, np.float64)
    best = np.full(len(times), -1, np.int64)
    best_area = np.full(len(times), np.inf)
    for i, a in enumerate(aois):
        hit = ref_contains(a, times, x, y)
        if not hit.any():
            continue
        area = ref_area(a, times)
        take = hit & (area < best_area)
        best[take], best_area[take] = i, area[take]
    return best


def ref_cell_shares(*, aois: list[Aoi], times: np.ndarray, gh: int, gw: int, sub: int = 4) -> np.ndarray:
    times = np.asarray(times, np.float64)
    n_a = len(aois)
    ys = (np.arange(gh * sub) + 0.5) / (gh * sub)
    xs = (np.arange(gw * sub) + 0.5) / (gw * sub)
    py, px = np.meshgrid(ys, xs, indexing="ij")
    cell = ((py * gh).astype(int).clip(0, gh - 1) * gw + (px * gw).astype(int).clip(0, gw - 1)).ravel()
    out = np.zeros((len(times), n_a + 1, gh * gw))
    n_pts = px.size
    for t0 in range(0, len(times), 64):
        tt = times[t0:t0 + 64]
        lab = ref_exclusive_labels(aois, np.repeat(tt, n_pts), np.tile(px.ravel(), len(tt)),
                                   np.tile(py.ravel(), len(tt)))
        lab = np.where(lab < 0, n_a, lab).reshape(len(tt), n_pts)
        for i in range(len(tt)):
            np.add.at(out[t0 + i], (lab[i], cell), 1.0)
    return out / (sub * sub)


def ref_prepare_video(*, aois, lab: dict, gh: int, gw: int, sub: int = 4) -> dict | None:
    if aois is None:
        return None
    aois = [a for a in aois if a.kind in ("face", "user")]
    t = np.asarray(lab["t"], np.float64)
    v_n, t_n = lab["valid"].shape
    inframe = lab["valid"].astype(bool) & (lab["inout"] > 0)
    gx, gy = lab["gaze"][..., 0].astype(np.float64), lab["gaze"][..., 1].astype(np.float64)
    looked = ref_exclusive_labels(aois, np.tile(t, v_n), gx.ravel(), gy.ravel()).reshape(v_n, t_n)
    looked = np.where(looked < 0, len(aois), looked)
    n_in = inframe.sum(0)
    share = np.zeros((t_n, len(aois) + 1))
    for v in range(v_n):
        np.add.at(share, (np.nonzero(inframe[v])[0], looked[v][inframe[v]]), 1.0)
    share /= np.maximum(n_in, 1)[:, None]
    return {"shares": ref_cell_shares(aois=aois, times=t, gh=gh, gw=gw, sub=sub), "looked": looked,
            "inframe": inframe, "viewer_share": share, "names": [a.name for a in aois] + ["elsewhere"]}


def check_against_truth(*, truth: dict, tracks: pd.DataFrame, speakers: pd.DataFrame, iou_min: float = 0.5) -> dict:
    chars = [f["character"] for f in truth["faces"]]
    tboxes = np.array([f["box"] for f in truth["faces"]], np.float64)
    times = speakers["t"].to_numpy(np.float64)
    by_t = {t: g for t, g in tracks.groupby("t")}
    matched = np.full((len(chars), len(times)), "", dtype=object)
    for i, t in enumerate(times):
        g = by_t.get(t)
        if g is None or g.empty:
            continue
        iou = iou_matrix(tboxes, g[["x0", "y0", "x1", "y1"]].to_numpy())
        r, c = linear_sum_assignment(-iou)
        for a, b in zip(r, c):
            if iou[a, b] >= iou_min:
                matched[a, i] = g["track"].iloc[b]
    switches = 0
    for a in range(len(chars)):
        seq = [m for m in matched[a] if m]
        switches += int(sum(x != y for x, y in zip(seq, seq[1:])))
    speaking = np.full(len(times), -1)
    for s in truth["sentences"]:
        speaking[(times >= s["start"]) & (times < s["end"])] = chars.index(s["speaker"])
    pred = speakers["speaker"].to_numpy(str)
    in_speech = speaking >= 0
    correct = np.where(in_speech, pred == matched[np.maximum(speaking, 0), np.arange(len(times))].astype(str),
                       pred == "")
    correct &= ~(in_speech & (pred == ""))
    return {"n_characters": len(chars), "n_tracks": int(tracks["track"].nunique()), "id_switches": switches,
            "coverage": float((matched != "").mean()) if matched.size else None,
            "speaker_accuracy": float(correct[in_speech].mean()) if in_speech.any() else None,
            "silence_accuracy": float(correct[~in_speech].mean()) if (~in_speech).any() else None,
            "frame_accuracy": float(correct.mean()) if len(times) else None,
            "n_speech_frames": int(in_speech.sum()), "n_frames": int(len(times))}
