"""Clock sync: where each video starts (and ends) on a recording's clock.

Three methods (``sync.method``):

- ``message``: a regex (``sync.start``) searched in every message/event; a named group
  ``video`` (or the first group) captures the video id, otherwise ``sync.video_id`` names it.
  The video ends at the first later message matching ``sync.end`` (if its ``video`` group is
  present it must name the same video), else after the video's duration, else at the next
  start, else at the end of the recording.
- ``table``: a CSV with columns ``recording, video_id, t0`` (optional ``t1``), times as written
  in the recording file (``sync.table_unit: native``) or in s/ms/us/ns from its first sample.
- ``recording``: the whole recording is one video (``sync.video_id``), starting at its first
  sample (plus ``sync.t0_s``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gazelib.core.media import VIDEO_EXTS
from gazelib.gaze.importers.base import ImportFormatError, Recording, read_text_lines

log = logging.getLogger(__name__)

METHODS = ("message", "table", "recording")
TABLE_UNITS = {"native": None, "s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


@dataclass
class Segment:
    """One video shown during one recording: ``[t0, t1]`` on the recording's clock (s)."""

    video_id: str
    t0: float
    t1: float
    source: str          # what fixed t0 (file:line and message, or table row)


def clean_video_id(raw: str) -> str:
    """A captured name -> video id: strip folders and a video extension (``clips/a.mp4`` -> ``a``)."""
    name = raw.strip().strip('"').strip("'").replace("\\", "/").rsplit("/", 1)[-1]
    for ext in VIDEO_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _compile(pattern: str, what: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ImportFormatError(f"import config: sync.{what} {pattern!r} is not a valid regex: {exc}") from exc


def _video_of(match: re.Match, fallback: str | None) -> str | None:
    if "video" in match.re.groupindex and match.group("video") is not None:
        return clean_video_id(match.group("video"))
    if match.re.groups and match.group(1) is not None:
        return clean_video_id(match.group(1))
    return fallback


def segments_from_messages(*, rec: Recording, sync: dict, durations: dict[str, float]) -> list[Segment]:
    start_pat = sync.get("start")
    if not start_pat:
        raise ImportFormatError(f"{rec.path}: sync.method is 'message' but no sync.start regex is set")
    start_rx = _compile(start_pat, "start")
    end_rx = _compile(sync["end"], "end") if sync.get("end") else None
    fallback = sync.get("video_id")
    msgs = sorted(rec.messages, key=lambda m: m.t)
    starts = []
    for i, m in enumerate(msgs):
        match = start_rx.search(m.text)
        if not match:
            continue
        vid = _video_of(match, fallback)
        if vid is None:
            raise ImportFormatError(f"{m.file or rec.path}:{m.line or '?'}: start message {m.text!r} captures no "
                                    "video id: add a (?P<video>...) group to sync.start or set sync.video_id")
        starts.append((i, m, vid))
    if not starts:
        raise ImportFormatError(f"{rec.path}: no message matches sync.start {start_pat!r} "
                                f"({len(msgs)} messages; first: {[m.text for m in msgs[:5]]})")
    t_end = float(rec.t[-1]) if len(rec.t) else 0.0
    out = []
    for k, (i, m, vid) in enumerate(starts):
        next_start = starts[k + 1][1].t if k + 1 < len(starts) else None
        t1 = None
        how = ""
        if end_rx is not None:
            for m2 in msgs[i + 1:]:
                if next_start is not None and m2.t > next_start:
                    break
                match = end_rx.search(m2.text)
                if match and _video_of(match, vid) == vid:
                    t1, how = m2.t, f"end message {m2.text!r}"
                    break
        if t1 is None:
            cands = [(t_end, "end of recording")]
            if vid in durations:
                cands.append((m.t + float(durations[vid]), "video duration"))
            if next_start is not None:
                cands.append((next_start, "next start message"))
            t1, how = min(cands)
            if end_rx is not None:
                log.warning("%s: no end message for %s after t=%.3f s; cut at the %s", rec.path, vid, m.t, how)
        out.append(Segment(video_id=vid, t0=m.t, t1=t1,
                           source=f"{Path(m.file).name if m.file else rec.path.name}:{m.line or '?'}: "
                                  f"{m.text!r} ({how})"))
    return out


def _read_table(path: Path) -> list[dict]:
    lines, _ = read_text_lines(path)
    if not lines:
        raise ImportFormatError(f"{path}: the sync table is empty")
    sep = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    head = [h.strip() for h in lines[0].split(sep)]
    for col in ("recording", "video_id", "t0"):
        if col not in head:
            raise ImportFormatError(f"{path}:1: sync table has no column {col!r} (header: {head})")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(sep)]
        row: dict = dict(zip(head, cells))
        row["_line"] = n
        for col in ("t0", "t1"):
            if row.get(col, "") == "":
                row[col] = None
                continue
            try:
                row[col] = float(row[col])
            except ValueError:
                raise ImportFormatError(f"{path}:{n}: {col} {row[col]!r} is not a number") from None
        if row["t0"] is None:
            raise ImportFormatError(f"{path}:{n}: t0 is empty")
        rows.append(row)
    return rows


