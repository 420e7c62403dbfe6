"""User AOI files: ``<corpus>/aoi/<video_id>.csv``, keyframes as Tobii Pro Lab exports them.

One row per keyframe, header required::

    aoi,t,x0,y0,x1,y1,polygon,visible
    logo,0.0,0.05,0.05,0.20,0.15,,1
    logo,4.0,0.30,0.05,0.45,0.15,,1        # moves linearly from 0 s to 4 s
    logo,6.0,,,,,,0                        # switched off at 6 s
    car,1.0,,,,,0.1 0.5;0.3 0.5;0.3 0.7,1   # a polygon: "x y" vertices separated by ';'

- ``aoi``: the AOI's name (``^[A-Za-z0-9][A-Za-z0-9._-]*$``; not ``speaker`` or ``face<k>``, the
  automatic AOIs' names).
- time: ``t`` (seconds from the video start) or ``frame`` (0-based frame index; needs the video's
  frame rate) - one of the two columns.
- shape: a box (``x0, y0, x1, y1``) or ``polygon`` (at least 3 vertices; every visible keyframe of
  an AOI has the same vertex count, so keyframes interpolate vertex by vertex; a box counts as 4).
  Coordinates normalised to the frame (origin top-left), like the gaze; ``coords: pixels`` in
  ``corpus.yaml`` is honoured by passing ``frame_wh``.
- ``visible`` (optional, default 1): 0 switches the AOI off from that keyframe on (no shape needed).
- ``interpolate`` (optional, per AOI, default 1): 0 holds each keyframe's shape until the next.

Errors name the file and the line (1-based, the header is line 1).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from gazelib.aoi.shapes import Aoi, box_verts
from gazelib.core.layout import ID_RE

RESERVED = re.compile(r"^(speaker|face\d+)$")


class AoiFileError(ValueError):
    pass


def read_user_aois(*, path: str | Path, fps: float | None = None, frame_wh: tuple[int, int] | None = None,
                   duration_s: float | None = None) -> list[Aoi]:
    path = Path(path)

    def fail(line: int, msg: str):
        raise AoiFileError(f"{path}, line {line}: {msg}")

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AoiFileError(f"{path}: cannot be read: {exc}") from exc
    reader = csv.reader(line for line in text.splitlines())
    header = next(reader, None)
    if not header:
        fail(1, "empty file; expected a header with aoi, t (or frame) and x0,y0,x1,y1 and/or polygon")
    header = [h.strip().lower() for h in header]
    cols = {h: i for i, h in enumerate(header)}
    if "aoi" not in cols:
        fail(1, f"no 'aoi' column (header: {','.join(header)})")
    if ("t" in cols) == ("frame" in cols):
        fail(1, "exactly one of the columns 't' (seconds) and 'frame' is needed")
    if "frame" in cols and not fps:
        fail(1, "'frame' times need the video's frame rate, which is unknown here; use 't' in seconds")
    has_box = {"x0", "y0", "x1", "y1"} <= set(cols)
    if not has_box and "polygon" not in cols:
        fail(1, "no shape columns: give x0,y0,x1,y1 and/or polygon")
    unknown = set(cols) - {"aoi", "t", "frame", "x0", "y0", "x1", "y1", "polygon", "visible", "interpolate"}
    if unknown:
        fail(1, f"unknown column(s) {sorted(unknown)}")
    sx, sy = (1.0 / frame_wh[0], 1.0 / frame_wh[1]) if frame_wh else (1.0, 1.0)
    keyframes: dict[str, list] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) > len(header):
            fail(lineno, f"{len(row)} fields, the header has {len(header)}")
        row = row + [""] * (len(header) - len(row))
        get = lambda c: row[cols[c]].strip() if c in cols else ""  # noqa: E731
        name = get("aoi")
        if not ID_RE.match(name):
            fail(lineno, f"AOI name {name!r} must match {ID_RE.pattern}")
        if RESERVED.match(name):
            fail(lineno, f"AOI name {name!r} is reserved for the automatic AOIs (speaker, face<k>)")

        def num(c: str) -> float:
            v = get(c)
            try:
                x = float(v)
            except ValueError:
                fail(lineno, f"column {c!r}: {v!r} is not a number")
            if not np.isfinite(x):
                fail(lineno, f"column {c!r}: {v!r} is not finite")
            return x

        t = num("t") if "t" in cols else num("frame") / fps
        if t < 0 or (duration_s is not None and t > duration_s + 1.0):
            fail(lineno, f"time {t:.3f} s is outside the video (0 .. {duration_s} s)")
        vis_s = get("visible") or "1"
        if vis_s not in ("0", "1"):
            fail(lineno, f"visible must be 0 or 1, got {vis_s!r}")
        interp_s = get("interpolate") or "1"
        if interp_s not in ("0", "1"):
            fail(lineno, f"interpolate must be 0 or 1, got {interp_s!r}")
        verts, is_box = None, True
        poly = get("polygon")
        box_given = has_box and any(get(c) for c in ("x0", "y0", "x1", "y1"))
        if vis_s == "1":
            if poly and box_given:
                fail(lineno, "give a box or a polygon, not both")
            if poly:
                try:
                    verts = np.array([[float(v) for v in p.split()] for p in poly.split(";") if p.strip()])
                except ValueError:
                    fail(lineno, f"polygon {poly!r}: vertices must be 'x y' pairs separated by ';'")
                if verts.ndim != 2 or verts.shape[1] != 2 or len(verts) < 3:
                    fail(lineno, f"polygon {poly!r}: needs at least 3 'x y' vertices separated by ';'")
                verts = verts * [sx, sy]
                is_box = False
            elif box_given:
                x0, y0, x1, y1 = (num(c) for c in ("x0", "y0", "x1", "y1"))
                if x1 <= x0 or y1 <= y0:
                    fail(lineno, f"box ({x0}, {y0}, {x1}, {y1}) needs x0 < x1 and y0 < y1")
                verts = box_verts([x0 * sx, y0 * sy, x1 * sx, y1 * sy])[0]
            else:
                fail(lineno, "a visible keyframe needs a box (x0,y0,x1,y1) or a polygon")
            if np.any(verts < -0.5) or np.any(verts > 1.5):
                fail(lineno, "coordinates far outside [0, 1]: normalised coordinates expected "
                             "(pixels need coords: pixels in corpus.yaml)")
        keyframes.setdefault(name, []).append((lineno, t, vis_s == "1", verts, is_box, interp_s == "1"))
    if not keyframes:
        fail(2, "no keyframes")
    out = []
    for name, kfs in keyframes.items():
        kfs.sort(key=lambda k: k[1])
        for a, b in zip(kfs, kfs[1:]):
            if b[1] == a[1]:
                fail(b[0], f"AOI {name!r} has two keyframes at t = {b[1]} (line {a[0]} too)")
        shapes = [k for k in kfs if k[2]]
        if not shapes:
            fail(kfs[0][0], f"AOI {name!r} is never visible")
        if len({k[4] for k in shapes}) > 1 or len({len(k[3]) for k in shapes}) > 1:
            first = shapes[0]
            odd = next(k for k in shapes if k[4] != first[4] or len(k[3]) != len(first[3]))
            fail(odd[0], f"AOI {name!r}: every visible keyframe needs the same shape type and vertex count "
                         f"(line {first[0]}: {len(first[3])} vertices, here {len(odd[3])})")
        if len({k[5] for k in kfs}) > 1:
            fail(kfs[0][0], f"AOI {name!r}: interpolate differs between its keyframes")
        n_v = len(shapes[0][3])
        verts = np.stack([k[3] if k[2] else (shapes[0][3] * 0) for k in kfs]).reshape(len(kfs), n_v, 2)
        # an off keyframe keeps the previous shape (unused: the AOI is absent there)
        for i, k in enumerate(kfs):
            if not k[2] and i > 0:
                verts[i] = verts[i - 1]
        vis = np.array([k[2] for k in kfs])
        seg = np.cumsum(np.r_[True, vis[1:] & ~vis[:-1]]) - 1
        out.append(Aoi(name=name, kind="user", t=np.array([k[1] for k in kfs]), verts=verts, visible=vis,
                       is_box=shapes[0][4], interpolate=kfs[0][5], segment=seg))
    return out
