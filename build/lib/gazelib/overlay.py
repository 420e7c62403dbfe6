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
with OpenCV, the predicted point drawn (a green cross in a ring when P(in frame) >= 0.5, grey
otherwise), recorded gaze as cyan rings where given, encoded by the ffmpeg binary of
imageio-ffmpeg (H.264, yuv420p, faststart) with the source's audio muxed in (AAC).
"""
from __future__ import annotations

import functools
import logging
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from gazelib.io import atomic_path

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


@functools.lru_cache(maxsize=1)
def _inferno() -> np.ndarray:
    """OpenCV's inferno colour map as a [256, 3] BGR table."""
    import cv2

    return cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(1, 256), cv2.COLORMAP_INFERNO)[0]


def _heat_layers(prob_map: np.ndarray, width: int, height: int, alpha_max: float, work: int = 4):
    """(1 - alpha) as a 3-channel uint8 image and the alpha-premultiplied colour heatmap.

    Computed at 1/``work`` of the frame size and scaled up (the map is smooth: a 9x16 grid), so a
    new step costs a few milliseconds even for 4K frames."""
    import cv2

    sw, sh = max(2, width // work), max(2, height // work)
    m = prob_map.astype(np.float32) / max(float(prob_map.max()), 1e-12)
    up = np.clip(cv2.resize(m, (sw, sh), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    colour = _inferno()[(up * 255).astype(np.uint8)]   # cv2.applyColorMap rebuilds its table per call
    alpha = up ** 1.5 * alpha_max  # the low tail stays transparent
    inv = np.round((1.0 - alpha) * 255).astype(np.uint8)
    pm = (colour * alpha[..., None]).astype(np.uint8)
    size = (width, height)
    return (cv2.resize(cv2.merge([inv, inv, inv]), size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(pm, size, interpolation=cv2.INTER_LINEAR))


def draw_frame(*, frame: np.ndarray, layers, point: np.ndarray, p_in: float, t: float,
               gaze: np.ndarray | None = None, label: str = "") -> np.ndarray:
    """Blend the heatmap layers into a BGR frame and draw the predicted point, gaze and a caption."""
    import cv2

    inv, heat = layers
    out = cv2.add(cv2.multiply(frame, inv, scale=1 / 255.0), heat)
    h, w = out.shape[:2]
    size = max(4, int(round(0.025 * min(w, h))))
    thick = max(1, size // 4)
    for g in (gaze if gaze is not None else np.zeros((0, 2))):
        if np.isfinite(g).all():
            cv2.circle(out, (int(round(g[0] * w)), int(round(g[1] * h))), size, (255, 255, 0), thick, cv2.LINE_AA)
    inside = p_in >= 0.5
    colour = (80, 255, 80) if inside else (170, 170, 170)
    px, py = int(round(point[0] * w)), int(round(point[1] * h))
    cv2.drawMarker(out, (px, py), colour, cv2.MARKER_CROSS, 2 * size, thick + 1, cv2.LINE_AA)
    cv2.circle(out, (px, py), int(size * 1.4), colour, thick, cv2.LINE_AA)
    text = f"{label}  t {t:6.2f} s  P(in) {p_in:.2f}" + ("" if inside else "  (likely out of frame)")
    scale = max(0.3, h / 720 * 0.7)
    (tw, th), base = cv2.getTextSize(text.strip(), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 12, th + base + 10), (0, 0, 0), -1)
    cv2.putText(out, text.strip(), (6, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def render_overlay(*, video_path: str | Path, out_path: str | Path, t: np.ndarray, prob: np.ndarray,
                   p_in: np.ndarray, point: np.ndarray, gaze: np.ndarray | None = None, duration_s: float | None = None,
                   width: int | None = None, height: int | None = None, crf: int = 23, preset: str = "veryfast",
                   threads: int = 0, alpha: float = 0.6, label: str = "", video_id: str = "",
                   progress: bool = False) -> OverlayResult:
    """Write an MP4 of the video with the predicted maps drawn on it.

    ``t`` [T] step times, ``prob`` [T, Gh, Gw], ``p_in`` [T], ``point`` [T, 2] (normalised), ``gaze``
    [V, T, 2] recorded gaze (NaN where missing) or None. The frame at time s shows the last step with
    t_k <= s. ``duration_s`` keeps only the first seconds (frames and audio); ``width``/``height``
    rescale (default: the video's own size; an odd size is padded to even, as H.264 4:2:0 needs).
    ``threads=1`` gives the same bytes on any machine (``0``: ffmpeg chooses, faster).
    """
    import time

    import av
    import cv2
    from tqdm import tqdm

    from gazelib.media import MediaError, ffmpeg_exe, open_video

    t0 = time.perf_counter()
    video_path, out_path = Path(video_path), Path(out_path)
    tag = f"{video_id}: video file {video_path}" if video_id else f"video file {video_path}"
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
        has_audio = bool(container.streams.audio)
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
        total = (duration_s if duration_s is not None else
                 (container.duration / av.time_base if container.duration else len(t) / 10.0)) * float(rate)
        with atomic_path(out_path) as tmp:
            i420 = ow % 2 == 0 and oh % 2 == 0   # even sizes travel as yuv420p (half the bytes of BGR)
            cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
                   "-pix_fmt", "yuv420p" if i420 else "bgr24",
                   "-s", f"{ow}x{oh}", "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-"]
            if has_audio:
                cmd += (["-t", f"{duration_s:.6f}"] if duration_s is not None else []) + ["-i", str(video_path)]
            cmd += ["-map", "0:v"] + (["-map", "1:a:0", "-c:a", "aac", "-b:a", "128k", "-flags:a", "+bitexact"]
                                      if has_audio else [])
            if ow % 2 or oh % 2:
                cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
            cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                    "-threads", str(threads), "-flags:v", "+bitexact", "-fflags", "+bitexact", "-map_metadata", "-1",
                    "-movflags", "+faststart", "-f", "mp4", str(tmp)]
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            n, cached_k, layers = 0, -1, None
            bar = tqdm(total=int(total), desc=f"overlay {video_id}".strip(), unit="frame", leave=False,
                       disable=not progress)
            try:
                for frame in container.decode(vs):
                    if frame.pts is None:
                        continue
                    ft = float(frame.pts * frame.time_base) - min(start, 0.0)
                    if duration_s is not None and ft >= duration_s - 1e-6:
                        break
                    k = int(np.clip(np.searchsorted(t, ft + 1e-6, side="right") - 1, 0, len(t) - 1))
                    if k != cached_k:
                        layers, cached_k = _heat_layers(np.asarray(prob[k]), ow, oh, alpha), k
                    if i420:  # decoded planes -> BGR -> drawn -> planes: no swscale pass on either side
                        if (frame.width, frame.height, frame.format.name) != (ow, oh, "yuv420p"):
                            frame = frame.reformat(width=ow, height=oh, format="yuv420p")
                        img = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
                    else:
                        img = frame.to_ndarray(format="bgr24", width=ow, height=oh)
                    img = draw_frame(frame=img, layers=layers, point=point[k], p_in=float(p_in[k]), t=ft,
                                     gaze=None if gaze is None else gaze[:, k], label=label)
                    if i420:
                        img = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)
                    proc.stdin.write(np.ascontiguousarray(img).tobytes())
                    n += 1
                    bar.update(1)
            except av.FFmpegError as exc:
                proc.kill()
                raise MediaError(f"{tag} is corrupt or truncated: {exc}") from exc
            except BrokenPipeError:
                pass  # ffmpeg stopped: its message is read below
            finally:
                bar.close()
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
                err = proc.stderr.read().decode(errors="replace")
                rc = proc.wait()
            if rc != 0:
                raise MediaError(f"{tag}: ffmpeg failed writing the overlay {out_path}: {err.strip()}")
            if n == 0:
                raise MediaError(f"{tag}: no frame decoded for the overlay")
    return OverlayResult(path=out_path, n_frames=n, width=ow + ow % 2, height=oh + oh % 2,
                         fps=f"{rate.numerator}/{rate.denominator}", has_audio=has_audio,
                         seconds=time.perf_counter() - t0)
