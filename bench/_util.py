"""Helpers for the benchmarks: long synthetic media, peak memory of a call in a fresh process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def make_long_video(path: Path, *, seconds: float, fps: float = 10, width: int = 320, height: int = 180,
                    audio: bool = True) -> Path:
    """A long mp4 (moving gradient + tone bursts and noise) for memory benchmarks."""
    from gazelib.core.media import write_mp4

    if path.exists():
        return path
    sr = 16000
    rng = np.random.default_rng(0)
    n = int(seconds * fps)
    xs = np.linspace(0, 1, width)[None, :, None]

    def frames():
        for i in range(n):
            img = (127 + 100 * np.sin(2 * np.pi * (xs + i / 50.0))).astype(np.uint8)
            yield np.broadcast_to(img, (height, width, 3))

    a = None
    if audio:
        t = np.arange(int(seconds * sr)) / sr
        a = (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
             + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    write_mp4(path=path, frames=frames(), width=width, height=height, fps=fps, audio=a, sample_rate=sr, crf=35)
    return path


def peak_rss_mb(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; returns its peak RSS (MiB) and what it printed as JSON."""
    wrapper = code + "\nimport resource, json\nprint('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True).stdout
    peak = float(next(line.split()[1] for line in out.splitlines() if line.startswith("PEAK")))
    res = next((json.loads(line[5:]) for line in out.splitlines() if line.startswith("JSON ")), {})
    return {"peak_rss_mb": round(peak, 1), **res}


def synthetic_stream(shape: tuple, seed: int, chunk: int = 512):
    """A long float32 array [T, ...] as a StreamedArray of random rows (never held whole)."""
    import numpy as np

    from gazelib.core.io import StreamedArray

    def chunks():
        rng = np.random.default_rng(seed)
        base = rng.normal(size=(chunk,) + shape[1:]).astype(np.float32)
        for i in range(0, shape[0], chunk):
            n = min(chunk, shape[0] - i)
            yield base[:n] * np.float32(1 + 0.001 * (i // chunk))   # cheap, not all-identical

    return StreamedArray(shape=shape, dtype=np.float32, chunks=chunks)
