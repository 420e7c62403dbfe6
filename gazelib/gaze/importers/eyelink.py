"""EyeLink ASC (from SR Research's edf2asc), read with ``pymovements.gaze.from_asc``.

pymovements parses samples (monocular or binocular, ``.`` = missing), ``MSG`` lines, blink
events and the recording config. This module adds what a video study needs on top:

- the display size from ``DISPLAY_COORDS`` (else ``GAZE_COORDS``, as pymovements reads it);
- the message time offset convention of SR Research's Experiment Builder / Data Viewer:
  ``MSG 1000 -8 VIDEO_START clip1`` happened at 1000 - (-8) = 1008 ms
  (``reader.message_offsets: false`` turns this off);
- samples inside an ``SBLINK``/``EBLINK`` interval are missing even when the tracker wrote a
  position (``reader.blinks_invalid``, default true), as SR Research advises.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import (
    ImportFormatError, Message, Recording, library_warnings_to_log, seconds_from_native, viewer_from_path,
)

log = logging.getLogger(__name__)

MSG_RE = re.compile(r"MSG\s+(\d+[.]?\d*)\s+(.*)")
OFFSET_RE = re.compile(r"^(-?\d+)\s+(\S.*)$")
DISPLAY_RE = re.compile(r"DISPLAY_COORDS\s*=?\s*(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)")
DEFAULTS = {"blinks_invalid": True, "message_offsets": True, "encoding": None}


def _encoding(path: Path, forced: str | None) -> str:
    if forced:
        return forced
    try:
        path.read_bytes().decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _message_lines(path: Path, encoding: str) -> list[int]:
    """1-based line numbers of the MSG lines, in file order (to name lines in errors)."""
    out = []
    with path.open(encoding=encoding, errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if line.startswith("MSG") and MSG_RE.match(line):
                out.append(n)
    return out


def read(*, path: Path, cfg: dict) -> list[Recording]:
    """One :class:`Recording` per ASC file (all START..END blocks of the session)."""
    from pymovements.gaze.io import from_asc

    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    enc = _encoding(path, opts["encoding"])
    try:
        with library_warnings_to_log(path):
            gaze = from_asc(path, messages=True, events=bool(opts["blinks_invalid"]), encoding=enc)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported with the file name
        raise ImportFormatError(f"{path}: cannot be read as an EyeLink ASC file: "
                                f"{' '.join(str(exc).split())[:300]}") from exc
    samples = gaze.samples
    if samples.height == 0:
        raise ImportFormatError(f"{path}: no gaze samples (export the EDF with plain `edf2asc FILE.edf`, "
                                "not with -e / -ns)")
    if "pixel" not in samples.columns:
        raise ImportFormatError(f"{path}: no gaze position columns in the samples ({samples.columns})")
    native = samples["time"].to_numpy()
    t, origin = seconds_from_native(native, 1000.0)
    n_comp = int(samples["pixel"].list.len().max())
    comp = [np.array(samples["pixel"].list.get(i).cast(float).fill_null(np.nan).to_numpy(), dtype=float)
            for i in range(n_comp)]
    tracker = gaze.experiment.eyetracker
    if n_comp == 4:
        eyes = {"left": (comp[0], comp[1]), "right": (comp[2], comp[3])}
    elif n_comp == 2:
        eye = "right" if (tracker.right and not tracker.left) else "left"
        eyes = {eye: (comp[0], comp[1])}
    else:
        raise ImportFormatError(f"{path}: samples have {n_comp} position components; expected 2 or 4")

    if opts["blinks_invalid"] and gaze.events is not None:
        ev = gaze.events.frame
        blinks = ev.filter(ev["name"] == "blink_eyelink") if "name" in ev.columns else ev.clear()
        for eye_name, onset, offset in zip(blinks["eye"].to_list(), blinks["onset"].to_list(),
                                           blinks["offset"].to_list()):
            if eye_name not in eyes:
                continue
            inside = (native >= onset) & (native <= offset)
            x, y = eyes[eye_name]
            x[inside] = np.nan
            y[inside] = np.nan
        if blinks.height:
            log.info("%s: %d blinks marked missing", path, blinks.height)

    messages, display = [], None
    mdf = gaze.messages
    lines = _message_lines(path, enc)
    if mdf is not None and mdf.height:
        line_of = lines if len(lines) == mdf.height else [0] * mdf.height
        for (mt, text), line in zip(mdf.select("time", "content").iter_rows(), line_of):
            text = text.rstrip()
            m_disp = DISPLAY_RE.search(text)
            if m_disp and display is None:
                left, top, right, bottom = (float(v) for v in m_disp.groups())
                display = (int(round(right - left + 1)), int(round(bottom - top + 1)))
            if opts["message_offsets"]:
                m_off = OFFSET_RE.match(text)
                if m_off:
                    mt = float(mt) - float(m_off.group(1))
                    text = m_off.group(2)
            messages.append(Message(t=(float(mt) - origin) / 1000.0, text=text, line=line))
    if display is None and gaze.experiment.screen.width_px:
        display = (int(gaze.experiment.screen.width_px), int(gaze.experiment.screen.height_px))
    rate = tracker.sampling_rate
    log.info("%s: %d samples at %s Hz, eyes %s, display %s, %d messages", path, len(t), rate,
             sorted(eyes), display, len(messages))
    return [Recording(path=path, recording_id=path.stem,
                      viewer_id=viewer_from_path(path=path, rule=cfg.get("viewer_id") or "stem"),
                      t=t, eyes=eyes, space="display_px", native_per_s=1000.0, clock_origin=origin,
                      messages=messages, display_px=display, sample_rate=float(rate) if rate else None)]
