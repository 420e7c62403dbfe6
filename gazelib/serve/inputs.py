"""``gazelib predict``'s inputs: the videos named or found in folders (with unique ids), the
recorded gaze file of each (``--gaze``), and the refusal every step raises before work starts."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from gazelib.core.media import VIDEO_EXTS

log = logging.getLogger(__name__)


class PredictError(ValueError):
    """A refusal before any video is touched (model folder, params, missing gaze); names the problem."""


@dataclass
class VideoJob:
    video_id: str
    path: Path
    probe: object = None
    gaze_path: Path | None = None
    error: str = ""
    media_hash: str = ""
    align_hash: str = ""
    timings: dict = field(default_factory=dict)
    reused: list = field(default_factory=list)
    files: list = field(default_factory=list)

    def fail(self, part: str, message: str) -> None:
        if not self.error:
            self.error = f"{part}: {message}"
            log.error("%s (%s): %s failed: %s", self.video_id, self.path, part, message)


def collect_videos(*, inputs: list[str | Path]) -> list[VideoJob]:
    """Video files named or found directly in the named folders (sorted), with unique ids made from
    their names (characters outside [A-Za-z0-9._-] become '_'; a repeated name gets '-2', '-3'...).
    A path that does not exist is returned as a failed job."""
    paths: list[Path] = []
    jobs: list[VideoJob] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS)
            if not found:
                log.warning("%s: no video files (%s) in this folder", p, ", ".join(VIDEO_EXTS))
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            job = VideoJob(video_id=safe_id(p.stem or p.name), path=p)
            job.fail("input", f"{p}: no such file or folder")
            jobs.append(job)
    seen = {j.video_id for j in jobs}
    for p in paths:
        base = safe_id(p.stem)
        vid, n = base, 1
        while vid in seen:
            n += 1
            vid = f"{base}-{n}"
        seen.add(vid)
        jobs.append(VideoJob(video_id=vid, path=p))
    return jobs


def safe_id(stem: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    return s if s[:1].isalnum() else f"v{s}"


def gaze_file(*, gaze: Path | None, job: VideoJob, n_videos: int) -> Path | None:
    if gaze is None:
        return None
    if gaze.is_dir():
        for name in (job.path.stem, job.video_id):
            cand = gaze / f"{name}.csv"
            if cand.exists():
                return cand
        raise FileNotFoundError(f"no gaze recording {gaze / (job.path.stem + '.csv')} for this video")
    if n_videos > 1:
        raise PredictError(f"--gaze {gaze} is one file but {n_videos} videos were given; give a folder with "
                           "<video name>.csv per video")
    return gaze
