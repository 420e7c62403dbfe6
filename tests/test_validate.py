"""validate: hard failures name the video and the check; coverage and masks match the data."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gazelib.data.align import run_align
from gazelib.features.audio import run_extract_audio
from gazelib.features.visual import run_extract_visual
from gazelib.gaze.ingest import run_ingest
from gazelib.data.validate import run_validate
from gazelib.data.align import align_video
from gazelib.core.io import read_table, write_table
from gazelib.core.layout import load_manifest, split_files
from gazelib.data.validate import ValidationError, coverage


@pytest.fixture(scope="module")
def aligned_repo(tmp_path_factory, tiny_corpus):
    src, params = tiny_corpus
    root = tmp_path_factory.mktemp("val_repo")
    shutil.copytree(src, root / "data/raw/demo")
    run_ingest(params=params, root=root)
    run_extract_audio(params=params, root=root)
    run_extract_visual(params={**params, "visual": {**params["visual"], "image_model": "none"}}, root=root)
    return root, {**params, "visual": {**params["visual"], "image_model": "none"}}


def _fresh(aligned_repo, tmp_path):
    root, params = aligned_repo
    dst = tmp_path / "r"
    shutil.copytree(root, dst)
    return dst, params


def test_clean_data_passes(aligned_repo, tmp_path):
    root, params = _fresh(aligned_repo, tmp_path)
    run_align(params=params, root=root)
    m = run_validate(params=params, root=root)
    assert m["passed"] and m["coverage"]["audio"] > 0.95 and m["coverage"]["text"] == 0.0
    assert "demo001" in (root / "reports/validation.md").read_text()


def _val_video(root):
    return next(v for v, s in zip(load_manifest(root)["video_id"], load_manifest(root)["split"]) if s == "val")


def _add_audio_column(root, vid):
    """One video's audio features gain a column the others lack."""
    p = root / f"data/features/audio/{vid}.parquet"
    df, meta = read_table(p)
    df["extra"] = 1.0
    meta["kinds"]["extra"] = "continuous"
    write_table(p, df, meta=meta)
    return vid


def test_wrong_dimension_excludes_the_video_and_reports_it(aligned_repo, tmp_path):
    """data.on_error: skip (default): the odd video is left out and named; the rest goes on."""
    root, params = _fresh(aligned_repo, tmp_path)
    vid = _add_audio_column(root, _val_video(root))
    run_align(params=params, root=root)
    m = run_validate(params=params, root=root)
    assert m["excluded"] == {vid: ["dimension"]} and not m["passed"]
    report = (root / "reports/validation.md").read_text()
    assert f"excluded from training and evaluation: {vid}" in report and "FAIL" in report
    index = read_table(root / "data/aligned/index.parquet")[0]
    assert split_files(root, index, "val") == []
    assert len(split_files(root, index, "train")) == 1 and len(split_files(root, index, "test")) == 1


def test_wrong_dimension_fails_validate_when_asked_to_raise(aligned_repo, tmp_path):
    root, params = _fresh(aligned_repo, tmp_path)
    vid = _add_audio_column(root, _val_video(root))
    run_align(params=params, root=root)
    with pytest.raises(ValidationError, match=f"{vid}: dimension: audio has 9 columns"):
        run_validate(params={**params, "data": {**params["data"], "on_error": "raise"}}, root=root)


def test_non_monotonic_time_fails_validate_naming_the_video(aligned_repo, tmp_path):
    root, params = _fresh(aligned_repo, tmp_path)
    p = root / "data/features/visual/demo002.parquet"
    df, meta = read_table(p)
    df.loc[5, "t"] = df.loc[2, "t"]
    write_table(p, df, meta=meta)
    run_align(params=params, root=root)
    with pytest.raises(ValidationError, match="demo002: non_monotonic: .*demo002.parquet: time not increasing at row 5"):
        run_validate(params={**params, "data": {**params["data"], "on_error": "raise"}}, root=root)


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 50), st.just(4))))
def test_coverage_is_the_share_of_available_steps(mask):
    cov = coverage(mask)
    assert list(cov) == ["audio", "text", "visual", "track"]
    for i, m in enumerate(cov):
        assert cov[m] == pytest.approx(mask[:, i].mean())


@settings(max_examples=40, deadline=None)
@given(gap_start=st.floats(0.5, 3.0), gap_len=st.floats(0.6, 2.0), seed=st.integers(0, 2**31 - 1))
def test_mask_matches_data_presence(tmp_path_factory, gap_start, gap_len, seed):
    """A feature file with a hole: steps in the hole are masked and zero; the rest carry data."""
    rng = np.random.default_rng(seed)
    feat = tmp_path_factory.mktemp("f")
    t = np.arange(0, 6, 0.01)
    keep = (t < gap_start) | (t > gap_start + gap_len)
    df = pd.DataFrame({"t": t[keep], "rms": rng.uniform(0.1, 1, keep.sum()), "is_speaking": rng.integers(0, 2, keep.sum())})
    write_table(feat / "audio" / "v.parquet", df, meta={"kinds": {"rms": "continuous", "is_speaking": "binary"}})
    gaze = pd.DataFrame({"viewer_id": [], "t": [], "x": [], "y": [], "valid": pd.Series(dtype=bool), "inout": []})
    before, after = t[keep][t[keep] <= gap_start].max(), t[keep][t[keep] >= gap_start + gap_len].min()
    for lookahead, held in (("offline", 0.0), ("none", 0.5)):
        out = align_video(video_id="v", duration_s=6.0, feat_dir=feat, gaze=gaze,
                          cfg={"fps": 10, "max_gap_s": 0.5, "gaze_max_gap_s": 0.1}, grid_shape=(1, 2, 2),
                          lookahead=lookahead)
        steps = out["t"]
        # strictly between the samples around the gap; viewer-causal: the last sample is held max_gap_s first
        hole = (steps > before + held + 1e-9) & (steps < after - 1e-9)
        assert not out["mask"][hole, 0].any() and (out["audio"][hole] == 0).all()
        assert out["mask"][~hole & (steps <= t[-1]), 0].all()
        assert (out["audio"][out["mask"][:, 0], 0] > 0).all()
        assert not out["mask"][:, 1:3].any() and not out["mask"][:, 3].any()  # no text/visual/gaze at all
