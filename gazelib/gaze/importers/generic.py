"""Any CSV/TSV of gaze samples, with a column map and units, read with ``pymovements.gaze.from_csv``.

``reader.columns`` maps roles to the file's column names: ``t`` (required), ``x``/``y`` (one
combined gaze point) and/or ``x_left``/``y_left``/``x_right``/``y_right``, optionally ``valid``
(or ``valid_left``/``valid_right``) and ``message`` (a text column; a non-empty cell is a
message at that row's time). ``reader.time_unit`` is s, ms, us or ns; ``reader.coords`` is
``px`` (display pixels, top-left origin), ``norm`` (display-normalised, top-left),
``norm_bottom_left`` (display-normalised, y up), ``scene_px`` (scene camera pixels, needs
``scene:``) or ``video`` (already video-normalised: no geometry is applied).
``reader.messages`` may name a separate CSV with ``time`` and ``text`` columns (same clock/unit).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import (
    ImportFormatError, Message, Recording, numeric_column, read_table, require_column, seconds_from_native,
    validity_column, viewer_from_path, guess_separator,
)

log = logging.getLogger(__name__)

UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
COORDS = {"px": "display_px", "norm": "display_norm", "norm_bottom_left": "display_norm",
          "scene_px": "scene_px", "video": "video_norm"}
DEFAULTS = {"columns": {"t": "t", "x": "x", "y": "y"}, "time_unit": "s", "coords": "px",
            "separator": "auto", "decimal": ".", "valid_values": None, "messages": None}


def read(*, path: Path, cfg: dict) -> list[Recording]:
    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    cmap = dict(opts["columns"] or {})
    unit = opts["time_unit"]
    if unit not in UNITS:
        raise ImportFormatError(f"import config: reader.time_unit must be one of {list(UNITS)}, got {unit!r}")
    if opts["coords"] not in COORDS:
        raise ImportFormatError(f"import config: reader.coords must be one of {list(COORDS)}, got {opts['coords']!r}")
    if "t" not in cmap:
        raise ImportFormatError("import config: reader.columns must name the time column (t: ...)")
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    sep = opts["separator"]
    sep = guess_separator(path) if sep == "auto" else ("\t" if sep in ("\\t", "tab") else sep)
    df = read_table(path=path, separator=sep)
    cols = list(df.columns)
    dec = opts["decimal"]

    def col(role: str) -> str:
        return require_column(cols, path, f"{role} ({cmap[role]!r} in reader.columns)", cmap[role])

    native = numeric_column(df=df, column=col("t"), path=path, decimal=dec, integer=unit == "ns")
    eyes = {}
    for eye, (rx, ry, rv) in {"both": ("x", "y", "valid"), "left": ("x_left", "y_left", "valid_left"),
                              "right": ("x_right", "y_right", "valid_right")}.items():
        if rx not in cmap and ry not in cmap:
            continue
        if rx not in cmap or ry not in cmap:
            raise ImportFormatError(f"import config: reader.columns names {rx if rx in cmap else ry} "
                                    f"but not {ry if rx in cmap else rx}")
        x = numeric_column(df=df, column=col(rx), path=path, decimal=dec)
        y = numeric_column(df=df, column=col(ry), path=path, decimal=dec)
        for vrole in (rv, "valid") if eye != "both" else (rv,):
            if vrole in cmap:
                ok = validity_column(df=df, column=col(vrole), path=path, valid_values=opts["valid_values"])
                x[~ok] = np.nan
                y[~ok] = np.nan
                break
        if opts["coords"] == "norm_bottom_left":
            y = 1.0 - y
        eyes[eye] = (x, y)
    if not eyes:
        raise ImportFormatError("import config: reader.columns names no gaze columns (x/y or x_left/y_left ...)")
    order = np.argsort(native, kind="stable")
    if np.any(np.diff(native[order]) == 0):
        i = int(order[1:][np.diff(native[order]) == 0][0])
        raise ImportFormatError(f"{path}:{i + 2}: time {native[i]} repeats")
    if not np.array_equal(order, np.arange(len(order))):
        log.warning("%s: rows are not in time order; sorted", path)
    t, origin = seconds_from_native(native[order], UNITS[unit])
    eyes = {k: (x[order], y[order]) for k, (x, y) in eyes.items()}
    msgs = []
    if "message" in cmap:
        texts = df[col("message")].fill_null("").to_list()
        msgs += [Message(t=(float(native[i]) - origin) / UNITS[unit], text=str(texts[i]).strip(), line=int(i) + 2)
                 for i in range(len(texts)) if str(texts[i]).strip()]
    if opts["messages"]:
        mpath = Path(opts["messages"])
        mdf = read_table(path=mpath, separator=guess_separator(mpath))
        mt = numeric_column(df=mdf, column=require_column(list(mdf.columns), mpath, "message time", "time"),
                            path=mpath, integer=unit == "ns")
        mtext = mdf[require_column(list(mdf.columns), mpath, "message text", "text")].fill_null("").to_list()
        msgs += [Message(t=(float(v) - origin) / UNITS[unit], text=str(s).strip(), line=i + 2, file=str(mpath))
                 for i, (v, s) in enumerate(zip(mt, mtext))]
    dt = np.diff(t)
    rate = float(1.0 / np.median(dt)) if dt.size else None
    log.info("%s: %d samples, eyes %s, %d messages", path, len(t), sorted(eyes), len(msgs))
    return [Recording(path=path, recording_id=path.stem,
                      viewer_id=viewer_from_path(path=path, rule=cfg.get("viewer_id") or "stem"),
                      t=t, eyes=eyes, space=COORDS[opts["coords"]], native_per_s=UNITS[unit], clock_origin=origin,
                      messages=msgs, sample_rate=rate)]
