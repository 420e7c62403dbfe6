"""Type-aware alignment of every modality onto one timeline ``t_k = k / fps``.

``features.lookahead: none`` (the default, viewer-causal): every kind takes the **last sample at
or before** ``t_k`` (held), valid while that sample is at most ``max_gap_s`` old; nothing after
``t_k`` is read, not even to decide validity (docs/causality.md). ``offline`` resamples by
declared kind as below (the alignment before the causal mode, byte for byte), reading the
sample after ``t_k`` too. The gaze labels are targets, not inputs: :func:`resample_gaze` takes the
nearest sample in both modes.

Offline resampling by declared kind (never by column name):

- continuous: linear interpolation between the two bracketing samples, so a value never
  leaves the range of its neighbours
- binary / discrete / count: forward fill (the last sample at or before t_k)
- embedding: linear interpolation, then L2 renormalisation (an all-zero row stays zero)
- grid: linear interpolation per cell

No extrapolation: a step before the first sample, after the last, or inside a gap between
samples longer than ``max_gap_s`` is masked (``is_valid = False``) and zero-filled.
"""
from __future__ import annotations

import logging
from typing import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.core.io import read_npz, read_table
from gazelib.core.cache import VideoCache, hash_file, hash_obj, read_stage_report, run_per_video, write_stage_report
from gazelib.core.closure import stage_code
from gazelib.core.io import StreamedArray, iter_npz_rows, npz_keys, write_json, write_npz, write_table
from gazelib.features import check_lookahead, last_at_or_before, lookahead_of
from gazelib.features.grid import grid_shape
from gazelib.core.normalize import NormAccumulator, l2_normalise
from gazelib.core.layout import ALIGNED, ALIGNED_FEATURE_PARAMS, FEATURES, INTERIM, check_splits, load_manifest, manifest_items
from gazelib.core.params import FEATURE_SECTIONS, feature_record

log = logging.getLogger(__name__)

MODALITIES = ("audio", "text", "visual", "track")
INTERP_KINDS = ("continuous", "embedding", "grid")
FFILL_KINDS = ("binary", "discrete", "count")
# the [T, ...] feature arrays of an aligned NPZ, stored uncompressed so a window's rows can be read
# without loading (or inflating) the video: see :func:`write_aligned` and :class:`gazelib.core.io.NpzRows`
ROW_KEYS = ("audio", "text", "visual", "grid")


@dataclass
class Resampled:
    values: np.ndarray     # [T, ...] zero where not valid
    is_valid: np.ndarray   # [T] bool
    exact: np.ndarray      # [T] bool: a source sample lies on t_k (not interpolated)


def timeline(*, duration_s: float, fps: float) -> np.ndarray:
    n = max(int(np.floor(duration_s * fps + 1e-9)), 1)
    return np.arange(n) / fps


def _bracket(src_t: np.ndarray, dst_t: np.ndarray, max_gap_s: float):
    """Indices of the samples at/before and after each target, and which targets are covered."""
    src_t = np.asarray(src_t, np.float64)
    if src_t.size == 0:
        z = np.zeros(dst_t.size, np.int64)
        return z, z, np.zeros(dst_t.size, bool)
    hi = np.searchsorted(src_t, dst_t, side="left")
    hi_c = np.clip(hi, 0, src_t.size - 1)
    lo_c = np.clip(hi - 1, 0, src_t.size - 1)
    exact = np.isclose(src_t[hi_c], dst_t, atol=1e-9)
    lo_c = np.where(exact, hi_c, lo_c)
    inside = (dst_t >= src_t[0] - 1e-9) & (dst_t <= src_t[-1] + 1e-9)
    gap = src_t[hi_c] - src_t[lo_c]
    ok = inside & (exact | (gap <= max_gap_s + 1e-9))
    return lo_c, hi_c, ok


def _last_at_or_before(src_t: np.ndarray, dst_t: np.ndarray, max_gap_s: float):
    """Causal bracket: the index of the last sample at or before each target (clipped to 0 where
    there is none), whether it is at most ``max_gap_s`` old, and whether it lies on the target."""
    src_t = np.asarray(src_t, np.float64)
    if src_t.size == 0:
        z = np.zeros(dst_t.size, np.int64)
        return z, np.zeros(dst_t.size, bool), np.zeros(dst_t.size, bool)
    idx = last_at_or_before(src_t, dst_t)
    idx_c = np.clip(idx, 0, src_t.size - 1)
    ok = (idx >= 0) & (dst_t - src_t[idx_c] <= max_gap_s + 1e-9)
    return idx_c, ok, ok & np.isclose(src_t[idx_c], dst_t, atol=1e-9)


