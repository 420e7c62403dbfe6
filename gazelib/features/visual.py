"""Visual features per sampled frame: scalars, face boxes and a spatial grid [C, Gh, Gw].

Frames are decoded by PTS at ``sample_fps`` and processed one at a time (memory does not
grow with the video). Faces are detected at ``face_fps`` (boxes held in between); mouth
motion is measured in the held boxes on every sampled frame. Grid channels are cell means of full-resolution maps:

- ``lab_l, lab_a, lab_b``: CIE Lab colour, each scaled to [0, 1]
- ``motion``: |gray_t - gray_{t-1}| / 255
- ``saliency``: spectral residual saliency (Hou & Zhang 2007), normalised to max 1 per frame
- ``edges``: Sobel gradient magnitude / 255
- ``face``: share of the cell covered by detected face boxes
- ``mouth_motion``: motion inside the lower third of each face box
- ``cnn_<k>``: EfficientNet-Lite0 block-``cnn_grid_block`` features average-pooled to the grid

The pretrained encoder (``image_model``) runs on frames resized to ``embed_width x
embed_height`` at ``embed_fps``; its global embedding (``image_emb``, embedding kind) and
grid channels are linearly interpolated to the sampled frames (held at the ends).
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from gazelib.io import StreamedArray, feature_meta, write_npz, write_table
from gazelib.media import iter_frames
from gazelib.cache import VideoCache, code_hash, run_per_video
from gazelib.features.grid import GRID_CHANNELS, grid_channel_names  # noqa: F401 (tests import them here)
from gazelib.layout import FEATURES, load_manifest, manifest_items

log = logging.getLogger(__name__)

KINDS = {"motion": "continuous", "brightness": "continuous", "contrast": "continuous",
         "saliency_peak": "continuous", "mouth_motion": "continuous", "face_count": "count",
         "scene_cut": "binary"}


def spectral_residual(gray: np.ndarray, size: int = 64) -> np.ndarray:
    """Saliency map at ``gray``'s size: S = G * |F^-1[exp(R + iP)]|^2, R = log A - mean3x3(log A)."""
    small = cv2.resize(gray.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    f = np.fft.fft2(small)
    log_amp = np.log(np.abs(f) + 1e-8)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2
    sal = cv2.GaussianBlur(sal, (0, 0), 2.5)
    sal = cv2.resize(sal, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    return sal / max(float(sal.max()), 1e-12)


class FaceDetector:
    """OpenCV's bundled Haar cascade (frontal face); boxes normalised (x0, y0, x1, y1).

    The grey frame is histogram-equalised first (``equalize``): on the demo this lifts
    recall at IoU >= 0.5 from 0.59 to 0.99 (see docs/pipeline.md).
    """

    def __init__(self, *, kind: str = "haar", min_size: int = 20, scale_factor: float = 1.1,
                 min_neighbors: int = 3, equalize: bool = True):
        if kind != "haar":
            raise ValueError(f"unknown face detector {kind!r} (available: haar, mediapipe)")
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load Haar cascade {path}")
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors
        self.equalize = equalize
        self.name = f"opencv-haar-frontalface {cv2.__version__}"

    @classmethod
    def from_params(cls, cfg: dict):
        if cfg["face_detector"] == "mediapipe":
            return MediaPipeFaceDetector(min_confidence=cfg.get("face_min_confidence", 0.5))
        return cls(kind=cfg["face_detector"], min_size=cfg["face_min_size"], scale_factor=cfg["face_scale_factor"],
                   min_neighbors=cfg["face_min_neighbors"], equalize=cfg["face_equalize"])

    def detect(self, gray: np.ndarray) -> np.ndarray:
        h, w = gray.shape
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        boxes = self.cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32)
        b = np.asarray(boxes, np.float32)
        return np.stack([b[:, 0] / w, b[:, 1] / h, (b[:, 0] + b[:, 2]) / w, (b[:, 1] + b[:, 3]) / h], 1)


class MediaPipeFaceDetector:
    """Optional: MediaPipe's BlazeFace short-range model (``mediapipe==0.10.21``, which bundles
    it; newer releases ship no models, and 0.10.21 needs protobuf<5). Same box format."""

    def __init__(self, *, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError as exc:
            raise ImportError("visual.face_detector is 'mediapipe' but mediapipe is not installed: "
                              "pip install mediapipe==0.10.21 'protobuf<5' (see docs/pipeline.md), or use haar") from exc
        self._det = mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                              min_detection_confidence=min_confidence)
        self.name = f"mediapipe {mp.__version__} face_detection short-range"

    def detect(self, gray: np.ndarray) -> np.ndarray:
        res = self._det.process(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
        boxes = [(d.location_data.relative_bounding_box.xmin, d.location_data.relative_bounding_box.ymin,
                  d.location_data.relative_bounding_box.width, d.location_data.relative_bounding_box.height)
                 for d in (res.detections or [])]
        if not boxes:
            return np.zeros((0, 4), np.float32)
        b = np.clip(np.asarray(boxes, np.float32), 0, 1)
        return np.stack([b[:, 0], b[:, 1], np.minimum(b[:, 0] + b[:, 2], 1), np.minimum(b[:, 1] + b[:, 3], 1)], 1)


def box_mask(boxes: np.ndarray, h: int, w: int, lower_third: bool = False) -> list[tuple[slice, slice]]:
    out = []
    for x0, y0, x1, y1 in boxes:
        ys = y0 + (y1 - y0) * 2 / 3 if lower_third else y0
        out.append((slice(int(ys * h), max(int(ys * h) + 1, int(y1 * h))),
                    slice(int(x0 * w), max(int(x0 * w) + 1, int(x1 * w)))))
    return out


@dataclass
class VisualFeatures:
    """Per-frame outputs. The grid [T, C, Gh, Gw] and ``image_emb`` [T, D] are streams (spooled
    to a temp file, interpolated chunk by chunk) so memory does not grow with the video;
    ``.grid`` / ``.image_emb`` materialise them for small clips and tests."""

    table: pd.DataFrame
    grid_stream: StreamedArray
    faces: pd.DataFrame
    channels: list[str] = field(default_factory=lambda: list(GRID_CHANNELS))
    emb_stream: StreamedArray | None = None
    image_model: str = ""

    @property
    def grid(self) -> np.ndarray:
        return self.grid_stream.materialize()

    @property
    def image_emb(self) -> np.ndarray | None:
        return None if self.emb_stream is None else self.emb_stream.materialize()


def make_image_encoder(cfg: dict):
    if cfg.get("image_model", "none") == "none":
        return None
    from gazelib.features.image_models import ImageEncoder

    return ImageEncoder(model=cfg["image_model"], grid_hw=(cfg["grid_h"], cfg["grid_w"]),
                        feature_block=cfg["cnn_grid_block"], batch_size=cfg["embed_batch"])


def interp_clamped(src_t: np.ndarray, src_v: np.ndarray, dst_t: np.ndarray, out: np.ndarray | None = None,
                   chunk: int = 256) -> np.ndarray:
    """Linear interpolation along axis 0, holding the first/last value outside [src_t].

    Works in float32 chunks of ``chunk`` rows written into ``out``, so the only memory that
    grows with the video is the output itself.
    """
    out = np.empty((len(dst_t),) + src_v.shape[1:], np.float32) if out is None else out
    if len(src_t) == 1:
        out[:] = src_v[0]
        return out
    for i in range(0, len(dst_t), chunk):
        d = dst_t[i:i + chunk]
        hi = np.clip(np.searchsorted(src_t, d), 1, len(src_t) - 1)
        lo = hi - 1
        w = np.clip((d - src_t[lo]) / (src_t[hi] - src_t[lo]), 0, 1).astype(np.float32)
        w = w.reshape((-1,) + (1,) * (src_v.ndim - 1))
        out[i:i + chunk] = src_v[lo] + w * (src_v[hi] - src_v[lo])
    return out


def frame_maps(*, rgb: np.ndarray, prev_gray: np.ndarray | None, boxes: np.ndarray) -> tuple[dict, dict]:
    """Full-resolution maps for the grid and per-frame scalars of one frame."""
    h, w = rgb.shape[:2]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    motion = np.abs(gray - prev_gray) / 255.0 if prev_gray is not None else np.zeros_like(gray)
    sal = spectral_residual(gray)
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    edges = np.minimum(np.hypot(gx, gy) / 255.0, 1.0)
    face = np.zeros_like(gray)
    mouth = np.zeros_like(gray)
    mouth_vals = []
    for (fs, ms) in zip(box_mask(boxes, h, w), box_mask(boxes, h, w, lower_third=True)):
        face[fs] = 1.0
        mouth[ms] = motion[ms]
        mouth_vals.append(float(motion[ms].mean()) if motion[ms].size else 0.0)
    maps = {"lab_l": lab[..., 0], "lab_a": lab[..., 1], "lab_b": lab[..., 2], "motion": motion,
            "saliency": sal, "edges": edges, "face": face, "mouth_motion": mouth}
    scalars = {"motion": float(motion.mean()), "brightness": float(gray.mean() / 255.0),
               "contrast": float(gray.std() / 255.0), "saliency_peak": float(sal.mean()),
               "mouth_motion": float(max(mouth_vals, default=0.0)), "face_count": len(boxes)}
    return maps, {"gray": gray, **scalars, "mouth_vals": mouth_vals}


def extract_visual_features(*, video_path: str | Path, video_id: str, cfg: dict,
                            detector: FaceDetector | None = None, encoder=None) -> VisualFeatures:
    detector = detector or FaceDetector.from_params(cfg)
    embed = _Embedder(encoder, cfg) if encoder is not None else None
    gh, gw = cfg["grid_h"], cfg["grid_w"]
    rows, face_rows = [], []
    spool = tempfile.TemporaryFile()  # base grid rows, so memory does not grow with the video
    prev_gray, prev_hist = None, None
    boxes, next_detect = np.zeros((0, 4), np.float32), -np.inf
    for t, rgb in iter_frames(path=video_path, sample_fps=cfg["sample_fps"], width=cfg["work_width"],
                              height=cfg["work_height"], video_id=video_id):
        gray_u8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if t + 1e-6 >= next_detect:
            # faces move slowly: detect at face_fps and hold the boxes in between
            # detectors do not return faces in a stable order: sort, so side tables repeat byte for byte
            boxes = np.asarray(sorted(map(tuple, np.asarray(detector.detect(gray_u8)).reshape(-1, 4))),
                               np.float32).reshape(-1, 4)
            next_detect = t + 1.0 / cfg["face_fps"]
        maps, info = frame_maps(rgb=rgb, prev_gray=prev_gray, boxes=boxes)
        spool.write(np.stack([cv2.resize(maps[c], (gw, gh), interpolation=cv2.INTER_AREA)
                              for c in GRID_CHANNELS]).astype(np.float32).tobytes())
        hist = cv2.calcHist([gray_u8], [0], None, [32], [0, 256]).ravel()
        hist /= max(hist.sum(), 1)
        cut = prev_hist is not None and 0.5 * np.abs(hist - prev_hist).sum() > cfg["cut_threshold"]
        rows.append({"t": t, **{k: info[k] for k in KINDS if k in info}, "scene_cut": int(cut)})
        for b, mv in zip(boxes, info["mouth_vals"]):
            face_rows.append({"t": t, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "mouth_motion": mv})
        prev_gray, prev_hist = info["gray"], hist
        if embed is not None:
            embed.add(t, rgb)
    if not rows:
        raise ValueError(f"{video_id}: no frame decoded from {video_path}")
    emb_t, emb, cnn, n_base = None, None, None, len(GRID_CHANNELS)
    if embed is not None:
        emb_t, emb, cnn = embed.finish()
    t_all = np.array([r["t"] for r in rows])
    n_ch = n_base + (cnn.shape[1] if cnn is not None else 0)
    row_bytes = n_base * gh * gw * 4

    def grid_chunks(chunk: int = 256):
        spool.seek(0)
        for i in range(0, len(t_all), chunk):
            k = min(chunk, len(t_all) - i)
            base = np.frombuffer(spool.read(k * row_bytes), np.float32).reshape(k, n_base, gh, gw)
            if cnn is None:
                yield base
                continue
            yield np.concatenate([base, interp_clamped(emb_t, cnn, t_all[i:i + k])], axis=1)

    emb_stream = None
    if emb is not None:
        from gazelib.normalize import l2_normalise

        def emb_chunks(chunk: int = 1024):
            for i in range(0, len(t_all), chunk):
                yield l2_normalise(interp_clamped(emb_t, emb, t_all[i:i + chunk]))

        emb_stream = StreamedArray(shape=(len(t_all), emb.shape[1]), dtype=np.float32, chunks=emb_chunks)
    table = pd.DataFrame(rows)[["t", *KINDS]]
    table = table.astype({k: (np.int16 if v in ("count", "binary") else np.float32) for k, v in KINDS.items()})
    faces = pd.DataFrame(face_rows, columns=["t", "x0", "y0", "x1", "y1", "mouth_motion"])
    return VisualFeatures(table=table, grid_stream=StreamedArray(shape=(len(t_all), n_ch, gh, gw), dtype=np.float32,
                                                              chunks=grid_chunks),
                          faces=faces, channels=grid_channel_names(cfg) if encoder else list(GRID_CHANNELS),
                          emb_stream=emb_stream, image_model=encoder.name if encoder else "")


class _Embedder:
    """Collects frames at ``embed_fps`` and encodes them in batches (memory stays bounded)."""

    def __init__(self, encoder, cfg: dict):
        self.encoder, self.cfg = encoder, cfg
        self.next_t, self.pending, self.times = -np.inf, [], []
        self.embs, self.grids = [], []

    def add(self, t: float, rgb: np.ndarray) -> None:
        if t + 1e-6 < self.next_t:
            return
        self.next_t = t + 1.0 / self.cfg["embed_fps"]
        self.pending.append(cv2.resize(rgb, (self.cfg["embed_width"], self.cfg["embed_height"]),
                                       interpolation=cv2.INTER_AREA))
        self.times.append(t)
        if len(self.pending) >= self.cfg["embed_batch"]:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        e, g = self.encoder.encode(np.stack(self.pending))
        self.embs.append(e)
        if g is not None:
            self.grids.append(g)
        self.pending = []

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        self._flush()
        return (np.array(self.times), np.concatenate(self.embs),
                np.concatenate(self.grids) if self.grids else None)


def write_visual_features(*, feats: VisualFeatures, out_dir: str | Path, video_id: str, cfg: dict,
                          detector_name: str) -> list[Path]:
    out_dir = Path(out_dir)
    kinds = {**KINDS, "grid": "grid", **({"image_emb": "embedding"} if feats.emb_stream is not None else {})}
    models = {"faces": detector_name, **({"image": feats.image_model} if feats.image_model else {})}
    meta = feature_meta(video_id=video_id, modality="visual", kinds=kinds, backend="pyav+opencv+torch",
                        params=cfg, models=models, extra={"grid_channels": feats.channels})
    paths = [out_dir / f"{video_id}.parquet", out_dir / f"{video_id}.npz", out_dir / "faces" / f"{video_id}.parquet"]
    write_table(paths[0], feats.table, meta=meta)
    extra = {"image_emb": feats.emb_stream} if feats.emb_stream is not None else {}
    write_npz(paths[1], t=feats.table["t"].to_numpy(), grid=feats.grid_stream, grid_channels=np.array(feats.channels),
              **extra)
    write_table(paths[2], feats.faces, meta={"video_id": video_id, "detector": detector_name})
    return paths


# ---------------------------------------------------------------- DVC stage
def run_extract_visual(*, params: dict, root: Path = Path(".")) -> dict:
    cfg = params["visual"]
    out = root / FEATURES / "visual"
    detector = FaceDetector.from_params(cfg)
    encoder = make_image_encoder(cfg)

    def compute(item: dict) -> list[Path]:
        feats = extract_visual_features(video_path=item["video_path"], video_id=item["video_id"], cfg=cfg,
                                        detector=detector, encoder=encoder)
        return write_visual_features(feats=feats, out_dir=out, video_id=item["video_id"], cfg=cfg,
                                     detector_name=detector.name)

    run = run_per_video(cache=VideoCache(out, "extract_visual"), items=manifest_items(load_manifest(root)),
                        params={**cfg, "code": code_hash("gazelib.features.visual", "gazelib.features.image_models",
                                                         "gazelib.features.grid", "gazelib.media",
                                                         "gazelib.normalize")},
                        compute=compute, on_error=params["data"]["on_error"])
    return run.as_dict()
