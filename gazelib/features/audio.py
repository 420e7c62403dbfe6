"""Frame-level acoustic descriptors at ``hop_s``, computed chunk by chunk.

Frame ``k`` is centred at ``t_k = k * hop_s`` (seconds from the video start). Features:

- ``rms`` = sqrt(mean(x^2)) over a ``win_s`` Hann-free window; ``rms_db`` = 20 log10(rms + 1e-10)
- ``spectral_centroid`` = sum_f f |X_f| / sum_f |X_f| (Hz)
- ``onset_strength`` = sum_f max(0, log|X_f|_k - log|X_f|_{k-1}) (spectral flux)
- ``f0`` (Hz, 0 when unvoiced) and ``voiced_prob`` from the normalised autocorrelation: the
  shortest-lag local maximum in [sr/fmax, sr/fmin] within 90% of the highest one (avoids
  sub-octave errors), refined by parabolic interpolation
- ``vad_prob`` from silero-vad (32 ms windows) and ``is_speaking`` by hysteresis on it
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from gazelib.io import feature_meta, write_table
from gazelib.media import iter_audio

log = logging.getLogger(__name__)

KINDS = {"rms": "continuous", "rms_db": "continuous", "spectral_centroid": "continuous",
         "onset_strength": "continuous", "f0": "continuous", "voiced_prob": "continuous",
         "vad_prob": "continuous", "is_speaking": "binary"}
F0_MIN, F0_MAX, F0_WIN_S = 60.0, 500.0, 0.064
VAD_WIN = 512  # samples at 16 kHz, silero's window


@dataclass
class AudioFeatures:
    table: pd.DataFrame
    available: bool
    duration_s: float


def _frames(x: np.ndarray, centres: np.ndarray, win: int) -> np.ndarray:
    """[K, win] windows centred at sample indices ``centres`` (x is pre-padded by win//2)."""
    idx = centres[:, None] + np.arange(win)[None, :]
    return x[idx]


def frame_descriptors(*, x: np.ndarray, sr: int, centres: np.ndarray, pad: int, win: int) -> dict:
    """Descriptors for frames centred at ``centres`` (indices into the unpadded signal).

    ``x`` carries ``pad`` samples of context on each side (pad >= F0 window / 2).
    """
    fr = _frames(x, centres + pad - win // 2, win)
    rms = np.sqrt(np.mean(fr ** 2, axis=1))
    n_fft = 1 << int(np.ceil(np.log2(win)))
    spec = np.abs(np.fft.rfft(fr * np.hanning(win), n=n_fft, axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    centroid = (spec * freqs).sum(1) / np.maximum(spec.sum(1), 1e-10)
    logspec = np.log(spec + 1e-6)
    flux = np.maximum(np.diff(logspec, axis=0, prepend=logspec[:1]), 0).sum(1)
    f0, voiced = pitch_autocorr(x=x, sr=sr, centres=centres + pad)
    return {"rms": rms, "rms_db": 20 * np.log10(rms + 1e-10), "spectral_centroid": centroid,
            "onset_strength": flux, "f0": f0, "voiced_prob": voiced}


def pitch_autocorr(*, x: np.ndarray, sr: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f0 and voicing from the normalised autocorrelation r(l) = sum x_n x_{n+l} / sum x_n^2."""
    win = int(F0_WIN_S * sr)
    fr = _frames(x, centres - win // 2, win)
    fr = fr - fr.mean(1, keepdims=True)
    n_fft = 1 << int(np.ceil(np.log2(2 * win)))
    spec = np.fft.rfft(fr, n=n_fft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, n=n_fft, axis=1)[:, :win]
    energy = ac[:, :1]
    # unbiased by overlap length so long lags are not penalised
    ac = ac / np.maximum(energy, 1e-10) * (win / (win - np.arange(win)))[None, :]
    lo, hi = int(sr / F0_MAX), int(sr / F0_MIN)
    seg = ac[:, lo:hi + 1]
    best = seg.max(axis=1, keepdims=True)
    # the shortest-lag local maximum within 90% of the best avoids sub-octave errors
    local = np.zeros_like(seg, dtype=bool)
    local[:, 1:-1] = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] >= seg[:, 2:])
    cand = local & (seg >= 0.9 * best)
    k = np.where(cand.any(1), np.argmax(cand, axis=1), np.argmax(seg, axis=1))
    peak = seg[np.arange(len(k)), k]
    km = np.clip(k, 1, seg.shape[1] - 2)
    a, b, c = seg[np.arange(len(k)), km - 1], seg[np.arange(len(k)), km], seg[np.arange(len(k)), km + 1]
    denom = a - 2 * b + c
    shift = np.divide(0.5 * (a - c), denom, out=np.zeros_like(denom), where=np.abs(denom) > 1e-12)
    lag = lo + km + np.clip(shift, -1, 1)
    voiced = np.clip(peak, 0, 1) * (energy[:, 0] > 1e-8)
    f0 = np.where(voiced > 0.5, sr / lag, 0.0)
    return f0, voiced


def hysteresis(*, prob: np.ndarray, on: float, off: float, hop_s: float, min_on_s: float,
               min_off_s: float) -> np.ndarray:
    """Binary activity: switch on above ``on``, off below ``off``; drop short runs."""
    state = np.zeros(prob.size, dtype=bool)
    cur = False
    for i, p in enumerate(prob):
        cur = p >= on if not cur else p > off
        state[i] = cur
    state = _drop_short_runs(state, value=False, min_len=int(round(min_off_s / hop_s)))
    return _drop_short_runs(state, value=True, min_len=int(round(min_on_s / hop_s)))


def _drop_short_runs(state: np.ndarray, value: bool, min_len: int) -> np.ndarray:
    out = state.copy()
    n = len(state)
    i = 0
    while i < n:
        j = i
        while j < n and state[j] == state[i]:
            j += 1
        interior = i > 0 and j < n
        if state[i] == value and j - i < min_len and interior:
            out[i:j] = not value
        i = j
    return out


class SileroVAD:
    """Streaming silero-vad (ONNX model from the wheel); one probability per 512 samples."""

    def __init__(self):
        from silero_vad import load_silero_vad

        self.model = load_silero_vad(onnx=True)
        self.name = "silero-vad"

    def probs(self, x: np.ndarray) -> np.ndarray:
        import torch

        n = x.size // VAD_WIN
        if n == 0:
            return np.zeros(0, np.float32)
        out = self.model.audio_forward(torch.from_numpy(np.ascontiguousarray(x[: n * VAD_WIN])), 16000)
        return out.numpy().reshape(-1)

    def reset(self) -> None:
        self.model.reset_states()


def _overlapped(chunks: Iterator[tuple[float, np.ndarray]], pad: int):
    """Yield (t0, core, padded) with ``pad`` samples of real context on both sides."""
    prev_tail = None
    pending = None
    for t0, x in chunks:
        if pending is not None:
            pt0, px, ptail = pending
            yield pt0, px, np.concatenate([ptail, px, x[:pad], np.zeros(max(0, pad - x.size), np.float32)])
            prev_tail = px[-pad:] if px.size >= pad else np.concatenate([ptail, px])[-pad:]
        left = prev_tail if prev_tail is not None else np.zeros(pad, np.float32)
        pending = (t0, x, left)
    if pending is not None:
        pt0, px, ptail = pending
        yield pt0, px, np.concatenate([ptail, px, np.zeros(pad, np.float32)])


def extract_audio_features(*, video_path: str | Path, video_id: str, duration_s: float, cfg: dict,
                           vad: SileroVAD | None = None) -> AudioFeatures:
    """Stream the audio track and return the feature table (empty and unavailable if none)."""
    sr, hop = cfg["sample_rate"], int(round(cfg["hop_s"] * cfg["sample_rate"]))
    win = int(round(cfg["win_s"] * sr))
    pad = int(F0_WIN_S * sr)
    vad = vad or SileroVAD()
    vad.reset()
    parts, vad_parts = [], []
    total = 0
    chunks = iter_audio(path=video_path, sample_rate=sr, chunk_s=cfg["chunk_s"], video_id=video_id)
    audio_t0 = None
    vad_carry = np.zeros(0, np.float32)
    for t0, core, padded in _overlapped(chunks, pad):
        audio_t0 = t0 if audio_t0 is None else audio_t0
        first = int(np.ceil(total / hop))
        centres = np.arange(first * hop, total + core.size, hop) - total
        d = frame_descriptors(x=padded, sr=sr, centres=centres, pad=pad, win=win)
        d["sample"] = centres + total
        parts.append(d)
        stream = np.concatenate([vad_carry, core])
        n_full = stream.size // VAD_WIN * VAD_WIN
        vad_parts.append(vad.probs(stream[:n_full]))
        vad_carry = stream[n_full:]
        total += core.size
    if audio_t0 is None:
        log.warning("%s: no audio stream in %s; audio marked unavailable", video_id, video_path)
        return AudioFeatures(table=pd.DataFrame({"t": np.zeros(0), **{c: np.zeros(0) for c in KINDS}}),
                             available=False, duration_s=duration_s)
    table = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    vad_prob = np.concatenate(vad_parts) if vad_parts else np.zeros(0)
    vad_t = (np.arange(vad_prob.size) + 0.5) * VAD_WIN / sr
    t_rel = table.pop("sample").to_numpy() / sr
    table["vad_prob"] = np.interp(t_rel, vad_t, vad_prob) if vad_prob.size else 0.0
    table["is_speaking"] = hysteresis(prob=table["vad_prob"].to_numpy(), on=cfg["vad_threshold_on"],
                                      off=cfg["vad_threshold_off"], hop_s=cfg["hop_s"],
                                      min_on_s=cfg["vad_min_speech_s"],
                                      min_off_s=cfg["vad_min_silence_s"]).astype(np.int8)
    table.insert(0, "t", audio_t0 + t_rel)
    table = table.astype({c: np.float32 for c in KINDS if c != "is_speaking"})
    return AudioFeatures(table=table, available=True, duration_s=duration_s)


def write_audio_features(*, feats: AudioFeatures, out_dir: str | Path, video_id: str, cfg: dict,
                         vad_name: str = "silero-vad") -> list[Path]:
    import silero_vad

    path = Path(out_dir) / f"{video_id}.parquet"
    meta = feature_meta(video_id=video_id, modality="audio", kinds=KINDS, backend="pyav+numpy",
                        params=cfg, available=feats.available,
                        models={"vad": f"{vad_name} {getattr(silero_vad, '__version__', '')}".strip()})
    write_table(path, feats.table, meta=meta)
    return [path]