def load_sync_table(path: str | Path) -> list[dict]:
    """Rows of a sync table (``recording, video_id, t0[, t1]``), each with its ``_line``."""
    return _read_table(Path(path))


def segments_from_table(*, rec: Recording, sync: dict, durations: dict[str, float],
                        rows: list[dict] | None = None) -> list[Segment]:
    if not sync.get("table"):
        raise ImportFormatError(f"{rec.path}: sync.method is 'table' but no sync.table file is set")
    path = Path(sync["table"])
    table = rows if rows is not None else load_sync_table(path)
    unit = sync.get("table_unit", "native")
    if unit not in TABLE_UNITS:
        raise ImportFormatError(f"import config: sync.table_unit must be one of {list(TABLE_UNITS)}, got {unit!r}")
    names = {rec.recording_id, rec.path.name, rec.path.stem, rec.viewer_id}
    mine = [r for r in table if r["recording"] in names]
    if not mine:
        raise ImportFormatError(f"{path}: no row for recording {rec.recording_id!r} "
                                f"(file {rec.path.name}); rows name {sorted({r['recording'] for r in table})[:10]}")
    t_end = float(rec.t[-1]) if len(rec.t) else 0.0

    def conv(v: float) -> float:
        return rec.native_to_s(v) if unit == "native" else v / TABLE_UNITS[unit]

    out = []
    for r in mine:
        vid = clean_video_id(r["video_id"])
        t0 = conv(r["t0"])
        if r.get("t1") is not None:
            t1 = conv(r["t1"])
        elif vid in durations:
            t1 = t0 + float(durations[vid])
        else:
            t1 = t_end
        if t1 <= t0:
            raise ImportFormatError(f"{path}:{r['_line']}: t1 is not after t0 for {vid!r}")
        out.append(Segment(video_id=vid, t0=t0, t1=min(t1, t_end),
                           source=f"{path.name}:{r['_line']}"))
    return out


def find_segments(*, rec: Recording, sync: dict, durations: dict[str, float],
                  table_rows: list[dict] | None = None) -> list[Segment]:
    """The videos shown during ``rec`` and when, by ``sync.method``."""
    method = sync.get("method", "message")
    if method not in METHODS:
        raise ImportFormatError(f"import config: sync.method must be one of {METHODS}, got {method!r}")
    if method == "message":
        segs = segments_from_messages(rec=rec, sync=sync, durations=durations)
    elif method == "table":
        segs = segments_from_table(rec=rec, sync=sync, durations=durations, rows=table_rows)
    else:
        vid = sync.get("video_id")
        if not vid:
            raise ImportFormatError(f"{rec.path}: sync.method is 'recording' but sync.video_id is not set")
        t0 = float(sync.get("t0_s", 0.0))
        t1 = t0 + float(durations[vid]) if vid in durations else float(rec.t[-1])
        segs = [Segment(video_id=clean_video_id(vid), t0=t0, t1=t1, source=f"{rec.path.name}: whole recording")]
    for s in segs:
        if not np.isfinite(s.t0) or not np.isfinite(s.t1) or s.t1 <= s.t0:
            raise ImportFormatError(f"{rec.path}: video {s.video_id!r} has an empty interval "
                                    f"[{s.t0:.3f}, {s.t1:.3f}] s ({s.source})")
    return segs
