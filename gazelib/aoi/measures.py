"""AOI measures per viewer x AOI, and per video with intervals over viewers.

Basis (``aoi.basis``): ``fixations`` (default): the viewer's fixations from
:func:`gazelib.gaze.fixations.detect_fixations` with ``ingest.fixations``' method and thresholds; a
fixation is in an AOI when its centroid is inside the AOI at the fixation's midpoint time.
``samples``: every valid gaze sample is an event of one sample period (the median interval).
Pursuit of a moving face that I-VT does not label as a fixation counts only on the sample basis.

Definitions (as Tobii Pro Lab's AOI metrics, with moving / switching AOIs):

- ``fixation_count``: events in the AOI; ``dwell_s``: their total duration ("total fixation duration").
- ``dwell_share``: ``dwell_s`` over the duration of all the viewer's events while the AOI exists.
- ``ttff_s``: time to first fixation: onset of the first event in the AOI minus the AOI's first
  appearance (0 when the viewer was already there); NaN when never looked at.
- ``first_fixation_s``: duration of that first event.
- ``entries``: runs of consecutive events in the AOI (a visit each); ``revisits`` = entries - 1.
- ``latency_s``: per activation interval of the AOI (a speaker turn, a user AOI switched on),
  the time from its start to the first event in it; mean over the intervals looked at, with
  ``intervals_hit`` of ``n_intervals``. For the speaker AOI this is "how soon after she started
  talking". NaN when no interval was looked at.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from gazelib.aoi.shapes import Aoi, exclusive_labels

MEASURES = ("fixation_count", "dwell_s", "dwell_share", "ttff_s", "first_fixation_s", "entries", "revisits",
            "latency_s")
BASES = ("fixations", "samples")


def gaze_events(*, t, x, y, valid, basis: str = "fixations", fixation_cfg: dict | None = None) -> pd.DataFrame:
    """The events measures count: onset_s, duration_s, mid_s, x, y (time order)."""
    t, x, y = (np.asarray(a, np.float64) for a in (t, x, y))
    valid = np.asarray(valid, bool) & np.isfinite(x) & np.isfinite(y)
    if basis == "fixations":
        from gazelib.gaze.fixations import detect_fixations

        from gazelib.core.params import default

        # params.yaml ingest.fixations, plus the corpus geometry's deg_per_unit where known
        cfg = fixation_cfg if fixation_cfg is not None else default("ingest.fixations")
        res = detect_fixations(t=t, x=x, y=y, valid=valid, method=cfg["method"],
                               velocity_threshold=cfg["velocity_threshold"],
                               dispersion_threshold=cfg["dispersion_threshold"],
                               min_duration_s=cfg["min_duration_s"], deg_per_unit=cfg.get("deg_per_unit"))
        f = res.fixations
        # a fixation lasts to the next sample after its last one: offset - onset + one sample period
        dt = float(np.median(np.diff(t))) if t.size > 1 else 0.0
        dur = f["duration_s"].to_numpy(np.float64) + dt
        on = f["onset_s"].to_numpy(np.float64)
        return pd.DataFrame({"onset_s": on, "duration_s": dur, "mid_s": on + dur / 2,
                             "x": f["x"].to_numpy(np.float64), "y": f["y"].to_numpy(np.float64)})
    if basis != "samples":
        raise ValueError(f"aoi.basis must be one of {BASES}, got {basis!r}")
    dt = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    return pd.DataFrame({"onset_s": t[valid], "duration_s": np.full(int(valid.sum()), dt), "mid_s": t[valid],
                         "x": x[valid], "y": y[valid]})


def viewer_measures(*, events: pd.DataFrame, aois: list[Aoi], end_t: float) -> pd.DataFrame:
    """One row per AOI (columns ``aoi``, ``kind`` and :data:`MEASURES`, ``n_intervals``, ``intervals_hit``)."""
    on = events["onset_s"].to_numpy(np.float64)
    dur = events["duration_s"].to_numpy(np.float64)
    mid = events["mid_s"].to_numpy(np.float64)
    rows = []
    for a in aois:
        inside = a.contains(mid, events["x"].to_numpy(), events["y"].to_numpy()) if len(events) else np.zeros(0, bool)
        _, exists = a.at(mid)
        ivs = a.intervals(end_t)
        first_t = ivs[0][0] if ivs else np.nan
        n_in = int(inside.sum())
        dwell = float(dur[inside].sum())
        total = float(dur[exists].sum())
        r = {"aoi": a.name, "kind": a.kind, "fixation_count": n_in, "dwell_s": dwell,
             "dwell_share": dwell / total if total > 0 else np.nan}
        if n_in:
            i0 = int(np.argmax(inside))
            r["ttff_s"] = max(0.0, float(on[i0] - first_t))
            r["first_fixation_s"] = float(dur[i0])
            entries = int(inside[0]) + int(np.sum(inside[1:] & ~inside[:-1]))
        else:
            r["ttff_s"] = r["first_fixation_s"] = np.nan
            entries = 0
        r["entries"], r["revisits"] = entries, max(entries - 1, 0)
        lat = []
        for s, e, _ in ivs:
            hit = np.nonzero(inside & (mid >= s) & (mid < e))[0]
            if hit.size:
                lat.append(max(0.0, float(on[hit[0]] - s)))
        r["latency_s"] = float(np.mean(lat)) if lat else np.nan
        r["n_intervals"], r["intervals_hit"] = len(ivs), len(lat)
        rows.append(r)
    return pd.DataFrame(rows, columns=["aoi", "kind", *MEASURES, "n_intervals", "intervals_hit"])


def mean_interval(values: np.ndarray, ci: float = 0.95) -> dict:
    """Mean and t interval over independent units (viewers or videos), by the project's interval code
    (:func:`gazelib.stats.intervals.contrast_interval` on delete-one jackknife means: for a mean this is
    exactly the textbook t interval). NaNs are left out; fewer than 2 units: no interval."""
    from gazelib.stats.intervals import contrast_interval, leave_one_out_weights

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    if v.size == 1:
        return {"mean": float(v[0]), "ci95": [None, None], "n": 1}
    w = leave_one_out_weights(v.size)
    loo = (w @ v) / w.sum(1)
    iv = contrast_interval(plus=[loo[:, None]], ci=ci)
    return {"mean": iv["estimate"], "ci95": iv["ci"], "n": int(v.size)}


def video_summary(per_viewer: pd.DataFrame) -> pd.DataFrame:
    """Per AOI of one video: every measure's mean over viewers with its 95 % interval (columns
    ``<m>``, ``<m>_lo``, ``<m>_hi``), ``n_viewers`` and ``n_viewers_looked``."""
    rows = []
    for (aoi, kind), g in per_viewer.groupby(["aoi", "kind"], sort=False):
        r = {"aoi": aoi, "kind": kind, "n_viewers": int(len(g)), "n_viewers_looked": int((g["fixation_count"] > 0).sum())}
        for m in MEASURES:
            iv = mean_interval(g[m].to_numpy(np.float64))
            r[m], (r[f"{m}_lo"], r[f"{m}_hi"]) = iv["mean"], iv["ci95"]
        rows.append(r)
    return pd.DataFrame(rows)


def scarf_labels(*, aois: list[Aoi], t, x, y, valid) -> np.ndarray:
    """Per sample the exclusive AOI (index into ``aois``; -1 none, -2 missing) for the scarf plot."""
    lab = exclusive_labels(aois, t, x, y)
    return np.where(np.asarray(valid, bool) & np.isfinite(np.asarray(x, float)), lab, -2)
