"""gazelib.gaze.importers: real EyeLink files, clock sync, geometry, degrees, errors, CLI, determinism.

The ASC files in tests/fixtures/eyelink/ are real tracker output from the pymovements project
(MIT, LICENSE-pymovements.txt beside them). Expected counts below are computed from the raw
text with a plain regex, independently of the pymovements parser the importer uses.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from gazelib.gaze.importers import ImportFormatError, load_config, run_import
from gazelib.gaze.importers.base import Message, Recording, combine_eyes
from gazelib.gaze.geometry import (
    Rect, angular_distance_deg, apply_homography, display_to_video, geometry_block, homography_from_points,
    norm_to_deg, video_rect, visual_geometry,
)
from gazelib.gaze.importers.sync import clean_video_id, find_segments

FIX = Path(__file__).parent / "fixtures" / "eyelink"
SAMPLE = re.compile(r"^(\d+)\s+(\S+)\s+(\S+)\s+")


def raw_samples(path: Path) -> pd.DataFrame:
    """time, x, y of every sample line, '.' as NaN (plain regex over the ASC text)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = SAMPLE.match(line)
        if m:
            rows.append([int(m.group(1))] + [float("nan") if v == "." else float(v) for v in m.groups()[1:]])
    return pd.DataFrame(rows, columns=["time", "x", "y"])


def raw_blinks(path: Path) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"^EBLINK \w\s+(\d+)\s+(\d+)", path.read_text(), re.M)]


def missing_mask(df: pd.DataFrame, blinks) -> np.ndarray:
    miss = df["x"].isna().to_numpy() | df["y"].isna().to_numpy()
    for a, b in blinks:
        miss |= (df["time"] >= a).to_numpy() & (df["time"] <= b).to_numpy()
    return miss


# ---------------------------------------------------------------- real EyeLink files
def test_eyelink_500hz_file_sync_on_message(tmp_path):
    path = FIX / "eyelink_monocular_no_dummy_example.asc"
    raw = raw_samples(path)
    assert len(raw) == 297
    cfg = {"format": "eyelink", "inputs": [str(path)], "geometry": {"rect": "stretch"},
           "sync": {"start": r"^DRAW START$", "video_id": "text_screen"}}
    s = run_import(cfg=cfg, out_dir=tmp_path)
    assert s["skipped"] == [] and s["display_px"] == [1920, 1080] and s["videos"] == ["text_screen"]
    got = pd.read_csv(tmp_path / "gaze" / "text_screen" / "eyelink_monocular_no_dummy_example.csv")
    t0 = 643202                                            # MSG 643202 DRAW START
    kept = raw[raw["time"] >= t0].reset_index(drop=True)
    assert len(got) == len(kept) == 294
    np.testing.assert_allclose(got["t"], (kept["time"] - t0) / 1000.0, atol=1e-9)
    assert got["t"].iloc[0] == pytest.approx(0.001)
    assert 1.0 / np.median(np.diff(got["t"])) == pytest.approx(500.0)
    miss = missing_mask(kept, raw_blinks(path))
    np.testing.assert_array_equal(got["valid"].to_numpy() == 0, miss)
    ok = ~miss
    np.testing.assert_allclose(got.loc[ok, "x"], kept.loc[ok, "x"] / 1920, atol=1e-6)
    np.testing.assert_allclose(got.loc[ok, "y"], kept.loc[ok, "y"] / 1080, atol=1e-6)
    assert s["share_missing"] == pytest.approx(miss.mean(), abs=1e-6)


def test_eyelink_1000hz_file_off_screen_and_blink(tmp_path):
    path = FIX / "raccoons.asc"
    raw = raw_samples(path)
    cfg = {"format": "eyelink", "inputs": [str(path)], "geometry": {"rect": "stretch"},
           "sync": {"method": "recording", "video_id": "raccoons"}}
    s = run_import(cfg=cfg, out_dir=tmp_path)
    got = pd.read_csv(tmp_path / "gaze" / "raccoons" / "raccoons.csv")
    assert len(got) == len(raw) == 433 and s["samples"] == 433
    assert 1.0 / np.median(np.diff(got["t"])) == pytest.approx(1000.0)
    assert s["display_px"] == [1920, 1080]
    miss = missing_mask(raw, raw_blinks(path))
    assert miss.sum() == 85
    np.testing.assert_array_equal(got["valid"].to_numpy() == 0, miss)
    ok = ~miss
    off = ok & ((raw["x"] < 0) | (raw["x"] > 1920) | (raw["y"] < 0) | (raw["y"] > 1080)).to_numpy()
    assert off.sum() > 100                                  # this viewer looked below the screen
    g_off = ok & ((got["x"] < 0) | (got["x"] > 1) | (got["y"] < 0) | (got["y"] > 1)).to_numpy()
    np.testing.assert_array_equal(g_off, off)
    assert s["share_out_of_frame"] == pytest.approx(off.sum() / ok.sum(), abs=1e-6)


