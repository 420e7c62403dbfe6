"""Real-media clips for the viewer-causal tests (tests/test_causal_media.py): demo-scene frames and
speech written losslessly (FFV1 video, PCM audio in Matroska), so a frame or sample decodes to the
same values whatever follows it, and a clip whose media after ``t0`` is swapped for other media
decodes identically up to ``t0``.

``python tests/media_clips.py`` writes ``tests/fixtures/causal/offline_reference.npz``: the outputs
of the extractors and of align on a fixed clip (speech from ``speech.wav`` beside it), made by the
code *before* the causal mode existed; the test checks that ``features.lookahead: offline`` still
gives them.
"""
from __future__ import annotations

import inspect
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "causal"
SR, FPS, W, H = 16000, 25, 320, 180

AUDIO_CFG = {"sample_rate": SR, "hop_s": 0.01, "win_s": 0.025, "chunk_s": 60.0, "vad_threshold_on": 0.5,
             "vad_threshold_off": 0.35, "vad_min_speech_s": 0.1, "vad_min_silence_s": 0.1, "n_mfcc": 4}
VISUAL_CFG = {"sample_fps": 10, "work_width": 320, "work_height": 180, "grid_h": 9, "grid_w": 16,
              "cut_threshold": 0.35, "face_detector": "centerface", "face_input_width": 160, "face_threshold": 0.3,
              "face_nms_iou": 0.3, "face_fps": 5, "face_min_size": 20, "face_scale_factor": 1.1,
              "face_min_neighbors": 3, "face_equalize": True, "image_model": "efficientnet-lite0", "embed_fps": 1,
              "embed_width": 224, "embed_height": 128, "embed_batch": 16, "embed_threads": 1, "cnn_grid_block": 4}
ALIGN_CFG = {"fps": 10, "max_gap_s": 0.5, "gaze_max_gap_s": 0.1}


def scene_frames(*, seed: int, n: int, fps: float = FPS, width: int = W, height: int = H,
                 mouth: np.ndarray | None = None) -> list[np.ndarray]:
    """``n`` RGB frames of a demo scene (faces, fast-moving balls) laid out from ``seed``."""
    from gazelib.demo.scene import COLOURS, SHIRTS, SKIN, Ball, Character, make_background, render_frame

    rng = np.random.default_rng(seed)
    slots = [0.2, 0.5, 0.8][: 2 + seed % 2]
    chars = [Character(cx=float(x + rng.uniform(-0.03, 0.03)), cy=float(rng.uniform(0.3, 0.36)),
                       h=float(rng.uniform(0.34, 0.4)), skin=SKIN[(i + seed) % 3], shirt=SHIRTS[(i + seed) % 3])
             for i, x in enumerate(slots)]
    colours = rng.choice(list(COLOURS), 3, replace=False)
    balls = [Ball(colour=str(c), radius=float(rng.uniform(0.05, 0.07)),
                  centre=np.array([rng.uniform(0.3, 0.7), rng.uniform(0.6, 0.8)]),
                  amp=np.array([rng.uniform(0.1, 0.25, 2), rng.uniform(0.05, 0.12, 2)]),
                  freq=rng.uniform(0.3, 0.8, (2, 2)), phase=rng.uniform(0, 2 * np.pi, (2, 2))) for c in colours]
    background = make_background(rng, width, height)
    out = []
    for i in range(n):
        m = float(mouth[min(i, len(mouth) - 1)]) if mouth is not None else 0.0
        out.append(render_frame(background=background, characters=chars, mouth_open=[m] * len(chars), balls=balls,
                                t=i / fps, brightness=1.0))
    return out


