"""Screen-to-video geometry and degrees of visual angle (pure functions, no I/O).

Conventions: display pixels have their origin at the top-left of the display, x right, y down
(EyeLink, Tobii Pro Lab, SMI all write gaze this way). The video was drawn into a rectangle
``[x, y, w, h]`` of display pixels; video-normalised coordinates are
``((x_px - x) / w, (y_px - y) / h)``, so gaze on letterbox bars or off the screen falls outside
[0, 1] and is *out of frame*.

Degrees assume a flat screen of ``screen_cm`` (width, height) showing ``display_px`` pixels,
viewed from ``distance_cm`` on the perpendicular through the screen centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RECT_RULES = ("fit", "fill", "stretch", "native")


@dataclass(frozen=True)
class Rect:
    """Where the video was drawn, in display pixels (top-left origin)."""

    x: float
    y: float
    w: float
    h: float

    def as_list(self, ndigits: int = 3) -> list[float]:
        return [round(float(v), ndigits) for v in (self.x, self.y, self.w, self.h)]


def video_rect(*, display_px: tuple[int, int], rule, video_px: tuple[int, int] | None = None) -> Rect:
    """The rectangle the video occupied on the display.

    ``rule`` is ``"fit"`` (whole video visible, centred, letterbox/pillarbox bars), ``"fill"``
    (display covered, centred, video cropped), ``"stretch"`` (whole display, aspect ignored),
    ``"native"`` (1:1 pixels, centred) or an explicit ``[x, y, w, h]`` in display pixels.
    """
    dw, dh = (float(v) for v in display_px)
    if dw <= 0 or dh <= 0:
        raise ValueError(f"display size must be positive, got {display_px}")
    if isinstance(rule, (list, tuple)):
        if len(rule) != 4 or float(rule[2]) <= 0 or float(rule[3]) <= 0:
            raise ValueError(f"rect must be [x, y, w, h] with w, h > 0, got {rule}")
        return Rect(*(float(v) for v in rule))
    if rule not in RECT_RULES:
        raise ValueError(f"rect must be one of {RECT_RULES} or [x, y, w, h], got {rule!r}")
    if rule == "stretch":
        return Rect(0.0, 0.0, dw, dh)
    if video_px is None:
        raise ValueError(f"rect {rule!r} needs the video's size (geometry.video_px or a videos folder)")
    vw, vh = (float(v) for v in video_px)
    if vw <= 0 or vh <= 0:
        raise ValueError(f"video size must be positive, got {video_px}")
    scale = {"fit": min(dw / vw, dh / vh), "fill": max(dw / vw, dh / vh), "native": 1.0}[rule]
    w, h = vw * scale, vh * scale
    return Rect((dw - w) / 2.0, (dh - h) / 2.0, w, h)


def display_to_video(*, x_px: np.ndarray, y_px: np.ndarray, rect: Rect) -> tuple[np.ndarray, np.ndarray]:
    """Display pixels -> video-normalised coordinates (outside [0, 1] = out of frame)."""
    return (np.asarray(x_px, float) - rect.x) / rect.w, (np.asarray(y_px, float) - rect.y) / rect.h


def video_to_display(*, x: np.ndarray, y: np.ndarray, rect: Rect) -> tuple[np.ndarray, np.ndarray]:
    """Video-normalised coordinates -> display pixels (the inverse of :func:`display_to_video`)."""
    return rect.x + np.asarray(x, float) * rect.w, rect.y + np.asarray(y, float) * rect.h


def homography_from_points(*, src, dst) -> np.ndarray:
    """The 3x3 projective map taking 4 (or more) ``src`` points onto ``dst`` (least squares DLT)."""
    src = np.asarray(src, dtype=float)
    dst = np.asarray(dst, dtype=float)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 4:
        raise ValueError(f"need >= 4 point pairs of (x, y), got {src.shape} and {dst.shape}")
    rows = []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, s, vt = np.linalg.svd(np.asarray(rows))
    if s[-2] < 1e-9 * s[0]:
        raise ValueError("the points do not define a homography (three of them are collinear?)")
    h = vt[-1].reshape(3, 3)
    return h / h[2, 2]


def apply_homography(*, h: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map points through a 3x3 homography (NaN in, NaN out; behind the plane gives NaN)."""
    h = np.asarray(h, dtype=float)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w
        v = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
    bad = ~(w > 0)
    return np.where(bad, np.nan, u), np.where(bad, np.nan, v)


