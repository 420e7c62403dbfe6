"""Pupil Labs Core (Pupil Player "Raw Data Exporter"), read with ``pymovements.gaze.from_csv``.

Two files are understood (column names from Pupil Labs' export documentation):

- ``gaze_positions.csv``: ``gaze_timestamp`` (s, Pupil time), ``confidence``, ``norm_pos_x``,
  ``norm_pos_y`` normalised to the *scene camera* image with the origin at the bottom left.
  These are scene-camera coordinates: they need a screen mapping (``scene:`` in the config,
  with ``scene.camera_px``, default 1280x720, the world camera's resolution).
- ``gaze_positions_on_surface_<name>.csv`` (Surface Tracker export, the display defined as a
  surface): ``gaze_timestamp``, ``x_norm``, ``y_norm`` (surface-normalised, origin bottom left),
  ``on_surf``, ``confidence``. These are display coordinates already.

Samples with ``confidence < reader.min_confidence`` (default 0.6, Pupil Labs' own threshold)
are missing. ``annotations.csv`` (``timestamp``, ``label``) beside the file, or
``reader.annotations``, gives the messages for clock sync.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import (
    ImportFormatError, Message, Recording, find_column, numeric_column, read_table, require_column,
    seconds_from_native, viewer_from_path,
)

log = logging.getLogger(__name__)

DEFAULTS = {"min_confidence": 0.6, "annotations": None, "surface": None}


def _resolve(path: Path, surface: str | None) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such file or folder")
    names = [f"gaze_positions_on_surface_{surface}.csv"] if surface else ["gaze_positions.csv"]
    for folder in (path, path / "surfaces"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise ImportFormatError(f"{path}: no {names[0]} in this folder (or its surfaces/ folder)")


def recording_folder_name(path: Path) -> str:
    """``rec/exports/000/gaze_positions.csv`` -> ``rec``; otherwise the file's folder."""
    parts = path.parent.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "exports" and i > 0:
            return parts[i - 1]
    return path.parent.name


def _annotations(path: Path, given: str | None, origin: float) -> list[Message]:
    ann = Path(given) if given else None
    if ann is None:
        for folder in (path.parent, path.parent.parent):
            if (folder / "annotations.csv").is_file():
                ann = folder / "annotations.csv"
                break
    if ann is None:
        return []
    df = read_table(path=ann, separator=",")
    cols = list(df.columns)
    tcol = require_column(cols, ann, "annotation time", "timestamp")
    lcol = require_column(cols, ann, "annotation label", "label")
    ts = numeric_column(df=df, column=tcol, path=ann)
    labels = df[lcol].fill_null("").to_list()
    log.info("%s: %d annotations", ann, len(labels))
    return [Message(t=float(tv) - origin, text=str(lab).strip(), line=i + 2, file=str(ann))
            for i, (tv, lab) in enumerate(zip(ts, labels)) if np.isfinite(tv)]


def read(*, path: Path, cfg: dict) -> list[Recording]:
    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    path = _resolve(path, opts["surface"])
    df = read_table(path=path, separator=",")
    cols = list(df.columns)
    surface = find_column(cols, "x_norm") is not None
    tcol = require_column(cols, path, "gaze time", "gaze_timestamp", "timestamp", "world_timestamp")
    ccol = find_column(cols, "confidence")
    if surface:
        xcol = require_column(cols, path, "surface x", "x_norm")
        ycol = require_column(cols, path, "surface y", "y_norm")
    else:
        xcol = require_column(cols, path, "gaze x", "norm_pos_x")
        ycol = require_column(cols, path, "gaze y", "norm_pos_y")
    t_raw = numeric_column(df=df, column=tcol, path=path)
    x = numeric_column(df=df, column=xcol, path=path)
    y = numeric_column(df=df, column=ycol, path=path)
    conf = numeric_column(df=df, column=ccol, path=path) if ccol else np.ones(len(x))
    keep = np.isfinite(t_raw)
    # sort by time; of samples sharing a timestamp keep the most confident one
    order = np.lexsort((-np.nan_to_num(conf, nan=-1.0), t_raw))
    order = order[keep[order]]
    first = np.r_[True, np.diff(t_raw[order]) > 0]
    dropped = int((~first).sum())
    order = order[first]
    if dropped:
        log.info("%s: %d samples share a timestamp with a more confident one; dropped", path, dropped)
    if order.size == 0:
        raise ImportFormatError(f"{path}: no samples with a time")
    x, y, conf = x[order].copy(), y[order].copy(), conf[order]
    bad = ~(conf >= float(opts["min_confidence"]))
    x[bad] = np.nan
    y[bad] = np.nan
    y = 1.0 - y                                   # origin bottom-left -> top-left
    if surface:
        space = "display_norm"
    else:
        cam = (cfg.get("scene") or {}).get("camera_px", [1280, 720])
        x, y = x * float(cam[0]), y * float(cam[1])
        space = "scene_px"
    t, origin = seconds_from_native(t_raw[order], 1.0)
    rule = cfg.get("viewer_id") or "recording"
    viewer = recording_folder_name(path) if rule == "recording" else viewer_from_path(path=path, rule=rule)
    msgs = _annotations(path, opts["annotations"], origin)
    dt = np.diff(t)
    rate = float(1.0 / np.median(dt)) if dt.size else None
    log.info("%s: %d samples (%s), %.1f%% below confidence %.2f, %d annotations", path, len(t),
             "surface" if surface else "scene camera", 100.0 * bad.mean(), float(opts["min_confidence"]), len(msgs))
    return [Recording(path=path, recording_id=recording_folder_name(path), viewer_id=viewer, t=t,
                      eyes={"both": (x, y)}, space=space, native_per_s=1.0, clock_origin=origin,
                      messages=msgs, sample_rate=rate)]
