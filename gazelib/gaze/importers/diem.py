"""DIEM (Dynamic Images and Eye Movements, Mital et al. 2011): per-participant ``event_data`` files.

Layout of the DIEM release: one folder per video, ``<video>/event_data/<session>.asc_<n>_<video>.txt``
(one file per participant), ``<video>/video/<video>.mp4`` and its soundtrack
``<video>/audio/<video>.wav``. A gaze file is tab-separated text, one row per video frame
(30 fps, 1-based frame number), nine columns (the DIEM project's page, "Videos and data")::

    frame  left_x  left_y  left_pupil  left_event  right_x  right_y  right_pupil  right_event

Event codes (same page): -1 error / dropped frame, 0 blink, 1 fixation, 2 saccade. What this reader
does with them (checked on real files, docs/datasets.md):

- a sample of one eye is **valid** when its code is in ``reader.valid_codes`` (default 1 and 2:
  fixation and saccade samples are real gaze positions) and its position is not (0, 0); codes 0
  and -1 are missing (blink / lost: their positions are (0, 0) or the eyelid's transient);
- the eyes are then combined by the importer's ``eye`` rule (default: mean of the valid eyes);
- time: frame f is at ``(f - 1) / reader.fps`` s from the video's start (the frame's PTS in a
  constant-rate 30 fps video), so one row per frame becomes one sample per frame;
- coordinates are *screen* pixels of the 1280x960 display the videos were shown on, centred at
  native size (``reader.display_px``, default [1280, 960]): the gaze median of the real files sits
  at the screen centre, not at the video's, and published DIEM pipelines subtract the same offset
  ((1280 - w) / 2, (960 - h) / 2). The video's size comes from ``reader.video_px`` or the
  ``_<w>x<h>`` suffix every DIEM video name carries; the rectangle is passed as the presented
  media's rectangle (``geometry.rect: media``), so a gaze outside the video is out of frame.

Videos: when no ``--videos`` folder is given, :func:`stage_videos` finds each video in the DIEM
folder and writes ``<out>/videos/<video>.mkv`` with the soundtrack muxed in by stream copy (no
re-encoding) when the video file has no audio of its own, or copies the video as it is.
"""
from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import numpy as np

from gazelib.core.media import VIDEO_EXTS
from gazelib.gaze.importers.base import ImportFormatError, Message, Recording

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^(?P<session>[^.]+)\.asc_(?P<trial>\d+)_(?P<video>.+)$")
SIZE_RE = re.compile(r"_(?P<w>\d+)x(?P<h>\d+)$")
START = "DATASET_VIDEO_START"
DEFAULT_SYNC = {"start": rf"^{START} (?P<video>\S+)$"}
DEFAULT_GEOMETRY = {"rect": "media"}
DEFAULTS = {"fps": 30.0, "display_px": [1280, 960], "video_px": None, "valid_codes": [1, 2]}
N_COLS = 9
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".aac")


def gaze_files(path: Path) -> list[Path]:
    """The DIEM gaze files at ``path``: the file itself, or every ``*.txt`` under a folder, sorted."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if NAME_RE.match(p.stem) or p.parent.name == "event_data")
        if not files:
            raise ImportFormatError(f"{path}: no DIEM gaze file (<session>.asc_<n>_<video>.txt) under this folder")
        return files
    return [path]


def ids_of(path: Path) -> tuple[str, str, str]:
    """(viewer id, video id, trial) from a DIEM file name, else from its folders."""
    m = NAME_RE.match(path.stem)
    if m:
        return m.group("session"), m.group("video"), m.group("trial")
    parent = path.parent.parent if path.parent.name == "event_data" else path.parent
    return path.stem, parent.name, ""


def video_size(*, video_id: str, given, path: Path) -> tuple[int, int]:
    if given is not None:
        if isinstance(given, dict):
            given = given.get(video_id)
        if given is not None:
            return int(given[0]), int(given[1])
    m = SIZE_RE.search(video_id)
    if not m:
        raise ImportFormatError(f"{path}: the video size is not in the video name {video_id!r} (DIEM names end in "
                                "_<w>x<h>); set reader.video_px: [w, h]")
    return int(m.group("w")), int(m.group("h"))


def parse_rows(path: Path) -> np.ndarray:
    """[N, 9] float array of a DIEM file; a malformed row raises an error naming the file and line."""
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != N_COLS:
                raise ImportFormatError(f"{path}:{n}: expected {N_COLS} tab-separated columns (frame, left x y pupil "
                                        f"event, right x y pupil event), got {len(parts)}: {line.strip()[:80]!r}")
            try:
                vals = [float(p) for p in parts]
            except ValueError:
                raise ImportFormatError(f"{path}:{n}: not a number in {line.strip()[:80]!r}") from None
            if not vals[0].is_integer() or vals[0] < 1:
                raise ImportFormatError(f"{path}:{n}: frame number {parts[0]!r} is not a positive integer")
            if rows and vals[0] <= rows[-1][0]:
                raise ImportFormatError(f"{path}:{n}: frame {int(vals[0])} does not follow frame {int(rows[-1][0])} "
                                        "(frames must increase)")
            rows.append(vals)
    if not rows:
        raise ImportFormatError(f"{path}: no gaze rows")
    return np.asarray(rows, np.float64)


def eye_samples(*, x: np.ndarray, y: np.ndarray, code: np.ndarray, valid_codes) -> tuple[np.ndarray, np.ndarray]:
    """One eye's (x, y) with NaN where the event code is not a valid one or the position is (0, 0)."""
    ok = np.isin(code, np.asarray(valid_codes, np.float64)) & ~((x == 0) & (y == 0)) & np.isfinite(x) & np.isfinite(y)
    return np.where(ok, x, np.nan), np.where(ok, y, np.nan)