def resample_hold(*, src_t: np.ndarray, src_v: np.ndarray, dst_t: np.ndarray, max_gap_s: float) -> Resampled:
    """Viewer-causal resampling of any kind: the last sample at or before t_k, valid while it is at
    most ``max_gap_s`` old (a step before the first sample is masked). Reads no later sample."""
    src_v = np.asarray(src_v)
    idx, ok, exact = _last_at_or_before(src_t, dst_t, max_gap_s)
    if src_v.shape[0] == 0:
        return Resampled(np.zeros((dst_t.size,) + src_v.shape[1:], np.float32), ok, exact)
    vals = src_v[idx].astype(np.float32)
    vals[~ok] = 0
    return Resampled(vals, ok, exact)


def resample_linear(*, src_t: np.ndarray, src_v: np.ndarray, dst_t: np.ndarray, max_gap_s: float,
                    lookahead: str = "none") -> Resampled:
    """Linear interpolation along axis 0 for any trailing shape (continuous, grid); with
    ``lookahead: none`` the last sample at or before t_k instead (:func:`resample_hold`)."""
    if check_lookahead(lookahead) == "none":
        return resample_hold(src_t=src_t, src_v=np.asarray(src_v, np.float64), dst_t=dst_t, max_gap_s=max_gap_s)
    src_v = np.asarray(src_v, np.float64)
    out_shape = (dst_t.size,) + src_v.shape[1:]
    lo, hi, ok = _bracket(src_t, dst_t, max_gap_s)
    if not ok.any():
        return Resampled(np.zeros(out_shape, np.float32), ok, np.zeros(dst_t.size, bool))
    src_t = np.asarray(src_t, np.float64)
    span = src_t[hi] - src_t[lo]
    w = np.where(span > 0, (dst_t - src_t[lo]) / np.where(span > 0, span, 1), 0.0)
    w = np.clip(w, 0, 1).reshape((-1,) + (1,) * (src_v.ndim - 1))
    vals = (1 - w) * src_v[lo] + w * src_v[hi]
    # keep exact bounds: convex combination can overshoot by rounding only
    vals = np.clip(vals, np.minimum(src_v[lo], src_v[hi]), np.maximum(src_v[lo], src_v[hi]))
    vals[~ok] = 0
    exact = ok & np.isclose(src_t[lo], dst_t, atol=1e-9)
    return Resampled(vals.astype(np.float32), ok, exact)


def resample_linear_rows(*, src_t: np.ndarray, rows: Iterator[np.ndarray], row_shape: tuple, dst_t: np.ndarray,
                         max_gap_s: float, chunk: int = 128,
                         lookahead: str = "none") -> tuple[StreamedArray, np.ndarray, np.ndarray]:
    """:func:`resample_linear` for an array read row block by row block (a grid longer than
    memory): the same float64 formula per output chunk, so the values are identical, with only
    the source rows a chunk needs held. Returns the streamed values, ``is_valid`` and ``exact``.
    With ``lookahead: none`` each step holds the last row at or before it (weight 0 on the next)."""
    src_t = np.asarray(src_t, np.float64)
    if check_lookahead(lookahead) == "none":
        lo, ok, exact = _last_at_or_before(src_t, dst_t, max_gap_s)
        hi, w = lo, np.zeros(dst_t.size)
    else:
        lo, hi, ok = _bracket(src_t, dst_t, max_gap_s)
        span = src_t[hi] - src_t[lo] if src_t.size else np.zeros(dst_t.size)
        w = np.clip(np.where(span > 0, (dst_t - src_t[lo]) / np.where(span > 0, span, 1), 0.0) if src_t.size
                    else np.zeros(dst_t.size), 0, 1)
        exact = ok & (np.isclose(src_t[lo], dst_t, atol=1e-9) if src_t.size else False)

    def chunks() -> Iterator[np.ndarray]:
        # invariant: buf holds source rows [buf_start, buf_start + len(buf)), all that was read so far
        buf, buf_start = np.zeros((0,) + tuple(row_shape), np.float32), 0
        src = iter(rows)

        def drop_below(i: int) -> None:
            nonlocal buf, buf_start
            k = min(max(i - buf_start, 0), len(buf))
            buf, buf_start = buf[k:], buf_start + k

        for d0 in range(0, dst_t.size, chunk):
            sl = slice(d0, min(dst_t.size, d0 + chunk))
            if not ok[sl].any():
                yield np.zeros((sl.stop - sl.start,) + tuple(row_shape), np.float32)
                continue
            need_lo, need_hi = int(lo[sl].min()), int(hi[sl].max())
            drop_below(need_lo)
            while buf_start + len(buf) <= need_hi:
                buf = np.concatenate([buf, next(src)])
                drop_below(need_lo)
            a, b = buf[lo[sl] - buf_start].astype(np.float64), buf[hi[sl] - buf_start].astype(np.float64)
            ww = w[sl].reshape((-1,) + (1,) * len(row_shape))
            vals = np.clip((1 - ww) * a + ww * b, np.minimum(a, b), np.maximum(a, b))
            vals[~ok[sl]] = 0
            yield vals.astype(np.float32)

    return StreamedArray(shape=(dst_t.size,) + tuple(row_shape), dtype=np.float32, chunks=chunks), ok, exact


