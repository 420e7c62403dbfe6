"""Windows of aligned data for training and evaluation, prepared lazily window by window.

A sample is one viewer's window of ``window_s`` seconds. The viewer's own gaze enters the
model only through :func:`track_history`: the track input at step i is built from the
last valid gaze label whose *raw sample time* is at or before ``t_i - horizon_s`` (a label
may come from a sample slightly after its own step, so cutting by step index alone could
let gaze from after t - horizon through). Nothing else in a sample is derived from gaze.

Memory follows the window, not the video: an aligned NPZ written by :func:`gazelib.data.align.write_aligned`
stores its feature rows uncompressed, and :class:`LazyVideo` reads, normalises and builds the
track inputs of one window's rows when the window is asked for (only the small per-viewer label
arrays are held per video). Every operation of :func:`prepare_arrays` is row-wise, so a lazy
window equals the same window of the eagerly prepared video exactly. An aligned file written by an
older gazelib (deflated feature rows) is still read, eagerly, with a warning to rerun align.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gazelib.core.io import NpzRows, read_npz
from gazelib.core.cells import centre_sq_dists, gaussian_log_kernel
from gazelib.core.normalize import normalise, normalise_grid
from gazelib.core.params import check_horizon  # noqa: F401  (re-exported: the check lives with the params schema)
from gazelib.core.params import default as params_default

log = logging.getLogger(__name__)

TRACK_DIM = 5  # x, y, in-frame, age (s), has_track
# train.max_track_age_s's schema default (its one home: gazelib.core.params_schema.TrainCfg); the
# value a caller without params (an old checkpoint's train_cfg, a test) gets
MAX_TRACK_AGE_S = float(params_default("train.max_track_age_s"))
INPUT_KEYS = ("audio", "text", "visual", "grid", "mask", "track", "track_map")
ROW_KEYS = ("audio", "text", "visual", "grid")   # as gazelib.data.align.ROW_KEYS: read window by window
HELD_KEYS = ("t", "mask", "gaze", "inout", "valid", "gaze_t", "viewers")   # small, held per video
WINDOW_KEYS = ("audio", "text", "visual", "grid", "mask", "track", "track_map", "gaze", "inout", "valid")


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
    d2 = centre_sq_dists(track[..., 0:2], gh, gw, dtype=np.float32)
    on = (track[..., 4] > 0) & (track[..., 2] > 0)
    return (np.exp(gaussian_log_kernel(d2, sigma)) * on[..., None]).astype(np.float32)


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
    gaze_t: np.ndarray | None = None   # [V, T] raw sample time of each label (for a track at another horizon)

    def window(self, v: int, s: int, n: int) -> dict[str, np.ndarray]:
        """Viewer ``v``'s steps ``[s, s + n)`` (fewer at the end): the arrays of :data:`WINDOW_KEYS`."""
        sl = slice(s, s + n)
        return {"audio": self.audio[sl], "text": self.text[sl], "visual": self.visual[sl], "grid": self.grid[sl],
                "mask": self.mask[sl], "track": self.track[v, sl], "track_map": self.track_map[v, sl],
                "gaze": self.gaze[v, sl], "inout": self.inout[v, sl], "valid": self.valid[v, sl]}


def feature_dims(stats: dict) -> dict[str, int]:
    return {"audio": len(stats["audio"]["columns"]), "text": len(stats["text"]["columns"]),
            "visual": len(stats["visual"]["columns"]) + len(stats["grid"]["mean"]), "track": TRACK_DIM}


def _content_mask(*, mask: np.ndarray, widths: dict[str, int], stats: dict, video_id: str) -> np.ndarray:
    """The content mask with a modality that has no columns at all masked (its zero-filled input)."""
    mask = mask.copy()
    for m_i, m in enumerate(("audio", "text", "visual")):
        n_cols = len(stats[m]["columns"])
        if widths[m] != n_cols:
            if widths[m] != 0:
                raise ValueError(f"{video_id}: {m} has {widths[m]} columns, norm stats expect {n_cols}")
            mask[:, m_i] = False
    return mask


def _array_stats(stats: dict) -> dict:
    """``stats`` with each modality's mean, std and kinds as arrays (what :func:`normalise` makes of
    them on every call), so a window does not convert thousands of list items again."""
    out = dict(stats)
    for m in ("audio", "text", "visual", "grid"):
        st = dict(stats[m])
        st["mean"], st["std"] = np.asarray(st["mean"], np.float32), np.asarray(st["std"], np.float32)
        if "kinds" in st:
            st["kinds"] = np.asarray(st["kinds"])
        out[m] = st
    return out


