"""Tobii Pro Lab data export (TSV, "Single standard file"), read with ``pymovements.gaze.from_csv``.

pymovements reads the table; this module knows Pro Lab's columns (names as in Pro Lab's
export dialog; there is no maintained reader of their meaning):

- ``Recording timestamp`` (µs in Pro Lab >= 1.1x, ms in older exports; a ``[μs]``/``[ms]``
  suffix is honoured, otherwise ``reader.time_unit: auto`` infers it from the sample interval);
- ``Sensor`` (only ``Eye Tracker`` rows are samples), ``Event`` + ``Event value`` (messages,
  e.g. ``VideoStimulusStart clip01``), ``Participant name``, ``Recording name`` (one export may
  hold many recordings: each becomes its own recording);
- ``Gaze point X/Y`` (Tobii's binocular average, display pixels), ``Gaze point left/right X/Y``,
  ``Validity left/right`` (``Valid``/``Invalid``);
- ``Recording resolution width/height`` (the display), and ``Presented Media position X/Y
  (DACSpx)`` / ``Presented Media width/height`` (where the video was drawn: ``geometry.rect: media``).

Numbers may use a decimal comma (Pro Lab follows the Windows locale): ``reader.decimal: auto``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import (
    ImportFormatError, Message, Recording, find_column, numeric_column, read_table, require_column,
    seconds_from_native, validity_column, viewer_from_path,
)

log = logging.getLogger(__name__)

DEFAULTS = {"time_unit": "auto", "decimal": "auto", "separator": "\t"}
UNITS = {"us": 1e6, "ms": 1e3, "s": 1.0}
DEFAULT_SYNC = {"start": r"VideoStimulusStart (?P<video>.+)", "end": r"VideoStimulusEnd (?P<video>.+)"}


def _decimal(df, cols: list[str], forced: str) -> str:
    if forced in (".", ","):
        return forced
    for c in cols:
        vals = df[c].drop_nulls().head(200).to_list()
        if any("," in v for v in vals):
            return ","
        if any("." in v for v in vals):
            return "."
    return "."


def _time_unit(col: str, t_native: np.ndarray, forced: str, path: Path) -> str:
    low = col.lower()
    if "[μs]" in low or "[µs]" in low or "[us]" in low:
        return "us"
    if "[ms]" in low:
        return "ms"
    if forced != "auto":
        if forced not in UNITS:
            raise ImportFormatError(f"import config: reader.time_unit must be auto, us, ms or s, got {forced!r}")
        return forced
    dt = np.diff(t_native[np.isfinite(t_native)])
    dt = dt[dt > 0]
    if dt.size == 0:
        raise ImportFormatError(f"{path}: cannot infer the time unit of {col!r} from fewer than 2 samples; "
                                "set reader.time_unit")
    med = float(np.median(dt))
    # Tobii trackers sample at 30..1200 Hz: 0.8..34 ms between samples
    if 800 <= med <= 35000:
        return "us"
    if 0.8 <= med <= 35:
        return "ms"
    raise ImportFormatError(f"{path}: median step {med:g} of {col!r} fits neither µs nor ms at 30-1200 Hz; "
                            "set reader.time_unit")


def read(*, path: Path, cfg: dict) -> list[Recording]:
    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    df = read_table(path=path, separator=opts["separator"])
    cols = list(df.columns)
    tcol = require_column(cols, path, "recording timestamp", "Recording timestamp",
                          pattern=r"Recording timestamp\s*\[(μs|µs|us|ms)\]")
    gx = find_column(cols, "Gaze point X")
    gy = find_column(cols, "Gaze point Y")
    lx, ly = find_column(cols, "Gaze point left X"), find_column(cols, "Gaze point left Y")
    rx, ry = find_column(cols, "Gaze point right X"), find_column(cols, "Gaze point right Y")
    if not ((gx and gy) or (lx and ly) or (rx and ry)):
        raise ImportFormatError(f"{path}:1: no gaze columns ('Gaze point X/Y' or 'Gaze point left/right X/Y'); "
                                "include them in Pro Lab's data export")
    num_cols = [c for c in (gx, gy, lx, ly, rx, ry) if c]
    dec = _decimal(df, num_cols, opts["decimal"])
    sensor = find_column(cols, "Sensor")
    event = find_column(cols, "Event")
    event_value = find_column(cols, "Event value")
    rec_col = find_column(cols, "Recording name")
    part_col = find_column(cols, "Participant name")
    res_w, res_h = find_column(cols, "Recording resolution width"), find_column(cols, "Recording resolution height")
    media = [find_column(cols, "Presented Media position X (DACSpx)"),
             find_column(cols, "Presented Media position Y (DACSpx)"),
             find_column(cols, "Presented Media width", "Presented Media width (px)"),
             find_column(cols, "Presented Media height", "Presented Media height (px)")]

    t_all = numeric_column(df=df, column=tcol, path=path, decimal=dec)
    is_event = np.zeros(df.height, dtype=bool)
    if event:
        is_event = np.array([bool(v and v.strip()) for v in df[event].to_list()])
    if sensor:
        is_sample = np.array([(v or "").strip().lower() == "eye tracker" for v in df[sensor].to_list()])
    else:
        has = np.zeros(df.height, dtype=bool)
        for c in num_cols:
            has |= df[c].is_not_null().to_numpy()
        is_sample = has & ~is_event
    groups = df[rec_col].fill_null("").to_list() if rec_col else [""] * df.height
    names = sorted({g for g in groups if g}) or [""]
    unit = _time_unit(tcol, t_all[is_sample], opts["time_unit"], path)
    per_s = UNITS[unit]
    arr = {c: numeric_column(df=df, column=c, path=path, decimal=dec) for c in num_cols + [c for c in media if c]
           + [c for c in (res_w, res_h) if c]}
    val_l = validity_column(df=df, column=find_column(cols, "Validity left"), path=path) \
        if find_column(cols, "Validity left") else None
    val_r = validity_column(df=df, column=find_column(cols, "Validity right"), path=path) \
        if find_column(cols, "Validity right") else None

    out = []
    group_arr = np.array(groups, dtype=object)
    for name in names:
        mine = (group_arr == name) if name else np.ones(df.height, dtype=bool)
        srows = np.flatnonzero(mine & is_sample & np.isfinite(t_all))
        if srows.size == 0:
            log.warning("%s: recording %r has no eye-tracker samples; skipped", path, name)
            continue
        order = srows[np.argsort(t_all[srows], kind="stable")]
        t, origin = seconds_from_native(t_all[order], per_s)
        eyes = {}
        for eye, cx, cy, val in (("left", lx, ly, val_l), ("right", rx, ry, val_r)):
            if cx and cy:
                x, y = arr[cx][order].copy(), arr[cy][order].copy()
                if val is not None:
                    x[~val[order]] = np.nan
                    y[~val[order]] = np.nan
                eyes[eye] = (x, y)
        if gx and gy:
            x, y = arr[gx][order].copy(), arr[gy][order].copy()
            if val_l is not None and val_r is not None:
                none = ~val_l[order] & ~val_r[order]
                x[none] = np.nan
                y[none] = np.nan
            eyes["both"] = (x, y)
        msgs = []
        for i in np.flatnonzero(mine & is_event & np.isfinite(t_all)):
            text = df[event][int(i)].strip()
            val = df[event_value][int(i)] if event_value else None
            if val and val.strip():
                text = f"{text} {val.strip()}"
            msgs.append(Message(t=(t_all[i] - origin) / per_s, text=text, line=int(i) + 2))
        display = None
        if res_w and res_h:
            w, h = arr[res_w][mine], arr[res_h][mine]
            ok = np.isfinite(w) & np.isfinite(h)
            if ok.any():
                display = (int(w[ok][0]), int(h[ok][0]))
        media_rect = None
        if all(media):
            media_rect = tuple(arr[c][order] for c in media)
        rec_id = name or path.stem
        rule = cfg.get("viewer_id") or ("participant" if part_col else "stem")
        if rule == "participant":
            if not part_col:
                raise ImportFormatError(f"{path}:1: viewer_id is 'participant' but there is no "
                                        "'Participant name' column")
            pv = [v for v in np.array(df[part_col].fill_null("").to_list(), dtype=object)[mine] if v.strip()]
            viewer = pv[0].strip() if pv else rec_id
        else:
            viewer = viewer_from_path(path=path, rule=rule)
        dt = np.diff(t)
        rate = float(1.0 / np.median(dt[dt > 0])) if (dt > 0).any() else None
        log.info("%s: recording %r (viewer %s): %d samples (%s), eyes %s, display %s, %d events",
                 path, rec_id, viewer, len(t), unit, sorted(eyes), display, len(msgs))
        out.append(Recording(path=path, recording_id=rec_id, viewer_id=viewer, t=t, eyes=eyes,
                             space="display_px", native_per_s=per_s, clock_origin=origin, messages=msgs,
                             display_px=display, sample_rate=rate, media_rect=media_rect))
    if not out:
        raise ImportFormatError(f"{path}: no eye-tracker samples (is 'Sensor' = 'Eye Tracker' on any row?)")
    return out
