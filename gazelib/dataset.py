"""Windows of aligned data for training and evaluation, loaded lazily per video.

A sample is one viewer's window of ``window_s`` seconds. The viewer's own track enters
only through :func:`track_history`: at step i the model sees the last valid gaze at or
before step ``i - lag`` (``lag = round(horizon_s * fps)``), never the target itself.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from gazelib.io import read_npz
from gazelib.metrics import gaussian_map
from gazelib.normalize import normalise, normalise_grid

log = logging.getLogger(__name__)

TRACK_DIM = 5  # x, y, in-frame, age (s), has_track


def track_history(*, gaze: np.ndarray, inout: np.ndarray, valid: np.ndarray, lag: int, fps: float,
                  max_age_s: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Track features [T, 5] and the index of the step they come from (-1: none).

    For step i the source is the last valid step j <= i - lag; features are
    (x, y) clipped to [-0.5, 1.5], inout_j, min(age, max_age)/max_age with age = (i - j)/fps,
    and 1 (has track).
    """
    n = valid.size
    last = np.where(valid, np.arange(n), -1)
    last = np.maximum.accumulate(last)
    src = np.full(n, -1)
    if lag < n:
        src[lag:] = last[: n - lag] if lag > 0 else last
    has = src >= 0
    feat = np.zeros((n, TRACK_DIM), np.float32)
    j = np.where(has, src, 0)
    feat[has, 0:2] = np.clip(gaze[j[has]], -0.5, 1.5)
    feat[has, 2] = inout[j[has]]
    feat[has, 3] = np.minimum((np.arange(n)[has] - j[has]) / fps, max_age_s) / max_age_s
    feat[has, 4] = 1.0
    return feat, np.where(has, src, -1)


@dataclass
class VideoTensors:
    video_id: str
    t: np.ndarray
    audio: np.ndarray
    text: np.ndarray
    visual: np.ndarray
    grid: np.ndarray
    mask: np.ndarray
    gaze: np.ndarray
    inout: np.ndarray
    valid: np.ndarray
    track: np.ndarray       # [V, T, 5]
    track_map: np.ndarray   # [V, T, Gh*Gw]
    viewers: list[str]


def feature_dims(stats: dict) -> dict[str, int]:
    return {"audio": len(stats["audio"]["columns"]), "text": len(stats["text"]["columns"]),
            "visual": len(stats["visual"]["columns"]) + len(stats["grid"]["mean"]), "track": TRACK_DIM}


def prepare_video(*, path: str | Path, stats: dict, fps: float, horizon_s: float, sigma: float,
                  grid_hw: tuple[int, int]) -> VideoTensors:
    a = read_npz(path)
    vid = Path(path).stem
    mask = a["mask"].copy()
    feats = {}
    for m_i, m in enumerate(("audio", "text", "visual")):
        cols = stats[m]["columns"]
        if a[m].shape[1] != len(cols):
            if a[m].shape[1] != 0:
                raise ValueError(f"{vid}: {m} has {a[m].shape[1]} columns, norm stats expect {len(cols)}")
            feats[m] = np.zeros((a["t"].size, len(cols)), np.float32)
            mask[:, m_i] = False
        else:
            feats[m] = normalise(x=a[m], stats=stats[m], is_valid=mask[:, m_i])
    grid = normalise_grid(grid=a["grid"], stats=stats["grid"]) * mask[:, 2, None, None, None]
    feats["visual"] = np.concatenate([feats["visual"], grid.mean(axis=(2, 3))], 1)
    gh, gw = grid_hw
    lag = int(round(horizon_s * fps))
    tracks, maps = [], []
    for v in range(a["gaze"].shape[0]):
        tr, src = track_history(gaze=a["gaze"][v], inout=a["inout"][v], valid=a["valid"][v], lag=lag, fps=fps)
        tm = np.zeros((a["t"].size, gh * gw), np.float32)
        for i in np.nonzero((src >= 0) & (tr[:, 2] > 0))[0]:
            tm[i] = gaussian_map(tr[i, :2], gh, gw, sigma)
        tracks.append(tr)
        maps.append(tm)
    n_t = a["t"].size
    return VideoTensors(
        video_id=vid, t=a["t"], audio=feats["audio"], text=feats["text"], visual=feats["visual"],
        grid=grid.astype(np.float32), mask=mask, gaze=a["gaze"], inout=a["inout"], valid=a["valid"],
        track=np.stack(tracks) if tracks else np.zeros((0, n_t, TRACK_DIM), np.float32),
        track_map=np.stack(maps) if maps else np.zeros((0, n_t, gh * gw), np.float32),
        viewers=[str(x) for x in a["viewers"]])


def window_starts(n_steps: int, window: int, stride: int) -> list[int]:
    if n_steps <= window:
        return [0]
    starts = list(range(0, n_steps - window + 1, stride))
    if starts[-1] + window < n_steps:
        starts.append(n_steps - window)
    return starts


class GazeWindows(Dataset):
    """(video, viewer, start) windows; decoded videos kept in a small LRU cache."""

    def __init__(self, *, files: list[Path], stats: dict, cfg: dict, grid_hw: tuple[int, int], fps: float,
                 lengths: dict[str, int], n_viewers: dict[str, int], stride_s: float | None = None,
                 cache_size: int = 4):
        self.files = {Path(f).stem: Path(f) for f in files}
        self.stats, self.cfg, self.grid_hw, self.fps = stats, cfg, grid_hw, fps
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

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        vid, v, s = self.index[i]
        vt = self.video(vid)
        sl = slice(s, s + self.window)
        n = vt.t[sl].size
        pad_n = self.window - n

        def pad(x: np.ndarray, value=0) -> torch.Tensor:
            x = np.asarray(x)
            if pad_n:
                x = np.concatenate([x, np.full((pad_n,) + x.shape[1:], value, dtype=x.dtype)])
            return torch.from_numpy(np.ascontiguousarray(x))

        mask = vt.mask[sl].astype(np.float32)
        mask[:, 3] = vt.track[v, sl, 4]  # this viewer's own history, not any viewer's
        return {
            "audio": pad(vt.audio[sl]), "text": pad(vt.text[sl]), "visual": pad(vt.visual[sl]),
            "grid": pad(vt.grid[sl]), "mask": pad(mask),
            "track": pad(vt.track[v, sl]), "track_map": pad(vt.track_map[v, sl]),
            "gaze": pad(vt.gaze[v, sl]), "inout": pad(vt.inout[v, sl].astype(np.float32)),
            "valid": pad(vt.valid[v, sl]), "pad": pad(np.zeros(n, bool), True),
            "step": pad(np.arange(s, s + n), -1),
        }


class VideoBlockSampler(Sampler[int]):
    """Shuffle videos, then windows within blocks of ``block`` videos, so the LRU cache
    holds every video a batch needs (memory follows the batch, not the corpus)."""

    def __init__(self, index: list[tuple], block: int, seed: int):
        self.index, self.block, self.seed, self.epoch = index, block, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        by_vid: dict[str, list[int]] = {}
        for i, (vid, _, _) in enumerate(self.index):
            by_vid.setdefault(vid, []).append(i)
        vids = sorted(by_vid)
        rng.shuffle(vids)
        for b in range(0, len(vids), self.block):
            idx = [i for vid in vids[b:b + self.block] for i in by_vid[vid]]
            rng.shuffle(idx)
            yield from idx