def _content_rows(*, rows: dict[str, np.ndarray], mask: np.ndarray, stats: dict,
                  owned: bool = False) -> dict[str, np.ndarray]:
    """Normalised audio, text, visual (+ per-channel grid means) and grid [n, Gh*Gw, C] of some rows.

    Row-wise only, so any block of rows gives exactly those rows of the whole video's result. The
    grid is z-scored in place when ``owned`` (the rows are a fresh array nobody else holds)."""
    feats = {}
    n = mask.shape[0]
    for m_i, m in enumerate(("audio", "text", "visual")):
        n_cols = len(stats[m]["columns"])
        if rows[m].shape[1] != n_cols:   # no columns at all (checked by _content_mask): zeros, masked
            feats[m] = np.zeros((n, n_cols), np.float32)
        else:
            feats[m] = normalise(x=rows[m], stats=stats[m], is_valid=mask[:, m_i])
    raw = rows["grid"]
    grid = normalise_grid(grid=raw, stats=stats["grid"], out=raw if owned and raw.dtype == np.float32 else None)
    np.multiply(grid, mask[:, 2, None, None, None], out=grid)
    feats["visual"] = np.concatenate([feats["visual"], grid.mean(axis=(2, 3))], 1)
    feats["grid"] = np.ascontiguousarray(grid.reshape(*grid.shape[:2], -1).transpose(0, 2, 1), np.float32)
    return feats


def _need_gaze_t(a, video_id: str) -> None:
    if "gaze_t" not in a:
        raise ValueError(f"{video_id}: aligned file has no 'gaze_t' (written by an older gazelib); rerun align")


def _video_tensors(*, labels: dict, feats: dict, mask: np.ndarray, video_id: str, horizon_s: float, sigma: float,
                   grid_hw: tuple[int, int], max_age_s: float = MAX_TRACK_AGE_S) -> VideoTensors:
    gh, gw = grid_hw
    n_v, n_t = labels["gaze"].shape[:2]
    track = np.zeros((n_v, n_t, TRACK_DIM), np.float32)
    src = np.full((n_v, n_t), -1)
    for v in range(n_v):
        track[v], src[v] = track_history(gaze=labels["gaze"][v], inout=labels["inout"][v], valid=labels["valid"][v],
                                         sample_t=labels["gaze_t"][v], t=labels["t"], horizon_s=horizon_s,
                                         max_age_s=max_age_s)
    return VideoTensors(
        video_id=video_id, t=labels["t"], audio=feats["audio"], text=feats["text"], visual=feats["visual"],
        grid=feats["grid"], mask=mask, gaze=labels["gaze"], inout=labels["inout"], valid=labels["valid"],
        track=track, track_map=track_maps(track=track, gh=gh, gw=gw, sigma=sigma), track_src=src,
        viewers=[str(x) for x in labels["viewers"]], gaze_t=labels["gaze_t"])


def prepare_arrays(*, arrays: dict, video_id: str, stats: dict, fps: float, horizon_s: float, sigma: float,
                   grid_hw: tuple[int, int], max_age_s: float = MAX_TRACK_AGE_S) -> VideoTensors:
    """Normalised model inputs and labels of one whole aligned video (``arrays`` as in the NPZ)."""
    a = arrays
    check_horizon(horizon_s=horizon_s, fps=fps)
    _need_gaze_t(a, video_id)
    mask = _content_mask(mask=a["mask"], widths={m: a[m].shape[1] for m in ("audio", "text", "visual")},
                         stats=stats, video_id=video_id)
    return _video_tensors(labels=a, feats=_content_rows(rows=a, mask=mask, stats=stats), mask=mask,
                          video_id=video_id, horizon_s=horizon_s, sigma=sigma, grid_hw=grid_hw, max_age_s=max_age_s)


