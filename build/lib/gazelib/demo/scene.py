"""Drawing of the demo scene: textured background, talking characters, moving balls.

All geometry is in normalised frame coordinates; ``render_frame`` rasterises one
frame at the requested size with OpenCV primitives.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

COLOURS = {  # RGB, distinct named colours a sentence can refer to
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 70, 225),
    "yellow": (245, 215, 20),
    "purple": (150, 40, 185),
    "orange": (250, 135, 0),
}
SKIN = [(224, 182, 150), (198, 140, 105), (241, 204, 177)]
SHIRTS = [(70, 90, 120), (120, 60, 60), (60, 110, 70)]


@dataclass
class Character:
    cx: float   # face centre, normalised
    cy: float
    h: float    # face height, normalised to frame height
    skin: tuple
    shirt: tuple

    def face_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Face box (x0, y0, x1, y1), normalised; width follows the drawn ellipse."""
        hh = self.h / 2
        hw = 0.78 * self.h * height / width / 2
        return (self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh)


@dataclass
class Ball:
    colour: str
    radius: float            # normalised to frame height
    centre: np.ndarray       # [2] normalised
    amp: np.ndarray          # [2, K]
    freq: np.ndarray         # [2, K] Hz
    phase: np.ndarray        # [2, K]

    def position(self, t: np.ndarray | float) -> np.ndarray:
        """Smooth path (sum of sinusoids); returns [..., 2] normalised (x, y)."""
        t = np.asarray(t, dtype=np.float64)[..., None, None]
        offs = (self.amp * np.sin(2 * np.pi * self.freq * t + self.phase)).sum(-1)
        return np.clip(self.centre + offs, 0.05, 0.95)

    def box(self, t: float, width: int, height: int) -> tuple[float, float, float, float]:
        x, y = self.position(t)
        rx, ry = self.radius * height / width, self.radius
        return (x - rx, y - ry, x + rx, y + ry)


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Low-frequency coloured texture with fine grain (uint8 RGB)."""
    coarse = rng.uniform(0, 1, size=(6, 10, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    base = np.array(rng.uniform(110, 170, size=3), dtype=np.float32)
    grain = rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    img = base + 45 * (smooth - 0.5) + grain
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_character(img: np.ndarray, ch: Character, mouth_open: float) -> None:
    h, w = img.shape[:2]
    cx, cy = int(round(ch.cx * w)), int(round(ch.cy * h))
    fh = ch.h * h
    ax, ay = int(round(0.39 * fh)), int(round(0.5 * fh))
    # body and neck first so the head overlaps them
    cv2.rectangle(img, (cx - int(0.8 * fh), cy + int(0.62 * fh)), (cx + int(0.8 * fh), h),
                  ch.shirt, -1)
    cv2.rectangle(img, (cx - int(0.14 * fh), cy + int(0.4 * fh)),
                  (cx + int(0.14 * fh), cy + int(0.7 * fh)), ch.skin, -1)
    cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, ch.skin, -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy - int(0.32 * fh)), (ax, int(0.2 * fh)), 0, 180, 360, (50, 35, 25), -1)
    dark = (35, 25, 20)
    for sx in (-1, 1):
        ex = cx + sx * int(0.17 * fh)
        ey = cy - int(0.08 * fh)
        cv2.line(img, (ex - int(0.1 * fh), ey - int(0.1 * fh)), (ex + int(0.1 * fh), ey - int(0.1 * fh)),
                 dark, max(1, int(0.04 * fh)))
        cv2.ellipse(img, (ex, ey), (int(0.09 * fh), int(0.05 * fh)), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, (ex, ey), max(1, int(0.04 * fh)), dark, -1)
    nose = tuple(int(c * 0.85) for c in ch.skin)
    cv2.line(img, (cx, cy - int(0.02 * fh)), (cx, cy + int(0.1 * fh)), nose, max(1, int(0.03 * fh)))
    my = cy + int(0.25 * fh)
    mh = max(1, int(round((0.02 + 0.11 * float(np.clip(mouth_open, 0, 1))) * fh)))
    cv2.ellipse(img, (cx, my), (int(0.13 * fh), mh), 0, 0, 360, (120, 20, 30), -1, cv2.LINE_AA)


def draw_ball(img: np.ndarray, ball: Ball, t: float) -> None:
    h, w = img.shape[:2]
    x, y = ball.position(t)
    r = max(2, int(round(ball.radius * h)))
    centre = (int(round(x * w)), int(round(y * h)))
    cv2.circle(img, centre, r, COLOURS[ball.colour], -1, cv2.LINE_AA)
    hl = tuple(min(255, c + 70) for c in COLOURS[ball.colour])
    cv2.circle(img, (centre[0] - r // 3, centre[1] - r // 3), max(1, r // 4), hl, -1, cv2.LINE_AA)


def render_frame(*, background: np.ndarray, characters: list[Character], mouth_open: list[float],
                 balls: list[Ball], t: float, brightness: float) -> np.ndarray:
    img = background.copy()
    for ch, m in zip(characters, mouth_open):
        draw_character(img, ch, m)
    for ball in balls:
        draw_ball(img, ball, t)
    if brightness < 1.0:
        img = (img.astype(np.float32) * brightness).astype(np.uint8)
    return img
