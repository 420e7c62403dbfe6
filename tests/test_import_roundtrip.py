"""Round trip: demo-like gaze -> each vendor's file format -> gazelib import -> the original gaze.

The writers below are test-only: they follow each vendor's documented export layout (column
names, units, origins, message conventions) with a display of 1920x1200 showing a 1280x720
video letterboxed (fit: drawn at y = 60..1140), sync messages around each video, samples
between the videos that must not leak into any clip, missing samples and gaze on the bars and
off the screen.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gazelib.demo.viewers import SceneEvents, simulate_viewer
from gazelib.gaze.importers import run_import
from gazelib.gaze.geometry import apply_homography, homography_from_points, video_rect

DISPLAY = (1920, 1200)
VIDEO = (1280, 720)
RECT = video_rect(display_px=DISPLAY, rule="fit", video_px=VIDEO)      # (0, 60, 1920, 1080)
CLIPS = {"clipA": 3.0, "clipB": 2.0}
GAP_S = 0.7                                                             # between clips and before the first
VIEWER_CFG = {"gaze_hz": 100, "latency_s": [0.15, 0.3], "p_speaker": 0.9, "p_named": 0.9, "p_dark_out": 1.0,
              "follow_s": [1.0, 2.0], "free_fixation_s": [0.4, 0.9], "saccade_tau_s": 0.012, "drift_sd": 0.002,
              "tracker_noise_sd": 0.004, "blink_rate_hz": 0.6, "blink_s": [0.08, 0.15], "p_lost": 0.02}


def demo_gaze(*, video: str, hz: float, seed: int) -> pd.DataFrame:
    """Demo-viewer gaze for one clip on an exact ``k / hz`` grid, with bar and off-screen samples."""
    dur = CLIPS[video]
    events = SceneEvents(
        duration_s=dur, face_centres=[(0.3, 0.35), (0.7, 0.33)], face_sizes=[(0.08, 0.15), (0.08, 0.15)],
        ball_position=[lambda t: np.stack([0.5 + 0.2 * np.sin(t), 0.7 + 0.05 * np.cos(2 * t)], -1)],
        ball_colours=["red"], sentences=[{"speaker": 0, "start": 0.3, "end": 1.2, "named": "red", "named_t": 0.6}],
        dark=[(dur - 0.8, dur - 0.5)])
    g = simulate_viewer(events=events, rng=np.random.default_rng(seed), cfg={**VIEWER_CFG, "gaze_hz": hz})
    n = int(round(dur * hz))
    t = np.arange(n) / hz
    x, y, valid = g["x"][:n].copy(), g["y"][:n].copy(), g["valid"][:n].astype(bool)
    bar = slice(n // 3, n // 3 + 5)                      # on the top letterbox bar: y in (-60/1080, 0)
    x[bar], y[bar], valid[bar] = 0.4, -0.03, True
    x[~valid] = np.nan
    y[~valid] = np.nan
    return pd.DataFrame({"t": t, "x": x, "y": y, "valid": valid.astype(int)})


def session(*, hz: float, seed: int) -> tuple[list[tuple[str, float, pd.DataFrame]], np.ndarray]:
    """Clips laid out on one session clock: ``[(video, start_s, gaze)]`` and all sample times."""
    out, t0 = [], GAP_S
    for k, vid in enumerate(CLIPS):
        out.append((vid, t0, demo_gaze(video=vid, hz=hz, seed=seed * 10 + k)))
        t0 += CLIPS[vid] + GAP_S
    n_total = int(round(t0 * hz))
    return out, np.arange(n_total) / hz


def to_display(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return RECT.x + df["x"].to_numpy() * RECT.w, RECT.y + df["y"].to_numpy() * RECT.h


def session_samples(clips, t_all, hz):
    """Display-pixel gaze on the session grid (NaN = missing), plus filler between clips."""
    xs = np.full(t_all.size, 960.0)
    ys = np.full(t_all.size, 600.0)
    for _vid, start, df in clips:
        i0 = int(round(start * hz))
        x, y = to_display(df)
        xs[i0:i0 + len(df)] = x
        ys[i0:i0 + len(df)] = y
    return xs, ys


def check_corpus(out: Path, originals: dict, *, xy_tol: float, t_tol: float = 1e-6) -> None:
    for (vid, viewer), df in originals.items():
        got = pd.read_csv(out / "gaze" / vid / f"{viewer}.csv")
        assert list(got.columns) == ["t", "x", "y", "valid"]
        assert len(got) == len(df), (vid, viewer, len(got), len(df))
        np.testing.assert_allclose(got["t"], df["t"], atol=t_tol)
        np.testing.assert_array_equal(got["valid"].to_numpy(), df["valid"].to_numpy())
        ok = df["valid"].to_numpy() == 1
        assert got.loc[~ok, ["x", "y"]].isna().all().all()
        np.testing.assert_allclose(got.loc[ok, "x"], df.loc[ok, "x"], atol=xy_tol)
        np.testing.assert_allclose(got.loc[ok, "y"], df.loc[ok, "y"], atol=xy_tol)
        # letterbox-bar and off-screen gaze stay out of frame (away from the edges, where rounding decides)
        out_orig = ok & ((df["x"] < 0) | (df["x"] > 1) | (df["y"] < 0) | (df["y"] > 1)).to_numpy()
        out_got = ok & ((got["x"] < 0) | (got["x"] > 1) | (got["y"] < 0) | (got["y"] > 1)).to_numpy()
        edge = np.min(np.abs(np.stack([df["x"], df["x"] - 1, df["y"], df["y"] - 1])), axis=0) < 2 * xy_tol
        assert out_orig.sum() > 5
        np.testing.assert_array_equal(out_got[~edge], out_orig[~edge])


# ---------------------------------------------------------------- EyeLink ASC (edf2asc layout)
def write_asc(path: Path, clips, t_all, hz, binocular: bool, eye_offset_px: float = 2.0) -> None:
    per = 1000.0 / hz
    base = 2_000_000
    xs, ys = session_samples(clips, t_all, hz)
    eyes = "LEFT\tRIGHT" if binocular else "LEFT"
    lines = ["** CONVERTED FROM TEST.EDF using edfapi 4.2.1 Linux", "** DATE: Wed Mar  8 09:25:20 2023",
             "** TYPE: EDF_FILE BINARY EVENT SAMPLE TAGGED", "** VERSION: EYELINK II 1", "** SOURCE: EYELINK CL",
             "** EYELINK II CL v6.12 Feb  1 2018 (EyeLink Portable Duo)", "** RECORDED BY gazelib tests", "**", "",
             f"MSG\t{base - 500} DISPLAY_COORDS 0 0 {DISPLAY[0] - 1} {DISPLAY[1] - 1}",
             f"MSG\t{base - 2} RECCFG CR {int(hz)} 2 1 {'LR' if binocular else 'L'}",
             f"MSG\t{base - 2} GAZE_COORDS 0.00 0.00 {DISPLAY[0] - 1:.2f} {DISPLAY[1] - 1:.2f}",
             f"START\t{base} \t{eyes}\tSAMPLES\tEVENTS", "PRESCALER\t1", "VPRESCALER\t1", "PUPIL\tAREA",
             f"EVENTS\tGAZE\t{eyes}\tRATE\t{hz:7.2f}\tTRACKING\tCR\tFILTER\t2",
             f"SAMPLES\tGAZE\t{eyes}\tRATE\t{hz:7.2f}\tTRACKING\tCR\tFILTER\t2"]
    msgs = {}
    for vid, start, df in clips:
        i0 = int(round(start * hz))
        # Experiment Builder style: message written 8 ms before the flip, with offset -8
        msgs.setdefault(i0, []).append(f"MSG\t{base + int(i0 * per) - 8} -8 VIDEO_START {vid}.mp4")
        i1 = i0 + len(df) - 1
        msgs.setdefault(i1 + 1, []).append(f"MSG\t{base + int(i1 * per) + 1} VIDEO_END {vid}.mp4")
    f = lambda v: "   ." if not np.isfinite(v) else f"{v:7.1f}"  # noqa: E731
    rng = np.random.default_rng(3)
    for i, (x, y) in enumerate(zip(xs, ys)):
        ts = base + int(round(i * per))
        lines += [m for m in msgs.get(i, []) if int(m.split()[1]) <= ts]
        if binocular:
            # the two eyes straddle the true point; sometimes one eye is lost
            lost = rng.uniform() < 0.05
            xr, yr = (np.nan, np.nan) if lost else (x - eye_offset_px, y)
            lines.append(f"{ts}\t{f(x + eye_offset_px)}\t{f(y)}\t  900.0\t{f(xr)}\t{f(yr)}\t  900.0\t.....")
        else:
            lines.append(f"{ts}\t{f(x)}\t{f(y)}\t  900.0\t...")
        lines += [m for m in msgs.get(i, []) if int(m.split()[1]) > ts]
    lines.append(f"END\t{base + int(round(len(xs) * per))} \tSAMPLES\tEVENTS\tRES\t  38.00\t  38.00")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("binocular", [False, True])
def test_eyelink_round_trip(tmp_path, binocular):
    hz, originals = 500.0, {}
    for v, viewer in enumerate(["P01", "P02"]):
        clips, t_all = session(hz=hz, seed=v + 1)
        write_asc(tmp_path / f"{viewer}.asc", clips, t_all, hz, binocular)
        originals.update({(vid, viewer): df for vid, _, df in clips})
    cfg = {"format": "eyelink", "inputs": [str(tmp_path / "*.asc")],
           "sync": {"start": r"VIDEO_START (?P<video>\S+)", "end": r"VIDEO_END (?P<video>\S+)"},
           "geometry": {"video_px": list(VIDEO), "rect": "fit", "screen_cm": [51.8, 32.4], "distance_cm": 60}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["files"] == 4 and summary["videos"] == ["clipA", "clipB"]
    assert summary["display_px"] == list(DISPLAY)
    # binocular: mean of the eyes is the true point; with one eye lost, that eye's 2 px offset remains
    check_corpus(tmp_path / "corpus", originals, xy_tol=2.05 / 1080 if binocular else 1e-4)


# ---------------------------------------------------------------- Tobii Pro Lab TSV
def write_tobii(path: Path, sessions: dict, hz: float, decimal_comma: bool) -> None:
    cols = ["Recording timestamp", "Computer timestamp", "Sensor", "Participant name", "Recording name",
            "Recording resolution height", "Recording resolution width", "Event", "Event value",
            "Gaze point X", "Gaze point Y", "Gaze point left X", "Gaze point left Y", "Gaze point right X",
            "Gaze point right Y", "Pupil diameter left", "Validity left", "Validity right",
            "Presented Stimulus name", "Presented Media name", "Presented Media width", "Presented Media height",
            "Presented Media position X (DACSpx)", "Presented Media position Y (DACSpx)", "Eye movement type"]
    rows = []
    num = (lambda v: f"{v:.2f}".replace(".", ",")) if decimal_comma else (lambda v: f"{v:.2f}")  # noqa: E731
    for rec, (participant, clips, t_all) in sessions.items():
        xs, ys = session_samples(clips, t_all, hz)
        spans = {int(round(s * hz)): (vid, len(df)) for vid, s, df in clips}
        current, until = None, -1
        for i, (x, y) in enumerate(zip(xs, ys)):
            ts = int(round(i * 1e6 / hz)) + 12_345
            if i in spans:
                current, n = spans[i]
                until = i + n - 1
                rows.append({"Recording timestamp": ts - 1, "Participant name": participant, "Recording name": rec,
                             "Event": "VideoStimulusStart", "Event value": f"{current}.mp4"})
            ok = np.isfinite(x)
            media = i <= until and current is not None
            row = {"Recording timestamp": ts, "Computer timestamp": ts + 9_000_000, "Sensor": "Eye Tracker",
                   "Participant name": participant, "Recording name": rec, "Recording resolution height": DISPLAY[1],
                   "Recording resolution width": DISPLAY[0],
                   "Gaze point X": int(round(x)) if ok else "", "Gaze point Y": int(round(y)) if ok else "",
                   "Gaze point left X": int(round(x)) if ok else "", "Gaze point left Y": int(round(y)) if ok else "",
                   "Gaze point right X": int(round(x)) if ok else "", "Gaze point right Y": int(round(y)) if ok else "",
                   "Pupil diameter left": num(3.1) if ok else "", "Validity left": "Valid" if ok else "Invalid",
                   "Validity right": "Valid" if ok else "Invalid", "Eye movement type": "Unclassified"}
            if media:
                row.update({"Presented Stimulus name": current, "Presented Media name": f"{current}.mp4",
                            "Presented Media width": int(RECT.w), "Presented Media height": int(RECT.h),
                            "Presented Media position X (DACSpx)": int(RECT.x),
                            "Presented Media position Y (DACSpx)": int(RECT.y)})
            rows.append(row)
            if media and i == until:
                rows.append({"Recording timestamp": ts + 1, "Participant name": participant, "Recording name": rec,
                             "Event": "VideoStimulusEnd", "Event value": f"{current}.mp4"})
                current = None
    pd.DataFrame(rows, columns=cols).to_csv(path, sep="\t", index=False, lineterminator="\n")


@pytest.mark.parametrize("decimal_comma", [False, True])
def test_tobii_round_trip_with_media_rect(tmp_path, decimal_comma):
    hz, sessions, originals = 120.0, {}, {}
    for v, (rec, participant) in enumerate([("Recording1", "P01"), ("Recording2", "P02")]):
        clips, t_all = session(hz=hz, seed=20 + v)
        sessions[rec] = (participant, clips, t_all)
        originals.update({(vid, participant): df for vid, _, df in clips})
    write_tobii(tmp_path / "export.tsv", sessions, hz, decimal_comma)
    cfg = {"format": "tobii", "inputs": [str(tmp_path / "export.tsv")], "geometry": {"rect": "media"}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["recordings"] == 2 and summary["files"] == 4
    assert summary["geometry"]["video_rect_px"]["clipA"] == [0.0, 60.0, 1920.0, 1080.0]
    check_corpus(tmp_path / "corpus", originals, xy_tol=0.51 / 1080, t_tol=3e-6)


# ---------------------------------------------------------------- Pupil Labs Core / Neon (scene camera)
SCENE_CORNERS_CORE = [[310.0, 140.0], [990.0, 165.0], [965.0, 575.0], [330.0, 548.0]]   # 1280x720 camera
SCENE_CORNERS_NEON = [[420.0, 300.0], [1210.0, 330.0], [1180.0, 880.0], [440.0, 850.0]]  # 1600x1200 camera


def display_to_scene(x, y, corners):
    h = homography_from_points(src=[[0, 0], [DISPLAY[0], 0], [DISPLAY[0], DISPLAY[1]], [0, DISPLAY[1]]], dst=corners)
    return apply_homography(h=h, x=x, y=y)


def test_pupil_core_round_trip(tmp_path):
    hz, originals, inputs = 200.0, {}, []
    for v, viewer in enumerate(["rec_P01", "rec_P02"]):
        clips, t_all = session(hz=hz, seed=30 + v)
        xs, ys = session_samples(clips, t_all, hz)
        sx, sy = display_to_scene(xs, ys, SCENE_CORNERS_CORE)
        ok = np.isfinite(sx)
        t0 = 5000.25 + v
        folder = tmp_path / viewer / "exports" / "000"
        folder.mkdir(parents=True)
        pd.DataFrame({"gaze_timestamp": t0 + t_all, "world_index": (t_all * 30).astype(int),
                      "confidence": np.where(ok, 0.97, 0.1), "norm_pos_x": np.where(ok, sx / 1280, 0.5),
                      "norm_pos_y": np.where(ok, 1 - sy / 720, 0.5), "base_data": "1234.5-0 1234.5-1"}
                     ).to_csv(folder / "gaze_positions.csv", index=False, float_format="%.6f")
        ann = []
        for vid, start, df in clips:
            ann.append({"index": 0, "timestamp": t0 + start, "label": f"start {vid}", "duration": 0.0})
            ann.append({"index": 0, "timestamp": t0 + start + (len(df) - 0.5) / hz, "label": "end", "duration": 0.0})
        pd.DataFrame(ann).to_csv(folder / "annotations.csv", index=False, float_format="%.6f")
        originals.update({(vid, viewer): df for vid, _, df in clips})
        inputs.append(str(folder))
    cfg = {"format": "pupil_core", "inputs": inputs, "sync": {"start": r"^start (?P<video>\S+)", "end": "^end"},
           "geometry": {"display_px": list(DISPLAY), "video_px": list(VIDEO)},
           "scene": {"camera_px": [1280, 720], "corners": SCENE_CORNERS_CORE}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["files"] == 4
    check_corpus(tmp_path / "corpus", originals, xy_tol=2e-3)


def test_neon_round_trip(tmp_path):
    hz, originals, inputs = 200.0, {}, []
    for v, viewer in enumerate(["P03-a1b2c3", "P04-d4e5f6"]):
        clips, t_all = session(hz=hz, seed=40 + v)
        xs, ys = session_samples(clips, t_all, hz)
        sx, sy = display_to_scene(xs, ys, SCENE_CORNERS_NEON)
        ok = np.isfinite(sx)
        ns0 = 1_700_000_000_123_456_789 + v * 10**12
        ns = ns0 + np.round(t_all * 1e9).astype(np.int64)
        folder = tmp_path / viewer
        folder.mkdir()
        blink = np.where(ok, "", "7")
        pd.DataFrame({"section id": "s1", "recording id": f"rid{v}", "timestamp [ns]": ns,
                      "gaze x [px]": np.where(ok, sx, 800.0), "gaze y [px]": np.where(ok, sy, 600.0),
                      "worn": 1.0, "fixation id": "", "blink id": blink, "azimuth [deg]": 0.0,
                      "elevation [deg]": 0.0}).to_csv(folder / "gaze.csv", index=False, float_format="%.3f")
        ev = [{"recording id": f"rid{v}", "timestamp [ns]": ns0, "name": "recording.begin", "type": "recording"}]
        for vid, start, df in clips:
            i0 = int(round(start * hz))
            ev.append({"recording id": f"rid{v}", "timestamp [ns]": int(ns[i0]), "name": f"{vid}.begin",
                       "type": "recording"})
            ev.append({"recording id": f"rid{v}", "timestamp [ns]": int(ns[i0 + len(df) - 1]) + 2_000_000,
                       "name": f"{vid}.end", "type": "recording"})
        pd.DataFrame(ev).to_csv(folder / "events.csv", index=False)
        originals.update({(vid, viewer): df for vid, _, df in clips})
        inputs.append(str(folder))
    cfg = {"format": "neon", "inputs": inputs,
           "sync": {"start": r"^(?P<video>clip\w+)\.begin$", "end": r"^(?P<video>clip\w+)\.end$"},
           "geometry": {"display_px": list(DISPLAY), "video_px": list(VIDEO)},
           "scene": {"corners": SCENE_CORNERS_NEON}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["files"] == 4
    check_corpus(tmp_path / "corpus", originals, xy_tol=2e-3)


# ---------------------------------------------------------------- SMI BeGaze text export
def write_begaze(path: Path, clips, t_all, hz) -> None:
    xs, ys = session_samples(clips, t_all, hz)
    head = ["## [BeGaze]", "## Converted from:\tC:\\data\\P05.idf", "## Date:\t08.03.2023 09:25:20",
            "## Version:\tBeGaze 3.7.40", "## IDF Version:\t9", f"## Sample Rate:\t{int(hz)}",
            "## Separator Type:\tMsg", "## [Run]", "## Subject:\tP05", "## [Calibration]",
            f"## Calibration Area:\t{DISPLAY[0]}\t{DISPLAY[1]}", "## [Geometry]",
            "## Stimulus Dimension [mm]:\t518\t324", "## Head Distance [mm]:\t600",
            "## Format:\tLEFT, RIGHT, POR, QUALITY, MSG", "##",
            "Time\tType\tTrial\tL POR X [px]\tL POR Y [px]\tL Pupil Diameter [mm]\tR POR X [px]\tR POR Y [px]"
            "\tR Pupil Diameter [mm]\tPupil Confidence\tL Event Info\tR Event Info"]
    t0_us = 73_000_000_000
    starts = {int(round(s * hz)): (vid, len(df)) for vid, s, df in clips}
    ends = {}
    lines = list(head)
    for i, (x, y) in enumerate(zip(xs, ys)):
        ts = t0_us + int(round(i * 1e6 / hz))
        if i in starts:
            vid, n = starts[i]
            lines.append(f"{ts - 1}\tMSG\t1\t# Message: VIDEO_START {vid}.avi")
            ends[i + n - 1] = vid
        if np.isfinite(x):
            lines.append(f"{ts}\tSMP\t1\t{x:.2f}\t{y:.2f}\t3.10\t{x:.2f}\t{y:.2f}\t3.20\t1\tFixation\tFixation")
        else:
            lines.append(f"{ts}\tSMP\t1\t0.00\t0.00\t0.00\t0.00\t0.00\t0.00\t0\tBlink\tBlink")
        if i in ends:
            lines.append(f"{ts + 1}\tMSG\t1\t# Message: VIDEO_END {ends[i]}.avi")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def test_smi_round_trip_reads_geometry_from_header(tmp_path):
    hz = 250.0
    clips, t_all = session(hz=hz, seed=50)
    write_begaze(tmp_path / "P05.txt", clips, t_all, hz)
    cfg = {"format": "smi", "inputs": [str(tmp_path / "P05.txt")],
           "sync": {"start": r"VIDEO_START (?P<video>\S+)", "end": r"VIDEO_END (?P<video>\S+)"},
           "geometry": {"video_px": list(VIDEO)}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["files"] == 2
    geo = summary["geometry"]
    assert geo["display_px"] == list(DISPLAY) and geo["screen_cm"] == [51.8, 32.4] and geo["distance_cm"] == 60.0
    check_corpus(tmp_path / "corpus", {(vid, "P05"): df for vid, _, df in clips}, xy_tol=1e-4)


# ---------------------------------------------------------------- generic CSV with a column map
def test_generic_csv_round_trip(tmp_path):
    hz = 60.0
    clips, t_all = session(hz=hz, seed=60)
    xs, ys = session_samples(clips, t_all, hz)
    msg = np.array([""] * t_all.size, dtype=object)
    for vid, start, df in clips:
        msg[int(round(start * hz))] = f"show {vid}"
    ok = np.isfinite(xs)
    pd.DataFrame({"time_ms": np.round(t_all * 1000, 3) + 100_000, "gx": np.where(ok, xs / DISPLAY[0], -1),
                  "gy": np.where(ok, 1 - ys / DISPLAY[1], -1), "ok": np.where(ok, "true", "false"), "note": msg}
                 ).to_csv(tmp_path / "viewer7.tsv", sep="\t", index=False, float_format="%.7f")
    cfg = {"format": "csv", "inputs": [str(tmp_path / "viewer7.tsv")],
           "reader": {"columns": {"t": "time_ms", "x": "gx", "y": "gy", "valid": "ok", "message": "note"},
                      "time_unit": "ms", "coords": "norm_bottom_left"},
           "sync": {"start": r"^show (?P<video>\w+)", "durations": CLIPS},
           "geometry": {"display_px": list(DISPLAY), "video_px": list(VIDEO)}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["files"] == 2
    # cut by duration: the sample at exactly start + duration is the first filler sample
    originals = {}
    for vid, _, df in clips:
        got = pd.read_csv(tmp_path / "corpus" / "gaze" / vid / "viewer7.csv")
        assert len(got) == len(df) + 1 and got["t"].iloc[-1] == pytest.approx(CLIPS[vid])
        originals[(vid, "viewer7")] = df
        (tmp_path / "corpus" / "gaze" / vid / "viewer7.csv").write_text(
            got.iloc[:-1].to_csv(index=False, float_format="%.6f", na_rep=""))
    check_corpus(tmp_path / "corpus", originals, xy_tol=1e-5)


def test_neon_per_frame_surface_positions_and_marker_mapper(tmp_path):
    """The head moves halfway: a fixed mapping would be wrong, Marker Mapper's per-frame corners are right."""
    hz = 200.0
    clips, t_all = session(hz=hz, seed=70)
    xs, ys = session_samples(clips, t_all, hz)
    moved = np.array([[60.0, -40.0]] * 4)
    half = t_all >= t_all[-1] / 2
    sx0, sy0 = display_to_scene(xs, ys, SCENE_CORNERS_NEON)
    sx1, sy1 = display_to_scene(xs, ys, (np.array(SCENE_CORNERS_NEON) + moved).tolist())
    sx, sy = np.where(half, sx1, sx0), np.where(half, sy1, sy0)
    ok = np.isfinite(sx)
    ns = 1_700_000_000_000_000_000 + np.round(t_all * 1e9).astype(np.int64)
    rec = tmp_path / "P06"
    rec.mkdir()
    pd.DataFrame({"recording id": "r6", "timestamp [ns]": ns, "gaze x [px]": np.where(ok, sx, np.nan),
                  "gaze y [px]": np.where(ok, sy, np.nan), "worn": np.where(ok, 1.0, 0.0)}
                 ).to_csv(rec / "gaze.csv", index=False, float_format="%.3f")
    frames = ns[::7]                                            # ~30 Hz scene camera
    corners = np.where(half[::7, None, None], np.array(SCENE_CORNERS_NEON) + moved, np.array(SCENE_CORNERS_NEON))
    surf = {"section id": "s", "timestamp [ns]": frames}
    for k, c in enumerate(("tl", "tr", "br", "bl")):
        surf[f"{c} x [px]"], surf[f"{c} y [px]"] = corners[:, k, 0], corners[:, k, 1]
    pd.DataFrame(surf).to_csv(tmp_path / "surface_positions.csv", index=False)
    ev = [{"recording id": "r6", "timestamp [ns]": int(ns[int(round(s * hz))]), "name": f"{vid}.begin"}
          for vid, s, _ in clips]
    pd.DataFrame(ev).to_csv(rec / "events.csv", index=False)
    cfg = {"format": "neon", "inputs": [str(rec)], "sync": {"start": r"^(?P<video>clip\w+)\.begin$",
                                                            "durations": {k: v - 0.5 / hz for k, v in CLIPS.items()}},
           "geometry": {"display_px": list(DISPLAY), "video_px": list(VIDEO)},
           "scene": {"surface_positions": str(tmp_path / "surface_positions.csv")}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["files"] == 2
    originals = {(vid, "P06"): df for vid, _, df in clips}
    # scene frames are ~35 ms apart: samples right at the head movement may take the previous frame's corners
    near_move = {vid: np.abs((s + df["t"]) - t_all[-1] / 2) < 0.04 for vid, s, df in clips}
    for (vid, viewer), df in originals.items():
        got = pd.read_csv(tmp_path / "corpus" / "gaze" / vid / f"{viewer}.csv")
        sel = (df["valid"] == 1).to_numpy() & ~near_move[vid].to_numpy()
        np.testing.assert_allclose(got.loc[sel, "x"], df.loc[sel, "x"], atol=2e-3)
        np.testing.assert_allclose(got.loc[sel, "y"], df.loc[sel, "y"], atol=2e-3)

    # the same gaze as a Marker Mapper enrichment export (surface-normalised, top-left origin)
    mm = tmp_path / "enrichment"
    mm.mkdir()
    pd.DataFrame({"recording id": "r6", "timestamp [ns]": ns, "gaze detected on surface": ok,
                  "gaze position on surface x [normalized]": np.where(ok, xs / DISPLAY[0], np.nan),
                  "gaze position on surface y [normalized]": np.where(ok, ys / DISPLAY[1], np.nan)}
                 ).to_csv(mm / "gaze.csv", index=False, float_format="%.7f")
    cfg2 = {**cfg, "inputs": [str(mm / "gaze.csv")], "scene": {}, "viewer_id": "parent",
            "reader": {"events": str(rec / "events.csv")}}
    s2 = run_import(cfg=cfg2, out_dir=tmp_path / "corpus2")
    assert s2["skipped"] == [] and s2["files"] == 2
    for (vid, _), df in originals.items():
        got = pd.read_csv(tmp_path / "corpus2" / "gaze" / vid / "enrichment.csv")
        sel = (df["valid"] == 1).to_numpy()
        assert len(got) == len(df)
        np.testing.assert_allclose(got.loc[sel, "y"], df.loc[sel, "y"], atol=1e-5)


def test_pupil_core_surface_export(tmp_path):
    hz = 120.0
    clips, t_all = session(hz=hz, seed=80)
    xs, ys = session_samples(clips, t_all, hz)
    ok = np.isfinite(xs)
    folder = tmp_path / "rec9" / "exports" / "001" / "surfaces"
    folder.mkdir(parents=True)
    pd.DataFrame({"world_timestamp": 77.0 + t_all, "world_index": 0, "gaze_timestamp": 77.0 + t_all,
                  "x_norm": np.where(ok, xs / DISPLAY[0], 0.5), "y_norm": np.where(ok, 1 - ys / DISPLAY[1], 0.5),
                  "x_scaled": 0.0, "y_scaled": 0.0, "on_surf": True, "confidence": np.where(ok, 0.9, 0.3)}
                 ).to_csv(folder / "gaze_positions_on_surface_Screen.csv", index=False, float_format="%.7f")
    table = tmp_path / "offsets.csv"
    table.write_text("recording,video_id,t0\n" + "".join(f"rec9,{vid},{77.0 + s:.6f}\n" for vid, s, _ in clips))
    cfg = {"format": "pupil_core", "inputs": [str(tmp_path / "rec9" / "exports" / "001")],
           "reader": {"surface": "Screen"}, "sync": {"method": "table", "table": str(table),
                                                    "durations": {k: v - 0.5 / hz for k, v in CLIPS.items()}},
           "geometry": {"display_px": list(DISPLAY), "video_px": list(VIDEO)}}
    summary = run_import(cfg=cfg, out_dir=tmp_path / "corpus")
    assert summary["skipped"] == [] and summary["files"] == 2
    check_corpus(tmp_path / "corpus", {(vid, "rec9"): df for vid, _, df in clips}, xy_tol=1e-5)