class LazyVideo:
    """One aligned video whose windows are prepared when asked for (memory follows the window).

    Holds the labels (``t``, ``mask``, ``gaze``, ``inout``, ``valid``, ``gaze_t``, ``viewers``: a few
    bytes per viewer and step) and reads a window's feature rows from the file
    (:class:`gazelib.core.io.NpzRows`); :meth:`window` gives exactly what :meth:`VideoTensors.window`
    gives for the eagerly prepared video."""

    def __init__(self, *, path: str | Path, stats: dict, fps: float, horizon_s: float, sigma: float,
                 grid_hw: tuple[int, int], rows: NpzRows | None = None, max_age_s: float = MAX_TRACK_AGE_S):
        self.path = Path(path)
        self.video_id = self.path.stem
        check_horizon(horizon_s=horizon_s, fps=fps)
        self.rows = rows or NpzRows(self.path)
        missing = [k for k in ROW_KEYS if k not in self.rows]
        if missing:
            raise ValueError(f"{self.path}: feature rows {missing} are not stored uncompressed; "
                             "rerun align (or read it with prepare_arrays)")
        _need_gaze_t(self.rows.names, self.video_id)
        held = read_npz(self.path, keys=HELD_KEYS)
        self.stats, self.horizon_s, self.sigma, self.grid_hw = _array_stats(stats), horizon_s, sigma, grid_hw
        self.max_age_s = max_age_s
        self.t, self.gaze, self.inout, self.valid, self.gaze_t = (held[k] for k in ("t", "gaze", "inout", "valid",
                                                                                   "gaze_t"))
        self.viewers = [str(x) for x in held["viewers"]]
        self.mask = _content_mask(mask=held["mask"], widths={m: self.rows.shapes[m][1] for m in
                                                             ("audio", "text", "visual")},
                                  stats=stats, video_id=self.video_id)
        lengths = {k: self.rows.shapes[k][0] for k in ROW_KEYS}
        if set(lengths.values()) != {self.t.size} or self.gaze.shape[1:2] != (self.t.size,):
            raise ValueError(f"{self.path}: rows of {lengths} and gaze {self.gaze.shape} do not match "
                             f"t [{self.t.size}]; rerun align")

        self.whole: VideoTensors | None = None   # set by prepare_whole, dropped by drop_whole

    @property
    def whole_nbytes(self) -> int:
        """Bytes :meth:`prepare_whole` would hold: the normalised features and every viewer's track."""
        cells = self.grid_hw[0] * self.grid_hw[1]
        per_step = 4 * (sum(self.rows.shapes[m][1] for m in ("audio", "text", "visual"))
                        + self.rows.shapes["grid"][1] * (cells + 1)) + len(self.viewers) * (4 * (TRACK_DIM + cells) + 8)
        return int(self.t.size * per_step)

    def prepare_whole(self) -> VideoTensors:
        """Prepare (and keep) the whole video at once: faster windows for a short video, memory
        growing with its length (:class:`GazeWindows` does this only within its budget)."""
        if self.whole is None:
            labels = {"t": self.t, "gaze": self.gaze, "inout": self.inout, "valid": self.valid,
                      "gaze_t": self.gaze_t, "viewers": self.viewers}
            feats = self.content(0, self.t.size)
            self.whole = _video_tensors(labels=labels, feats=feats, mask=self.mask, video_id=self.video_id,
                                        horizon_s=self.horizon_s, sigma=self.sigma, grid_hw=self.grid_hw,
                                        max_age_s=self.max_age_s)
        return self.whole

    def drop_whole(self) -> None:
        self.whole = None

    def content(self, s: int, n: int) -> dict[str, np.ndarray]:
        """Normalised audio, text, visual and grid of steps ``[s, s + n)`` (every viewer's)."""
        stop = min(s + n, self.t.size)
        return _content_rows(rows={k: self.rows.rows(k, s, stop) for k in ROW_KEYS}, mask=self.mask[s:stop],
                             stats=self.stats, owned=True)

    def window(self, v: int, s: int, n: int) -> dict[str, np.ndarray]:
        """Viewer ``v``'s steps ``[s, s + n)`` (fewer at the end): the arrays of :data:`WINDOW_KEYS`."""
        if self.whole is not None:
            return self.whole.window(v, s, n)
        sl = slice(s, s + n)
        track, _ = track_history(gaze=self.gaze[v], inout=self.inout[v], valid=self.valid[v],
                                 sample_t=self.gaze_t[v], t=self.t[sl], horizon_s=self.horizon_s,
                                 max_age_s=self.max_age_s)
        gh, gw = self.grid_hw
        return {**self.content(s, n), "mask": self.mask[sl], "track": track,
                "track_map": track_maps(track=track, gh=gh, gw=gw, sigma=self.sigma),
                "gaze": self.gaze[v, sl], "inout": self.inout[v, sl], "valid": self.valid[v, sl]}


_WARNED_OLD: set[str] = set()


