"""Track history: only gaze sampled at or before t - horizon reaches step t (property tests); windows
prepared lazily from the file equal the eagerly prepared video exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.data.align import resample_gaze
from gazelib.data.dataset import TRACK_DIM, track_history, track_maps


@st.composite
def recordings(draw):
    n = draw(st.integers(5, 60))
    fps = draw(st.sampled_from([5.0, 10.0, 25.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    # a raw recording at any rate, with gaps; labels come from the nearest sample (as align does)
    hz = draw(st.sampled_from([7.0, 30.0, 60.0, 250.0]))
    raw_t = np.sort(rng.uniform(-0.2, t[-1] + 0.3, int(hz * (t[-1] + 0.5)) + 1))
    raw_xy = rng.uniform(-0.3, 1.3, (raw_t.size, 2))
    raw_valid = rng.uniform(size=raw_t.size) > draw(st.floats(0.0, 0.6))
    gaze, inout, valid, sample_t = resample_gaze(t=raw_t, x=raw_xy[:, 0], y=raw_xy[:, 1], valid=raw_valid,
                                                 dst_t=t, max_gap_s=draw(st.sampled_from([0.02, 0.1, 0.3])),
                                                 return_sample_t=True)
    horizon = draw(st.sampled_from([1 / fps, 2 / fps, 0.5, 1.0]))
    return dict(t=t, gaze=gaze, inout=inout, valid=valid, sample_t=sample_t, horizon=horizon, raw_t=raw_t, rng=rng)


@settings(max_examples=150, deadline=None)
@given(recordings())
def test_track_at_t_comes_from_the_last_sample_before_t_minus_horizon(rec):
    feat, src = track_history(gaze=rec["gaze"], inout=rec["inout"], valid=rec["valid"], sample_t=rec["sample_t"],
                              t=rec["t"], horizon_s=rec["horizon"])
    assert feat.shape == (rec["t"].size, TRACK_DIM)
    for i, ti in enumerate(rec["t"]):
        cut = ti - rec["horizon"]
        allowed = np.nonzero(rec["valid"] & (np.nan_to_num(rec["sample_t"], nan=np.inf) <= cut + 1e-9))[0]
        if allowed.size == 0:
            assert src[i] == -1 and not feat[i].any()
        else:
            assert src[i] == allowed[-1]
            assert rec["sample_t"][src[i]] <= cut + 1e-9
            np.testing.assert_allclose(feat[i, :2], np.clip(rec["gaze"][src[i]], -0.5, 1.5))
            assert feat[i, 4] == 1.0 and 0.0 <= feat[i, 3] <= 1.0


@settings(max_examples=100, deadline=None)
@given(recordings(), st.integers(0, 10_000))
def test_perturbing_gaze_after_t_minus_horizon_leaves_step_t_unchanged(rec, pick):
    n = rec["t"].size
    i = pick % n
    cut = rec["t"][i] - rec["horizon"]
    args = dict(gaze=rec["gaze"], inout=rec["inout"], valid=rec["valid"], sample_t=rec["sample_t"], t=rec["t"],
                horizon_s=rec["horizon"])
    feat, _ = track_history(**args)
    # every label that comes from a raw sample after the cut, and every missing label after it
    # (which a perturbation may fill): values, in/out, validity and sample time
    late = np.nan_to_num(rec["sample_t"], nan=-np.inf) > cut + 1e-9
    late |= ~rec["valid"] & (rec["t"] > cut + 1e-9)
    g2, io2, v2, st2 = (rec["gaze"].copy(), rec["inout"].copy(), rec["valid"].copy(), rec["sample_t"].copy())
    g2[late] = rec["rng"].uniform(-1, 2, (int(late.sum()), 2))
    io2[late] = 1 - io2[late]
    v2[late] = ~v2[late]
    st2[late] = np.maximum(rec["t"][late], cut + 1e-6)
    feat2, _ = track_history(gaze=g2, inout=io2, valid=v2, sample_t=st2, t=rec["t"], horizon_s=rec["horizon"])
    np.testing.assert_array_equal(feat[i], feat2[i])
    maps = track_maps(track=np.stack([feat, feat2]), gh=3, gw=4, sigma=0.2)
    np.testing.assert_array_equal(maps[0, i], maps[1, i])


def test_a_label_from_a_later_raw_sample_is_not_seen_early():
    """Nearest-sample labels may come from after their step: the cut uses the raw time."""
    t = np.arange(5) / 10.0
    sample_t = np.array([0.0, 0.1, 0.2, 0.34, 0.4])   # step 3's label was sampled at 0.34 s
    gaze = np.tile([[0.5, 0.5]], (5, 1)).astype(np.float32)
    feat, src = track_history(gaze=gaze, inout=np.ones(5, np.int8), valid=np.ones(5, bool), sample_t=sample_t,
                              t=t, horizon_s=0.1)
    # at t=0.4 the cut is 0.3: step 3 (sampled 0.34) is too late, step 2 is the last one seen
    assert src[4] == 2 and src[3] == 2 and src[0] == -1


# ------------------------------------------------------------------ windows prepared lazily
def _aligned(n_t, seed, n_viewers=3, text_cols=5):
    """An aligned video (as align writes it) with masks, embeddings, gaps in the labels."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_t) / 10

    def tab(n):
        return (rng.normal(size=(n_t, n)) * 3 + 1).astype(np.float32)

    text = tab(text_cols)
    text[rng.uniform(size=n_t) > 0.5] = 0
    return {"t": t, "audio": tab(3), "audio_columns": np.array(["a0", "a1", "a2"]),
            "audio_kinds": np.array(["continuous", "binary", "continuous"]),
            "text": text, "text_columns": np.array([f"e{i}" for i in range(text_cols)]),
            "text_kinds": np.array(["continuous"] + ["embedding"] * (text_cols - 1))[:text_cols],
            "visual": tab(6), "visual_columns": np.array([f"v{i}" for i in range(6)]),
            "visual_kinds": np.array(["continuous"] * 3 + ["embedding"] * 3),
            "grid": rng.normal(2, 3, (n_t, 4, 3, 5)).astype(np.float32), "mask": rng.uniform(size=(n_t, 4)) > 0.2,
            "gaze": rng.uniform(-0.3, 1.3, (n_viewers, n_t, 2)).astype(np.float32),
            "inout": rng.integers(0, 2, (n_viewers, n_t)).astype(np.int8),
            "valid": rng.uniform(size=(n_viewers, n_t)) > 0.3,
            "gaze_t": np.repeat(t[None], n_viewers, 0) + rng.uniform(-0.04, 0.04, (n_viewers, n_t)),
            "viewers": np.array([f"p{i}" for i in range(n_viewers)])}


