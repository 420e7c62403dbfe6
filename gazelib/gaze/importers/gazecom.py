"""GazeCom (Dorr et al. 2010, "Variability of eye movements when viewing dynamic natural scenes") ``.coord`` files.

Format, as published with the data set and read by its authors' own loader
(``load_DSF_coord_as_arff_object`` in github.com/MikhailStartsev/sp_tool, data_loaders.py, whose
test file ``test_data/dsf_coord_data_example.coord`` is a real GazeCom recording header):

- lines starting with ``#`` are comments;
- ``gaze <width> <height>``: the video (and display) size in pixels;
- ``geometry distance <m> width <m> height <m>``: viewing distance and the physical size of the
  picture, in metres (property / value pairs);
- every other line is a sample ``<time> <x> <y> <confidence>`` (more columns are ignored): time in
  microseconds from the start of the clip, x / y in video pixels (top-left origin), confidence
  (1 for a tracked sample; this reader takes a sample as valid when confidence >
  ``reader.min_confidence``, default 0).

One file per viewer and clip, named ``<viewer>_<clip>.coord`` (``AAF_beach.coord``); the viewer id
is the part before the first underscore, the video id the rest (``reader.video_id`` overrides).
The clip filled the display, so the geometry is ``rect: stretch`` over a ``width x height``
display, and the ``geometry`` line gives degrees of visual angle in ``corpus.yaml``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import ImportFormatError, Message, Recording

log = logging.getLogger(__name__)

START = "DATASET_VIDEO_START"
DEFAULT_SYNC = {"start": rf"^{START} (?P<video>\S+)$"}
DEFAULT_GEOMETRY = {"rect": "stretch"}
DEFAULTS = {"min_confidence": 0.0, "video_id": None}


def coord_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.rglob("*.coord"))
        if not files:
            raise ImportFormatError(f"{path}: no .coord file under this folder")
        return files
    return [path]


def parse_coord(path: Path) -> dict:
    """Header (size, geometry) and samples [N, 4] of one ``.coord`` file; errors name the line."""
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    size, geometry, rows = None, {}, []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split()
            if parts[0] == "gaze":
                if len(parts) != 3:
                    raise ImportFormatError(f"{path}:{n}: expected 'gaze <width> <height>', got {s[:80]!r}")
                try:
                    size = (int(float(parts[1])), int(float(parts[2])))
                except ValueError:
                    raise ImportFormatError(f"{path}:{n}: the gaze line's size is not a number: {s[:80]!r}") from None
                continue
            if parts[0] == "geometry":
                if len(parts) % 2 != 1:
                    raise ImportFormatError(f"{path}:{n}: expected 'geometry <name> <metres> ...' pairs, "
                                            f"got {s[:80]!r}")
                try:
                    geometry.update({k: float(v) for k, v in zip(parts[1::2], parts[2::2])})
                except ValueError:
                    raise ImportFormatError(f"{path}:{n}: a geometry value is not a number: {s[:80]!r}") from None
                continue
            if len(parts) < 4:
                raise ImportFormatError(f"{path}:{n}: a sample needs <time> <x> <y> <confidence>, got {s[:80]!r}")
            try:
                vals = [float(v) for v in parts[:4]]
            except ValueError:
                raise ImportFormatError(f"{path}:{n}: not a number in {s[:80]!r} (unknown header line?)") from None
            if rows and vals[0] < rows[-1][0]:
                raise ImportFormatError(f"{path}:{n}: time {parts[0]} goes back (previous {rows[-1][0]:.0f} us)")
            rows.append(vals)
    if size is None:
        raise ImportFormatError(f"{path}: no 'gaze <width> <height>' line (is this a GazeCom .coord file?)")
    if not rows:
        raise ImportFormatError(f"{path}: no samples")
    return {"size": size, "geometry": geometry, "samples": np.asarray(rows, np.float64)}


def read(*, path: Path, cfg: dict) -> list[Recording]:
    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    out = []
    for f in coord_files(path):
        parsed = parse_coord(f)
        a = parsed["samples"]
        stem = f.stem
        viewer, _, clip = stem.partition("_")
        video = opts["video_id"] or clip or f.parent.name
        ok = a[:, 3] > float(opts["min_confidence"])
        x = np.where(ok, a[:, 1], np.nan)
        y = np.where(ok, a[:, 2], np.nan)
        geo = parsed["geometry"]
        screen_cm = (geo["width"] * 100, geo["height"] * 100) if {"width", "height"} <= set(geo) else None
        distance_cm = geo["distance"] * 100 if "distance" in geo else None
        log.info("%s: %d samples, viewer %s, video %s, %dx%d px, %.1f%% valid", f, len(a), viewer, video,
                 *parsed["size"], 100 * ok.mean())
        out.append(Recording(path=f, recording_id=stem, viewer_id=viewer, t=a[:, 0] / 1e6, eyes={"both": (x, y)},
                             space="display_px", native_per_s=1e6, clock_origin=0.0,
                             messages=[Message(t=0.0, text=f"{START} {video}")], display_px=parsed["size"],
                             screen_cm=screen_cm, distance_cm=distance_cm))
    return out
