"""SMI BeGaze text export (iView X / RED / HiSpeed "Raw Data" export), read with
``pymovements.gaze.from_begaze``.

pymovements reads the samples (``Time`` in µs, ``L/R POR X/Y [px]``, blink samples from
``L/R Event Info`` or ``Info`` as missing) for one eye per call; a binocular file is read once
per eye. This module adds, from the ``##`` header and the ``MSG`` rows that pymovements does
not return:

- the display size (``## Calibration Area: W H``), screen size (``## Stimulus Dimension [mm]``)
  and viewing distance (``## Head Distance [mm]``), used when the config does not give them;
- the messages (``<time> MSG <trial> # Message: <text>``) for clock sync;
- ``reader.zero_is_missing`` (default true): iView writes 0, 0 when it lost the eye.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import (
    ImportFormatError, Message, Recording, library_warnings_to_log, read_text_lines, viewer_from_path,
)

log = logging.getLogger(__name__)

DEFAULTS = {"zero_is_missing": True, "encoding": None}
MSG_RE = re.compile(r"^(\d+)\tMSG\t[^\t]*\t#\s*Message:\s*(.*)$")
NUMS = re.compile(r"-?\d+(?:\.\d+)?")


def _header(lines: list[str], path: Path) -> dict:
    meta: dict = {}
    for n, line in enumerate(lines, start=1):
        if line.startswith("##"):
            key, _, val = line[2:].partition(":")
            key = key.strip().lower()
            nums = [float(v) for v in NUMS.findall(val)]
            if key == "calibration area" and len(nums) >= 2:
                meta["display_px"] = (int(nums[0]), int(nums[1]))
            elif key == "stimulus dimension [mm]" and len(nums) >= 2:
                meta["screen_cm"] = (nums[0] / 10.0, nums[1] / 10.0)
            elif key == "head distance [mm]" and nums:
                meta["distance_cm"] = nums[0] / 10.0
            elif key == "sample rate" and nums:
                meta["sample_rate"] = nums[0]
            continue
        if "Time" in line and "Type" in line and "\t" in line:
            meta["columns"] = [c.strip() for c in line.split("\t")]
            meta["header_line"] = n
            break
    if "columns" not in meta:
        raise ImportFormatError(f"{path}: no column header row (a tab-separated line with 'Time' and 'Type'); "
                                "export 'Raw Data' as text from BeGaze")
    return meta


def read(*, path: Path, cfg: dict) -> list[Recording]:
    from pymovements.gaze.io import from_begaze

    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    lines, enc = read_text_lines(path, opts["encoding"])
    meta = _header(lines, path)
    cols = meta["columns"]
    present = [e for e in ("L", "R") if f"{e} POR X [px]" in cols and f"{e} POR Y [px]" in cols]
    if not present:
        raise ImportFormatError(f"{path}:{meta['header_line']}: no 'L POR X [px]' / 'R POR X [px]' columns "
                                "(export gaze positions as POR in pixels)")
    want = cfg.get("eye", "mean")
    eyes_to_read = present if want == "mean" else [e for e in present if e == want[0].upper()]
    if not eyes_to_read:
        raise ImportFormatError(f"{path}: eye {want!r} asked for, but the file has {present}")
    eyes, time_ms = {}, None
    for e in eyes_to_read:
        try:
            with library_warnings_to_log(path):
                gaze = from_begaze(path, prefer_eye=e, encoding=enc)
        except Exception as exc:  # noqa: BLE001 - any parse failure is reported with the file name
            raise ImportFormatError(f"{path}: cannot be read as a BeGaze text export: "
                                    f"{' '.join(str(exc).split())[:300]}") from exc
        s = gaze.samples
        if s.height == 0:
            raise ImportFormatError(f"{path}: no SMP sample rows")
        t_e = s["time"].cast(float).to_numpy()
        if time_ms is None:
            time_ms = t_e
        elif len(t_e) != len(time_ms) or not np.array_equal(t_e, time_ms):
            raise ImportFormatError(f"{path}: left and right eye rows differ")
        x = np.array(s["pixel"].list.get(0).cast(float).fill_null(np.nan).to_numpy(), dtype=float)
        y = np.array(s["pixel"].list.get(1).cast(float).fill_null(np.nan).to_numpy(), dtype=float)
        if opts["zero_is_missing"]:
            zero = (x == 0) & (y == 0)
            x[zero] = np.nan
            y[zero] = np.nan
        eyes["left" if e == "L" else "right"] = (x, y)
    origin_us = float(round(time_ms[0] * 1000.0))
    t = (time_ms * 1000.0 - origin_us) / 1e6
    if np.any(np.diff(t) <= 0):
        i = int(np.argmax(np.diff(t) <= 0)) + 1
        raise ImportFormatError(f"{path}: sample times are not increasing at sample {i} "
                                f"({time_ms[i - 1]:.3f} ms then {time_ms[i]:.3f} ms)")
    msgs = []
    for n, line in enumerate(lines, start=1):
        m = MSG_RE.match(line)
        if m:
            msgs.append(Message(t=(float(m.group(1)) - origin_us) / 1e6, text=m.group(2).strip(), line=n))
    rate = meta.get("sample_rate")
    log.info("%s: %d samples at %s Hz, eyes %s, display %s, %d messages", path, len(t), rate, sorted(eyes),
             meta.get("display_px"), len(msgs))
    return [Recording(path=path, recording_id=path.stem,
                      viewer_id=viewer_from_path(path=path, rule=cfg.get("viewer_id") or "stem"),
                      t=t, eyes=eyes, space="display_px", native_per_s=1e6, clock_origin=origin_us,
                      messages=msgs, display_px=meta.get("display_px"), sample_rate=rate,
                      screen_cm=meta.get("screen_cm"), distance_cm=meta.get("distance_cm"))]