def test_eyelink_offset_table_and_message_offsets(tmp_path):
    from gazelib.gaze.importers import eyelink

    path = FIX / "eyelink_monocular_example.asc"
    rec = eyelink.read(path=path, cfg={})[0]
    assert len(rec.t) == 16 and rec.sample_rate == 1000.0 and rec.display_px == (1280, 1024)
    sync = next(m for m in rec.messages if m.text == "SYNCTIME 766 0")   # MSG 2096367 -4 SYNCTIME 766 0
    assert sync.t == pytest.approx((2096367 + 4 - 2154556) / 1000.0) and sync.line == 22
    plain = eyelink.read(path=path, cfg={"reader": {"message_offsets": False}})[0]
    assert any(m.text == "-4 SYNCTIME 766 0" for m in plain.messages)

    table = tmp_path / "offsets.csv"
    table.write_text("recording,video_id,t0,t1\neyelink_monocular_example,judo.mp4,2154560,2339271\n")
    cfg = {"format": "eyelink", "inputs": [str(path)], "geometry": {"display_px": [1280, 1024], "rect": "stretch"},
           "sync": {"method": "table", "table": str(table)}}
    s = run_import(cfg=cfg, out_dir=tmp_path / "c")
    got = pd.read_csv(tmp_path / "c" / "gaze" / "judo" / "eyelink_monocular_example.csv")
    raw = raw_samples(path)
    kept = raw[(raw["time"] >= 2154560) & (raw["time"] <= 2339271)]
    assert s["files"] == 1 and len(got) == len(kept)
    np.testing.assert_allclose(got["t"], (kept["time"] - 2154560).to_numpy() / 1000.0)


def test_imported_files_pass_the_ingest_contract(tmp_path, base_params):
    from gazelib.gaze.ingest import read_gaze_csv

    run_import(cfg={"format": "eyelink", "inputs": [str(FIX / "raccoons.asc")], "geometry": {"rect": "stretch"},
                    "sync": {"method": "recording", "video_id": "raccoons"}}, out_dir=tmp_path)
    g = read_gaze_csv(path=tmp_path / "gaze" / "raccoons" / "raccoons.csv", video_id="raccoons",
                      viewer_id="raccoons", coords="normalized", time_unit="s", width=1920, height=1080,
                      duration_s=1.0, cfg=base_params["ingest"])
    assert len(g) == 433 and g["valid"].sum() == 433 - 85 and (g["inout"][g["valid"]] == 0).sum() > 100
    cy = yaml.safe_load((tmp_path / "corpus.yaml").read_text())
    assert cy["coords"] == "normalized" and cy["time_unit"] == "s"


# ---------------------------------------------------------------- clock sync
def _rec(messages, n=1000, hz=100.0) -> Recording:
    t = np.arange(n) / hz
    return Recording(path=Path("s.asc"), recording_id="s", viewer_id="v", t=t, eyes={"left": (t * 0, t * 0)},
                     space="display_px", native_per_s=1000.0, clock_origin=5000.0,
                     messages=[Message(t=a, text=b, line=i + 1) for i, (a, b) in enumerate(messages)])


def test_sync_session_cut_per_video_by_end_duration_and_next_start():
    rec = _rec([(1.0, "VIDEO_START a.mp4"), (2.5, "VIDEO_END a.mp4"), (3.0, "VIDEO_START b"),
                (4.0, "VIDEO_END a"), (5.0, "VIDEO_START c"), (9.0, "trial end")])
    segs = find_segments(rec=rec, sync={"start": r"VIDEO_START (?P<video>\S+)", "end": r"VIDEO_END (?P<video>\S+)"},
                         durations={"b": 1.5})
    assert [(s.video_id, s.t0, s.t1) for s in segs] == [("a", 1.0, 2.5), ("b", 3.0, 4.5), ("c", 5.0, 9.99)]
    assert "s.asc:1" in segs[0].source


