"""Summaries of predicted gaze maps and overlay videos drawn on the source frames.

Map summaries (per step, from the distribution ``p`` over the Gh x Gw grid, cells row-major):

- predicted point: the argmax cell refined to sub-cell precision by a **local quadratic fit of
  log p** along each axis through the argmax and its two neighbours,
  ``offset = (l[-1] - l[+1]) / (2 (l[-1] - 2 l[0] + l[+1]))`` clipped to half a cell (no offset
  on a border cell's outer side, or where the three values are not a peak); exact for a
  Gaussian-shaped peak, which is what the model is trained towards;
- entropy in bits ``-sum p log2 p`` (0: all mass in one cell; log2(Gh*Gw) = 7.17 for 9x16: uniform);
- the top-k cells (row-major index, ties to the lower index) and their probabilities.

Overlay videos: frames decoded with PyAV at the video's own size (or a requested one), the
heatmap of the step in effect at each frame (the last step at or before the frame's time) blended
in, the predicted point drawn (a green cross in a ring when P(in frame) >= 0.5, grey otherwise),
recorded gaze as cyan rings where given, a caption at the top left; encoded by the ffmpeg binary of
imageio-ffmpeg (H.264, yuv420p, faststart) with the source's audio muxed in (AAC).

Frames stay yuv420p planes from the decoder to the encoder's pipe. The heatmap is blended plane by
plane with layers made once per step (:func:`heat_planes`: the BGR blend carried through the
colour conversion, which is affine); only the small boxes under the marks and the caption go through
BGR to be drawn by OpenCV (:func:`mark_ops`, :func:`draw_frame`). ``OverlayResult.parts`` splits the
wall time: ``decode`` (PyAV), ``layers`` (the step's blend layers), ``draw`` (blend and marks),
``write`` (blocked on the encoder's pipe: the encoder is slower than the drawing), ``finish`` (the
encoder's last frames, the audio and faststart after the last frame).
"""
from __future__ import annotations

import functools
import logging
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from gazelib.core.io import atomic_path

log = logging.getLogger(__name__)

TOP_K = 5


# ---------------------------------------------------------------- map summaries
def refine_peak(*, prob: np.ndarray) -> np.ndarray:
    """``prob`` [N, Gh, Gw] -> predicted points [N, 2] (x, y) in normalised frame units."""
    prob = np.asarray(prob, np.float64)
    n, gh, gw = prob.shape
    flat = prob.reshape(n, -1)
    k = np.argmax(flat, axis=1)
    r, c = k // gw, k % gw
    logp = np.log(np.maximum(prob, 1e-30))
    idx = np.arange(n)

    def offset(centre, lo, hi, ok):
        den = lo - 2 * centre + hi
        good = ok & (den < -1e-12)
        off = np.zeros(n)
        off[good] = 0.5 * (lo[good] - hi[good]) / den[good]
        return np.clip(off, -0.5, 0.5)

    cx_ok = (c > 0) & (c < gw - 1)
    cy_ok = (r > 0) & (r < gh - 1)
    centre = logp[idx, r, c]
    ox = offset(centre, logp[idx, r, np.maximum(c - 1, 0)], logp[idx, r, np.minimum(c + 1, gw - 1)], cx_ok)
    oy = offset(centre, logp[idx, np.maximum(r - 1, 0), c], logp[idx, np.minimum(r + 1, gh - 1), c], cy_ok)
    return np.stack([(c + 0.5 + ox) / gw, (r + 0.5 + oy) / gh], 1)