def resample_ffill(*, src_t: np.ndarray, src_v: np.ndarray, dst_t: np.ndarray, max_gap_s: float,
                   lookahead: str = "none") -> Resampled:
    """Previous sample's value (at or before t_k), valid up to ``max_gap_s`` after it; offline, a
    step inside a gap longer than ``max_gap_s`` to the *next* sample is masked too (that reads the
    next sample's time; ``none`` does not: :func:`resample_hold`)."""
    if check_lookahead(lookahead) == "none":
        return resample_hold(src_t=src_t, src_v=src_v, dst_t=dst_t, max_gap_s=max_gap_s)
    src_t = np.asarray(src_t, np.float64)
    src_v = np.asarray(src_v)
    out_shape = (dst_t.size,) + src_v.shape[1:]
    if src_t.size == 0:
        return Resampled(np.zeros(out_shape, np.float32), np.zeros(dst_t.size, bool), np.zeros(dst_t.size, bool))
    idx = np.searchsorted(src_t, dst_t + 1e-9, side="right") - 1
    idx_c = np.clip(idx, 0, src_t.size - 1)
    nxt = np.clip(idx + 1, 0, src_t.size - 1)
    gap = np.where(idx + 1 < src_t.size, src_t[nxt] - src_t[idx_c], 0.0)
    on_sample = np.isclose(src_t[idx_c], dst_t, atol=1e-9)
    ok = (idx >= 0) & (dst_t - src_t[idx_c] <= max_gap_s + 1e-9) & ((gap <= max_gap_s + 1e-9) | on_sample)
    vals = src_v[idx_c].astype(np.float32)
    vals[~ok] = 0
    exact = ok & on_sample
    return Resampled(vals, ok, exact)


def resample_kind(*, kind: str, src_t, src_v, dst_t, max_gap_s: float, lookahead: str = "none") -> Resampled:
    if kind in FFILL_KINDS:
        return resample_ffill(src_t=src_t, src_v=src_v, dst_t=dst_t, max_gap_s=max_gap_s, lookahead=lookahead)
    if kind in INTERP_KINDS:
        r = resample_linear(src_t=src_t, src_v=src_v, dst_t=dst_t, max_gap_s=max_gap_s, lookahead=lookahead)
        if kind == "embedding":
            r.values = l2_normalise(r.values)
        return r
    raise ValueError(f"unknown column kind {kind!r}")


