"""Visual features per sampled frame: scalars, face boxes and a spatial grid [C, Gh, Gw].

Frames are decoded by PTS at ``sample_fps`` and processed one at a time, in order (memory does
not grow with the video). Decoding (up to ``_READ_AHEAD_BYTES`` of frames ahead), face detection
and the image encoder run in threads of their own beside the per-frame maps; every output is
what processing in line gives, byte for byte. Faces are detected at ``face_fps`` (boxes held in
between); mouth motion is measured in the held boxes on every sampled frame. Grid channels are
cell means of full-resolution maps:

- ``lab_l, lab_a, lab_b``: CIE Lab colour, each scaled to [0, 1]
- ``motion``: |gray_t - gray_{t-1}| / 255
- ``saliency``: spectral residual saliency (Hou & Zhang 2007), normalised to max 1 per frame
- ``edges``: Sobel gradient magnitude / 255
- ``face``: share of the cell covered by detected face boxes
- ``mouth_motion``: motion inside the lower third of each face box
- ``cnn_<k>``: EfficientNet-Lite0 block-``cnn_grid_block`` features average-pooled to the grid

The pretrained encoder (``image_model``) runs on frames resized to ``embed_width x
embed_height`` at ``embed_fps``; its global embedding (``image_emb``, embedding kind) and
grid channels reach the sampled frames by ``features.lookahead``: ``none`` (default) holds the last
encoded keyframe at or before each frame (viewer-causal); ``offline`` interpolates linearly
toward the next keyframe (up to ``1 / embed_fps`` ahead; held at the ends). Everything else is
causal in both modes: a frame's maps use that frame and the one before (motion, cuts), faces are
held from the last detection (docs/causality.md).
"""
from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generator, Iterator, cast

import cv2
import numpy as np
import pandas as pd

from gazelib.features import check_lookahead, last_at_or_before, lookahead_of
from gazelib.core.io import StreamedArray, feature_meta, write_npz, write_table
from gazelib.core.media import iter_frames
from gazelib.core.cache import VideoCache, run_per_video
from gazelib.core.closure import stage_code
from gazelib.features.faces import FaceDetector
from gazelib.features.grid import GRID_CHANNELS, grid_channel_names  # noqa: F401 (tests import them here)
from gazelib.core.layout import FEATURES, load_manifest, manifest_items
from gazelib.core.params import feature_record

if TYPE_CHECKING:
    from concurrent.futures import Future

log = logging.getLogger(__name__)

KINDS = {"motion": "continuous", "brightness": "continuous", "contrast": "continuous",
         "saliency_peak": "continuous", "mouth_motion": "continuous", "face_count": "count",
         "scene_cut": "binary"}