def visual_geometry(*, display_px: tuple[int, int], screen_cm: tuple[float, float],
                    distance_cm: float, rect: Rect) -> dict:
    """Pixels per degree at the screen centre and degrees per normalised video unit.

    ``pixels_per_degree`` [x, y] is the local scale at the screen centre
    (``px_per_cm * distance_cm * pi / 180``). ``deg_per_unit`` [x, y] is the visual angle the
    video's width and height subtend through its centre, exactly (so an error of 0.1 normalised
    units along x is about ``0.1 * deg_per_unit[0]`` degrees; use :func:`angular_distance_deg`
    for exact point-to-point angles).
    """
    if distance_cm <= 0 or min(screen_cm) <= 0:
        raise ValueError(f"screen_cm {screen_cm} and distance_cm {distance_cm} must be positive")
    pcx = display_px[0] / float(screen_cm[0])
    pcy = display_px[1] / float(screen_cm[1])
    ppd = [pcx * distance_cm * math.pi / 180.0, pcy * distance_cm * math.pi / 180.0]
    cx, cy = display_px[0] / 2.0, display_px[1] / 2.0
    mx, my = rect.x + rect.w / 2.0, rect.y + rect.h / 2.0

    def span(a0_px: float, a1_px: float, b_px: float, pc_a: float, pc_b: float, c_a: float, c_b: float) -> float:
        # angle between the two edge points along one axis, through the rect's centre line
        p0 = np.array([(a0_px - c_a) / pc_a, (b_px - c_b) / pc_b, distance_cm])
        p1 = np.array([(a1_px - c_a) / pc_a, (b_px - c_b) / pc_b, distance_cm])
        cos = float(p0 @ p1 / (np.linalg.norm(p0) * np.linalg.norm(p1)))
        return math.degrees(math.acos(min(1.0, max(-1.0, cos))))

    dpu = [span(rect.x, rect.x + rect.w, my, pcx, pcy, cx, cy),
           span(rect.y, rect.y + rect.h, mx, pcy, pcx, cy, cx)]
    return {"pixels_per_degree": [round(v, 4) for v in ppd], "deg_per_unit": [round(v, 4) for v in dpu]}


def geometry_block(*, display_px: tuple[int, int], rects: dict[str, Rect],
                   screen_cm: tuple[float, float] | None = None, distance_cm: float | None = None) -> dict:
    """The ``geometry:`` block written into corpus.yaml (see docs/importing.md)."""
    block: dict = {"display_px": [int(display_px[0]), int(display_px[1])]}
    if screen_cm is not None and distance_cm is not None:
        block["screen_cm"] = [round(float(screen_cm[0]), 3), round(float(screen_cm[1]), 3)]
        block["distance_cm"] = round(float(distance_cm), 3)
    block["video_rect_px"] = {vid: rects[vid].as_list() for vid in sorted(rects)}
    if "distance_cm" in block:
        full = Rect(0.0, 0.0, float(display_px[0]), float(display_px[1]))
        block["pixels_per_degree"] = visual_geometry(display_px=display_px, screen_cm=screen_cm,
                                                     distance_cm=distance_cm, rect=full)["pixels_per_degree"]
        block["deg_per_unit"] = {vid: visual_geometry(display_px=display_px, screen_cm=screen_cm,
                                                      distance_cm=distance_cm, rect=rects[vid])["deg_per_unit"]
                                 for vid in sorted(rects)}
    return block


def _rect_of(geometry: dict, video_id: str) -> Rect:
    rects = geometry.get("video_rect_px") or {}
    if video_id not in rects:
        raise KeyError(f"corpus geometry has no video_rect_px for {video_id!r} (has {sorted(rects)})")
    return Rect(*(float(v) for v in rects[video_id]))


def angular_distance_deg(*, x0, y0, x1, y1, geometry: dict, video_id: str) -> np.ndarray:
    """Exact visual angle (degrees) between two gaze points given in video-normalised units.

    ``geometry`` is the corpus.yaml ``geometry:`` block (it needs ``screen_cm`` and
    ``distance_cm``). Works elementwise on arrays; NaN where either point is NaN.
    """
    if "screen_cm" not in geometry or "distance_cm" not in geometry:
        raise KeyError("corpus geometry has no screen_cm / distance_cm: degrees are unknown")
    rect = _rect_of(geometry, video_id)
    dw, dh = geometry["display_px"]
    sw, sh = geometry["screen_cm"]
    d = float(geometry["distance_cm"])

    def to_cm(x, y):
        px, py = video_to_display(x=x, y=y, rect=rect)
        return (px - dw / 2.0) * sw / dw, (py - dh / 2.0) * sh / dh

    ax, ay = to_cm(x0, y0)
    bx, by = to_cm(x1, y1)
    dot = ax * bx + ay * by + d * d
    na = np.sqrt(ax * ax + ay * ay + d * d)
    nb = np.sqrt(bx * bx + by * by + d * d)
    return np.degrees(np.arccos(np.clip(dot / (na * nb), -1.0, 1.0)))


def norm_to_deg(*, dx, dy, geometry: dict, video_id: str) -> np.ndarray:
    """Length in degrees of a small displacement ``(dx, dy)`` in normalised video units (linear)."""
    dpu = (geometry.get("deg_per_unit") or {}).get(video_id)
    if dpu is None:
        raise KeyError(f"corpus geometry has no deg_per_unit for {video_id!r}")
    return np.hypot(np.asarray(dx, float) * dpu[0], np.asarray(dy, float) * dpu[1])