def read(*, path: Path, cfg: dict) -> list[Recording]:
    """One :class:`Recording` per DIEM gaze file (a folder: every file under it)."""
    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    fps = float(opts["fps"])
    if not fps > 0:
        raise ImportFormatError(f"import config: reader.fps must be > 0, got {opts['fps']!r}")
    display = tuple(int(v) for v in opts["display_px"])
    out = []
    for f in gaze_files(path):
        a = parse_rows(f)
        viewer, video, trial = ids_of(f)
        vw, vh = video_size(video_id=video, given=opts["video_px"], path=f)
        t = (a[:, 0] - 1.0) / fps
        eyes = {"left": eye_samples(x=a[:, 1], y=a[:, 2], code=a[:, 4], valid_codes=opts["valid_codes"]),
                "right": eye_samples(x=a[:, 5], y=a[:, 6], code=a[:, 8], valid_codes=opts["valid_codes"])}
        n = len(t)
        rect = tuple(np.full(n, v, np.float64) for v in ((display[0] - vw) / 2, (display[1] - vh) / 2, vw, vh))
        codes = {int(c): int(k) for c, k in zip(*np.unique(np.concatenate([a[:, 4], a[:, 8]]), return_counts=True))}
        log.info("%s: %d frames, viewer %s, video %s (%dx%d), event codes %s", f, n, viewer, video, vw, vh, codes)
        out.append(Recording(path=f, recording_id=f.stem, viewer_id=viewer, t=t, eyes=eyes, space="display_px",
                             native_per_s=fps, clock_origin=1.0, messages=[Message(t=0.0, text=f"{START} {video}")],
                             display_px=display, sample_rate=fps, media_rect=rect,  # type: ignore[arg-type]  # [w, h]
                             notes=[f"DIEM trial {trial}" if trial else "DIEM file"]))
    return out


# ---------------------------------------------------------------- videos and soundtracks
def _video_folder(gaze_file: Path, video_id: str) -> Path | None:
    for p in (gaze_file.parent, *gaze_file.parents):
        if p.name == video_id:
            return p
    return None


def _find(folder: Path, video_id: str, exts) -> Path | None:
    hits = sorted(p for p in folder.rglob(f"{video_id}.*") if p.suffix.lower() in exts)
    return hits[0] if hits else None


def mux(*, video: Path, audio: Path | None, out: Path) -> None:
    """``video`` (+ ``audio``) into ``out`` (.mkv) by stream copy, bit-exact flags, no metadata."""
    from gazelib.core.io import atomic_path
    from gazelib.core.media import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video)]
    if audio is not None:
        cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0"]
    else:
        cmd += ["-map", "0"]
    with atomic_path(out) as tmp:
        cmd += ["-c", "copy", "-map_metadata", "-1", "-fflags", "+bitexact", "-f", "matroska", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ImportFormatError(f"{video}: muxing with {audio} failed: {res.stderr.strip()[:300]}")


def stage_videos(*, inputs: list[Path], cfg: dict, out_dir: Path) -> dict[str, dict]:
    """Find each DIEM video (and its soundtrack) beside the gaze files; write ``<out>/videos/<id>.mkv``.

    Returns ``video_id -> {path, duration_s, size}`` for the videos found (none: gaze only)."""
    from gazelib.core.media import MediaError, probe_video

    found: dict[str, Path] = {}
    for path in inputs:
        for f in gaze_files(path):
            _, vid, _ = ids_of(f)
            if vid not in found:
                folder = _video_folder(f, vid)
                if folder is not None:
                    found[vid] = folder
    staged = {}
    for vid, folder in sorted(found.items()):
        video = _find(folder, vid, VIDEO_EXTS)
        if video is None:
            log.info("%s: no video file %s.* in %s; gaze only", vid, vid, folder)
            continue
        try:
            has_audio = probe_video(path=video, video_id=vid).has_audio
        except MediaError as exc:
            raise ImportFormatError(str(exc)) from exc
        audio = None if has_audio else _find(folder, vid, AUDIO_EXTS)
        if not has_audio and audio is None:
            log.warning("%s: %s has no audio stream and no soundtrack %s.wav was found; copied without sound",
                        vid, video, vid)
        dst = out_dir / "videos" / f"{vid}.mkv"
        mux(video=video, audio=audio, out=dst)
        pr = probe_video(path=dst, video_id=vid)
        log.info("%s: %s%s -> %s", vid, video.name, f" + {audio.name}" if audio else "", dst)
        staged[vid] = {"path": dst, "duration_s": pr.duration_s, "size": (pr.width, pr.height),
                       "soundtrack": audio.name if audio else ("in video" if has_audio else None)}
    return staged
