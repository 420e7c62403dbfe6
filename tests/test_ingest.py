"""ingest: contract checks reported by file name, skip-and-report, splits, unit conversion."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.ingest import CorpusError, assign_splits, ingest_corpus, read_gaze_csv, write_ingest


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
    assert "not monotonic at row 10" in errors["viewer01.csv"]
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
