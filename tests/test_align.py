"""Property tests for the aligner: per-kind resampling, bounds, masks, gaps, gaze labels. The
interpolating kinds are tested in the offline mode (features.lookahead: offline); the default
viewer-causal hold is tested here and in tests/test_causal_media.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gazelib.data.align import (
    align_table,
    find_gaps,
    l2_normalise,
    resample_ffill,
    resample_gaze,
    resample_kind,
    resample_linear,
    timeline,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def series(draw, min_size=2, max_size=40, dim=None):
    n = draw(st.integers(min_size, max_size))
    dts = draw(arrays(np.float64, n - 1, elements=st.floats(0.005, 0.5)))
    t0 = draw(st.floats(0, 2))
    t = t0 + np.r_[0, np.cumsum(dts)]
    shape = (n,) if dim is None else (n, dim)
    v = draw(arrays(np.float64, shape, elements=finite))
    return t, v


@settings(max_examples=150, deadline=None)
@given(series(), st.floats(0.01, 1.0))
def test_linear_stays_between_neighbours_and_never_extrapolates(sv, max_gap):
    t, v = sv
    dst = np.linspace(t[0] - 1, t[-1] + 1, 97)
    r = resample_linear(src_t=t, src_v=v, dst_t=dst, max_gap_s=max_gap, lookahead="offline")
    # a step within 1e-9 s of a sample is that sample (resample_linear's exact-match tolerance)
    outside = (dst < t[0] - 1e-9) | (dst > t[-1] + 1e-9)
    assert not r.is_valid[outside].any()
    assert (r.values[~r.is_valid] == 0).all()
    for k in np.nonzero(r.is_valid)[0]:
        hi = np.searchsorted(t, dst[k])
        lo = max(hi - 1, 0)
        if hi < t.size and np.isclose(t[hi], dst[k]):
            lo = hi
        hi = min(hi, t.size - 1)
        a, b = v[lo], v[hi]
        assert min(a, b) - 1e-3 * (1 + abs(a) + abs(b)) <= r.values[k] <= max(a, b) + 1e-3 * (1 + abs(a) + abs(b))
        assert t[hi] - t[lo] <= max_gap + 1e-9 or np.isclose(t[lo], dst[k])


@settings(max_examples=100, deadline=None)
@given(series())
def test_linear_is_exact_at_samples_and_on_lines(sv):
    t, v = sv
    r = resample_linear(src_t=t, src_v=v, dst_t=t, max_gap_s=10.0, lookahead="offline")
    assert r.is_valid.all() and r.exact.all()
    np.testing.assert_allclose(r.values, v.astype(np.float32), rtol=1e-5, atol=1e-3)
    line = 3.0 * t - 2.0
    mid = (t[:-1] + t[1:]) / 2
    r2 = resample_linear(src_t=t, src_v=line, dst_t=mid, max_gap_s=10.0, lookahead="offline")
    np.testing.assert_allclose(r2.values, 3.0 * mid - 2.0, rtol=1e-4, atol=1e-3)


@settings(max_examples=100, deadline=None)
@given(series(), st.floats(0.01, 1.0))
def test_forward_fill_takes_the_previous_sample(sv, max_gap):
    t, v = sv
    v = np.round(v)  # discrete values
    dst = np.linspace(t[0] - 0.5, t[-1] + 0.5, 83)
    for mode in ("none", "offline"):
        r = resample_ffill(src_t=t, src_v=v, dst_t=dst, max_gap_s=max_gap, lookahead=mode)
        for k in np.nonzero(r.is_valid)[0]:
            j = np.searchsorted(t, dst[k] + 1e-9, side="right") - 1
            assert j >= 0 and r.values[k] == np.float32(v[j])
            assert dst[k] - t[j] <= max_gap + 1e-9
        assert not r.is_valid[dst < t[0] - 1e-6].any()
        assert not r.is_valid[dst > t[-1] + max_gap + 1e-6].any()
    # viewer-causal: valid exactly while the last sample is at most max_gap old (never judged by the next)
    r = resample_ffill(src_t=t, src_v=v, dst_t=dst, max_gap_s=max_gap, lookahead="none")
    j = np.searchsorted(t, dst + 1e-9, side="right") - 1
    assert np.array_equal(r.is_valid, (j >= 0) & (dst - t[np.maximum(j, 0)] <= max_gap + 1e-9))


@settings(max_examples=100, deadline=None)
@given(series(dim=5))
def test_embeddings_come_back_unit_length_or_zero(sv):
    t, v = sv
    dst = np.linspace(t[0], t[-1], 50)
    for mode in ("none", "offline"):
        r = resample_kind(kind="embedding", src_t=t, src_v=l2_normalise(v), dst_t=dst, max_gap_s=10.0,
                          lookahead=mode)
        norms = np.linalg.norm(r.values, axis=1)
        assert np.all((np.abs(norms - 1) < 1e-4) | (norms < 1e-6))


@settings(max_examples=60, deadline=None)
@given(series(dim=6))
def test_grid_is_interpolated_per_cell(sv):
    t, v = sv
    grid = v.reshape(-1, 1, 2, 3)
    dst = np.linspace(t[0], t[-1], 20)
    for mode in ("none", "offline"):
        r = resample_kind(kind="grid", src_t=t, src_v=grid, dst_t=dst, max_gap_s=10.0, lookahead=mode)
        flat = resample_linear(src_t=t, src_v=v, dst_t=dst, max_gap_s=10.0, lookahead=mode)
        np.testing.assert_allclose(r.values.reshape(20, 6), flat.values, rtol=1e-6, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(series(min_size=2), st.floats(0.01, 0.6))
def test_gap_detection_at_its_threshold(sv, thr):
    t, _ = sv
    gaps = find_gaps(src_t=t, min_gap_s=thr)
    assert len(gaps) == int((np.diff(t) > thr).sum())
    assert all(b - a > thr for a, b in gaps)


def test_gap_inside_data_is_masked_not_invented():
    t = np.r_[np.arange(0, 1, 0.01), np.arange(3, 4, 0.01)]
    dst = np.arange(0, 4, 0.1)
    r = resample_linear(src_t=t, src_v=np.ones_like(t), dst_t=dst, max_gap_s=0.5, lookahead="offline")
    assert not r.is_valid[(dst > 1.0) & (dst < 3.0)].any()
    assert r.is_valid[(dst < 0.95)].all() and r.is_valid[(dst > 3.0) & (dst < 3.95)].all()
    # viewer-causal: the last sample (0.99 s) is held while at most 0.5 s old, then masked until 3 s
    r = resample_linear(src_t=t, src_v=np.ones_like(t), dst_t=dst, max_gap_s=0.5, lookahead="none")
    assert r.is_valid[dst < 1.45].all() and not r.is_valid[(dst > 1.5) & (dst < 2.95)].any()
    assert r.is_valid[dst > 2.95].all()


@settings(max_examples=50, deadline=None)
@given(st.floats(1, 120), st.sampled_from([5, 10, 25, 30]))
def test_timeline_is_monotonic_and_in_range(duration, fps):
    t = timeline(duration_s=duration, fps=fps)
    assert (np.diff(t) > 0).all() and t[0] == 0 and t[-1] < duration + 1e-9
    assert abs(t.size - duration * fps) <= 1


def test_align_table_reads_kinds_not_names():
    df = pd.DataFrame({"t": [0.0, 1.0], "a": [0.0, 1.0], "b": [0.0, 1.0]})
    dst = np.array([0.5])
    blk = align_table(df=df, kinds={"a": "continuous", "b": "binary"}, dst_t=dst, max_gap_s=2.0, lookahead="offline")
    assert blk.values[0].tolist() == [0.5, 0.0]
    blk2 = align_table(df=df, kinds={"a": "binary", "b": "continuous"}, dst_t=dst, max_gap_s=2.0, lookahead="offline")
    assert blk2.values[0].tolist() == [0.0, 0.5]
    # viewer-causal: every kind holds the sample at 0 s (the one at 1 s is in the future)
    blk3 = align_table(df=df, kinds={"a": "continuous", "b": "binary"}, dst_t=dst, max_gap_s=2.0)
    assert blk3.values[0].tolist() == [0.0, 0.0]


@settings(max_examples=80, deadline=None)
@given(st.integers(20, 300), st.floats(0.0, 0.3), st.integers(0, 2**31 - 1))
def test_gaze_missing_is_never_out(n, p_missing, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 60.0
    xy = rng.uniform(-0.5, 1.5, (n, 2))
    valid = rng.uniform(size=n) >= p_missing
    x, y = np.where(valid, xy[:, 0], np.nan), np.where(valid, xy[:, 1], np.nan)
    dst = np.arange(0, n / 60.0, 0.1)
    g, inout, ok = resample_gaze(t=t, x=x, y=y, valid=valid, dst_t=dst, max_gap_s=0.02)
    assert not inout[~ok].any()
    inside = (g[:, 0] >= 0) & (g[:, 0] <= 1) & (g[:, 1] >= 0) & (g[:, 1] <= 1)
    assert (inout[ok] == inside[ok]).all()
    near = np.abs(t[None, :] - dst[:, None]).argmin(1)
    assert (ok == valid[near]).all()


def test_missing_modality_is_zero_filled_and_masked(tmp_path):
    from gazelib.data.align import align_video

    gaze = pd.DataFrame({"viewer_id": ["v"] * 3, "t": [0.0, 0.1, 0.2], "x": [0.5] * 3, "y": [0.5] * 3,
                         "valid": [True] * 3, "inout": [1] * 3})
    out = align_video(video_id="x", duration_s=1.0, feat_dir=tmp_path, gaze=gaze,
                      cfg={"fps": 10, "max_gap_s": 0.5, "gaze_max_gap_s": 0.1}, grid_shape=(2, 3, 4))
    assert out["grid"].shape == (10, 2, 3, 4) and not out["grid"].any()
    assert not out["mask"][:, :3].any()
    assert out["mask"][:3, 3].all() and not out["mask"][4:, 3].any()


def test_feature_files_are_matched_to_videos_by_exact_id(tmp_path):
    """Video 'a' must not pick up 'a.b' or 'a_x' files, whose names start the same way."""
    from gazelib.data.align import load_modality
    from gazelib.core.io import write_table

    kinds = {"kinds": {"rms": "continuous"}}
    for vid, value in (("a", 1.0), ("a.b", 2.0), ("a_x", 3.0)):
        write_table(tmp_path / "audio" / f"{vid}.parquet", pd.DataFrame({"t": [0.0, 1.0], "rms": [value, value]}),
                    meta=kinds)
    for vid, value in (("a", 1.0), ("a.b", 2.0), ("a_x", 3.0)):
        blk, _ = load_modality(feat_dir=tmp_path, modality="audio", video_id=vid, dst_t=np.array([0.5]), max_gap_s=2)
        assert blk.values[0, 0] == value
    blk, _ = load_modality(feat_dir=tmp_path, modality="audio", video_id="b", dst_t=np.array([0.5]), max_gap_s=2)
    assert blk.values.shape == (1, 0) and not blk.is_valid.any()


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_src=st.integers(1, 60), n_dst=st.integers(1, 80),
       chunk=st.integers(1, 17), block=st.integers(1, 9), gap=st.floats(0.05, 2.0))
def test_streamed_grid_resampling_equals_in_memory(seed, n_src, n_dst, chunk, block, gap):
    """The grid is resampled chunk by chunk from rows read block by block: same values, bit for bit."""
    from gazelib.data.align import resample_linear_rows

    rng = np.random.default_rng(seed)
    src_t = np.sort(rng.choice(np.arange(0, 10, 0.01), n_src, replace=False))
    src_v = rng.normal(size=(n_src, 2, 3, 4)).astype(np.float32)
    dst_t = np.sort(rng.uniform(-0.5, 10.5, n_dst))
    for mode in ("none", "offline"):
        ref = resample_linear(src_t=src_t, src_v=src_v, dst_t=dst_t, max_gap_s=gap, lookahead=mode)
        rows = (src_v[i:i + block] for i in range(0, n_src, block))
        stream, ok, exact = resample_linear_rows(src_t=src_t, rows=rows, row_shape=(2, 3, 4), dst_t=dst_t,
                                                 max_gap_s=gap, chunk=chunk, lookahead=mode)
        np.testing.assert_array_equal(stream.materialize(), ref.values)
        np.testing.assert_array_equal(ok, ref.is_valid)
        np.testing.assert_array_equal(exact, ref.exact)


def test_npz_rows_stream_back_what_was_written(tmp_path):
    from gazelib.core.io import StreamedArray, iter_npz_rows, write_npz

    rng = np.random.default_rng(0)
    grid = rng.normal(size=(1000, 3, 4, 5)).astype(np.float32)
    write_npz(tmp_path / "a.npz", t=np.arange(1000.0), grid=grid)
    write_npz(tmp_path / "b.npz", t=np.arange(1000.0), grid=StreamedArray(
        shape=grid.shape, dtype=np.float32, chunks=lambda: (grid[i:i + 64] for i in range(0, 1000, 64))))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    shape, rows = iter_npz_rows(tmp_path / "b.npz", "grid", chunk_rows=300)
    got = list(rows)
    assert shape == grid.shape and [len(g) for g in got] == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate(got), grid)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6),
       shift=st.floats(-1e3, 1e3), scale=st.floats(1e-3, 1e3))
def test_norm_stats_streamed_video_by_video_equal_the_pooled_ones(seed, sizes, shift, scale):
    from gazelib.core.normalize import NormAccumulator

    rng = np.random.default_rng(seed)
    parts = [rng.normal(shift, scale, (n, 3)) for n in sizes]
    grids = [rng.normal(shift, scale, (n, 2, 2, 3)) for n in sizes]
    acc = NormAccumulator()
    for x, g in zip(parts, grids):
        acc.add_video({"audio": x, "audio_columns": np.array(["a", "b", "c"]),
                       "audio_kinds": np.array(["continuous"] * 3), "text": np.zeros((len(x), 0)),
                       "text_columns": np.array([]), "text_kinds": np.array([]), "visual": np.zeros((len(x), 0)),
                       "visual_columns": np.array([]), "visual_kinds": np.array([]), "mask": np.ones((len(x), 4), bool),
                       "grid": g})
    st_ = acc.stats()
    x, g = np.concatenate(parts), np.concatenate(grids)
    if len(x):
        np.testing.assert_allclose(st_["audio"]["mean"], x.mean(0), rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(st_["audio"]["std"], np.maximum(x.std(0), 1e-6), rtol=1e-7)
        np.testing.assert_allclose(st_["grid"]["mean"], g.mean((0, 2, 3)), rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(st_["grid"]["std"], np.maximum(g.std((0, 2, 3)), 1e-6), rtol=1e-7)


def test_aligned_file_stores_feature_rows_for_window_reads_and_embeddings_fill_their_columns(tmp_path):
    """Embeddings go into their columns of the modality array (unit length per embedding, as the
    embedding resampler gives them), and the aligned file stores the feature rows uncompressed."""
    from gazelib.data.align import ROW_KEYS, align_video, write_aligned
    from gazelib.core.io import NpzRows, feature_meta, read_npz, write_npz, write_table

    rng = np.random.default_rng(0)
    tv = np.r_[0.0, np.sort(rng.uniform(0.01, 5.0, 40))]
    meta = feature_meta(video_id="x", modality="visual", kinds={"a": "continuous", "e1": "embedding",
                                                               "e2": "embedding"}, backend="t", params={})
    write_table(tmp_path / "visual" / "x.parquet", pd.DataFrame({"t": tv, "a": rng.normal(size=tv.size)}), meta=meta)
    e1, e2 = rng.normal(size=(tv.size, 5)).astype(np.float32), rng.normal(size=(tv.size, 2, 3)).astype(np.float32)
    write_npz(tmp_path / "visual" / "x.npz", t=tv, e1=e1, e2=e2,
              grid=rng.normal(size=(tv.size, 2, 3, 4)).astype(np.float32))
    gaze = pd.DataFrame({"viewer_id": ["v"] * 3, "t": [0.0, 0.1, 0.2], "x": [0.5] * 3, "y": [0.5] * 3,
                         "valid": [True] * 3, "inout": [1] * 3})
    out = align_video(video_id="x", duration_s=5.0, feat_dir=tmp_path, gaze=gaze,
                      cfg={"fps": 10, "max_gap_s": 0.5, "gaze_max_gap_s": 0.1}, grid_shape=(2, 3, 4))
    dst = np.arange(50) / 10
    ok = out["mask"][:, 2]
    assert list(out["visual_columns"]) == ["a"] + [f"e1_{i}" for i in range(5)] + [f"e2_{i}" for i in range(6)]
    for sl, src in ((slice(1, 6), e1), (slice(6, 12), e2)):
        ref = resample_kind(kind="embedding", src_t=tv, src_v=src, dst_t=dst, max_gap_s=0.5)
        np.testing.assert_allclose(out["visual"][ok, sl], ref.values.reshape(50, -1)[ok], rtol=1e-6, atol=1e-7)
    assert not out["visual"][~ok].any()
    write_aligned(tmp_path / "x.npz", out)
    rows = NpzRows(tmp_path / "x.npz")
    assert all(k in rows for k in ROW_KEYS) and {"t", "gaze", "mask"} <= rows.compressed
    back = read_npz(tmp_path / "x.npz")
    assert all(np.array_equal(back[k], out[k], equal_nan=out[k].dtype.kind == "f") for k in out)
    np.testing.assert_array_equal(rows.rows("grid", 10, 20), out["grid"][10:20])
