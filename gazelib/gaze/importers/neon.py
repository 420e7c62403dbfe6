"""Pupil Labs Neon ``gaze.csv`` (Pupil Cloud "Timeseries Data" or Neon Player), read with
``pymovements.gaze.from_csv``.

Columns (Pupil Labs' recording-format documentation): ``recording id``, ``timestamp [ns]``
(UTC ns), ``gaze x [px]`` / ``gaze y [px]`` in *scene camera* pixels (1600x1200), ``worn``
(0/1), ``blink id`` (set during blinks). Scene-camera gaze needs a screen mapping (``scene:``
in the config: a homography, the display's corners in the scene image, or Marker Mapper's
``surface_positions.csv`` with per-frame corners).

A Marker Mapper enrichment's ``gaze.csv`` (``gaze position on surface x/y [normalized]``, origin
top left, ``gaze detected on surface``) is display-normalised already and needs no mapping.

Messages come from ``events.csv`` (``timestamp [ns]``, ``name``) beside ``gaze.csv`` or
``reader.events``. Samples not worn or inside a blink are missing.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import (
    ImportFormatError, Message, Recording, find_column, numeric_column, read_table, require_column,
    viewer_from_path,
)

log = logging.getLogger(__name__)

DEFAULTS = {"events": None}
SURF_X = "gaze position on surface x [normalized]"
SURF_Y = "gaze position on surface y [normalized]"


def _resolve(path: Path) -> Path:
    if path.is_dir():
        if (path / "gaze.csv").is_file():
            return path / "gaze.csv"
        raise ImportFormatError(f"{path}: no gaze.csv in this folder")
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file or folder")
    return path


def _events(path: Path, given: str | None) -> tuple[Path | None, dict[str, list[tuple[int, str, int]]]]:
    ev = Path(given) if given else (path.parent / "events.csv")
    if not ev.is_file():
        if given:
            raise ImportFormatError(f"{ev}: no such events file")
        return None, {}
    df = read_table(path=ev, separator=",")
    cols = list(df.columns)
    tcol = require_column(cols, ev, "event time", "timestamp [ns]")
    ncol = require_column(cols, ev, "event name", "name")
    rcol = find_column(cols, "recording id")
    ts = numeric_column(df=df, column=tcol, path=ev, integer=True)
    names = df[ncol].fill_null("").to_list()
    recs = df[rcol].fill_null("").to_list() if rcol else [""] * len(names)
    out: dict[str, list] = {}
    for i, (tv, name, rid) in enumerate(zip(ts, names, recs)):
        out.setdefault(rid, []).append((int(tv), str(name).strip(), i + 2))
    return ev, out


def _wearer(path: Path) -> str | None:
    info = path.parent / "info.json"
    if info.is_file():
        try:
            return json.loads(info.read_text()).get("wearer_name")
        except (json.JSONDecodeError, OSError):
            return None
    return None


def read(*, path: Path, cfg: dict) -> list[Recording]:
    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    path = _resolve(path)
    df = read_table(path=path, separator=",")
    cols = list(df.columns)
    tcol = require_column(cols, path, "time", "timestamp [ns]")
    surface = find_column(cols, SURF_X) is not None
    if surface:
        xcol, ycol = require_column(cols, path, "surface x", SURF_X), require_column(cols, path, "surface y", SURF_Y)
    else:
        xcol = require_column(cols, path, "gaze x", "gaze x [px]")
        ycol = require_column(cols, path, "gaze y", "gaze y [px]")
    native = numeric_column(df=df, column=tcol, path=path, integer=True)
    x_all = numeric_column(df=df, column=xcol, path=path)
    y_all = numeric_column(df=df, column=ycol, path=path)
    bad = np.zeros(len(native), dtype=bool)
    worn = find_column(cols, "worn")
    if worn:
        w = numeric_column(df=df, column=worn, path=path)
        bad |= w == 0
    blink = find_column(cols, "blink id")
    if blink:
        bad |= df[blink].fill_null("").str.strip_chars().to_numpy() != ""
    x_all[bad] = np.nan
    y_all[bad] = np.nan
    rcol = find_column(cols, "recording id")
    rids = df[rcol].fill_null("").to_list() if rcol else [""] * len(native)
    ev_path, events = _events(path, opts["events"])
    groups = sorted(set(rids))
    rule = cfg.get("viewer_id") or "recording"
    out = []
    rid_arr = np.array(rids, dtype=object)
    for rid in groups:
        idx = np.flatnonzero(rid_arr == rid)
        idx = idx[np.argsort(native[idx], kind="stable")]
        ns = native[idx]
        if np.any(np.diff(ns) <= 0):
            i = int(idx[1:][np.diff(ns) <= 0][0])
            raise ImportFormatError(f"{path}:{i + 2}: timestamp [ns] repeats within recording {rid!r}")
        origin = int(ns[0])
        t = (ns - origin).astype(np.float64) / 1e9
        msgs = [Message(t=(tv - origin) / 1e9, text=name, line=line, file=str(ev_path))
                for tv, name, line in events.get(rid, events.get("", []) if len(groups) == 1 else [])]
        if rule == "recording":
            viewer = path.parent.name if len(groups) == 1 else (rid or path.parent.name)
        elif rule == "wearer":
            viewer = _wearer(path) or path.parent.name
        else:
            viewer = viewer_from_path(path=path, rule=rule)
        dt = np.diff(t)
        rate = float(1.0 / np.median(dt)) if dt.size else None
        log.info("%s: recording %r: %d samples (%s), %.1f%% not worn or blinking, %d events", path, rid or viewer,
                 len(t), "surface" if surface else "scene camera", 100.0 * bad[idx].mean(), len(msgs))
        out.append(Recording(path=path, recording_id=rid or path.parent.name, viewer_id=viewer, t=t,
                             eyes={"both": (x_all[idx].copy(), y_all[idx].copy())},
                             space="display_norm" if surface else "scene_px", native_per_s=1e9,
                             clock_origin=float(origin), messages=msgs, sample_rate=rate))
    return out
