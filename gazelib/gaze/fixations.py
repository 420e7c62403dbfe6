"""Fixation labels for gaze samples, with pymovements' I-VT and I-DT detectors.

``detect_fixations`` takes one viewer's samples (``t`` in s, ``x, y`` video-normalised,
``valid``) and returns per-sample fixation ids and centroids. Thresholds are in degrees
(I-DT dispersion) and degrees per second (I-VT velocity) when the geometry is known
(``deg_per_unit`` from corpus.yaml's ``geometry:`` block, or ``pixels_per_degree`` together
with the video's drawn size ``frame_px``), else in normalised video units (per second).

- I-VT (Salvucci & Goldberg 2000): velocity from ``pymovements.transforms.numpy.pos2vel`` at the
  median sample rate, with a Savitzky-Golay derivative (order 2) over ``velocity_window_s``
  (default 20 ms; the 5-sample ``smooth`` method when that is under 5 samples), so 1000 Hz
  tracker noise does not read as motion; samples slower than the threshold, in runs of at least
  ``min_duration_s``, are fixations.
- I-DT: ``pymovements.events.idt`` on the sample index (it needs a constant step; a recording
  with an irregular rate is treated as sampled at its median rate), minimum duration as a sample
  count.

Missing samples (``valid = 0``) split fixations and belong to none.

**When a label is known.** Whether a sample belongs to a fixation, and the centroid it takes, depend
on later samples: the fixation ends only when a later sample breaks it (I-VT: the first sample
faster than the threshold, whose velocity itself reads ``lookahead`` samples ahead: half the
Savitzky-Golay window, or 2 for the 5-sample ``smooth`` method; I-DT: the first sample that
exceeds the dispersion). ``known_t`` is the time of that last sample read, t[min(offset + 1 +
lookahead, n - 1)], the same for every sample of the fixation: a consumer that must not see gaze
after a cut (the track, at t - horizon) uses it instead of the sample time. Perturbing samples
after ``known_t`` leaves the fixation, its samples and its centroid unchanged (tested).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

METHODS = ("ivt", "idt")
DEFAULTS = {
    "deg": {"velocity_threshold": 30.0, "dispersion_threshold": 1.0},        # deg/s, deg
    "norm": {"velocity_threshold": 1.0, "dispersion_threshold": 0.035},      # units/s, units
}


@dataclass
class FixationResult:
    """Per-sample labels (``fixation_id`` -1 outside fixations) and one row per fixation."""

    fixation_id: np.ndarray
    centroid_x: np.ndarray
    centroid_y: np.ndarray
    known_t: np.ndarray            # per sample: when its fixation label is complete (NaN outside fixations)
    fixations: pd.DataFrame
    share_in_fixation: float
    method: str
    units: str                     # "deg" or "norm"
    params: dict = field(default_factory=dict)


def _deg_scale(*, deg_per_unit, pixels_per_degree, frame_px) -> tuple[float, float] | None:
    if deg_per_unit is not None:
        d = np.broadcast_to(np.asarray(deg_per_unit, dtype=float), (2,))
        return float(d[0]), float(d[1])
    if pixels_per_degree is None:
        return None
    if frame_px is None:
        raise ValueError("pixels_per_degree needs frame_px (the video's drawn width and height in display "
                         "pixels, geometry.video_rect_px[2:] in corpus.yaml) to convert normalised units")
    ppd = np.broadcast_to(np.asarray(pixels_per_degree, dtype=float), (2,))
    return float(frame_px[0]) / float(ppd[0]), float(frame_px[1]) / float(ppd[1])


def detect_fixations(*, t, x, y, valid=None, method: str = "ivt", velocity_threshold: float | None = None,
                     dispersion_threshold: float | None = None, min_duration_s: float = 0.1,
                     velocity_window_s: float = 0.02, pixels_per_degree=None, frame_px=None,
                     deg_per_unit=None) -> FixationResult:
    """Label fixations in one viewer's gaze with I-VT or I-DT (pymovements).

    ``velocity_threshold`` (I-VT) is in deg/s and ``dispersion_threshold`` (I-DT, the sum of
    the x and y extents, as Salvucci & Goldberg define it) in degrees when the geometry is
    given; otherwise in normalised units. Defaults: 30 deg/s and 1 deg, or 1.0 units/s and
    0.035 units (about 1 deg for a video 30 deg wide).
    """
    import pymovements as pm
    from pymovements.transforms.numpy import pos2vel

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = t.size
    if x.size != n or y.size != n:
        raise ValueError(f"t, x, y must have the same length, got {n}, {x.size}, {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        ok &= np.asarray(valid).astype(bool)
    if n and np.any(np.diff(t) <= 0):
        raise ValueError("t must be strictly increasing")
    if min_duration_s <= 0:
        raise ValueError(f"min_duration_s must be positive, got {min_duration_s}")
    scale = _deg_scale(deg_per_unit=deg_per_unit, pixels_per_degree=pixels_per_degree, frame_px=frame_px)
    units = "deg" if scale else "norm"
    sx, sy = scale or (1.0, 1.0)
    pos = np.stack([np.where(ok, x * sx, np.nan), np.where(ok, y * sy, np.nan)], axis=1)
    ids = np.full(n, -1, dtype=np.int64)
    rate = float(1.0 / np.median(np.diff(t))) if n > 1 else 0.0
    params = {"min_duration_s": float(min_duration_s)}
    spans: list[tuple[int, int]] = []
    lookahead = 0  # samples after the breaking sample that decide it (the velocity filter's half width)
    if n >= 5 and ok.sum() >= 2:
        if method == "ivt":
            thr = float(velocity_threshold if velocity_threshold is not None
                        else DEFAULTS[units]["velocity_threshold"])
            params["velocity_threshold"] = thr
            win = int(round(velocity_window_s * rate)) // 2 * 2 + 1
            if win >= 5 and n >= win:
                vel = pos2vel(pos, sampling_rate=rate, method="savitzky_golay", window_length=win, polyorder=2)
                params["velocity_window"] = win
                lookahead = win // 2
            else:
                vel = pos2vel(pos, sampling_rate=rate, method="smooth")
                lookahead = 2
            # onset/offset come back as sample indices (timesteps = index); duration checked in time below
            ev = pm.events.detection.ivt(velocities=vel, timesteps=np.arange(n), minimum_duration=1,
                                         velocity_threshold=thr)
            for on, off in zip(ev.frame["onset"].to_list(), ev.frame["offset"].to_list()):
                if t[int(off)] - t[int(on)] + 1.0 / rate >= min_duration_s - 1e-9:
                    spans.append((int(on), int(off)))
        else:
            thr = float(dispersion_threshold if dispersion_threshold is not None
                        else DEFAULTS[units]["dispersion_threshold"])
            params["dispersion_threshold"] = thr
            min_samples = max(2, int(math.ceil(min_duration_s * rate - 1e-9)))
            params["min_samples"] = min_samples
            ev = pm.events.detection.idt(positions=pos, timesteps=np.arange(n), minimum_duration=min_samples,
                                         dispersion_threshold=thr)
            spans = [(int(a), int(b)) for a, b in zip(ev.frame["onset"].to_list(), ev.frame["offset"].to_list())]
    rows = []
    cx = np.full(n, np.nan)
    cy = np.full(n, np.nan)
    known = np.full(n, np.nan)
    params["lookahead_samples"] = lookahead
    for k, (a, b) in enumerate(sorted(spans)):
        sel = np.arange(a, b + 1)
        sel = sel[ok[sel]]
        if sel.size == 0:
            continue
        ids[sel] = k
        mx, my = float(np.mean(x[sel])), float(np.mean(y[sel]))
        cx[sel], cy[sel] = mx, my
        known[sel] = t[min(b + 1 + lookahead, n - 1)]
        rows.append({"fixation_id": k, "onset_s": float(t[a]), "offset_s": float(t[b]),
                     "duration_s": float(t[b] - t[a]), "known_s": float(known[sel[0]]), "x": mx, "y": my,
                     "n_samples": int(sel.size)})
    # renumber densely in time order (a span with no valid sample was dropped)
    table = pd.DataFrame(rows, columns=["fixation_id", "onset_s", "offset_s", "duration_s", "known_s", "x", "y",
                                        "n_samples"])
    if len(table):
        lut = np.full(int(table["fixation_id"].max()) + 1, -1, dtype=np.int64)
        lut[table["fixation_id"].to_numpy()] = np.arange(len(table))
        ids = np.where(ids >= 0, lut[np.maximum(ids, 0)], -1)
        table["fixation_id"] = range(len(table))
    share = float((ids >= 0).sum() / ok.sum()) if ok.sum() else 0.0
    return FixationResult(fixation_id=ids, centroid_x=cx, centroid_y=cy, known_t=known, fixations=table,
                          share_in_fixation=share, method=method, units=units, params=params)
