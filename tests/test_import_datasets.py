"""Public data sets in: DIEM (real files), GazeCom ``.coord`` and per-frame fixation ``.mat`` (files written
from the published descriptions). See docs/datasets.md.

tests/fixtures/diem/ holds four real DIEM participant files (CC BY-NC-SA 3.0, LICENSE-DIEM.txt). The
expected values below are computed from the raw text with plain splitting, independently of the reader.
"""
from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.gaze.importers import ImportFormatError, run_import

FIX = Path(__file__).parent / "fixtures" / "diem"
VIDEO = "arctic_bears_1066x710"
FILES = sorted((FIX / VIDEO / "event_data").glob("*.txt"))
DISPLAY = (1280, 960)
VW, VH = 1066, 710
OFF = ((DISPLAY[0] - VW) / 2, (DISPLAY[1] - VH) / 2)


def raw(path: Path) -> np.ndarray:
    return np.array([[float(v) for v in line.split("\t")] for line in path.read_text().splitlines() if line.strip()])


def expected_gaze(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of the eyes whose code is 1 or 2 and position not (0, 0), in video-normalised units."""
    xs, ys, oks = [], [], []
    for xi, yi, ci in ((1, 2, 4), (5, 6, 8)):
        ok = np.isin(a[:, ci], [1, 2]) & ~((a[:, xi] == 0) & (a[:, yi] == 0))
        xs.append(np.where(ok, a[:, xi], 0.0))
        ys.append(np.where(ok, a[:, yi], 0.0))
        oks.append(ok)
    n = oks[0].astype(int) + oks[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (xs[0] + xs[1]) / n
        y = (ys[0] + ys[1]) / n
    return (x - OFF[0]) / VW, (y - OFF[1]) / VH, n > 0


def test_fixture_files_are_diem_rows():
    assert len(FILES) == 4
    for f in FILES:
        a = raw(f)
        assert a.shape == (2785, 9)
        assert np.array_equal(a[:, 0], np.arange(1, 2786))


def test_diem_real_files_counts_timing_eyes_invalid(tmp_path):
    s = run_import(cfg={"format": "diem", "inputs": [str(FIX)]}, out_dir=tmp_path)
    assert s["recordings"] == 4 and s["files"] == 4 and s["samples"] == 4 * 2785
    assert s["videos"] == [VIDEO] and s["display_px"] == list(DISPLAY)
    assert s["geometry"]["video_rect_px"][VIDEO] == [OFF[0], OFF[1], VW, VH]
    n_missing = 0
    for f in FILES:
        viewer = f.name.split(".")[0]
        df = pd.read_csv(tmp_path / "gaze" / VIDEO / f"{viewer}.csv")
        a = raw(f)
        # one sample per frame, frame f at (f - 1) / 30 s
        np.testing.assert_allclose(df["t"].to_numpy(), (a[:, 0] - 1) / 30.0, atol=1e-6)
        assert df["t"].iloc[-1] == pytest.approx(2784 / 30, abs=1e-6)
        x, y, ok = expected_gaze(a)
        assert np.array_equal(df["valid"].to_numpy() == 1, ok)
        np.testing.assert_allclose(df["x"].to_numpy()[ok], x[ok], atol=2e-6)
        np.testing.assert_allclose(df["y"].to_numpy()[ok], y[ok], atol=2e-6)
        assert df.loc[~ok, "x"].isna().all()
        # codes -1 (lost) and 0 (blink) on both eyes: missing, never "out of frame"
        both_bad = np.isin(a[:, 4], [-1, 0]) & np.isin(a[:, 8], [-1, 0])
        assert both_bad.any() and (df["valid"].to_numpy()[both_bad] == 0).all()
        n_missing += int((~ok).sum())
        # one eye blinking: the other eye alone (not the mean with (0, 0))
        one = (a[:, 4] == 1) & (a[:, 8] == 0) & (a[:, 5] == 0)
        if one.any():
            i = np.nonzero(one)[0][0]
            assert df["x"].iloc[i] == pytest.approx((a[i, 1] - OFF[0]) / VW, abs=2e-6)
    assert s["share_missing"] == pytest.approx(n_missing / (4 * 2785), abs=1e-6)
    # the gaze median sits near the frame's centre once the screen offset is removed (DIEM coords are screen px)
    allx = pd.concat(pd.read_csv(p) for p in sorted((tmp_path / "gaze" / VIDEO).glob("*.csv")))
    assert abs(allx["x"].median() - 0.5) < 0.1 and abs(allx["y"].median() - 0.5) < 0.1


def test_diem_codes_one_eye_in_fixture():
    """The fixture covers the cases the test above checks: left-only, right-only, both lost."""
    a = np.concatenate([raw(f) for f in FILES])
    assert ((a[:, 4] == 1) & (a[:, 8] == 0)).any() and ((a[:, 4] == 0) & (a[:, 8] == 1)).any()
    assert ((a[:, 4] == -1) & (a[:, 8] == -1)).any() and (a[:, 4] == 2).any()


def _ffmpeg() -> str:
    from gazelib.core.media import ffmpeg_exe

    return ffmpeg_exe()


@pytest.fixture(scope="module")
def diem_release(tmp_path_factory):
    """The DIEM layout with a stand-in video (1066x710, 30 fps, 2785 frames, no audio) and a .wav soundtrack."""
    root = tmp_path_factory.mktemp("diem")
    folder = root / VIDEO
    shutil.copytree(FIX / VIDEO / "event_data", folder / "event_data")
    (folder / "video").mkdir()
    (folder / "audio").mkdir()
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"color=c=gray:s={VW}x{VH}:r=30",
                    "-frames:v", "2785", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    "-an", str(folder / "video" / f"{VIDEO}.mp4")], check=True)
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=16000:duration=92.833", str(folder / "audio" / f"{VIDEO}.wav")],
                   check=True)
    return root


def test_diem_video_and_soundtrack_muxed(diem_release, tmp_path):
    from gazelib.core.media import probe_video

    src = probe_video(path=diem_release / VIDEO / "video" / f"{VIDEO}.mp4")
    assert not src.has_audio
    res = CliRunner().invoke(__import__("gazelib.gaze.importers.cli", fromlist=["import_cmd"]).import_cmd,
                             ["diem", str(diem_release), "--out", str(tmp_path / "c1")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "c1" / "videos" / f"{VIDEO}.mkv"
    pr = probe_video(path=out)
    assert pr.has_audio and (pr.width, pr.height) == (VW, VH)
    assert pr.duration_s == pytest.approx(2785 / 30, abs=0.1)
    assert len(list((tmp_path / "c1" / "gaze" / VIDEO).glob("*.csv"))) == 4
    # same inputs: byte-identical corpus (video included)
    run_import(cfg={"format": "diem", "inputs": [str(diem_release)]}, out_dir=tmp_path / "c2")
    for p in sorted((tmp_path / "c1").rglob("*")):
        if p.is_file():
            assert filecmp.cmp(p, tmp_path / "c2" / p.relative_to(tmp_path / "c1"), shallow=False), p.name


def test_diem_errors_name_file_and_line(tmp_path):
    bad = tmp_path / f"diem9s01.asc_3_{VIDEO}.txt"
    lines = FILES[0].read_text().splitlines()
    lines[9] = "\t".join(lines[9].split("\t")[:8])
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFormatError, match=rf"{bad.name}:10: expected 9"):
        run_import(cfg={"format": "diem", "inputs": [str(bad)], "on_error": "raise"}, out_dir=tmp_path / "o")
    lines = FILES[0].read_text().splitlines()
    lines[4] = lines[4].replace("\t", "\tx", 1)
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFormatError, match=rf"{bad.name}:5: not a number"):
        run_import(cfg={"format": "diem", "inputs": [str(bad)], "on_error": "raise"}, out_dir=tmp_path / "o")
    nosize = tmp_path / "diem9s01.asc_3_clip.txt"
    nosize.write_text(FILES[0].read_text())
    with pytest.raises(ImportFormatError, match="reader.video_px"):
        run_import(cfg={"format": "diem", "inputs": [str(nosize)], "on_error": "raise"}, out_dir=tmp_path / "o")
    s = run_import(cfg={"format": "diem", "inputs": [str(nosize)], "reader": {"video_px": [VW, VH]}},
                   out_dir=tmp_path / "o2")
    assert s["files"] == 1 and s["videos"] == ["clip"]


# ---------------------------------------------------------------- GazeCom .coord
COORD_HEADER = """# Gaze file postprocessed using remove_blinks
#
# Input file:
#     ABC_beach.coord
gaze 1280 720
geometry distance 0.45 width 0.4 height 0.225
"""


def write_coord(path: Path, rows: list[tuple]) -> None:
    path.write_text(COORD_HEADER + "".join(f"{t} {x} {y} {c}\n" for t, x, y, c in rows))


def test_gazecom_coord(tmp_path):
    rows = [(34000, 640.0, 360.0, 1), (38000, 1280.0, 0.0, 1), (42000, 0, 0, 0), (46000, 1600.5, 100.0, 1)]
    folder = tmp_path / "beach"
    folder.mkdir()
    write_coord(folder / "ABC_beach.coord", rows)
    write_coord(folder / "XYZ_beach.coord", rows[:2])
    s = run_import(cfg={"format": "gazecom", "inputs": [str(folder)]}, out_dir=tmp_path / "c")
    assert s["videos"] == ["beach"] and s["files"] == 2 and s["samples"] == 6
    df = pd.read_csv(tmp_path / "c" / "gaze" / "beach" / "ABC.csv")
    np.testing.assert_allclose(df["t"], [0.034, 0.038, 0.042, 0.046], atol=1e-9)
    assert df["valid"].tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(df["x"].iloc[[0, 1, 3]], [0.5, 1.0, 1600.5 / 1280], atol=1e-6)
    np.testing.assert_allclose(df["y"].iloc[[0, 1, 3]], [0.5, 0.0, 100 / 720], atol=1e-6)
    geo = yaml.safe_load((tmp_path / "c" / "corpus.yaml").read_text())["geometry"]
    assert geo["display_px"] == [1280, 720] and geo["video_rect_px"]["beach"] == [0.0, 0.0, 1280.0, 720.0]
    assert geo["screen_cm"] == pytest.approx([40.0, 22.5]) and geo["distance_cm"] == pytest.approx(45.0)
    assert s["share_out_of_frame"] == pytest.approx(1 / 5)


def test_gazecom_errors(tmp_path):
    p = tmp_path / "ABC_beach.coord"
    p.write_text("# no size\n34000 1 2 1\n")
    with pytest.raises(ImportFormatError, match="no 'gaze <width> <height>' line"):
        run_import(cfg={"format": "gazecom", "inputs": [str(p)], "on_error": "raise"}, out_dir=tmp_path / "o")
    p.write_text(COORD_HEADER + "34000 1 2 1\n38000 1 oops 1\n")
    with pytest.raises(ImportFormatError, match=r"ABC_beach.coord:8: not a number"):
        run_import(cfg={"format": "gazecom", "inputs": [str(p)], "on_error": "raise"}, out_dir=tmp_path / "o")
    p.write_text(COORD_HEADER + "34000 1 2\n")
    with pytest.raises(ImportFormatError, match=r"ABC_beach.coord:7: a sample needs"):
        run_import(cfg={"format": "gazecom", "inputs": [str(p)], "on_error": "raise"}, out_dir=tmp_path / "o")


# ---------------------------------------------------------------- per-frame fixation .mat (STAViS layout)
def write_fixmaps(folder: Path, tracks: list[list[tuple[int, int] | None]], hw=(36, 64)) -> None:
    import scipy.io

    folder.mkdir(parents=True)
    for j in range(len(tracks[0])):
        m = np.zeros(hw, np.uint8)
        for tr in tracks:
            if tr[j] is not None:
                m[tr[j][0], tr[j][1]] = 1
        scipy.io.savemat(folder / f"fixMap_{j + 1:05d}.mat", {"eyeMap": m})


def test_fixmap_mat_pseudo_viewers(tmp_path):
    n = 12
    a = [(5, 3 + j) for j in range(n)]                           # moves right along row 5
    b = [(30, 60 - j) if j != 4 else None for j in range(n)]     # moves left along row 30, absent in frame 5
    root = tmp_path / "annotations" / "AVAD"
    write_fixmaps(root / "clip01", [a, b])
    fps_list = tmp_path / "AVAD_list_test_fps.txt"
    fps_list.write_text("clip01 12 25\n")
    s = run_import(cfg={"format": "fixmap", "inputs": [str(root)], "reader": {"fps_list": str(fps_list)}},
                   out_dir=tmp_path / "c")
    assert s["videos"] == ["clip01"] and s["files"] == 2 and s["samples"] == 2 * n
    d1 = pd.read_csv(tmp_path / "c" / "gaze" / "clip01" / "fix01.csv")
    d2 = pd.read_csv(tmp_path / "c" / "gaze" / "clip01" / "fix02.csv")
    np.testing.assert_allclose(d1["t"], np.arange(n) / 25.0, atol=1e-6)
    # each pseudo-viewer follows one track (matching by distance), pixel centres in normalised units
    first, second = (d1, d2) if d1["y"].iloc[0] < 0.5 else (d2, d1)
    np.testing.assert_allclose(first["x"], [(3 + j + 0.5) / 64 for j in range(n)], atol=1e-6)
    assert first["valid"].all()
    assert second["valid"].tolist() == [1] * 4 + [0] + [1] * 7
    ok = second["valid"] == 1
    np.testing.assert_allclose(second.loc[ok, "x"], [(60 - j + 0.5) / 64 for j in range(n) if j != 4], atol=1e-6)
    np.testing.assert_allclose(second.loc[ok, "y"], (30 + 0.5) / 36, atol=1e-6)


def test_fixmap_errors(tmp_path):
    import scipy.io

    folder = tmp_path / "clip02"
    write_fixmaps(folder, [[(1, 1)] * 3])
    with pytest.raises(ImportFormatError, match="frame rate of video 'clip02' is unknown"):
        run_import(cfg={"format": "fixmap", "inputs": [str(folder)], "on_error": "raise"}, out_dir=tmp_path / "o")
    scipy.io.savemat(folder / "fixMap_00002.mat", {"other": np.zeros((36, 64))})
    with pytest.raises(ImportFormatError, match=r"fixMap_00002.mat: no variable 'eyeMap'"):
        run_import(cfg={"format": "fixmap", "inputs": [str(folder)], "reader": {"fps": 30}, "on_error": "raise"},
                   out_dir=tmp_path / "o")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), max_size=6, unique=True),
                min_size=1, max_size=10))
def test_assign_slots_keeps_every_point_once(frames):
    """Each frame's points are all written, each to one pseudo-viewer, and nothing else is."""
    from gazelib.gaze.importers.fixmap import assign_slots

    points = [np.asarray(f, np.float64).reshape(-1, 2) / 100 for f in frames]
    out = assign_slots(points)
    assert out.shape[0] == max(len(p) for p in points)
    for j, pts in enumerate(points):
        got = out[:, j][~np.isnan(out[:, j, 0])]
        assert sorted(map(tuple, got)) == sorted(map(tuple, pts))