def speech_track(*, sentences: list[tuple[float, str, str]], duration_s: float, sr: int = SR,
                 seed: int = 0) -> np.ndarray:
    """Float32 mono: each (start_s, text, voice) spoken by libespeak-ng (as the demo does) + faint noise."""
    from scipy.signal import resample_poly

    from gazelib.demo.speech import synthesize

    x = np.zeros(int(round(duration_s * sr)), np.float32)
    for start, text, voice in sentences:
        sp = synthesize(text=text, voice=voice)
        wav = resample_poly(sp.audio, sr, sp.sample_rate).astype(np.float32)
        i0 = int(round(start * sr))
        wav = wav[: max(0, x.size - i0)]
        x[i0:i0 + wav.size] += wav
    x += np.random.default_rng(seed).normal(0, 10 ** (-55 / 20), x.size).astype(np.float32)
    return np.clip(x, -1, 1)


def mouth_envelope(audio: np.ndarray, *, n: int, fps: float = FPS, sr: int = SR) -> np.ndarray:
    """Mouth opening per frame from the speech energy (so the faces' mouths move with the voice)."""
    hop = int(sr / fps)
    e = np.sqrt(np.mean(np.pad(audio, (0, max(0, n * hop - audio.size)))[: n * hop].reshape(n, hop) ** 2, 1))
    return np.minimum(1.0, e / max(float(e.max()), 1e-9) * 1.3)


def write_clip(*, path: Path, frames: list[np.ndarray], audio: np.ndarray, fps: int = FPS, sr: int = SR) -> Path:
    """Lossless, intra-only clip: FFV1 (bgr0) video + PCM s16 mono audio in Matroska."""
    import av

    h, w = frames[0].shape[:2]
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None]
    with av.open(str(path), "w", format="matroska") as c:
        vs = c.add_stream("ffv1", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "bgr0"
        vs.time_base = Fraction(1, fps)
        a = c.add_stream("pcm_s16le", rate=sr, layout="mono")
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        block = 1024
        for k in range(0, pcm.shape[1], block):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, k:k + block]), format="s16", layout="mono")
            af.sample_rate, af.pts = sr, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def write_wav(path: Path, audio: np.ndarray, sr: int = SR) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def _kw(fn, lookahead: str | None) -> dict:
    """``lookahead=...`` for functions that take it (the reference was made by code that did not)."""
    return {"lookahead": lookahead} if lookahead and "lookahead" in inspect.signature(fn).parameters else {}


