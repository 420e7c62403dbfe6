"""ingest: contract checks reported by file name, skip-and-report, splits, unit conversion."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.gaze.ingest import CorpusError, assign_splits, ingest_corpus, read_gaze_csv, write_ingest


def _copy_corpus(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("truth"))
    return dst


def test_bad_inputs_are_reported_by_name_and_the_rest_completes(tiny_corpus, tmp_path, base_params):
    src, _ = tiny_corpus
    c = _copy_corpus(src, tmp_path / "corpus")
    # truncated video: a copy of demo001 cut in half
    data = (c / "videos" / "demo001.mp4").read_bytes()
    (c / "videos" / "cut.mp4").write_bytes(data[: len(data) // 2])
    shutil.copytree(c / "gaze" / "demo001", c / "gaze" / "cut")
    # gaze file missing a column, and a non-monotonic one
    g = pd.read_csv(c / "gaze" / "demo000" / "viewer00.csv")
    g.drop(columns="y").to_csv(c / "gaze" / "demo000" / "viewer00.csv", index=False)
    g2 = pd.read_csv(c / "gaze" / "demo000" / "viewer01.csv")
    g2.loc[10, "t"] = g2.loc[5, "t"]
    g2.to_csv(c / "gaze" / "demo000" / "viewer01.csv", index=False)
    # id outside the allowed characters
    shutil.copy(c / "videos" / "demo002.mp4", c / "videos" / "bad id!.mp4")

    res = ingest_corpus(corpus=c, params=base_params["ingest"], on_error="skip")
    errors = {s["file"].split("/")[-1]: s["error"] for s in res.skipped}
    assert "truncated" in errors["cut.mp4"] and "cut" in errors["cut.mp4"]
    assert "no column 'y'" in errors["viewer00.csv"] and "demo000" in errors["viewer00.csv"]
    assert "time goes backwards at row 10" in errors["viewer01.csv"]
    assert "bad id!" in errors["bad id!.mp4"]
    assert sorted(res.manifest["video_id"]) == ["demo000", "demo001", "demo002"]
    m = res.manifest.set_index("video_id")
    assert m.loc["demo000", "n_viewers"] == 2 and m.loc["demo001", "n_viewers"] == 4
    assert m.loc["demo001", "has_audio"] and abs(m.loc["demo001", "duration_s"] - 10.0) < 0.2
    report = write_ingest(result=res, out_dir=tmp_path / "interim", corpus=c)
    assert len(report["skipped"]) == 4
    assert (tmp_path / "interim" / "gaze" / "demo002.parquet").exists()
    with pytest.raises(CorpusError, match="bad id!"):  # raise mode stops at the first bad file
        ingest_corpus(corpus=c, params=base_params["ingest"], on_error="raise")


def test_gaze_units_and_ranges(tmp_path, base_params):
    cfg = base_params["ingest"]
    t = np.arange(0, 5, 1 / 60)
    df = pd.DataFrame({"t": t * 1000, "x": np.full(t.size, 160.0), "y": np.full(t.size, 90.0)})
    df.loc[3, ["x", "y"]] = [-20, 90]      # out of frame, not missing
    df.loc[4, ["x", "y"]] = [np.nan, np.nan]
    p = tmp_path / "v.csv"
    df.to_csv(p, index=False)
    g = read_gaze_csv(path=p, video_id="vid", viewer_id="v", coords="pixels", time_unit="ms", width=320,
                      height=180, duration_s=5.0, cfg=cfg)
    assert np.allclose(g["t"].iloc[:3], t[:3])
    assert np.allclose(g.loc[0, ["x", "y"]].to_numpy(float), [0.5, 0.5])
    assert g.loc[3, "valid"] and g.loc[3, "inout"] == 0
    assert not g.loc[4, "valid"] and g.loc[4, "inout"] == 0
    with pytest.raises(CorpusError, match="look like pixels"):
        read_gaze_csv(path=p, video_id="vid", viewer_id="v", coords="normalized", time_unit="ms", width=320,
                      height=180, duration_s=5.0, cfg=cfg)
    with pytest.raises(CorpusError, match="look like milliseconds"):
        read_gaze_csv(path=p, video_id="vid", viewer_id="v", coords="pixels", time_unit="s", width=320,
                      height=180, duration_s=5.0, cfg=cfg)


def test_duplicate_timestamps_keep_the_first_and_are_counted(tmp_path, base_params, caplog):
    import logging

    t = np.r_[np.arange(0, 2, 1 / 60), np.arange(2, 4, 1 / 60)]
    t = np.insert(t, [10, 50, 50], t[[10, 50, 50]])   # three repeats
    df = pd.DataFrame({"t": t, "x": np.linspace(0.1, 0.9, t.size), "y": 0.5})
    p = tmp_path / "v.csv"
    df.to_csv(p, index=False)
    args = dict(path=p, video_id="vid", viewer_id="v", coords="normalized", time_unit="s", width=320, height=180,
                duration_s=4.0)
    with caplog.at_level(logging.WARNING):
        g = read_gaze_csv(**args, cfg=base_params["ingest"])
    assert g.attrs["n_duplicate_t"] == 3 and len(g) == t.size - 3 and (np.diff(g["t"]) > 0).all()
    assert g.loc[10, "x"] == pytest.approx(df.loc[10, "x"])          # the first of the repeated samples
    assert "3 repeated timestamps (first at row 11" in caplog.text
    with pytest.raises(CorpusError, match="row 11 repeats the timestamp"):
        read_gaze_csv(**args, cfg={**base_params["ingest"], "duplicate_timestamps": "error"})


def test_microsecond_tracker_clock_with_a_per_recording_offset(tiny_corpus, tmp_path, base_params):
    src, _ = tiny_corpus
    c = _copy_corpus(src, tmp_path / "corpus")
    f = c / "gaze" / "demo001" / "viewer02.csv"
    g = pd.read_csv(f)
    t0_us = 1_234_567_890_123
    pd.DataFrame({"t": np.round(g["t"] * 1e6).astype(np.int64) + t0_us, "x": g["x"], "y": g["y"],
                  "valid": g["valid"]}).to_csv(f, index=False)
    for other in sorted(c.glob("gaze/*/*.csv")):
        if other != f:
            o = pd.read_csv(other)
            o["t"] = np.round(o["t"] * 1e6).astype(np.int64)
            o.to_csv(other, index=False)
    (c / "corpus.yaml").write_text((c / "corpus.yaml").read_text().replace("time_unit: s", "time_unit: us")
                                   + f"clock_offsets:\n  demo001/viewer02: {t0_us}\n")
    res = ingest_corpus(corpus=c, params=base_params["ingest"], on_error="raise")
    got = res.gaze["demo001"].query("viewer_id == 'viewer02'")["t"].to_numpy()
    np.testing.assert_allclose(got, g["t"].to_numpy()[: got.size], atol=1e-6)
    other = res.gaze["demo000"].query("viewer_id == 'viewer00'")["t"].to_numpy()
    assert 0 <= other[0] < 0.1
    # without the offset the tracker clock is nowhere near the video: refused with a hint
    (c / "corpus.yaml").write_text((c / "corpus.yaml").read_text().split("clock_offsets")[0])
    with pytest.raises(CorpusError, match="viewer02.csv"):
        ingest_corpus(corpus=c, params=base_params["ingest"], on_error="raise")


def test_two_files_with_one_stem_are_rejected_by_name(tiny_corpus, tmp_path, base_params):
    src, _ = tiny_corpus
    c = _copy_corpus(src, tmp_path / "corpus")
    shutil.copy(c / "videos" / "demo002.mp4", c / "videos" / "demo002.mkv")
    res = ingest_corpus(corpus=c, params=base_params["ingest"], on_error="skip")
    assert sorted(res.manifest["video_id"]) == ["demo000", "demo001"]
    shared = [s for s in res.skipped if "shared by" in s["error"]]
    assert sorted(s["file"].rsplit("/", 1)[1] for s in shared) == ["demo002.mkv", "demo002.mp4"]
    assert all("'demo002' is shared by ['demo002.mkv', 'demo002.mp4']" in s["error"] for s in shared)


def test_an_m4v_video_is_ingested(tiny_corpus, tmp_path, base_params):
    """Every extension of gazelib.core.media.VIDEO_EXTS is a video to ingest (one list for ingest,
    the importers and predict): an .m4v (an MPEG-4 file under its Apple name) is read like the .mp4."""
    from gazelib.core.media import VIDEO_EXTS

    src, _ = tiny_corpus
    c = _copy_corpus(src, tmp_path / "corpus")
    (c / "videos" / "demo002.mp4").rename(c / "videos" / "demo002.m4v")
    res = ingest_corpus(corpus=c, params=base_params["ingest"], on_error="raise")
    assert ".m4v" in VIDEO_EXTS and not res.skipped
    m = res.manifest.set_index("video_id")
    assert sorted(m.index) == ["demo000", "demo001", "demo002"]
    assert m.loc["demo002", "n_viewers"] == m.loc["demo001", "n_viewers"] and m.loc["demo002", "has_audio"]


ids = st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True), min_size=3, max_size=30,
               unique=True)


@settings(max_examples=60, deadline=None)
@given(ids)
def test_splits_are_deterministic_and_nonempty(video_ids):
    ratios = {"train": 0.6, "val": 0.2, "test": 0.2}
    a = assign_splits(video_ids=video_ids, ratios=ratios)
    b = assign_splits(video_ids=list(reversed(video_ids)), ratios=ratios)
    assert a == b
    assert set(a.values()) == {"train", "val", "test"}


def test_split_overrides_win():
    vids = [f"v{i}" for i in range(6)]
    s = assign_splits(video_ids=vids, ratios={"train": 0.6, "val": 0.2, "test": 0.2},
                      overrides={"test": ["v0", "v1"], "v2": "val"})
    assert s["v0"] == s["v1"] == "test" and s["v2"] == "val"


def test_listing_only_test_and_val_sends_the_rest_to_train(caplog):
    """The issue's corpus: 20 videos, 6 listed as test and 3 as val; hash splits gave 7/8/5."""
    vids = [f"clip{i:02d}" for i in range(20)]
    ratios = {"train": 0.6, "val": 0.2, "test": 0.2}
    listed = {"test": vids[:6], "val": vids[6:9]}
    with caplog.at_level("INFO", logger="gazelib.gaze.ingest"):
        s = assign_splits(video_ids=vids, ratios=ratios, overrides=listed)
    assert [s[v] for v in vids] == ["test"] * 6 + ["val"] * 3 + ["train"] * 11
    assert "the 11 unlisted go to train" in caplog.text
    only_test = assign_splits(video_ids=vids, ratios=ratios, overrides={"test": vids[:6]})
    # only test listed: the rest is train, but one unlisted video still fills the empty val split
    assert sum(x == "train" for x in only_test.values()) == 13 and sum(x == "val" for x in only_test.values()) == 1
    per_video = assign_splits(video_ids=vids, ratios=ratios, overrides={"clip03": "val"})
    assert per_video["clip03"] == "val" and sum(x == "train" for x in per_video.values()) == 18
    assert sum(x == "test" for x in per_video.values()) == 1  # the empty test split took one unlisted video
    # only train listed: the rest still follow the ratios (every split non-empty)
    only_train = assign_splits(video_ids=vids, ratios=ratios, overrides={"train": vids[:3]})
    assert set(only_train.values()) == {"train", "val", "test"}