def prepare_video(*, path: str | Path, stats: dict, fps: float, horizon_s: float, sigma: float,
                  grid_hw: tuple[int, int], max_age_s: float = MAX_TRACK_AGE_S) -> LazyVideo | VideoTensors:
    """One aligned video for :class:`GazeWindows`: a :class:`LazyVideo` (windows prepared on demand),
    or, for a file written before the feature rows were stored uncompressed, the whole video
    prepared at once (memory grows with its length: rerun align)."""
    rows = NpzRows(path)
    if all(k in rows for k in ROW_KEYS):
        return LazyVideo(path=path, stats=stats, fps=fps, horizon_s=horizon_s, sigma=sigma, grid_hw=grid_hw,
                         rows=rows, max_age_s=max_age_s)
    if str(path) not in _WARNED_OLD:
        _WARNED_OLD.add(str(path))
        log.warning("%s: feature rows stored compressed (aligned by an older gazelib): the whole video is loaded; "
                    "rerun align for memory flat in video length", path)
    return prepare_arrays(arrays=read_npz(path), video_id=Path(path).stem, stats=stats, fps=fps,
                          horizon_s=horizon_s, sigma=sigma, grid_hw=grid_hw, max_age_s=max_age_s)


def read_aligned(*, path: str | Path, stop: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an aligned NPZ, or only its first ``stop`` steps (every [T] axis cut: the feature
    rows read from the file, the labels sliced), e.g. for a check on the first window of a long video."""
    if stop is None:
        return read_npz(path)
    rows = NpzRows(path)
    lazy = [k for k in ROW_KEYS if k in rows]
    out = read_npz(path, keys=tuple(k for k in rows.names if k not in lazy))
    out.update({k: rows.rows(k, 0, stop) for k in lazy})
    for k in ROW_KEYS:
        if k in out and k not in lazy:
            out[k] = out[k][:stop]
    for k in ("t", "mask"):
        out[k] = out[k][:stop]
    for k in ("gaze", "inout", "valid", "gaze_t"):
        if k in out:
            out[k] = out[k][:, :stop]
    return out


def window_starts(n_steps: int, window: int, stride: int) -> list[int]:
    if n_steps <= window:
        return [0]
    starts = list(range(0, n_steps - window + 1, stride))
    if starts[-1] + window < n_steps:
        starts.append(n_steps - window)
    return starts


CONTENT_KEYS = ("audio", "text", "visual", "grid")   # the window's, the same for each of its viewers


def window_batch(items: list[tuple[VideoTensors | LazyVideo, int, int]], window: int) -> dict[str, torch.Tensor]:
    """Stack (video, viewer, start) windows into one batch, padding short ones at the end.

    The content (:data:`CONTENT_KEYS`) of a window that more than one item of the batch uses (its
    viewers) is stacked once: then the batch holds U < B content rows and ``content_index`` [B]
    names each item's (:meth:`gazelib.model.net.GazeTransformer.forward`)."""
    wins = [(vt.window(v, s, window), s) for vt, v, s in items]
    rows: dict[tuple[int, int], int] = {}
    index = [rows.setdefault((id(getattr(vt, "video", vt)), s), len(rows)) for vt, _, s in items]
    firsts = [(r, index.index(r)) for r in range(len(rows))]   # (row, its first item); rows in order of first use

    def stack(get, value=0, which=None):
        out = []
        for w, s in (wins if which is None else [wins[i] for _, i in which]):
            x = get(w, s)
            if x.shape[0] < window:
                x = np.concatenate([x, np.full((window - x.shape[0],) + x.shape[1:], value, dtype=x.dtype)])
            out.append(x)
        return torch.from_numpy(np.stack(out))

    def mask(w, s):
        m = w["mask"].astype(np.float32)
        m[:, 3] = w["track"][:, 4]  # this viewer's own history, not any viewer's
        return m

    shared = len(rows) < len(items)
    out = {k: stack(lambda w, s, k=k: w[k], which=firsts if shared else None) for k in CONTENT_KEYS}
    if shared:
        out["content_index"] = torch.tensor(index, dtype=torch.long)
    return {
        **out, "mask": stack(mask), "track": stack(lambda w, s: w["track"]),
        "track_map": stack(lambda w, s: w["track_map"]), "gaze": stack(lambda w, s: w["gaze"]),
        "inout": stack(lambda w, s: w["inout"].astype(np.float32)), "valid": stack(lambda w, s: w["valid"]),
        "pad": stack(lambda w, s: np.zeros(w["mask"].shape[0], bool), True),
        "step": stack(lambda w, s: np.arange(s, s + w["mask"].shape[0]), -1),
    }


class AtHorizon:
    """A prepared video whose windows carry the track cut at ``horizon_s`` instead of the video's own
    horizon (training with sampled horizons, docs/horizons.md): the content is the video's, the track
    and its map are rebuilt by :func:`track_history` from the raw gaze before ``t - horizon_s``."""

    def __init__(self, *, video: LazyVideo | VideoTensors, horizon_s: float, grid_hw: tuple[int, int], sigma: float,
                 max_age_s: float = MAX_TRACK_AGE_S):
        self.video, self.horizon_s, self.grid_hw, self.sigma = video, horizon_s, grid_hw, sigma
        self.max_age_s = max_age_s

    def window(self, v: int, s: int, n: int) -> dict[str, np.ndarray]:
        vt = self.video
        w = dict(vt.window(v, s, n))
        track, _ = track_history(gaze=vt.gaze[v], inout=vt.inout[v], valid=vt.valid[v], sample_t=vt.gaze_t[v],
                                 t=vt.t[s:s + n], horizon_s=self.horizon_s, max_age_s=self.max_age_s)
        w["track"] = track
        w["track_map"] = track_maps(track=track, gh=self.grid_hw[0], gw=self.grid_hw[1], sigma=self.sigma)
        return w


def max_track_age(cfg: dict) -> float:
    """``train.max_track_age_s`` of a train config: the params' value, or the schema default for a
    config that predates the key (the ``train_cfg`` of an older checkpoint, so predict and evaluate
    use the value the model was trained with)."""
    value = float(cfg.get("max_track_age_s", MAX_TRACK_AGE_S))
    if not value > 0:
        raise ValueError(f"train.max_track_age_s must be > 0, got {cfg.get('max_track_age_s')!r}")
    return value


# train.cache_mb's schema default, for the train_cfg of a checkpoint older than the key
PREPARED_MB = float(params_default("train.cache_mb"))


class GazeWindows:
    """(video, viewer, start) windows of aligned videos, prepared when a batch needs them.

    Opened videos (:func:`prepare_video`: labels held, feature rows read from the file) are kept in
    an LRU cache of ``cache_size``. A video whose prepared tensors take at most a quarter of
    ``cfg["cache_mb"]`` (default :data:`PREPARED_MB`) is prepared whole on first use and kept
    while all such videos fit in ``cache_mb`` (least recently used dropped first); a longer one is
    prepared window by window. Either way the windows are the same numbers, and memory is bounded
    by ``cache_mb`` and the batch, not by video length (a file aligned by an older gazelib, whose
    feature rows are deflated, is prepared whole regardless)."""

    def __init__(self, *, files: list[Path], stats: dict, cfg: dict, grid_hw: tuple[int, int], fps: float,
                 lengths: dict[str, int], n_viewers: dict[str, int], stride_s: float | None = None,
                 cache_size: int = 4, sample_horizons: list[float] | None = None, horizon_seed: int = 0):
        self.files = {Path(f).stem: Path(f) for f in files}
        self.stats, self.cfg, self.grid_hw, self.fps = stats, cfg, grid_hw, fps
        check_horizon(horizon_s=cfg["horizon_s"], fps=fps)
        # training with sampled horizons: window i's track is cut at horizons[choice(seed, i)] (docs/horizons.md)
        self.sample_horizons = [float(h) for h in sample_horizons] if sample_horizons else None
        for h in self.sample_horizons or []:
            check_horizon(horizon_s=h, fps=fps)
        self.horizon_seed = int(horizon_seed)
        self.max_age_s = max_track_age(cfg)
        self.window = max(1, int(round(cfg["window_s"] * fps)))
        stride = max(1, int(round((stride_s or cfg["stride_s"]) * fps)))
        self.index = [(vid, v, s) for vid in sorted(self.files) for v in range(n_viewers[vid])
                      for s in window_starts(lengths[vid], self.window, stride)]
        self._cache: OrderedDict[str, LazyVideo | VideoTensors] = OrderedDict()
        self.cache_size = cache_size
        self.prepared_bytes = int(float(cfg.get("cache_mb", PREPARED_MB)) * 2**20)
        if self.prepared_bytes < 0:
            raise ValueError(f"train.cache_mb must be >= 0, got {cfg.get('cache_mb')}")

    def __len__(self) -> int:
        return len(self.index)

    def video(self, vid: str) -> LazyVideo | VideoTensors:
        if vid in self._cache:
            self._cache.move_to_end(vid)
            return self._cache[vid]
        vt = prepare_video(path=self.files[vid], stats=self.stats, fps=self.fps, horizon_s=self.cfg["horizon_s"],
                           sigma=self.cfg["heatmap_sigma"], grid_hw=self.grid_hw, max_age_s=self.max_age_s)
        self._cache[vid] = vt
        if len(self._cache) > self.cache_size:
            _, old = self._cache.popitem(last=False)
            if isinstance(old, LazyVideo):
                old.drop_whole()
        return vt

    def _source(self, vid: str) -> LazyVideo | VideoTensors:
        """The video, prepared whole first if it is short enough and the budget allows."""
        vt = self.video(vid)
        if isinstance(vt, LazyVideo) and vt.whole is None and vt.whole_nbytes <= self.prepared_bytes // 4:
            held = [x for x in self._cache.values() if isinstance(x, LazyVideo) and x.whole is not None]
            total = sum(x.whole_nbytes for x in held) + vt.whole_nbytes
            for x in held:   # least recently used first
                if total <= self.prepared_bytes:
                    break
                x.drop_whole()
                total -= x.whole_nbytes
            vt.prepare_whole()
            log.debug("%s: prepared whole (%.1f MB)", vid, vt.whole_nbytes / 2**20)
        return vt

    def horizon_of(self, i: int) -> float | None:
        """Window ``i``'s sampled horizon (None: the dataset's own ``horizon_s``); deterministic in (seed, i)."""
        if not self.sample_horizons:
            return None
        k = int(np.random.default_rng([self.horizon_seed, int(i)]).integers(len(self.sample_horizons)))
        return self.sample_horizons[k]

    def batch(self, indices) -> dict[str, torch.Tensor]:
        items = []
        for i in indices:
            vid, v, s = self.index[int(i)]
            src = self._source(vid)
            h = self.horizon_of(int(i))
            if h is not None:
                # AtHorizon has the sources' window() interface
                src = AtHorizon(video=src, horizon_s=h, grid_hw=self.grid_hw, sigma=self.cfg["heatmap_sigma"],  # type: ignore[assignment]
                                max_age_s=self.max_age_s)
            items.append((src, v, s))
        return window_batch(items, self.window)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: x[0] for k, x in self.batch([i]).items()}

    def batches(self, order, batch_size: int):
        """Yield batches over ``order`` (indices into :attr:`index`) in that order."""
        order = list(order)
        for b in range(0, len(order), batch_size):
            yield self.batch(order[b:b + batch_size])


