"""Per-frame fixation maps (``fixMap_<frame>.mat``) of the audio-visual saliency sets.

The audio-visual saliency benchmarks (AVAD, Coutrot1/2, DIEM, ETMD, SumMe as distributed for
STAViS, Tsiami et al. CVPR 2020, github.com/atsiami/STAViS, and reused by later models) ship, per
video, ``annotations/<SET>/<video>/fixMap_00001.mat`` ... (one MATLAB file per frame, 1-based,
five digits) holding a variable ``eyeMap``: a binary ``height x width`` matrix at the video's
resolution, 1 at the pixels fixated in that frame by any observer; ``maps/eyeMap_00001.jpg`` is its
blurred version (not read here). The frame rate is in the fold lists
(``fold_lists/<SET>_list_test_fps.txt``: lines ``<video> <n_frames> <fps>``); the STAViS loader
(``datasets/saliency_db.py``) and evaluation (``eval_code/eval_diem.m``) read exactly these.

Read with ``scipy.io.loadmat``. These maps carry **no viewer identity**, so the importer writes
pseudo-viewers ``fix01`` .. ``fixK`` (K = the most fixated pixels in any frame): in each frame the
fixated pixels are assigned to the pseudo-viewers by a minimum-distance matching to each one's last
position (Hungarian, ``scipy.optimize.linear_sum_assignment``); a pseudo-viewer with no pixel in a
frame is missing there. Pixel (row r, col c) is the point ((c + 0.5) / w, (r + 0.5) / h). Two
observers on one pixel are one point. The per-frame, all-observer saliency metrics are exact on
such a corpus; per-viewer tracks (persistence, track variants) are only as meaningful as the
matching (docs/datasets.md).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gazelib.gaze.importers.base import ImportFormatError, Message, Recording

log = logging.getLogger(__name__)

FRAME_RE = re.compile(r"^fixMap_(\d+)$")
START = "DATASET_VIDEO_START"
DEFAULT_SYNC = {"start": rf"^{START} (?P<video>\S+)$"}
DEFAULTS = {"fps": None, "fps_list": None, "variable": "eyeMap", "viewer_prefix": "fix"}
UNMATCHED_COST = 10.0  # normalised units: larger than any in-frame distance, so a new slot is used last


def video_folders(path: Path) -> list[Path]:
    """Folders holding ``fixMap_*.mat`` at or under ``path``, sorted."""
    if path.is_file():
        return [path.parent]
    if any(path.glob("fixMap_*.mat")):
        return [path]
    folders = sorted({p.parent for p in path.rglob("fixMap_*.mat")})
    if not folders:
        raise ImportFormatError(f"{path}: no fixMap_<frame>.mat file under this folder")
    return folders


def read_fps_list(path: Path) -> dict[str, float]:
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise ImportFormatError(f"{path}:{n}: expected '<video> <n_frames> <fps>', got {line.strip()[:80]!r}")
        try:
            out[parts[0]] = float(parts[2])
        except ValueError:
            raise ImportFormatError(f"{path}:{n}: fps {parts[2]!r} is not a number") from None
    return out


def _fps(folder: Path, opts: dict) -> float:
    fps = opts["fps"]
    if isinstance(fps, dict):
        fps = fps.get(folder.name)
    if fps is None and opts["fps_list"]:
        fps = read_fps_list(Path(opts["fps_list"])).get(folder.name)
    if fps is None:
        raise ImportFormatError(f"{folder}: the frame rate of video {folder.name!r} is unknown: set reader.fps "
                                "(a number or {video: fps}) or reader.fps_list (a fold list '<video> <n> <fps>')")
    if not float(fps) > 0:
        raise ImportFormatError(f"{folder}: fps must be > 0, got {fps!r}")
    return float(fps)


def load_frame(path: Path, variable: str) -> np.ndarray:
    """The fixated pixels of one frame as (x, y) in video-normalised units, and the map's (h, w)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - any read failure is reported with the file name
        raise ImportFormatError(f"{path}: cannot be read as a MATLAB file: {' '.join(str(exc).split())[:200]}") from exc
    if variable not in mat:
        has = sorted(k for k in mat if not k.startswith("__"))
        raise ImportFormatError(f"{path}: no variable {variable!r} (has {has}; set reader.variable)")
    m = np.asarray(mat[variable])
    if m.ndim != 2:
        raise ImportFormatError(f"{path}: {variable} has shape {m.shape}, expected a 2-D height x width map")
    h, w = m.shape
    rows, cols = np.nonzero(m > 0)
    return np.stack([(cols + 0.5) / w, (rows + 0.5) / h], axis=1), (h, w)


def assign_slots(points: list[np.ndarray]) -> np.ndarray:
    """[K, F, 2] pseudo-viewer positions (NaN: none) from per-frame point sets, by Hungarian matching."""
    from scipy.optimize import linear_sum_assignment

    k = max((len(p) for p in points), default=0)
    out = np.full((k, len(points), 2), np.nan)
    last = np.full((k, 2), np.nan)
    for f, pts in enumerate(points):
        if not len(pts):
            continue
        d = np.sqrt(((last[:, None, :] - pts[None]) ** 2).sum(-1))
        # a slot never used yet costs more than any real distance; among those the lowest index wins
        d = np.where(np.isnan(d), UNMATCHED_COST + np.arange(k)[:, None] * 1e-6, d)
        slot, idx = linear_sum_assignment(d)
        out[slot, f] = pts[idx]
        last[slot] = pts[idx]
    return out


def read(*, path: Path, cfg: dict) -> list[Recording]:
    opts = {**DEFAULTS, **(cfg.get("reader") or {})}
    out = []
    for folder in video_folders(path):
        fps = _fps(folder, opts)
        files = sorted(folder.glob("fixMap_*.mat"), key=lambda p: int(FRAME_RE.match(p.stem).group(1))
                       if FRAME_RE.match(p.stem) else -1)
        frames, points, shapes = [], [], set()
        for p in files:
            m = FRAME_RE.match(p.stem)
            if not m:
                raise ImportFormatError(f"{p}: not a fixMap_<frame>.mat name")
            pts, hw = load_frame(p, opts["variable"])
            frames.append(int(m.group(1)))
            points.append(pts)
            shapes.add(hw)
        if len(shapes) > 1:
            raise ImportFormatError(f"{folder}: the fixation maps differ in size {sorted(shapes)}")
        if frames and frames[0] < 1:
            raise ImportFormatError(f"{files[0]}: frame numbers start at 1")
        t = (np.asarray(frames, np.float64) - 1.0) / fps
        slots = assign_slots(points)
        vid = folder.name
        log.info("%s: %d frames at %g fps, %d fixated pixels, %d pseudo-viewers", folder, len(frames), fps,
                 sum(len(p) for p in points), len(slots))
        for i, xy in enumerate(slots):
            out.append(Recording(path=folder, recording_id=f"{vid}:{i + 1}",
                                 viewer_id=f"{opts['viewer_prefix']}{i + 1:02d}", t=t,
                                 eyes={"both": (xy[:, 0], xy[:, 1])}, space="video_norm", native_per_s=fps,
                                 clock_origin=1.0, messages=[Message(t=0.0, text=f"{START} {vid}")],
                                 sample_rate=fps, notes=["pseudo-viewer: fixation maps carry no viewer identity"]))
    return out