def test_sync_errors_name_the_file_and_line(tmp_path):
    rec = _rec([(1.0, "VIDEO_START"), (2.0, "other")])
    with pytest.raises(ImportFormatError, match=r"s\.asc:1: start message 'VIDEO_START' captures no video id"):
        find_segments(rec=rec, sync={"start": "VIDEO_START"}, durations={})
    with pytest.raises(ImportFormatError, match=r"s\.asc: no message matches sync.start 'MOVIE'"):
        find_segments(rec=rec, sync={"start": "MOVIE"}, durations={})
    table = tmp_path / "t.csv"
    table.write_text("recording,video_id,t0\nother,x,1\ns,y,notanumber\n")
    with pytest.raises(ImportFormatError, match=r"t\.csv:3: t0 'notanumber' is not a number"):
        find_segments(rec=rec, sync={"method": "table", "table": str(table)}, durations={})
    table.write_text("recording,video_id,t0\nother,x,1\n")
    with pytest.raises(ImportFormatError, match=r"no row for recording 's'"):
        find_segments(rec=rec, sync={"method": "table", "table": str(table)}, durations={})
    # table times in the file's own clock (ms here): 7000 ms native = 2.0 s after the first sample
    table.write_text("recording,video_id,t0\ns,clip,7000\n")
    (seg,) = find_segments(rec=rec, sync={"method": "table", "table": str(table)}, durations={"clip": 1.0})
    assert (seg.video_id, seg.t0, seg.t1) == ("clip", 2.0, 3.0)


def test_clean_video_id():
    assert clean_video_id("C:\\stim\\clip 1.MP4") == "clip 1"
    assert clean_video_id("'movies/a.webm'") == "a"


# ---------------------------------------------------------------- geometry and degrees
def test_video_rect_rules():
    assert video_rect(display_px=(1920, 1200), rule="fit", video_px=(1280, 720)) == Rect(0, 60, 1920, 1080)
    assert video_rect(display_px=(1920, 1080), rule="fit", video_px=(640, 480)) == Rect(240, 0, 1440, 1080)
    fill = video_rect(display_px=(1920, 1200), rule="fill", video_px=(1280, 720))
    assert fill.h == 1200 and fill.w == pytest.approx(2133.333, abs=1e-3)
    assert fill.x == pytest.approx(-106.667, abs=1e-3)
    assert video_rect(display_px=(1920, 1080), rule="native", video_px=(1280, 720)) == Rect(320, 180, 1280, 720)
    assert video_rect(display_px=(1920, 1080), rule="stretch") == Rect(0, 0, 1920, 1080)
    assert video_rect(display_px=(1920, 1080), rule=[10, 20, 300, 200]) == Rect(10, 20, 300, 200)
    with pytest.raises(ValueError, match="needs the video's size"):
        video_rect(display_px=(1920, 1080), rule="fit")
    # letterbox bar (y = 30 px) and off-screen gaze are out of frame; the video's corner maps to (1, 1)
    x, y = display_to_video(x_px=np.array([960, 1919.99, 960, -50]), y_px=np.array([30, 1139.99, 600, 600]),
                            rect=Rect(0, 60, 1920, 1080))
    assert y[0] < 0 and x[1] == pytest.approx(1, abs=1e-5) and y[1] == pytest.approx(1, abs=1e-5) and x[3] < 0


def test_homography_round_trip():
    src = [[310, 140], [990, 165], [965, 575], [330, 548]]
    dst = [[0, 0], [1920, 0], [1920, 1080], [0, 1080]]
    h = homography_from_points(src=src, dst=dst)
    u, v = apply_homography(h=h, x=np.array([p[0] for p in src]), y=np.array([p[1] for p in src]))
    np.testing.assert_allclose(np.c_[u, v], dst, atol=1e-6)
    with pytest.raises(ValueError):
        homography_from_points(src=[[0, 0], [1, 1], [2, 2], [3, 3]], dst=dst)