def block_order(index: list[tuple], block: int, seed: int, epoch: int, group: int = 1) -> list[int]:
    """Shuffle videos, then windows within blocks of ``block`` videos, so the LRU cache
    holds every video a batch needs (memory follows the block, not the corpus).

    ``group`` > 1 (``train.viewer_group``): the items are groups of up to ``group`` viewers of one
    window (each window's viewers shuffled, then cut into groups), shuffled within the block; a batch
    of ``batch_size`` items then holds ``batch_size / group`` windows, whose content the model
    computes once for the group (:func:`window_batch`). 1: single windows, as before 0.4.0."""
    if group < 1:
        raise ValueError(f"train.viewer_group must be >= 1, got {group}")
    rng = np.random.default_rng([seed, epoch])
    by_vid: dict[str, list[int]] = {}
    for i, (vid, _, _) in enumerate(index):
        by_vid.setdefault(vid, []).append(i)
    vids = sorted(by_vid)
    rng.shuffle(vids)
    out: list[int] = []
    for b in range(0, len(vids), block):
        idx = [i for vid in vids[b:b + block] for i in by_vid[vid]]
        if group == 1:
            rng.shuffle(idx)
            out.extend(idx)
            continue
        by_window: dict[tuple, list[int]] = {}
        for i in idx:
            vid, _, start = index[i]
            by_window.setdefault((vid, start), []).append(i)
        groups = []
        for members in by_window.values():
            members = list(members)
            rng.shuffle(members)
            groups.extend(members[k:k + group] for k in range(0, len(members), group))
        for k in rng.permutation(len(groups)):
            out.extend(groups[k])
    return out


def window_major(index: list[tuple]) -> list[int]:
    """Indices of (video, viewer, start) windows ordered by video, start, viewer: a batch of
    consecutive ones holds a window's viewers side by side (its content computed once: evaluation
    and validation, whose per-item numbers do not depend on the order)."""
    return sorted(range(len(index)), key=lambda i: (index[i][0], index[i][2], index[i][1]))