def _corpus(tmp_path, lengths=(137, 23, 61)):
    from gazelib.data.align import write_aligned
    from gazelib.core.normalize import fit_norm_stats

    vids = {f"v{i}": _aligned(n, i) for i, n in enumerate(lengths)}
    vids["v1"]["text"] = np.zeros((lengths[1], 0), np.float32)   # a video without text columns: zeros, masked
    vids["v1"]["text_columns"] = vids["v1"]["text_kinds"] = np.array([], dtype=str)
    stats = fit_norm_stats(videos=list(vids.values()))
    for vid, a in vids.items():
        write_aligned(tmp_path / f"{vid}.npz", a)
    return vids, stats


CFG = {"horizon_s": 0.5, "window_s": 4.0, "stride_s": 1.3, "heatmap_sigma": 0.1}


def _windows(files, vids, stats, **cfg):
    from gazelib.data.dataset import GazeWindows

    return GazeWindows(files=files, stats=stats, cfg={**CFG, **cfg}, grid_hw=(3, 5), fps=10.0,
                       lengths={f.stem: vids[f.stem]["t"].size for f in files},
                       n_viewers={f.stem: vids[f.stem]["gaze"].shape[0] for f in files}, cache_size=2)


def _assert_same_batch(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def test_lazy_windows_equal_the_eagerly_prepared_video_exactly(tmp_path):
    """Every window read and prepared on demand is bit-identical to the same window of the whole
    video prepared at once (prepare_arrays, the path the committed models were trained on)."""
    from gazelib.data.dataset import LazyVideo, block_order, prepare_arrays, prepare_video, window_batch

    vids, stats = _corpus(tmp_path)
    files = sorted(tmp_path.glob("*.npz"))
    lazy = _windows(files, vids, stats, cache_mb=0)        # nothing prepared whole
    whole = _windows(files, vids, stats)                   # short videos prepared whole within the budget
    eager = {vid: prepare_arrays(arrays=a, video_id=vid, stats=stats, fps=10.0, horizon_s=CFG["horizon_s"],
                                 sigma=CFG["heatmap_sigma"], grid_hw=(3, 5)) for vid, a in vids.items()}
    order = block_order(lazy.index, block=2, seed=0, epoch=0)
    for b0 in range(0, len(order), 5):
        idx = order[b0:b0 + 5]
        ref = window_batch([(eager[lazy.index[i][0]],) + lazy.index[i][1:] for i in idx], lazy.window)
        _assert_same_batch(lazy.batch(idx), ref)
        _assert_same_batch(whole.batch(idx), ref)
    assert all(isinstance(v, LazyVideo) and v.whole is None for v in lazy._cache.values())
    assert any(v.whole is not None for v in whole._cache.values())
    vt = prepare_video(path=files[0], stats=stats, fps=10.0, horizon_s=0.5, sigma=0.1, grid_hw=(3, 5))
    assert vt.viewers == ["p0", "p1", "p2"] and vt.t.size == 137 and np.array_equal(vt.gaze, vids["v0"]["gaze"])


def test_a_long_video_is_never_prepared_whole_and_the_budget_holds(tmp_path):
    from gazelib.data.dataset import LazyVideo

    vids, stats = _corpus(tmp_path, lengths=(400, 30, 35))
    files = sorted(tmp_path.glob("*.npz"))
    probe = _windows(files, vids, stats)
    sizes = {vid: probe.video(vid).whole_nbytes for vid in vids}
    budget_mb = 4 * sizes["v2"] / 2**20   # v1 and v2 fit in it; v0 is over a quarter of it
    ds = _windows(files, vids, stats, cache_mb=budget_mb)
    ds.cache_size = 3
    for b in ds.batches(range(len(ds)), 7):
        held = [v for v in ds._cache.values() if isinstance(v, LazyVideo) and v.whole is not None]
        assert sum(v.whole_nbytes for v in held) <= ds.prepared_bytes
        assert all(v.video_id != "v0" for v in held)
    assert ds.video("v0").whole is None and ds.video("v2").whole is not None


def test_an_old_compressed_aligned_file_is_still_read_the_same(tmp_path, caplog):
    from gazelib.core.io import write_npz

    vids, stats = _corpus(tmp_path)
    old = tmp_path / "old"
    old.mkdir()
    for vid, a in vids.items():
        write_npz(old / f"{vid}.npz", **a)       # every member deflated, as before ROW_KEYS were stored
    new_ds = _windows(sorted(tmp_path.glob("*.npz")), vids, stats, cache_mb=0)
    old_ds = _windows(sorted(old.glob("*.npz")), vids, stats, cache_mb=0)
    with caplog.at_level("WARNING"):
        for i in range(0, len(new_ds), 9):
            _assert_same_batch(old_ds.batch(range(i, min(i + 9, len(new_ds)))),
                               new_ds.batch(range(i, min(i + 9, len(new_ds)))))
    assert "rerun align" in caplog.text


def test_lazy_video_refuses_files_it_cannot_read_by_rows(tmp_path):
    from gazelib.data.align import write_aligned
    from gazelib.data.dataset import LazyVideo
    from gazelib.core.io import write_npz

    vids, stats = _corpus(tmp_path)
    write_npz(tmp_path / "old.npz", **vids["v0"])
    with pytest.raises(ValueError, match=r"old.npz: feature rows .* not stored uncompressed"):
        LazyVideo(path=tmp_path / "old.npz", stats=stats, fps=10.0, horizon_s=0.5, sigma=0.1, grid_hw=(3, 5))
    write_aligned(tmp_path / "nogt.npz", {k: v for k, v in vids["v0"].items() if k != "gaze_t"})
    with pytest.raises(ValueError, match="nogt: aligned file has no 'gaze_t'"):
        LazyVideo(path=tmp_path / "nogt.npz", stats=stats, fps=10.0, horizon_s=0.5, sigma=0.1, grid_hw=(3, 5))
    bad = dict(vids["v0"], audio=vids["v0"]["audio"][:, :2])
    write_aligned(tmp_path / "bad.npz", bad)
    with pytest.raises(ValueError, match="bad: audio has 2 columns, norm stats expect 3"):
        LazyVideo(path=tmp_path / "bad.npz", stats=stats, fps=10.0, horizon_s=0.5, sigma=0.1, grid_hw=(3, 5))


def test_read_aligned_head_is_the_first_steps_of_every_array(tmp_path):
    from gazelib.data.dataset import read_aligned
    from gazelib.core.io import read_npz

    vids, _ = _corpus(tmp_path)
    full = read_npz(tmp_path / "v0.npz")
    head = read_aligned(path=tmp_path / "v0.npz", stop=40)
    assert set(head) == set(full)
    for k, x in full.items():
        want = x[:, :40] if k in ("gaze", "inout", "valid", "gaze_t") else x[:40] if x.ndim and x.shape[0] == 137 else x
        np.testing.assert_array_equal(head[k], want)


def test_max_track_age_reaches_the_windows(tmp_path):
    """train.max_track_age_s (the cap of the track's age input) reaches every window path: a smaller
    cap saturates more steps at 1, and the whole-video, window-by-window and sampled-horizon paths
    agree; a train_cfg without the key (an older checkpoint) gets the schema default."""
    from gazelib.core.params import default
    from gazelib.data.dataset import max_track_age, prepare_arrays, window_batch

    vids, stats = _corpus(tmp_path)
    files = sorted(tmp_path.glob("*.npz"))
    assert max_track_age(CFG) == default("train.max_track_age_s") == 5.0
    with pytest.raises(ValueError, match="train.max_track_age_s"):
        max_track_age({**CFG, "max_track_age_s": 0})
    batches = {}
    for cap in (5.0, 0.6):
        lazy, whole = _windows(files, vids, stats, cache_mb=0, max_track_age_s=cap), _windows(files, vids, stats,
                                                                                             max_track_age_s=cap)
        idx = list(range(0, len(lazy.index), 2))
        b = lazy.batch(idx)
        _assert_same_batch(b, whole.batch(idx))
        eager = {vid: prepare_arrays(arrays=a, video_id=vid, stats=stats, fps=10.0, horizon_s=CFG["horizon_s"],
                                     sigma=CFG["heatmap_sigma"], grid_hw=(3, 5), max_age_s=cap) for vid, a in vids.items()}
        _assert_same_batch(b, window_batch([(eager[lazy.index[i][0]],) + lazy.index[i][1:] for i in idx], lazy.window))
        sampled = _windows(files, vids, stats, max_track_age_s=cap)
        sampled.sample_horizons = [0.5]   # AtHorizon at the dataset's own horizon: the same track
        _assert_same_batch(sampled.batch(idx), b)
        batches[cap] = b
    age = {cap: b["track"][..., 3][b["track"][..., 4] > 0] for cap, b in batches.items()}
    assert int((age[0.6] == 1).sum()) > int((age[5.0] == 1).sum())
    assert torch.equal(batches[0.6]["track"][..., :3], batches[5.0]["track"][..., :3])