def test_degrees_of_visual_angle():
    g = visual_geometry(display_px=(1920, 1080), screen_cm=(53.0, 29.8), distance_cm=60.0,
                        rect=Rect(0, 0, 1920, 1080))
    assert g["pixels_per_degree"][0] == pytest.approx(1920 / 53.0 * 60 * math.pi / 180, abs=1e-3)
    assert g["deg_per_unit"][0] == pytest.approx(2 * math.degrees(math.atan(26.5 / 60)), abs=1e-3)
    assert g["deg_per_unit"][1] == pytest.approx(2 * math.degrees(math.atan(14.9 / 60)), abs=1e-3)
    block = geometry_block(display_px=(1920, 1080), rects={"b": Rect(480, 270, 960, 540), "a": Rect(0, 0, 1920, 1080)},
                           screen_cm=(53.0, 29.8), distance_cm=60.0)
    assert list(block["video_rect_px"]) == ["a", "b"]
    assert block["deg_per_unit"]["b"][0] == pytest.approx(2 * math.degrees(math.atan(13.25 / 60)), abs=1e-3)
    # exact angle: from the screen centre to a point 10 cm to the right
    dx_norm = 10.0 / 53.0
    ang = angular_distance_deg(x0=0.5, y0=0.5, x1=0.5 + dx_norm, y1=0.5, geometry=block, video_id="a")
    assert float(ang) == pytest.approx(math.degrees(math.atan(10 / 60)), abs=1e-6)
    lin = norm_to_deg(dx=0.01, dy=0.0, geometry=block, video_id="b")
    assert float(lin) == pytest.approx(0.01 * block["deg_per_unit"]["b"][0])
    assert "deg_per_unit" not in geometry_block(display_px=(1920, 1080), rects={"a": Rect(0, 0, 1920, 1080)})


def test_combine_eyes_mean_of_valid_eyes_or_one_eye():
    t = np.arange(4) / 100
    rec = Recording(path=Path("b.asc"), recording_id="b", viewer_id="b", t=t, space="display_px",
                    native_per_s=1.0, clock_origin=0.0,
                    eyes={"left": (np.array([10.0, 10, np.nan, np.nan]), np.array([20.0, 20, np.nan, np.nan])),
                          "right": (np.array([14.0, np.nan, 30, np.nan]), np.array([24.0, np.nan, 40, np.nan]))})
    g = combine_eyes(rec=rec, eye="mean")
    np.testing.assert_allclose(g.x[:3], [12, 10, 30])
    np.testing.assert_array_equal(g.valid, [True, True, True, False])
    np.testing.assert_allclose(combine_eyes(rec=rec, eye="right").y[[0, 2]], [24, 40])
    mono = Recording(path=Path("m.asc"), recording_id="m", viewer_id="m", t=t, space="display_px",
                     native_per_s=1.0, clock_origin=0.0, eyes={"left": (t, t)})
    with pytest.raises(ImportFormatError, match=r"m\.asc: eye 'right' asked for, but the file has \['left'\]"):
        combine_eyes(rec=mono, eye="right")


# ---------------------------------------------------------------- errors, config, determinism, CLI, videos
def test_bad_value_is_reported_with_file_and_line(tmp_path):
    p = tmp_path / "v1.csv"
    p.write_text("t,x,y\n0.00,0.5,0.5\n0.01,0.5,0.5\n0.02,abc,0.5\n")
    cfg = {"format": "csv", "inputs": [str(p)], "reader": {"coords": "video"},
           "sync": {"method": "recording", "video_id": "clip"}}
    with pytest.raises(ImportFormatError, match=r"v1\.csv:4: column 'x' holds 'abc', not a number"):
        run_import(cfg={**cfg, "on_error": "raise"}, out_dir=tmp_path / "c")
    s = run_import(cfg=cfg, out_dir=tmp_path / "c")
    assert s["files"] == 0 and s["skipped"][0]["file"] == "v1.csv" and "v1.csv:4" in s["skipped"][0]["error"]
    with pytest.raises(ImportFormatError, match=r"unknown key\(s\) \['rectangle'\] in import.geometry"):
        run_import(cfg={**cfg, "geometry": {"rectangle": "fit"}}, out_dir=tmp_path / "c")
    with pytest.raises(ImportFormatError, match="format must be one of"):
        run_import(cfg={**cfg, "format": "eyelinkk"}, out_dir=tmp_path / "c")


def test_display_in_file_and_config_must_agree(tmp_path):
    cfg = {"format": "eyelink", "inputs": [str(FIX / "raccoons.asc")], "on_error": "raise",
           "geometry": {"display_px": [1280, 1024], "rect": "stretch"},
           "sync": {"method": "recording", "video_id": "r"}}
    with pytest.raises(ImportFormatError, match=r"raccoons\.asc: the file says the display is 1920x1080 px"):
        run_import(cfg=cfg, out_dir=tmp_path)