def spectral_residual(gray: np.ndarray, size: int = 64) -> np.ndarray:
    """Saliency map at ``gray``'s size: S = G * |F^-1[exp(R + iP)]|^2, R = log A - mean3x3(log A)."""
    small = cv2.resize(gray.astype(np.float32, copy=False), (size, size), interpolation=cv2.INTER_AREA)
    f = np.fft.fft2(small)  # complex64 for float32 input
    amp = np.abs(f)
    log_amp = np.log(amp + 1e-8)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    # exp(R + iP) = exp(R) * F / |F|: no angle/complex exp
    sal = np.abs(np.fft.ifft2(f * (np.exp(residual) / np.maximum(amp, 1e-30)))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32, copy=False), (0, 0), 2.5)
    sal = cv2.resize(sal, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.multiply(sal, np.float32(1.0 / max(float(sal.max()), 1e-12)), out=sal)


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
    lookahead: str = "none"  # features.lookahead they were made with

    @property
    def grid(self) -> np.ndarray:
        return self.grid_stream.materialize()

    @property
    def image_emb(self) -> np.ndarray | None:
        return None if self.emb_stream is None else self.emb_stream.materialize()


def make_image_encoder(cfg: dict):
    if cfg["image_model"] == "none":
        return None
    from gazelib.features.image_models import ImageEncoder

    # embed_threads is absent from bundles made before it (they ran 2; 1 and 2 gave identical outputs here):
    # load_bundle gives them the schema default
    return ImageEncoder(model=cfg["image_model"], grid_hw=(cfg["grid_h"], cfg["grid_w"]),
                        feature_block=cfg["cnn_grid_block"], batch_size=cfg["embed_batch"],
                        threads=cfg["embed_threads"])


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


def hold_rows(src_t: np.ndarray, src_v: np.ndarray, dst_t: np.ndarray, out: np.ndarray | None = None,
              chunk: int = 256) -> np.ndarray:
    """The row of the last source time at or before each ``dst_t`` (the first row before the first
    time), in float32 chunks of ``chunk`` rows: keyframe features held, never taken from a later one."""
    out = np.empty((len(dst_t),) + src_v.shape[1:], np.float32) if out is None else out
    for i in range(0, len(dst_t), chunk):
        out[i:i + chunk] = src_v[np.clip(last_at_or_before(src_t, dst_t[i:i + chunk]), 0, len(src_t) - 1)]
    return out


# How far the decoding thread may run ahead of the main loop, in bytes of decoded frames (about 10 s
# of 320x180 frames at 10 fps): far enough that the encoder gets its frames early, so its last
# batches no longer run alone after the main loop has finished a video; memory stays flat.
_READ_AHEAD_BYTES = 24 << 20
# frames the face thread may run ahead of the main loop
_FACES_AHEAD = 4


class _Failed:
    """An exception raised in the thread of :func:`in_thread`, carried to the consumer."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def in_thread(items: Iterator, *, depth: int, name: str) -> Generator:
    """The items of the generator ``items``, made in a thread of its own up to ``depth`` ahead of the
    consumer (decoding and face detection release the GIL, so they overlap the main loop's maps on a
    second core). The items and their order are those of ``items``; an exception raised there is
    raised here; closing this generator (or dropping it) stops the thread and closes ``items``."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(None)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the consumer)
            put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def _decoded(*, video_path: str | Path, video_id: str, cfg: dict, embed: _Embedder | None,
             timings: dict | None) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """``(t, rgb, grey uint8)`` of each sampled frame (the decoding thread's work, run by
    :func:`in_thread`); the encoder's frames are handed to ``embed`` here, as soon as they are
    decoded. ``timings`` gets ``decode_thread`` (seconds in this thread, waiting for the encoder
    to take a batch included)."""
    timer = _Timer(timings)
    # a generator: closed when the consumer stops early, so the file is closed in this thread
    frames = cast(Generator, iter_frames(path=video_path, sample_fps=cfg["sample_fps"], width=cfg["work_width"],
                                         height=cfg["work_height"], video_id=video_id))
    try:
        while True:
            with timer("decode_thread"):
                item = next(frames, None)
                if item is None:
                    return
                t, rgb = item
                gray_u8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
                if embed is not None:
                    embed.add(t, rgb)
            yield t, rgb, gray_u8
    finally:
        frames.close()


def _with_faces(frames: Generator, *, detector, face_fps: float,
                timings: dict | None) -> Iterator[tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
    """``(t, rgb, grey uint8, face boxes)``: faces detected at ``face_fps``, the boxes held in
    between (the face thread's work, run by :func:`in_thread`). ``timings`` gets ``faces_thread``."""
    timer = _Timer(timings)
    boxes, next_detect = np.zeros((0, 4), np.float32), -np.inf
    try:
        for t, rgb, gray_u8 in frames:
            if t + 1e-6 >= next_detect:
                # faces move slowly: detect at face_fps and hold the boxes in between
                # detectors do not return faces in a stable order: sort, so side tables repeat byte for byte
                with timer("faces_thread"):
                    boxes = np.asarray(sorted(map(tuple, np.asarray(detector.detect(rgb)).reshape(-1, 4))),
                                       np.float32).reshape(-1, 4)
                next_detect = t + 1.0 / face_fps
            yield t, rgb, gray_u8, boxes
    finally:
        frames.close()


def frame_maps(*, rgb: np.ndarray, prev_gray: np.ndarray | None, boxes: np.ndarray,
               gray_u8: np.ndarray | None = None) -> tuple[dict, dict]:
    """Full-resolution float32 maps for the grid (``lab``: [H, W, 3] 8-bit Lab values, the others
    [H, W] in [0, 1]) and per-frame scalars of one frame. ``gray_u8``: the frame's grey
    (``cv2.COLOR_RGB2GRAY``) when the reader thread made it."""
    h, w = rgb.shape[:2]
    gray_u8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if gray_u8 is None else gray_u8
    gray = gray_u8.astype(np.float32)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)  # 8-bit Lab; / 255 after pooling
    motion = cv2.absdiff(gray, prev_gray) if prev_gray is not None else np.zeros_like(gray)
    motion *= np.float32(1 / 255.0)
    sal = spectral_residual(gray)
    # |grad| with plain IEEE ops in place (with cv2.magnitude the grid differed by 1 ulp between runs)
    edges, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    edges *= edges
    gy *= gy
    edges += gy
    np.sqrt(edges, out=edges)
    edges *= np.float32(1 / 255.0)
    np.minimum(edges, np.float32(1.0), out=edges)
    face = np.zeros_like(gray)
    mouth = np.zeros_like(gray)
    mouth_vals = []
    for (fs, ms) in zip(box_mask(boxes, h, w), box_mask(boxes, h, w, lower_third=True)):
        face[fs] = 1.0
        mouth[ms] = motion[ms]
        mouth_vals.append(float(motion[ms].mean()) if motion[ms].size else 0.0)
    maps = {"lab": lab, "motion": motion, "saliency": sal, "edges": edges, "face": face, "mouth_motion": mouth}
    mean, std = cv2.meanStdDev(gray)
    scalars = {"motion": float(motion.mean()), "brightness": float(mean[0, 0] / 255.0),
               "contrast": float(std[0, 0] / 255.0), "saliency_peak": float(sal.mean()),
               "mouth_motion": float(max(mouth_vals, default=0.0)), "face_count": len(boxes)}
    return maps, {"gray": gray, **scalars, "mouth_vals": mouth_vals}


def pool_grid(maps: dict, gh: int, gw: int) -> np.ndarray:
    """Cell means [C, gh, gw] (float32) of the maps, in ``GRID_CHANNELS`` order (Lab scaled to [0, 1])."""
    out = np.empty((len(GRID_CHANNELS), gh, gw), np.float32)
    lab = cv2.resize(maps["lab"], (gw, gh), interpolation=cv2.INTER_AREA)
    out[:3] = lab.transpose(2, 0, 1) * np.float32(1 / 255.0)
    # the one-channel maps pooled four at a time (OpenCV's area resize takes up to 4 channels at
    # any scale): each channel's cells are those of resizing it alone (tests/test_visual_speed.py),
    # and a call on four channels costs less than four calls. An exact halving in both axes takes
    # OpenCV's 2x2 SIMD path, whose sums differ by one float32 ulp between 1 and 4 channels: there
    # each map is pooled alone.
    h, w = maps["lab"].shape[:2]
    group = 1 if (h, w) == (2 * gh, 2 * gw) else 4
    for k in range(3, len(GRID_CHANNELS), group):
        names = GRID_CHANNELS[k:k + group]
        stacked = maps[names[0]] if len(names) == 1 else np.dstack([maps[c] for c in names])
        pooled = cv2.resize(stacked, (gw, gh), interpolation=cv2.INTER_AREA).reshape(gh, gw, len(names))
        out[k:k + len(names)] = pooled.transpose(2, 0, 1)
    return out


class _Timer:
    """Adds the wall time of each ``with timer(part):`` block to ``timings[part]`` and the CPU time
    of the thread running it to ``timings[part + "_cpu"]`` (seconds); does nothing when ``timings``
    is None. The bench reads it for its per-part profile; on a busy machine the CPU times show each
    thread's own work, which wall times mix with waiting for a core."""

    def __init__(self, timings: dict | None):
        self.timings, self.part, self.t0, self.c0 = timings, "", 0.0, 0.0

    def __call__(self, part: str) -> "_Timer":
        self.part = part
        return self

    def __enter__(self) -> None:
        if self.timings is not None:
            self.t0, self.c0 = time.perf_counter(), time.thread_time()

    def __exit__(self, *exc) -> None:
        if self.timings is not None:
            cpu = self.part + "_cpu"
            self.timings[self.part] = self.timings.get(self.part, 0.0) + time.perf_counter() - self.t0
            self.timings[cpu] = self.timings.get(cpu, 0.0) + time.thread_time() - self.c0


def extract_visual_features(*, video_path: str | Path, video_id: str, cfg: dict,
                            detector: FaceDetector | None = None, encoder=None,
                            timings: dict | None = None, lookahead: str = "none") -> VisualFeatures:
    """Per-frame table, face boxes and grid (+ encoder embedding) of one video; ``lookahead``
    (``features.lookahead``) says how keyframe features reach the other frames. ``timings``, when
    given, collects seconds spent per part of the main thread: decode (waiting for the frames and
    their faces), maps, cnn (waiting for the encoder's last batches); the rest is bookkeeping. Three
    threads overlap the main one: decoding (``decode_thread``: decoding, grey, the encoder's frames),
    face detection (``faces_thread``) and the encoder network (``cnn_thread``)."""
    timer = _Timer(timings)
    to_frames = hold_rows if check_lookahead(lookahead) == "none" else interp_clamped
    detector = detector or FaceDetector.from_params(cfg)
    embed = _Embedder(encoder, cfg, timings) if encoder is not None else None
    gh, gw = cfg["grid_h"], cfg["grid_w"]
    rows, face_rows = [], []
    spool = tempfile.TemporaryFile()  # base grid rows, so memory does not grow with the video
    prev_gray, prev_hist = None, None
    # three threads feed the main loop: decoding (far ahead; it hands the encoder its frames), face
    # detection (a few frames ahead) and the encoder network; each item keeps its order
    decoded = in_thread(_decoded(video_path=video_path, video_id=video_id, cfg=cfg, embed=embed, timings=timings),
                        depth=max(_FACES_AHEAD, _READ_AHEAD_BYTES // (4 * cfg["work_width"] * cfg["work_height"])),
                        name="visual-decode")
    frames = in_thread(_with_faces(decoded, detector=detector, face_fps=cfg["face_fps"], timings=timings),
                       depth=_FACES_AHEAD, name="visual-faces")
    try:
        while True:
            with timer("decode"):
                item = next(frames, None)
            if item is None:
                break
            t, rgb, gray_u8, boxes = item
            with timer("maps"):
                maps, info = frame_maps(rgb=rgb, prev_gray=prev_gray, boxes=boxes, gray_u8=gray_u8)
                spool.write(pool_grid(maps, gh, gw).tobytes())
            hist = cv2.calcHist([gray_u8], [0], None, [32], [0, 256]).ravel()
            hist /= max(hist.sum(), 1)
            cut = prev_hist is not None and 0.5 * np.abs(hist - prev_hist).sum() > cfg["cut_threshold"]
            rows.append({"t": t, **{k: info[k] for k in KINDS if k in info}, "scene_cut": int(cut)})
            for b, mv in zip(boxes, info["mouth_vals"]):
                face_rows.append({"t": t, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "mouth_motion": mv})
            prev_gray, prev_hist = info["gray"], hist
    finally:
        frames.close()  # a failure mid-way stops the threads and closes the file
    if not rows:
        raise ValueError(f"{video_id}: no frame decoded from {video_path}")
    emb_t, emb, cnn, n_base = None, None, None, len(GRID_CHANNELS)
    if embed is not None:
        with timer("cnn"):
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
            yield np.concatenate([base, to_frames(emb_t, cnn, t_all[i:i + k])], axis=1)

    emb_stream = None
    if emb is not None:
        from gazelib.core.normalize import l2_normalise

        def emb_chunks(chunk: int = 1024):
            for i in range(0, len(t_all), chunk):
                yield l2_normalise(to_frames(emb_t, emb, t_all[i:i + chunk]))

        emb_stream = StreamedArray(shape=(len(t_all), emb.shape[1]), dtype=np.float32, chunks=emb_chunks)
    table = pd.DataFrame(rows)[["t", *KINDS]]
    table = table.astype({k: (np.int16 if v in ("count", "binary") else np.float32) for k, v in KINDS.items()})
    faces = pd.DataFrame(face_rows, columns=["t", "x0", "y0", "x1", "y1", "mouth_motion"])
    return VisualFeatures(table=table, grid_stream=StreamedArray(shape=(len(t_all), n_ch, gh, gw), dtype=np.float32,
                                                              chunks=grid_chunks),
                          faces=faces, channels=grid_channel_names(cfg) if encoder else list(GRID_CHANNELS),
                          emb_stream=emb_stream, image_model=encoder.name if encoder else "", lookahead=lookahead)


class _Embedder:
    """Collects frames at ``embed_fps`` and encodes them in batches of ``embed_batch``.

    Frames are added by the decoding thread as they are decoded; each batch is encoded in a worker
    thread (torch releases the GIL) while the next frames are decoded and their maps computed; at
    most one batch is in flight (memory stays bounded) and results are kept in submission order, so
    the outputs are those of encoding in line. ``timings["cnn_thread"]`` gets the worker's seconds.
    """

    future: Future | None   # the batch in flight

    def __init__(self, encoder, cfg: dict, timings: dict | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.encoder, self.cfg, self.timings = encoder, cfg, timings
        self.next_t, self.pending, self.times = -np.inf, [], []
        self.embs, self.grids = [], []
        self.pool, self.future = ThreadPoolExecutor(max_workers=1, thread_name_prefix="visual-encoder"), None
        weakref.finalize(self, self.pool.shutdown, wait=False)  # a video that fails mid-way leaves no thread

    def add(self, t: float, rgb: np.ndarray) -> None:
        if t + 1e-6 < self.next_t:
            return
        self.next_t = t + 1.0 / self.cfg["embed_fps"]
        self.pending.append(cv2.resize(rgb, (self.cfg["embed_width"], self.cfg["embed_height"]),
                                       interpolation=cv2.INTER_AREA))
        self.times.append(t)
        if len(self.pending) >= self.cfg["embed_batch"]:
            self._flush()

    def _encode(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        with _Timer(self.timings)("cnn_thread"):
            return self.encoder.encode(batch)

    def _collect(self) -> None:
        if self.future is None:
            return
        e, g = self.future.result()
        self.future = None
        self.embs.append(e)
        if g is not None:
            self.grids.append(g)

    def _flush(self) -> None:
        if not self.pending:
            return
        self._collect()
        self.future = self.pool.submit(self._encode, np.stack(self.pending))
        self.pending = []

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        try:
            self._flush()
            self._collect()
        finally:
            self.pool.shutdown(wait=True)
        return (np.array(self.times), np.concatenate(self.embs),
                np.concatenate(self.grids) if self.grids else None)


def write_visual_features(*, feats: VisualFeatures, out_dir: str | Path, video_id: str, cfg: dict,
                          detector_name: str) -> list[Path]:
    out_dir = Path(out_dir)
    kinds = {**KINDS, "grid": "grid", **({"image_emb": "embedding"} if feats.emb_stream is not None else {})}
    models = {"faces": detector_name, **({"image": feats.image_model} if feats.image_model else {})}
    meta = feature_meta(video_id=video_id, modality="visual", kinds=kinds, backend="pyav+opencv+torch",
                        params=cfg, models=models, extra={"grid_channels": feats.channels,
                                                          "lookahead": feats.lookahead})
    paths = [out_dir / f"{video_id}.parquet", out_dir / f"{video_id}.npz", out_dir / "faces" / f"{video_id}.parquet"]
    write_table(paths[0], feats.table, meta=meta)
    extra = {"image_emb": feats.emb_stream} if feats.emb_stream is not None else {}
    # grid and embedding stored, not deflated: the CNN channels barely compress (to ~0.76) and deflating
    # them took ~10% of the stage's time; files are ~1.5x larger (docs/pipeline.md)
    write_npz(paths[1], t=feats.table["t"].to_numpy(), grid=feats.grid_stream, grid_channels=np.array(feats.channels),
              uncompressed=("grid", *extra), **extra)
    write_table(paths[2], feats.faces, meta={"video_id": video_id, "detector": detector_name})
    return paths


# ---------------------------------------------------------------- DVC stage
def visual_video(*, item: dict, cfg: dict, detector, encoder, out_dir: Path, lookahead: str,
                 detector_name: str | None = None) -> list[Path]:
    """One video's visual features, extracted and written into ``out_dir`` (the featurize step of
    visual: the extract_visual stage, ``gazelib predict`` and the bias inputs all run it;
    gazelib.pipeline.featurize). ``detector`` None: no face detection (``detector_name`` says why in
    the metadata). Returns the files written."""
    feats = extract_visual_features(video_path=item["video_path"], video_id=item["video_id"], cfg=cfg,
                                    detector=detector, encoder=encoder, lookahead=lookahead)
    return write_visual_features(feats=feats, out_dir=out_dir, video_id=item["video_id"], cfg=cfg,
                                 detector_name=detector_name if detector_name is not None else detector.name)


def visual_worker(*, cfg: dict, out: Path, lookahead: str = "none"):
    """The per-video work of extract_visual, its models loaded once (per worker: gazelib.core.compute)."""
    detector = FaceDetector.from_params(cfg)
    encoder = make_image_encoder(cfg)

    def compute(item: dict) -> list[Path]:
        return visual_video(item=item, cfg=cfg, detector=detector, encoder=encoder, out_dir=out, lookahead=lookahead)
    return compute


def run_extract_visual(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.core.compute import WorkerSpec

    cfg, lookahead = params["visual"], lookahead_of(params)
    out = root / FEATURES / "visual"
    # torch threads in every worker: the image encoder's (its sums depend on the thread count)
    spec = WorkerSpec(visual_worker, {"cfg": cfg, "out": out, "lookahead": lookahead},
                      threads=int(cfg["embed_threads"]))
    run = run_per_video(cache=VideoCache(out, "extract_visual"), items=manifest_items(load_manifest(root)),
                        params={**cfg, "lookahead": lookahead}, code=stage_code(stage="extract_visual", cfg=cfg),
                        compute=spec, on_error=params["data"]["on_error"], backend=params.get("compute"),
                        record=feature_record(params["visual"], section="visual"))
    return run.as_dict()