def resample_gaze(*, t: np.ndarray, x: np.ndarray, y: np.ndarray, valid: np.ndarray, dst_t: np.ndarray,
                  max_gap_s: float, return_sample_t: bool = False,
                  known_t: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Nearest gaze sample within ``max_gap_s`` of each step: gaze [T,2], inout [T], valid [T]
    (and, with ``return_sample_t``, the time of the raw sample each label came from, NaN where
    invalid: a label can come from a sample slightly *after* its step, which the track
    history must know to stay before t - horizon). ``known_t`` (per raw sample), when given,
    replaces the sample time there: the time a derived label is complete (a fixation's end).

    A step is valid only when its nearest sample is valid (a blink stays missing, never
    "out"); inout is 1 when that sample lies inside [0, 1]^2.
    """
    gaze = np.zeros((dst_t.size, 2), np.float32)
    sample_t = np.full(dst_t.size, np.nan)
    if len(t) == 0:
        empty = (gaze, np.zeros(dst_t.size, np.int8), np.zeros(dst_t.size, bool))
        return (*empty, sample_t) if return_sample_t else empty
    t = np.asarray(t, np.float64)
    i = np.clip(np.searchsorted(t, dst_t), 1, max(t.size - 1, 1))
    i = np.where((t.size > 1) & (np.abs(t[i - 1] - dst_t) <= np.abs(t[np.minimum(i, t.size - 1)] - dst_t)),
                 i - 1, np.minimum(i, t.size - 1))
    near = np.abs(t[i] - dst_t) <= max_gap_s
    ok = near & np.asarray(valid, bool)[i] & np.isfinite(x[i]) & np.isfinite(y[i])
    gaze[ok] = np.stack([x[i], y[i]], 1)[ok]
    inout = (ok & (gaze[:, 0] >= 0) & (gaze[:, 0] <= 1) & (gaze[:, 1] >= 0) & (gaze[:, 1] <= 1)).astype(np.int8)
    if not return_sample_t:
        return gaze, inout, ok
    sample_t[ok] = (t if known_t is None else np.asarray(known_t, np.float64))[i][ok]
    return gaze, inout, ok, sample_t


def find_gaps(*, src_t: np.ndarray, min_gap_s: float) -> list[tuple[float, float]]:
    """(start, end) of every interval between consecutive samples longer than ``min_gap_s``."""
    src_t = np.asarray(src_t, np.float64)
    if src_t.size < 2:
        return []
    d = np.diff(src_t)
    idx = np.nonzero(d > min_gap_s)[0]
    return [(float(src_t[i]), float(src_t[i + 1])) for i in idx]


@dataclass
class ModalityBlock:
    values: np.ndarray              # [T, D] (or [T, C, Gh, Gw] for grid)
    is_valid: np.ndarray            # [T]
    columns: list[str]
    kinds: list[str]
    interpolated_share: float = 0.0
    gaps: list = field(default_factory=list)


def align_table(*, df: pd.DataFrame, kinds: dict[str, str], dst_t: np.ndarray, max_gap_s: float,
                lookahead: str = "none") -> ModalityBlock:
    """Resample every declared column of a feature table; a step is valid if all columns are."""
    cols = [c for c in df.columns if c != "t" and c in kinds]
    src_t = df["t"].to_numpy(np.float64)
    if len(cols) == 0:
        return ModalityBlock(np.zeros((dst_t.size, 0), np.float32), np.zeros(dst_t.size, bool), [], [])
    vals, valid, exact = [], np.ones(dst_t.size, bool), np.ones(dst_t.size, bool)
    for c in cols:
        r = resample_kind(kind=kinds[c], src_t=src_t, src_v=df[c].to_numpy(np.float64), dst_t=dst_t,
                          max_gap_s=max_gap_s, lookahead=lookahead)
        vals.append(r.values)
        valid &= r.is_valid
        exact &= r.exact
    v = np.stack(vals, 1)
    v[~valid] = 0
    share = float(1 - exact[valid].mean()) if valid.any() else 0.0
    return ModalityBlock(v, valid, cols, [kinds[c] for c in cols], share,
                         find_gaps(src_t=src_t, min_gap_s=max_gap_s))


def _zero_rows(arr: StreamedArray, rows: np.ndarray) -> StreamedArray:
    """The same streamed array with ``rows`` (a [T] mask) set to zero."""
    def chunks() -> Iterator[np.ndarray]:
        i = 0
        for c in arr.chunks():
            c = np.array(c, copy=True)
            c[rows[i:i + len(c)]] = 0
            i += len(c)
            yield c

    return StreamedArray(shape=arr.shape, dtype=arr.dtype, chunks=chunks)


def load_modality(*, feat_dir: Path, modality: str, video_id: str, dst_t: np.ndarray,
                  max_gap_s: float, lookahead: str = "none") -> tuple[ModalityBlock, StreamedArray | None]:
    """Load ``<feat_dir>/<modality>/<video_id>.parquet`` (+ .npz) aligned to ``dst_t``.

    Returns the block and, for visual, the aligned grid [T, C, Gh, Gw] as a
    :class:`StreamedArray` (computed chunk by chunk as it is written or materialised). A
    missing or unavailable file gives an all-masked block (logged), never an error.
    """
    path = feat_dir / modality / f"{video_id}.parquet"
    if not path.exists():
        log.warning("%s: no %s features (%s); modality masked", video_id, modality, path)
        return ModalityBlock(np.zeros((dst_t.size, 0), np.float32), np.zeros(dst_t.size, bool), [], []), None
    df, meta = read_table(path)
    if "t" not in df.columns:
        raise ValueError(f"{video_id}: feature file {path} has no column 't'")
    made = meta.get("lookahead", (meta.get("params") or {}).get("lookahead"))   # text records it in its params
    if made is not None and made != lookahead:
        raise ValueError(f"{video_id}: {path} was extracted with features.lookahead {made!r} but align runs with "
                         f"{lookahead!r}; rerun extract_{modality} with the same features.lookahead")
    kinds = meta.get("kinds", {})
    block = align_table(df=df, kinds=kinds, dst_t=dst_t, max_gap_s=max_gap_s, lookahead=lookahead)
    if not meta.get("available", True):
        block.is_valid[:] = False
        log.info("%s: %s marked unavailable by its extractor; masked", video_id, modality)
    grid = None
    npz_path = path.with_suffix(".npz")
    if npz_path.exists():
        keys = npz_keys(npz_path)
        src_t = read_npz(npz_path, keys=("t",))["t"]  # the grid and embeddings are streamed
        if "grid" in keys:
            shape, rows = iter_npz_rows(npz_path, "grid")
            grid, g_ok, _ = resample_linear_rows(src_t=src_t, rows=rows, row_shape=shape[1:], dst_t=dst_t,
                                                 max_gap_s=max_gap_s, lookahead=lookahead)
            block.is_valid &= g_ok
        # embeddings are streamed too (a 1280-d image embedding is ~180 MB an hour): resampled
        # per chunk and unit-normalised per chunk, written into their columns of one allocation
        streams = []
        for name in (k for k in keys if kinds.get(k) == "embedding"):
            shape, rows = iter_npz_rows(npz_path, name)
            stream, e_ok, _ = resample_linear_rows(src_t=src_t, rows=rows, row_shape=shape[1:], dst_t=dst_t,
                                                   max_gap_s=max_gap_s, lookahead=lookahead)
            streams.append((name, stream, int(np.prod(shape[1:], dtype=np.int64))))
            block.is_valid &= e_ok
        if streams:
            n_tab = block.values.shape[1]
            values = np.empty((dst_t.size, n_tab + sum(w for _, _, w in streams)), np.float32)
            values[:, :n_tab] = block.values
            c0 = n_tab
            for name, stream, width in streams:
                target = values[:, c0:c0 + width]
                i = 0
                for c in stream.chunks():
                    target[i:i + len(c)] = l2_normalise(c).reshape(len(c), width)
                    i += len(c)
                if i != dst_t.size:
                    raise ValueError(f"{video_id}: embedding {name} of {npz_path} gave {i} rows, expected {dst_t.size}")
                block.columns += [f"{name}_{j}" for j in range(width)]
                block.kinds += ["embedding"] * width
                c0 += width
            block.values = values
    block.values[~block.is_valid] = 0
    if grid is not None:
        grid = _zero_rows(grid, ~block.is_valid)
    log.info("%s: loaded %s (%d columns), %.0f%% of steps interpolated", video_id, path,
             len(block.columns), 100 * block.interpolated_share)
    if block.interpolated_share > 0.5 and modality != "text":
        log.warning("%s: %s: %.0f%% of steps interpolated", video_id, modality, 100 * block.interpolated_share)
    for g0, g1 in block.gaps:
        if g1 - g0 > 5.0:
            log.warning("%s: %s has a %.1f s gap [%.2f, %.2f]", video_id, modality, g1 - g0, g0, g1)
    return block, grid


def align_video(*, video_id: str, duration_s: float, feat_dir: Path, gaze: pd.DataFrame, cfg: dict,
                grid_shape: tuple[int, int, int], stream_grid: bool = False,
                lookahead: str = "none") -> dict[str, np.ndarray]:
    """Everything the aligned NPZ holds for one video (see the design contract). With
    ``stream_grid`` the grid is a :class:`StreamedArray` for :func:`write_npz` (memory flat in
    video length); otherwise an array. ``lookahead``: ``features.lookahead`` (module docstring);
    feature files that record another one are refused."""
    t = timeline(duration_s=duration_s, fps=cfg["fps"])
    out: dict[str, np.ndarray] = {"t": t}
    mask = np.zeros((t.size, 4), bool)
    for m_i, modality in enumerate(("audio", "text", "visual")):
        block, grid = load_modality(feat_dir=feat_dir, modality=modality, video_id=video_id, dst_t=t,
                                    max_gap_s=cfg["max_gap_s"], lookahead=lookahead)
        out[modality] = block.values.astype(np.float32, copy=False)
        out[f"{modality}_columns"] = np.array(block.columns, dtype=str)
        out[f"{modality}_kinds"] = np.array(block.kinds, dtype=str)
        mask[:, m_i] = block.is_valid
        if modality == "visual":
            if grid is None:
                def zeros(n=t.size, chunk=128) -> Iterator[np.ndarray]:
                    for i in range(0, n, chunk):
                        yield np.zeros((min(chunk, n - i), *grid_shape), np.float32)
                grid = StreamedArray(shape=(t.size, *grid_shape), dtype=np.float32, chunks=zeros)
            out["grid"] = grid if stream_grid else grid.materialize()
        del block, grid  # the next modality's load must not hold this one's block twice
    viewers = sorted(gaze["viewer_id"].unique()) if len(gaze) else []
    g = np.zeros((len(viewers), t.size, 2), np.float32)
    inout = np.zeros((len(viewers), t.size), np.int8)
    valid = np.zeros((len(viewers), t.size), bool)
    gaze_t = np.full((len(viewers), t.size), np.nan)
    for v_i, (_, d) in enumerate(gaze.groupby("viewer_id", sort=True)):
        g[v_i], inout[v_i], valid[v_i], gaze_t[v_i] = resample_gaze(
            t=d["t"].to_numpy(), x=d["x"].to_numpy(), y=d["y"].to_numpy(), valid=d["valid"].to_numpy(),
            dst_t=t, max_gap_s=cfg["gaze_max_gap_s"], return_sample_t=True,
            known_t=d["t_known"].to_numpy() if "t_known" in d else None)  # fixation labels (ingest)
    mask[:, 3] = valid.any(0) if len(viewers) else False
    out.update({"gaze": g, "inout": inout, "valid": valid, "gaze_t": gaze_t, "mask": mask,
                "viewers": np.array(viewers, dtype=str)})
    return out


def write_aligned(path: str | Path, arrays: dict) -> None:
    """Write one aligned video (what :func:`align_video` returns): every array compressed except
    the feature rows (:data:`ROW_KEYS`), which training and evaluation read window by window."""
    write_npz(path, uncompressed=tuple(k for k in ROW_KEYS if k in arrays), **arrays)


# ---------------------------------------------------------------- DVC stage
def run_align(*, params: dict, root: Path = Path(".")) -> dict:

    cfg, lookahead = params["align"], lookahead_of(params)
    manifest = load_manifest(root)
    out = root / ALIGNED
    feat_dir = root / FEATURES
    gshape = grid_shape(params["visual"])

    def input_hash(item: dict) -> str:
        files = [feat_dir / m / f"{item['video_id']}{ext}" for m in ("audio", "text", "visual") for ext in (".parquet", ".npz")]
        return hash_obj([item["gaze_hash"]] + [hash_file(p) if p.exists() else None for p in files])

    items = [{**it, "media_hash": input_hash(it)} for it in manifest_items(manifest)]

    def compute(item: dict) -> list[Path]:
        gaze = read_table(root / INTERIM / "gaze" / f"{item['video_id']}.parquet")[0]
        arrays = align_video(video_id=item["video_id"], duration_s=item["duration_s"], feat_dir=feat_dir,
                             gaze=gaze, cfg=cfg, grid_shape=gshape, stream_grid=True, lookahead=lookahead)
        path = out / f"{item['video_id']}.npz"
        write_aligned(path, arrays)
        return [path]

    # what the extractors could not compute is masked here (their stale outputs are already gone)
    masked: dict[str, dict[str, str]] = {}
    for m in ("audio", "text", "visual"):
        for vid, why in read_stage_report(feat_dir / m)["failed"].items():
            log.warning("%s: extract_%s failed (%s); %s is masked", vid, m, why, m)
            masked.setdefault(vid, {})[m] = why
    run = run_per_video(cache=VideoCache(out, "align"), items=items,
                        params={**cfg, "grid": gshape, "lookahead": lookahead}, code=stage_code(stage="align", cfg=cfg),
                        compute=compute, on_error=params["data"]["on_error"])
    write_stage_report(out, stage="align", run=run, extra={"masked_upstream": dict(sorted(masked.items()))})
    ok = [it for it in items if it["video_id"] not in run.failed]
    rows, acc = [], NormAccumulator()
    keys = ("t", "gaze", "valid", "mask") + tuple(f"{m}{x}" for m in ("audio", "text", "visual")
                                                 for x in ("", "_columns", "_kinds"))
    for it in ok:
        path = out / f"{it['video_id']}.npz"
        a = read_npz(path, keys=keys)  # not the grid: it is streamed into the statistics below
        rows.append({"video_id": it["video_id"], "split": it["split"], "length": int(a["t"].size),
                     "viewers": int(a["gaze"].shape[0]), "duration_s": it["duration_s"],
                     **{f"coverage_{m}": float(a["mask"][:, i].mean()) for i, m in
                        enumerate(("audio", "text", "visual", "track"))},
                     "label_coverage": float(a["valid"].any(0).mean()) if a["valid"].size else 0.0})
        if it["split"] == "train":
            acc.add_video(a)
            _, grid_rows = iter_npz_rows(path, "grid")
            i = 0
            for g in grid_rows:
                acc.add_grid(g[a["mask"][i:i + len(g), 2]])
                i += len(g)
    check_splits(videos=pd.DataFrame(rows, columns=["video_id", "split", "viewers"]), where="align")
    write_table(out / "index.parquet", pd.DataFrame(rows),
                meta={"fps": cfg["fps"], "grid": list(gshape), "lookahead": lookahead})
    stats = acc.stats()
    stats["fit_on"] = sorted(it["video_id"] for it in ok if it["split"] == "train")
    write_json(out / "norm_stats.json", stats)
    write_json(root / ALIGNED_FEATURE_PARAMS, feature_params_record(params=params, root=root))
    return run.as_dict()


def feature_params_record(*, params: dict, root: Path) -> dict:
    """The params the aligned data was made with, as each stage recorded them (speed-only keys left
    out: gazelib.core.params.feature_record): the extractors' in their reports, ingest's in its report,
    align's and ``features`` from ``params``. The train stage writes them into the model bundle, so it
    need not depend on the feature params itself."""
    import json

    from gazelib.core.cache import REPORT

    sections = {"features": dict(params["features"]), "align": feature_record(params["align"], section="align")}
    for m in ("audio", "text", "visual"):
        if not (root / FEATURES / m / REPORT).exists():
            # the extractor never ran here: align masks the modality; params.yaml's values are recorded
            log.warning("%s: no extract_%s report (the stage has not run): %s masked, params.yaml's %s params recorded",
                        root / FEATURES / m, m, m, m)
            sections[m] = feature_record(params[m], section=m)
            continue
        rep = read_stage_report(root / FEATURES / m)
        if "params" not in rep:
            raise ValueError(f"{root / FEATURES / m}: its report records no params (made by an older gazelib); "
                             f"rerun extract_{m} (`dvc repro -f extract_{m}`)")
        sections[m] = rep["params"]
    ingest_report = root / INTERIM / "ingest_report.json"
    ingest = json.loads(ingest_report.read_text()) if ingest_report.exists() else {}
    if "params" not in ingest:
        raise ValueError(f"{ingest_report}: records no ingest params (made by an older gazelib); rerun ingest")
    return {"feature_params": {s: sections[s] for s in FEATURE_SECTIONS}, "ingest_params": ingest["params"]}
