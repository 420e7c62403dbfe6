"""Media I/O: probe containers, decode audio and frames with real timestamps, write mp4.

PyAV is used for reading (presentation timestamps, any container); the ffmpeg binary
shipped by ``imageio-ffmpeg`` is used for writing demo videos.
"""
from __future__ import annotations

import logging
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from gazelib.core.io import atomic_path

log = logging.getLogger(__name__)

# the video files every reader takes (ingest, the importers, predict, aoi): one list, so a corpus
# importable is also ingestible and predictable
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


class MediaError(ValueError):
    """A media file cannot be read as promised (missing, corrupt, truncated)."""


@dataclass
class VideoProbe:
    duration_s: float
    fps: float
    width: int
    height: int
    n_frames: int
    has_audio: bool
    audio_sample_rate: int
    audio_channels: int
    video_end_s: float
    audio_end_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def open_video(*, path: str | Path, tag: str):
    """An open PyAV container with at least one video stream; MediaError (``tag`` first) otherwise."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{tag} cannot be opened: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise MediaError(f"{tag} has no video stream")
    return container


def probe_video(*, path: str | Path, video_id: str = "", truncation_tol_s: float = 0.5) -> VideoProbe:
    """Demux every packet (no decoding) to measure the real end of each stream.

    Raises :class:`MediaError` when the file cannot be opened, has no video stream,
    no decodable first frame, or its streams end well before the declared duration.
    """
    path = Path(path)
    tag = f"{video_id}: video file {path}"
    with open_video(path=path, tag=tag) as container:
        vs = container.streams.video[0]
        aus = container.streams.audio[0] if container.streams.audio else None
        declared = container.duration / av.time_base if container.duration else None
        ends = {"video": 0.0, "audio": 0.0}
        n_packets = 0
        try:
            for pkt in container.demux(*[s for s in (vs, aus) if s is not None]):
                if pkt.pts is None or pkt.size == 0:
                    continue
                end = float((pkt.pts + (pkt.duration or 0)) * pkt.time_base)
                key = "video" if pkt.stream.type == "video" else "audio"
                ends[key] = max(ends[key], end)
                n_packets += key == "video"
        except av.FFmpegError as exc:
            raise MediaError(f"{tag} is corrupt or truncated: {exc}") from exc
        if n_packets == 0:
            raise MediaError(f"{tag} has no video packets")
        vstart = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
        if declared is not None and ends["video"] < declared - truncation_tol_s:
            raise MediaError(f"{tag} is truncated: video stream ends at {ends['video']:.2f} s "
                             f"but the container declares {declared:.2f} s")
        if aus is not None and declared is not None and ends["audio"] < declared - truncation_tol_s:
            raise MediaError(f"{tag} is truncated: audio stream ends at {ends['audio']:.2f} s "
                             f"but the container declares {declared:.2f} s")
        # read every stream attribute while the container is open: after close they point at freed
        # FFmpeg state and come back as garbage (an fps of 1.0 for a 25 fps file was seen)
        probe = VideoProbe(
            duration_s=float(declared if declared is not None else ends["video"]) - min(vstart, 0.0),
            fps=float(vs.average_rate) if vs.average_rate else n_packets / max(ends["video"], 1e-6),
            width=int(vs.codec_context.width), height=int(vs.codec_context.height),
            n_frames=n_packets, has_audio=aus is not None,
            audio_sample_rate=int(aus.codec_context.sample_rate) if aus else 0,
            audio_channels=int(aus.codec_context.channels) if aus else 0,
            video_end_s=ends["video"], audio_end_s=ends["audio"],
        )
    _check_first_frame(path, tag)
    return probe


def _check_first_frame(path: Path, tag: str) -> None:
    try:
        with av.open(str(path)) as c:
            for _ in c.decode(video=0):
                return
    except av.FFmpegError as exc:
        raise MediaError(f"{tag}: first frame cannot be decoded: {exc}") from exc
    raise MediaError(f"{tag}: no frame can be decoded")


def iter_audio(*, path: str | Path, sample_rate: int = 16000, chunk_s: float = 30.0,
               video_id: str = "", truncation_tol_s: float = 0.5) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t0, samples)`` chunks of mono float32 audio at ``sample_rate``.

    Any channel layout is downmixed and resampled by libswresample; memory is bounded by
    ``chunk_s``. ``t0`` is the chunk's time from the video start (the first audio PTS, so an
    audio stream that starts late stays in place).
    """
    tag = f"{video_id}: audio of {path}"
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(f"{tag} cannot be opened: {exc}") from exc
    with container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunk_len = int(chunk_s * sample_rate)
        buf: list[np.ndarray] = []
        n_buf = 0
        t0: float | None = None
        emitted = 0

        def frames():
            try:
                for frame in container.decode(stream):
                    yield frame
            except av.FFmpegError as exc:
                raise MediaError(f"{tag} is corrupt or truncated: {exc}") from exc
            yield None  # flush the resampler

        for frame in frames():
            if t0 is None and frame is not None and frame.pts is not None:
                t0 = max(0.0, float(frame.pts * frame.time_base))
            for out in resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                buf.append(arr)
                n_buf += arr.size
            while n_buf >= chunk_len:
                joined = np.concatenate(buf)
                yield (t0 or 0.0) + emitted / sample_rate, joined[:chunk_len]
                emitted += chunk_len
                buf, n_buf = [joined[chunk_len:]], joined.size - chunk_len
        if n_buf:
            yield (t0 or 0.0) + emitted / sample_rate, np.concatenate(buf)
            emitted += n_buf
        declared = (float(stream.duration * stream.time_base) if stream.duration else
                    container.duration / av.time_base if container.duration else None)
        if declared is not None and emitted / sample_rate < declared - truncation_tol_s:
            raise MediaError(f"{tag} is truncated: decoded {emitted / sample_rate:.2f} s of the "
                             f"{declared:.2f} s the stream declares")