def reference_outputs(*, work: Path, models: dict, lookahead: str | None) -> dict[str, np.ndarray]:
    """Extractor and align outputs on the fixed reference clip (and align on synthetic tables)."""
    import pandas as pd

    from gazelib.data.align import align_table, align_video, resample_kind, resample_linear_rows
    from gazelib.features.audio import extract_audio_features, write_audio_features
    from gazelib.features.grid import grid_shape
    from gazelib.features.visual import extract_visual_features, write_visual_features

    audio = read_wav(FIXTURES / "speech.wav")
    n = int(round(audio.size / SR * FPS))
    path = write_clip(path=work / "ref.mkv", frames=scene_frames(seed=3, n=n, mouth=mouth_envelope(audio, n=n)),
                      audio=audio)
    dur = n / FPS
    out: dict[str, np.ndarray] = {}
    af = extract_audio_features(video_path=path, video_id="ref", duration_s=dur, cfg=AUDIO_CFG, vad=models["vad"],
                                **_kw(extract_audio_features, lookahead))
    for c in af.table.columns:
        out[f"audio/{c}"] = af.table[c].to_numpy()
    vf = extract_visual_features(video_path=path, video_id="ref", cfg=VISUAL_CFG, detector=models["detector"],
                                 encoder=models["encoder"], **_kw(extract_visual_features, lookahead))
    for c in vf.table.columns:
        out[f"visual/{c}"] = vf.table[c].to_numpy()
    out["visual/grid"], out["visual/image_emb"] = vf.grid, vf.image_emb
    feat = work / "features"
    write_audio_features(feats=af, out_dir=feat / "audio", video_id="ref", cfg=AUDIO_CFG)
    write_visual_features(feats=vf, out_dir=feat / "visual", video_id="ref", cfg=VISUAL_CFG, detector_name="cf")
    gaze = pd.DataFrame({"t": [0.0, dur], "x": [0.5, 0.5], "y": [0.5, 0.5], "valid": [1, 1], "viewer_id": ["v"] * 2})
    arrays = align_video(video_id="ref", duration_s=dur, feat_dir=feat, gaze=gaze, cfg=ALIGN_CFG,
                         grid_shape=grid_shape(VISUAL_CFG), **_kw(align_video, lookahead))
    for k in ("audio", "visual", "grid", "mask"):
        out[f"aligned/{k}"] = np.asarray(arrays[k])
    # align on irregular synthetic samples with gaps, every kind
    rng = np.random.default_rng(0)
    src_t = np.sort(np.r_[rng.uniform(0, 3, 40), rng.uniform(4.2, 6, 20)])
    dst_t = np.arange(0, 6.5, 0.1)
    vals = rng.normal(size=(src_t.size, 3))
    for kind in ("continuous", "binary", "count", "embedding"):
        r = resample_kind(kind=kind, src_t=src_t, src_v=vals if kind == "embedding" else vals[:, 0], dst_t=dst_t,
                          max_gap_s=0.5, **_kw(resample_kind, lookahead))
        out[f"kind/{kind}/values"], out[f"kind/{kind}/valid"] = r.values, r.is_valid
    grid = rng.normal(size=(src_t.size, 2, 3, 4)).astype(np.float32)
    stream, ok, _ = resample_linear_rows(src_t=src_t, rows=iter(np.array_split(grid, 7)), row_shape=(2, 3, 4),
                                         dst_t=dst_t, max_gap_s=0.5, **_kw(resample_linear_rows, lookahead))
    out["rows/grid"], out["rows/valid"] = stream.materialize(), ok
    df = pd.DataFrame({"t": src_t, "a": vals[:, 0], "b": (vals[:, 1] > 0).astype(int)})
    blk = align_table(df=df, kinds={"a": "continuous", "b": "binary"}, dst_t=dst_t, max_gap_s=0.5,
                      **_kw(align_table, lookahead))
    out["table/values"], out["table/valid"] = blk.values, blk.is_valid
    return out


def load_models() -> dict:
    from gazelib.features.audio import SileroVAD
    from gazelib.features.faces import FaceDetector
    from gazelib.features.visual import make_image_encoder

    return {"vad": SileroVAD(), "detector": FaceDetector.from_params(VISUAL_CFG),
            "encoder": make_image_encoder(VISUAL_CFG)}


def main() -> None:
    import tempfile

    FIXTURES.mkdir(parents=True, exist_ok=True)
    if not (FIXTURES / "speech.wav").exists():
        write_wav(FIXTURES / "speech.wav", speech_track(
            sentences=[(0.3, "look at the red ball", "en-us"), (1.9, "we should go for a walk", "en-us+f2")],
            duration_s=3.6))
    with tempfile.TemporaryDirectory() as tmp:
        out = reference_outputs(work=Path(tmp), models=load_models(), lookahead=None)
    np.savez_compressed(FIXTURES / "offline_reference.npz", **compact(out))
    print(f"wrote {FIXTURES / 'offline_reference.npz'}: {len(out)} arrays")


BIG = 100_000  # bytes: larger arrays are kept as a digest and per-row sums (the grid, the image embedding)


def digest(a: np.ndarray) -> str:
    import hashlib

    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def compact(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Small arrays as they are; big ones as ``<key>#sha256`` and ``<key>#rowsum`` (float64)."""
    res = {}
    for k, v in out.items():
        v = np.asarray(v)
        if v.nbytes <= BIG:
            res[k] = v
            continue
        res[f"{k}#sha256"] = np.array(digest(v))
        res[f"{k}#rowsum"] = v.reshape(len(v), -1).astype(np.float64).sum(1)
    return res


if __name__ == "__main__":
    main()