def test_output_is_byte_identical_and_stale_files_go(tmp_path):
    cfg = {"format": "eyelink",
           "inputs": [str(FIX / "raccoons.asc"), str(FIX / "eyelink_monocular_no_dummy_example.asc")],
           "geometry": {"rect": "stretch", "screen_cm": [53.0, 29.8], "distance_cm": 60},
           "sync": {"method": "recording", "video_id": "v"}}
    run_import(cfg=cfg, out_dir=tmp_path / "a")
    run_import(cfg=cfg, out_dir=tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert str(tmp_path) not in (tmp_path / "a" / "import_report.json").read_text()
    run_import(cfg={**cfg, "inputs": [str(FIX / "raccoons.asc")]}, out_dir=tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a" / "gaze" / "v").iterdir()) == ["raccoons.csv"]


def test_load_config_from_params_group(tmp_path):
    (tmp_path / "asc").mkdir()
    (tmp_path / "asc" / "P9.asc").write_text((FIX / "raccoons.asc").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"corpus": "x"}, "import": {
        "format": "eyelink", "inputs": ["asc/*.asc"], "geometry": {"rect": "stretch"},
        "sync": {"method": "recording", "video_id": "r"}}}))
    cfg = load_config(tmp_path / "params.yaml")
    s = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert s["files"] == 1 and (tmp_path / "corpus" / "gaze" / "r" / "P9.csv").is_file()


def test_cli_import_and_help(tmp_path):
    from gazelib.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["import", "--help"])
    assert res.exit_code == 0 and "Examples" in res.output and "--sync-start" in res.output
    res = runner.invoke(main, ["import", "eyelink", str(FIX / "eyelink_monocular_no_dummy_example.asc"),
                               "--out", str(tmp_path / "c"), "--sync-start", "^DRAW START$", "--video-id", "clip",
                               "--rect", "stretch", "--screen-cm", "53x29.8", "--distance-cm", "60"])
    assert res.exit_code == 0, res.output
    assert "1 recordings -> 1 gaze files for 1 videos" in res.output
    geo = yaml.safe_load((tmp_path / "c" / "corpus.yaml").read_text())["geometry"]
    assert geo["display_px"] == [1920, 1080] and geo["distance_cm"] == 60.0 and geo["screen_cm"] == [53.0, 29.8]
    assert set(geo) == {"display_px", "screen_cm", "distance_cm", "video_rect_px", "pixels_per_degree", "deg_per_unit"}
    res = runner.invoke(main, ["import", "eyelink", str(FIX / "raccoons.asc"), "--out", str(tmp_path / "d"),
                               "--sync-start", "NO_SUCH_MESSAGE", "--video-id", "x", "--rect", "stretch"])
    assert res.exit_code != 0 and "no message matches sync.start" in res.output


def test_videos_folder_gives_size_duration_and_is_copied(tmp_path, base_params):
    from gazelib.gaze.ingest import ingest_corpus
    from gazelib.core.media import write_mp4

    vids = tmp_path / "stimuli"
    frames = (np.full((48, 64, 3), 90, np.uint8) for _ in range(10))
    write_mp4(path=vids / "clip.mp4", frames=frames, width=64, height=48, fps=10, audio=None, sample_rate=16000)
    # a 1000 Hz recording of 433 ms, cut at the 1.0 s video duration -> all of it; 4:3 video pillarboxed
    cfg = {"format": "eyelink", "inputs": [str(FIX / "raccoons.asc")], "videos": str(vids),
           "sync": {"method": "recording", "video_id": "clip"}}
    s = run_import(cfg=cfg, out_dir=tmp_path / "c")
    assert s["geometry"]["video_rect_px"]["clip"] == [240.0, 0.0, 1440.0, 1080.0]
    assert (tmp_path / "c" / "videos" / "clip.mp4").read_bytes() == (vids / "clip.mp4").read_bytes()
    res = ingest_corpus(corpus=tmp_path / "c", params=base_params["ingest"], on_error="raise")  # the corpus is usable
    assert res.skipped == [] and res.manifest["n_viewers"].tolist() == [1] and len(res.gaze["clip"]) == 433
    cfg["sync"]["video_id"] = "unknown"
    s = run_import(cfg=cfg, out_dir=tmp_path / "d")
    assert s["files"] == 0 and s["unmatched_videos"][0]["video_id"] == "unknown"
    report = json.loads((tmp_path / "d" / "import_report.json").read_text())
    assert report["unmatched_videos"] == s["unmatched_videos"]