def entropy_bits(*, prob: np.ndarray) -> np.ndarray:
    """``prob`` [N, cells] -> entropy in bits [N]."""
    p = np.asarray(prob, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


def top_cells(*, prob: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """``prob`` [N, cells] -> (cell indices [N, k], probabilities [N, k]), best first, ties to the lower index."""
    p = np.asarray(prob)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(p, order, axis=1)


# ---------------------------------------------------------------- overlay video
@dataclass
class OverlayResult:
    path: Path
    n_frames: int
    width: int
    height: int
    fps: str                 # the rate the frames were encoded at (the source's average rate)
    has_audio: bool
    seconds: float           # wall time spent
    parts: dict = field(default_factory=dict)   # seconds by part: decode, layers, draw, write, finish (module docstring)


@functools.lru_cache(maxsize=1)
def _inferno() -> np.ndarray:
    """OpenCV's inferno colour map as a [256, 3] BGR table."""
    import cv2

    return cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(1, 256), cv2.COLORMAP_INFERNO)[0]


@functools.lru_cache(maxsize=1)
def _inferno_yuv() -> np.ndarray:
    """The inferno colours as [256, 3] (Y, U, V) by OpenCV's BGR -> I420 conversion (BT.601, limited
    range: the conversion the frames' planes are read and drawn with)."""
    import cv2

    block = np.repeat(np.repeat(_inferno()[None], 2, axis=0), 2, axis=1)   # each colour a 2x2 block
    i420 = cv2.cvtColor(block, cv2.COLOR_BGR2YUV_I420).ravel()            # Y [2, 512], U [256], V [256]
    return np.stack([i420[:512:2], i420[1024:1280], i420[1280:1536]], 1)


@dataclass
class HeatPlanes:
    """One step's heatmap as per-plane blend layers of a yuv420p frame: ``plane * inv / 255 + add``
    (``inv`` = (1 - alpha) * 255, ``add`` = alpha * the colour's Y, U or V), luma at the frame's size,
    chroma at half. Blending each plane this way is the BGR blend ``frame * (1 - alpha) + alpha *
    colour`` carried through the (affine) colour conversion: no per-frame BGR round trip."""

    inv_y: np.ndarray
    add_y: np.ndarray
    inv_c: np.ndarray
    add_u: np.ndarray
    add_v: np.ndarray


def heat_planes(*, prob_map: np.ndarray, width: int, height: int, alpha_max: float, work: int = 4) -> HeatPlanes:
    """The blend layers of one map for an even ``width`` x ``height`` yuv420p frame.

    Computed at 1/``work`` of the frame size and scaled up (the map is a smooth 9x16 grid), so a new
    step costs about a millisecond even for 720p frames."""
    import cv2

    sw, sh = max(2, width // work), max(2, height // work)
    m = prob_map.astype(np.float32) / max(float(prob_map.max()), 1e-12)
    up = np.clip(cv2.resize(m, (sw, sh), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    idx = (up * 255).astype(np.uint8)
    alpha = up * np.sqrt(up) * np.float32(alpha_max)  # alpha ~ up^1.5: the low tail stays transparent
    inv = np.round((1.0 - alpha) * 255).astype(np.uint8)
    lut = _inferno_yuv()
    # alpha * the colour's Y, U, V (cv2.LUT per plane: a fancy index or cv2.applyColorMap costs 10x more)
    add = [(cv2.LUT(idx, np.ascontiguousarray(lut[:, c])) * alpha).astype(np.uint8) for c in range(3)]
    full, half = (width, height), (width // 2, height // 2)

    def resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return cv2.resize(a, size, interpolation=cv2.INTER_LINEAR)

    return HeatPlanes(inv_y=resize(inv, full), add_y=resize(add[0], full), inv_c=resize(inv, half),
                      add_u=resize(add[1], half), add_v=resize(add[2], half))


def mark_ops(*, width: int, height: int, point: np.ndarray, p_in: float, t: float,
             gaze: np.ndarray | None = None, label: str = "") -> list[tuple[tuple[int, int, int, int], object]]:
    """What is drawn on a frame over the heatmap, in drawing order, as ``(box, draw)`` pairs: ``box``
    (x0, y0, x1, y1) in frame pixels holds all that ``draw(bgr, ox, oy)`` paints onto a BGR image
    whose top-left pixel is frame pixel (ox, oy). Recorded gaze: cyan rings; the predicted point: a
    cross in a ring, green when P(in) >= 0.5, grey otherwise; a caption box at the top left."""
    import cv2

    size = max(4, int(round(0.025 * min(width, height))))
    thick = max(1, size // 4)
    ops: list[tuple[tuple[int, int, int, int], object]] = []

    def around(cx: int, cy: int, r: int) -> tuple[int, int, int, int]:
        return cx - r, cy - r, cx + r + 1, cy + r + 1

    for g in (gaze if gaze is not None else np.zeros((0, 2))):
        if np.isfinite(g).all():
            gx, gy = int(round(g[0] * width)), int(round(g[1] * height))
            ops.append((around(gx, gy, size + thick + 3),
                        lambda img, ox, oy, gx=gx, gy=gy: cv2.circle(img, (gx - ox, gy - oy), size, (255, 255, 0),
                                                                    thick, cv2.LINE_AA)))
    inside = p_in >= 0.5
    colour = (80, 255, 80) if inside else (170, 170, 170)
    px, py = int(round(point[0] * width)), int(round(point[1] * height))

    def marker(img, ox, oy):
        cv2.drawMarker(img, (px - ox, py - oy), colour, cv2.MARKER_CROSS, 2 * size, thick + 1, cv2.LINE_AA)
        cv2.circle(img, (px - ox, py - oy), int(size * 1.4), colour, thick, cv2.LINE_AA)

    ops.append((around(px, py, int(size * 1.4) + thick + 3), marker))
    text = (f"{label}  t {t:6.2f} s  P(in) {p_in:.2f}" + ("" if inside else "  (likely out of frame)")).strip()
    scale = max(0.3, height / 720 * 0.7)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)

    def caption(img, ox, oy):
        cv2.rectangle(img, (-ox, -oy), (tw + 12 - ox, th + base + 10 - oy), (0, 0, 0), -1)
        cv2.putText(img, text, (6 - ox, th + 5 - oy), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)

    ops.append(((0, 0, tw + 13, th + base + 11), caption))
    return ops


def draw_frame(*, frame: np.ndarray, layers: HeatPlanes, point: np.ndarray, p_in: float, t: float,
               gaze: np.ndarray | None = None, label: str = "", size: tuple[int, int] | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """Blend a step's heatmap into a yuv420p frame and draw the marks; returns the frame as one I420
    buffer [h * 3 / 2, w] (uint8), written into ``out`` when given.

    ``frame``: the (Y, U, V) planes (2-D uint8 arrays, rows may be padded) or an I420 array
    [h * 3 / 2, w]; the frame must have even sides. ``size``: the (width, height) the marks are placed
    by (default the frame's). Only the pixels under a mark go through BGR (drawn with OpenCV, the box of
    :func:`mark_ops`); the rest of the frame is blended plane by plane."""
    import cv2

    y, u, v = _planes(frame) if isinstance(frame, np.ndarray) else frame
    h, w = y.shape
    if out is None:
        out = np.empty((h * 3 // 2, w), np.uint8)
    oy_, ou, ov = _planes(out)
    for src, inv, add, dst in ((y, layers.inv_y, layers.add_y, oy_), (u, layers.inv_c, layers.add_u, ou),
                               (v, layers.inv_c, layers.add_v, ov)):
        cv2.multiply(src, inv, dst=dst, scale=1 / 255.0)
        cv2.add(dst, add, dst=dst)
    mw, mh = size or (w, h)
    for box, draw in mark_ops(width=mw, height=mh, point=point, p_in=p_in, t=t, gaze=gaze, label=label):
        _paint(oy_, ou, ov, box, draw)
    return out


def _planes(i420: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of an I420 array [h * 3 / 2, w]."""
    rows, w = i420.shape
    h = rows * 2 // 3
    flat = i420.reshape(-1)
    n, q = h * w, (h // 2) * (w // 2)
    return (flat[:n].reshape(h, w), flat[n:n + q].reshape(h // 2, w // 2),
            flat[n + q:n + 2 * q].reshape(h // 2, w // 2))


def _paint(y: np.ndarray, u: np.ndarray, v: np.ndarray, box: tuple[int, int, int, int], draw) -> None:
    """Run ``draw`` on the BGR pixels of ``box`` (widened to even edges, clipped to the frame) and put
    them back into the planes."""
    import cv2

    h, w = y.shape
    x0, y0 = max(0, box[0] - box[0] % 2), max(0, box[1] - box[1] % 2)
    x1, y1 = min(w, box[2] + box[2] % 2), min(h, box[3] + box[3] % 2)
    if x1 <= x0 or y1 <= y0:
        return
    roi = np.empty(((y1 - y0) * 3 // 2, x1 - x0), np.uint8)
    ry, ru, rv = _planes(roi)
    ry[:] = y[y0:y1, x0:x1]
    ru[:] = u[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    rv[:] = v[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    bgr = cv2.cvtColor(roi, cv2.COLOR_YUV2BGR_I420)
    draw(bgr, x0, y0)
    ry, ru, rv = _planes(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))
    y[y0:y1, x0:x1] = ry
    u[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = ru
    v[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = rv


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def render_overlay(*, video_path: str | Path, out_path: str | Path, t: np.ndarray, prob: np.ndarray,
                   p_in: np.ndarray, point: np.ndarray, gaze: np.ndarray | None = None, duration_s: float | None = None,
                   width: int | None = None, height: int | None = None, crf: int = 23, preset: str = "veryfast",
                   threads: int = 0, alpha: float = 0.6, label: str = "", video_id: str = "",
                   progress: bool = False) -> OverlayResult:
    """Write an MP4 of the video with the predicted maps drawn on it.

    ``t`` [T] step times, ``prob`` [T, Gh, Gw], ``p_in`` [T], ``point`` [T, 2] (normalised), ``gaze``
    [V, T, 2] recorded gaze (NaN where missing) or None. The frame at time s shows the last step with
    t_k <= s. ``duration_s`` keeps only the first seconds (frames and audio); ``width``/``height``
    rescale (default: the video's own size; an odd size is padded to even with black, as H.264 4:2:0
    needs). ``preset``: the x264 preset (:data:`X264_PRESETS`); ``threads=1`` gives the same bytes on
    any machine (``0``: ffmpeg chooses, faster).

    Frames travel as yuv420p planes from the decoder to the encoder: the heatmap is blended plane by
    plane (:class:`HeatPlanes`, made once per step), and only the pixels under the marks and the
    caption are converted to BGR, drawn and converted back (:func:`draw_frame`).
    """
    import time

    import av
    import cv2
    from av.video.reformatter import VideoReformatter
    from tqdm import tqdm

    from gazelib.core.media import MediaError, ffmpeg_exe, open_video

    t0 = time.perf_counter()
    video_path, out_path = Path(video_path), Path(out_path)
    tag = f"{video_id}: video file {video_path}" if video_id else f"video file {video_path}"
    if preset not in X264_PRESETS:
        raise ValueError(f"{tag}: overlay preset {preset!r} is not an x264 preset ({', '.join(X264_PRESETS)})")
    t = np.asarray(t, np.float64)
    if not (len(t) == len(prob) == len(p_in) == len(point)) or len(t) == 0:
        raise ValueError(f"{tag}: overlay needs one map, P(in) and point per step "
                         f"(got {len(t)} steps, {len(prob)} maps, {len(p_in)} P(in), {len(point)} points)")
    with open_video(path=video_path, tag=tag) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        rate = vs.average_rate or vs.guessed_rate or Fraction(25, 1)
        src_w, src_h = int(vs.codec_context.width), int(vs.codec_context.height)
        ow, oh = int(width or src_w), int(height or src_h)
        ew, eh = ow + ow % 2, oh + oh % 2         # what is encoded: even sides
        has_audio = bool(container.streams.audio)
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
        total = (duration_s if duration_s is not None else
                 (container.duration / av.time_base if container.duration else len(t) / 10.0)) * float(rate)
        reformatter = VideoReformatter()           # one scaler context for the whole video

        def planes(frame):
            """The frame's (Y, U, V) planes at ew x eh: views of the decoder's buffers when the frame is
            already yuv420p at that size, else converted once."""
            if ow == ew and oh == eh:
                if (frame.width, frame.height, frame.format.name) != (ow, oh, "yuv420p"):
                    frame = reformatter.reformat(frame, format="yuv420p", width=ow, height=oh)
                return tuple(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]
                             for p in frame.planes[:3])
            bgr = reformatter.reformat(frame, format="bgr24", width=ow, height=oh).to_ndarray()
            bgr = cv2.copyMakeBorder(bgr, 0, eh - oh, 0, ew - ow, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)

        with atomic_path(out_path) as tmp:
            cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                   "-s", f"{ew}x{eh}", "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-"]
            if has_audio:
                cmd += (["-t", f"{duration_s:.6f}"] if duration_s is not None else []) + ["-i", str(video_path)]
            cmd += ["-map", "0:v"] + (["-map", "1:a:0", "-c:a", "aac", "-b:a", "128k", "-flags:a", "+bitexact"]
                                      if has_audio else [])
            cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                    "-threads", str(threads), "-flags:v", "+bitexact", "-fflags", "+bitexact", "-map_metadata", "-1",
                    "-movflags", "+faststart", "-f", "mp4", str(tmp)]
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            n, cached_k, layers = 0, -1, None
            out = np.empty((eh * 3 // 2, ew), np.uint8)   # one I420 buffer, reused frame after frame
            parts = dict.fromkeys(("decode", "layers", "draw", "write", "finish"), 0.0)
            clock = time.perf_counter
            bar = tqdm(total=int(total), desc=f"overlay {video_id}".strip(), unit="frame", leave=False,
                       disable=not progress)
            try:
                frames = container.decode(vs)
                while True:
                    c0 = clock()
                    frame = next(frames, None)
                    c1 = clock()
                    parts["decode"] += c1 - c0
                    if frame is None:
                        break
                    if frame.pts is None:
                        continue
                    ft = float(frame.pts * frame.time_base) - min(start, 0.0)
                    if duration_s is not None and ft >= duration_s - 1e-6:
                        break
                    k = int(np.clip(np.searchsorted(t, ft + 1e-6, side="right") - 1, 0, len(t) - 1))
                    if k != cached_k:
                        layers, cached_k = heat_planes(prob_map=np.asarray(prob[k]), width=ew, height=eh,
                                                       alpha_max=alpha), k
                    c2 = clock()
                    draw_frame(frame=planes(frame), layers=layers, point=point[k], p_in=float(p_in[k]), t=ft,
                               gaze=None if gaze is None else gaze[:, k], label=label, size=(ow, oh), out=out)
                    c3 = clock()
                    proc.stdin.write(out.data)
                    parts["layers"] += c2 - c1
                    parts["draw"] += c3 - c2
                    parts["write"] += clock() - c3
                    n += 1
                    bar.update(1)
            except av.FFmpegError as exc:
                proc.kill()
                raise MediaError(f"{tag} is corrupt or truncated: {exc}") from exc
            except BrokenPipeError:
                pass  # ffmpeg stopped: its message is read below
            finally:
                bar.close()
                c4 = clock()
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
                err = proc.stderr.read().decode(errors="replace")
                rc = proc.wait()
                parts["finish"] = clock() - c4
            if rc != 0:
                raise MediaError(f"{tag}: ffmpeg failed writing the overlay {out_path}: {err.strip()}")
            if n == 0:
                raise MediaError(f"{tag}: no frame decoded for the overlay")
    return OverlayResult(path=out_path, n_frames=n, width=ew, height=eh,
                         fps=f"{rate.numerator}/{rate.denominator}", has_audio=has_audio,
                         seconds=time.perf_counter() - t0, parts={k: round(v, 3) for k, v in parts.items()})
