"""Windows of aligned data for training and evaluation, loaded lazily per video.

A sample is one viewer's window of ``window_s`` seconds. The viewer's own gaze enters the
model only through :func:`track_history`: the track input at step i is built from the
last valid gaze label whose *raw sample time* is at or before ``t_i - horizon_s`` (a label
may come from a sample slightly after its own step, so cutting by step index alone could
let gaze from after t - horizon through). Nothing else in a sample is derived from gaze.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gazelib.io import read_npz
from gazelib.metrics import cell_centres
from gazelib.normalize import normalise, normalise_grid

log = logging.getLogger(__name__)

TRACK_DIM = 5  # x, y, in-frame, age (s), has_track
MAX_TRACK_AGE_S = 5.0
INPUT_KEYS = ("audio", "text", "visual", "grid", "mask", "track", "track_map")


def check_horizon(*, horizon_s: float, fps: float) -> int:
    """The horizon in steps; refuses a horizon under one step (the track would show the target)."""
    lag = horizon_s * fps
    if not math.isfinite(lag) or lag < 1 - 1e-9:
        raise ValueError(f"train.horizon_s={horizon_s} is less than one step at align.fps={fps} "
                         f"(lag {lag:.2f} steps): the track input would show the target; use horizon_s >= {1 / fps:g}")
    return int(math.ceil(lag - 1e-9))


def track_history(*, gaze: np.ndarray, inout: np.ndarray, valid: np.ndarray, sample_t: np.ndarray,
                  t: np.ndarray, horizon_s: float, max_age_s: float = MAX_TRACK_AGE_S) -> tuple[np.ndarray, np.ndarray]:
    """Track features [T, 5] and the index of the step they come from (-1: none).

    For step i the source is the last valid step j whose raw sample time s_j <= t_i - horizon
    (labels come from nearest samples, so s_j is non-decreasing over valid j); the features
    are (x, y) clipped to [-0.5, 1.5], inout_j, min(t_i - s_j, max_age)/max_age, and 1.
    """
    n = t.size
    js = np.nonzero(valid)[0]
    src = np.full(n, -1)
    if js.size:
        k = np.searchsorted(sample_t[js], t - horizon_s + 1e-9, side="right") - 1
        src = np.where(k >= 0, js[np.maximum(k, 0)], -1)
    has = src >= 0
    j = np.where(has, src, 0)
    feat = np.zeros((n, TRACK_DIM), np.float32)
    feat[has, 0:2] = np.clip(gaze[j[has]], -0.5, 1.5)
    feat[has, 2] = inout[j[has]]
    feat[has, 3] = np.minimum(t[has] - sample_t[j[has]], max_age_s) / max_age_s
    feat[has, 4] = 1.0
    return feat, src


def track_maps(*, track: np.ndarray, gh: int, gw: int, sigma: float) -> np.ndarray:
    """Gaussian map [..., Gh*Gw] (peak 1) around the track point where it is known and in frame."""
    c = cell_centres(gh, gw).astype(np.float32)
    d2 = ((track[..., None, 0:2] - c) ** 2).sum(-1)
    on = (track[..., 4] > 0) & (track[..., 2] > 0)
    return (np.exp(-d2 / (2 * sigma ** 2)) * on[..., None]).astype(np.float32)


@dataclass
class VideoTensors:
    video_id: str
    t: np.ndarray
    audio: np.ndarray
    text: np.ndarray
    visual: np.ndarray
    grid: np.ndarray        # [T, Gh*Gw, C] (cells row-major: the model's layout)
    mask: np.ndarray        # [T, 4] content availability; the track column is per viewer (track[..., 4])
    gaze: np.ndarray
    inout: np.ndarray
    valid: np.ndarray
    track: np.ndarray       # [V, T, 5]
    track_map: np.ndarray   # [V, T, Gh*Gw]
    track_src: np.ndarray   # [V, T] step the track comes from (-1: none)
    viewers: list[str]


def feature_dims(stats: dict) -> dict[str, int]:
    return {"audio": len(stats["audio"]["columns"]), "text": len(stats["text"]["columns"]),
            "visual": len(stats["visual"]["columns"]) + len(stats["grid"]["mean"]), "track": TRACK_DIM}


def prepare_arrays(*, arrays: dict, video_id: str, stats: dict, fps: float, horizon_s: float, sigma: float,
                   grid_hw: tuple[int, int]) -> VideoTensors:
    """Normalised model inputs and labels of one aligned video (``arrays`` as in the NPZ)."""
    a = arrays
    check_horizon(horizon_s=horizon_s, fps=fps)
    if "gaze_t" not in a:
        raise ValueError(f"{video_id}: aligned file has no 'gaze_t' (written by an older gazelib); rerun align")
    mask = a["mask"].copy()
    feats = {}
    for m_i, m in enumerate(("audio", "text", "visual")):
        cols = stats[m]["columns"]
        if a[m].shape[1] != len(cols):
            if a[m].shape[1] != 0:
                raise ValueError(f"{video_id}: {m} has {a[m].shape[1]} columns, norm stats expect {len(cols)}")
            feats[m] = np.zeros((a["t"].size, len(cols)), np.float32)
            mask[:, m_i] = False
        else:
            feats[m] = normalise(x=a[m], stats=stats[m], is_valid=mask[:, m_i])
    grid = normalise_grid(grid=a["grid"], stats=stats["grid"]) * mask[:, 2, None, None, None]
    feats["visual"] = np.concatenate([feats["visual"], grid.mean(axis=(2, 3))], 1)
    gh, gw = grid_hw
    n_v, n_t = a["gaze"].shape[:2]
    track = np.zeros((n_v, n_t, TRACK_DIM), np.float32)
    src = np.full((n_v, n_t), -1)
    for v in range(n_v):
        track[v], src[v] = track_history(gaze=a["gaze"][v], inout=a["inout"][v], valid=a["valid"][v],
                                         sample_t=a["gaze_t"][v], t=a["t"], horizon_s=horizon_s)
    return VideoTensors(
        video_id=video_id, t=a["t"], audio=feats["audio"], text=feats["text"], visual=feats["visual"],
        grid=np.ascontiguousarray(grid.reshape(*grid.shape[:2], -1).transpose(0, 2, 1), np.float32), mask=mask, gaze=a["gaze"], inout=a["inout"], valid=a["valid"],
        track=track, track_map=track_maps(track=track, gh=gh, gw=gw, sigma=sigma), track_src=src,
        viewers=[str(x) for x in a["viewers"]])


def prepare_video(*, path: str | Path, stats: dict, fps: float, horizon_s: float, sigma: float,
                  grid_hw: tuple[int, int]) -> VideoTensors:
    return prepare_arrays(arrays=read_npz(path), video_id=Path(path).stem, stats=stats, fps=fps,
                          horizon_s=horizon_s, sigma=sigma, grid_hw=grid_hw)


def window_starts(n_steps: int, window: int, stride: int) -> list[int]:
    if n_steps <= window:
        return [0]
    starts = list(range(0, n_steps - window + 1, stride))
    if starts[-1] + window < n_steps:
        starts.append(n_steps - window)
    return starts


def window_batch(items: list[tuple[VideoTensors, int, int]], window: int) -> dict[str, torch.Tensor]:
    """Stack (video, viewer, start) windows into one batch, padding short ones at the end."""
    def stack(get, value=0):
        rows = []
        for vt, v, s in items:
            x = get(vt, v, s)
            if x.shape[0] < window:
                x = np.concatenate([x, np.full((window - x.shape[0],) + x.shape[1:], value, dtype=x.dtype)])
            rows.append(x)
        return torch.from_numpy(np.stack(rows))

    sl = lambda s: slice(s, s + window)  # noqa: E731

    def mask(vt, v, s):
        m = vt.mask[sl(s)].astype(np.float32)
        m[:, 3] = vt.track[v, sl(s), 4]  # this viewer's own history, not any viewer's
        return m

    return {
        "audio": stack(lambda vt, v, s: vt.audio[sl(s)]), "text": stack(lambda vt, v, s: vt.text[sl(s)]),
        "visual": stack(lambda vt, v, s: vt.visual[sl(s)]), "grid": stack(lambda vt, v, s: vt.grid[sl(s)]),
        "mask": stack(mask), "track": stack(lambda vt, v, s: vt.track[v, sl(s)]),
        "track_map": stack(lambda vt, v, s: vt.track_map[v, sl(s)]),
        "gaze": stack(lambda vt, v, s: vt.gaze[v, sl(s)]),
        "inout": stack(lambda vt, v, s: vt.inout[v, sl(s)].astype(np.float32)),
        "valid": stack(lambda vt, v, s: vt.valid[v, sl(s)]),
        "pad": stack(lambda vt, v, s: np.zeros(vt.t[sl(s)].size, bool), True),
        "step": stack(lambda vt, v, s: np.arange(s, s + vt.t[sl(s)].size), -1),
    }


class GazeWindows:
    """(video, viewer, start) windows; prepared videos kept in a small LRU cache."""

    def __init__(self, *, files: list[Path], stats: dict, cfg: dict, grid_hw: tuple[int, int], fps: float,
                 lengths: dict[str, int], n_viewers: dict[str, int], stride_s: float | None = None,
                 cache_size: int = 4):
        self.files = {Path(f).stem: Path(f) for f in files}
        self.stats, self.cfg, self.grid_hw, self.fps = stats, cfg, grid_hw, fps
        check_horizon(horizon_s=cfg["horizon_s"], fps=fps)
        self.window = max(1, int(round(cfg["window_s"] * fps)))
        stride = max(1, int(round((stride_s or cfg["stride_s"]) * fps)))
        self.index = [(vid, v, s) for vid in sorted(self.files) for v in range(n_viewers[vid])
                      for s in window_starts(lengths[vid], self.window, stride)]
        self._cache: OrderedDict[str, VideoTensors] = OrderedDict()
        self.cache_size = cache_size

    def __len__(self) -> int:
        return len(self.index)

    def video(self, vid: str) -> VideoTensors:
        if vid in self._cache:
            self._cache.move_to_end(vid)
            return self._cache[vid]
        vt = prepare_video(path=self.files[vid], stats=self.stats, fps=self.fps, horizon_s=self.cfg["horizon_s"],
                           sigma=self.cfg["heatmap_sigma"], grid_hw=self.grid_hw)
        self._cache[vid] = vt
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vt

    def batch(self, indices) -> dict[str, torch.Tensor]:
        items = []
        for i in indices:
            vid, v, s = self.index[int(i)]
            items.append((self.video(vid), v, s))
        return window_batch(items, self.window)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: x[0] for k, x in self.batch([i]).items()}

    def batches(self, order, batch_size: int):
        """Yield batches over ``order`` (indices into :attr:`index`) in that order."""
        order = list(order)
        for b in range(0, len(order), batch_size):
            yield self.batch(order[b:b + batch_size])


def block_order(index: list[tuple], block: int, seed: int, epoch: int) -> list[int]:
    """Shuffle videos, then windows within blocks of ``block`` videos, so the LRU cache
    holds every video a batch needs (memory follows the block, not the corpus)."""
    rng = np.random.default_rng([seed, epoch])
    by_vid: dict[str, list[int]] = {}
    for i, (vid, _, _) in enumerate(index):
        by_vid.setdefault(vid, []).append(i)
    vids = sorted(by_vid)
    rng.shuffle(vids)
    out: list[int] = []
    for b in range(0, len(vids), block):
        idx = [i for vid in vids[b:b + block] for i in by_vid[vid]]
        rng.shuffle(idx)
        out.extend(idx)
    return out