def read_audio(*, path: str | Path, sample_rate: int = 16000, video_id: str = "") -> tuple[float, np.ndarray]:
    """Whole mono track ``(t0, samples)``; for short clips and tests."""
    chunks = list(iter_audio(path=path, sample_rate=sample_rate, video_id=video_id))
    if not chunks:
        return 0.0, np.zeros(0, np.float32)
    return chunks[0][0], np.concatenate([c for _, c in chunks])


def iter_frames(*, path: str | Path, sample_fps: float, width: int, height: int,
                video_id: str = "") -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t, rgb[h, w, 3])`` at most ``sample_fps`` frames per second, by PTS.

    A frame is kept when its timestamp reaches the next slot of a ``1/sample_fps`` grid,
    so variable frame rate input gives frames at their true times. Kept frames are converted
    and resized by one libswscale context for the whole video (``frame.to_ndarray(width=...)``
    builds a new one per frame, which cost more than decoding at the demo's size).
    """
    from av.video.reformatter import VideoReformatter

    tag = f"{video_id}: video file {path}"
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(f"{tag} cannot be opened: {exc}") from exc
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        next_t = -np.inf
        step = 1.0 / sample_fps
        reformatter = VideoReformatter()
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * frame.time_base) - min(start, 0.0)
                if t + 1e-6 < next_t:
                    continue
                next_t = (np.floor(t / step + 1e-6) + 1) * step
                yield t, reformatter.reformat(frame, format="rgb24", width=width, height=height).to_ndarray()
        except av.FFmpegError as exc:
            raise MediaError(f"{tag} is corrupt or truncated: {exc}") from exc


def write_mp4(*, path: str | Path, frames: Iterator[np.ndarray], width: int, height: int, fps: float,
              audio: np.ndarray | None, sample_rate: int, crf: int = 23) -> None:
    """Encode RGB frames (+ mono float audio) as H.264/AAC mp4, bit-exact and atomic."""
    import tempfile

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp_dir, atomic_path(path) as tmp:
        wav_tmp = Path(tmp_dir) / "audio.wav"
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            _write_wav(wav_tmp, audio, sample_rate)
            cmd += ["-i", str(wav_tmp)]
        cmd += ["-map", "0:v"] + (["-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-flags:a",
                                   "+bitexact"] if audio is not None else [])
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-threads", "1", "-flags:v", "+bitexact", "-fflags", "+bitexact", "-map_metadata",
                "-1", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        finally:
            proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace")
            rc = proc.wait()
        if rc != 0:
            raise MediaError(f"ffmpeg failed writing {path}: {err.strip()}")


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    import wave

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
