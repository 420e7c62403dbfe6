"""Frame-level acoustic descriptors at ``hop_s``, computed chunk by chunk.

Frame ``k`` is stamped ``t_k = k * hop_s`` (seconds from the video start). With
``features.lookahead: none`` (the default) every descriptor at ``t_k`` comes from samples before
``t_k`` only: its windows *end* at ``t_k`` (``[t_k - win, t_k)``), the voice probability is that of
the last 32 ms silero window that ended by ``t_k``, and ``is_speaking`` is decided from those
probabilities alone (docs/causality.md). With ``offline`` the windows are centred on ``t_k``,
the voice probability is interpolated between windows and short runs are removed in hindsight
(the features before the causal mode, byte for byte). Features:

- ``rms`` = sqrt(mean(x^2)) over a ``win_s`` Hann-free window; ``rms_db`` = 20 log10(rms + 1e-10)
- ``spectral_centroid`` = sum_f f |X_f| / sum_f |X_f| (Hz)
- ``onset_strength`` = sum_f max(0, log|X_f|_k - log|X_f|_{k-1}) (spectral flux)
- ``f0`` (Hz, 0 when unvoiced) and ``voiced_prob`` from the normalised autocorrelation: the
  shortest-lag local maximum in [sr/fmax, sr/fmin] within 90% of the highest one (avoids
  sub-octave errors), refined by parabolic interpolation
- ``vad_prob`` from silero-vad (32 ms windows, streaming) and ``is_speaking`` by hysteresis on it

Optional (params): ``mfcc_<k>`` (``n_mfcc`` > 0, continuous, from the same spectrum);
``egemaps_*`` columns, the eGeMAPSv02 low-level descriptors from
``opensmile`` (continuous; offline: interpolated between frame centres; none: the last frame whose
audio, up to 70 ms after its start, was all heard by ``t_k``, held); ``speech_emb`` (embedding kind,
NPZ; offline only: the encoder attends to the whole chunk), the last hidden state of a local
``transformers`` speech encoder (Wav2Vec2/HuBERT-style) pooled to the hop by linear interpolation of
its frame sequence.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from gazelib.features import check_lookahead, last_at_or_before, lookahead_of
from gazelib.core.params import feature_record
from gazelib.core.params import check_speech_model  # noqa: F401  (re-exported; audio.speech_model vs features.lookahead)
from gazelib.core.io import feature_meta, write_npz, write_table
from gazelib.core.media import iter_audio
from gazelib.core.cache import VideoCache, run_per_video
from gazelib.core.closure import stage_code
from gazelib.core.layout import FEATURES, load_manifest, manifest_items

log = logging.getLogger(__name__)

KINDS = {"rms": "continuous", "rms_db": "continuous", "spectral_centroid": "continuous",
         "onset_strength": "continuous", "f0": "continuous", "voiced_prob": "continuous",
         "vad_prob": "continuous", "is_speaking": "binary"}
F0_MIN, F0_MAX, F0_WIN_S = 60.0, 500.0, 0.064
# An eGeMAPSv02 LLD frame (20 ms hop index) reads audio up to 70 ms after its start: its longest
# window (60 ms, pitch/HNR) plus the next frame that the 3-frame smoothing (sma3) averages in.
# Measured by swapping the audio after T: frames starting at or before T - 0.07 never changed.
EGEMAPS_REACH_S = 0.07
VAD_WIN = 512  # samples at 16 kHz, silero's window


@dataclass
class AudioFeatures:
    table: pd.DataFrame
    available: bool
    duration_s: float
    speech_emb: np.ndarray | None = None    # [T, D] at the table's times
    kinds: dict | None = None
    lookahead: str = "none"                 # features.lookahead they were made with

    def __post_init__(self):
        if self.kinds is None:
            self.kinds = {c: KINDS[c] for c in self.table.columns if c in KINDS}


class EGeMAPS:
    """eGeMAPSv02 low-level descriptors through the optional ``opensmile`` package."""

    def __init__(self):
        try:
            import opensmile
        except ImportError as exc:
            raise ImportError("audio.egemaps is on but the optional package 'opensmile' is not installed: "
                              "pip install 'gazelib[egemaps]' (or opensmile==2.6.0), or set audio.egemaps: false") from exc
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self.name = f"opensmile {opensmile.__version__} eGeMAPSv02 LLD"

    def frames(self, x: np.ndarray, sr: int, causal: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
        """(times relative to x, descriptor table): frame centres, or with ``causal`` the time by
        which all the audio a frame reads has been heard (start + :data:`EGEMAPS_REACH_S`)."""
        df = self.smile.process_signal(x, sr)
        starts = df.index.get_level_values("start").total_seconds().to_numpy()
        ends = df.index.get_level_values("end").total_seconds().to_numpy()
        df = df.reset_index(drop=True)
        df.columns = ["egemaps_" + "".join(ch if ch.isalnum() else "_" for ch in c).strip("_") for c in df.columns]
        return (starts + EGEMAPS_REACH_S if causal else (starts + ends) / 2), df


class SpeechEncoder:
    """A local ``transformers`` speech encoder (Wav2Vec2, HuBERT, WavLM...); nothing is downloaded."""

    def __init__(self, *, path: str | Path):
        from transformers import AutoFeatureExtractor, AutoModel

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"speech model directory {path} not found (give a local transformers folder)")
        self.extractor = AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        self.name = f"{type(self.model).__name__} {path}"

    def frames(self, x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """(frame centre times relative to x, hidden states [L, D])."""
        import torch

        inputs = self.extractor(x, sampling_rate=sr, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**inputs).last_hidden_state[0].numpy()
        step = x.size / sr / max(hidden.shape[0], 1)
        return (np.arange(hidden.shape[0]) + 0.5) * step, hidden.astype(np.float32)


def _frames(x: np.ndarray, centres: np.ndarray, win: int) -> np.ndarray:
    """[K, win] windows centred at sample indices ``centres`` (x is pre-padded by win//2)."""
    idx = centres[:, None] + np.arange(win)[None, :]
    return x[idx]


def frame_descriptors(*, x: np.ndarray, sr: int, centres: np.ndarray, pad: int, win: int, n_mfcc: int = 0,
                      causal: bool = False) -> dict:
    """Descriptors for frames stamped at ``centres`` (indices into the unpadded signal): windows
    centred there, or with ``causal`` windows that end there (samples ``[c - win, c)``).

    ``x`` carries ``pad`` samples of context on each side (pad >= the F0 window).
    """
    f0_win = int(F0_WIN_S * sr)
    fr = _frames(x, centres + pad - (win if causal else win // 2), win)
    rms = np.sqrt(np.mean(fr ** 2, axis=1))
    n_fft = 1 << int(np.ceil(np.log2(win)))
    spec = np.abs(np.fft.rfft(fr * np.hanning(win), n=n_fft, axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    centroid = (spec * freqs).sum(1) / np.maximum(spec.sum(1), 1e-10)
    logspec = np.log(spec + 1e-6)
    flux = np.maximum(np.diff(logspec, axis=0, prepend=logspec[:1]), 0).sum(1)
    # pitch_autocorr windows start at c - f0_win // 2: shifted so they end at the stamp when causal
    f0, voiced = pitch_autocorr(x=x, sr=sr, centres=centres + pad - ((f0_win - f0_win // 2) if causal else 0))
    out = {"rms": rms, "rms_db": 20 * np.log10(rms + 1e-10), "spectral_centroid": centroid,
           "onset_strength": flux, "f0": f0, "voiced_prob": voiced}
    if n_mfcc:
        out.update(mfcc(power=spec ** 2, sr=sr, n_fft=n_fft, n_mfcc=n_mfcc))
    return out


def mfcc(*, power: np.ndarray, sr: int, n_fft: int, n_mfcc: int, n_mels: int = 40) -> dict:
    """MFCC_k = DCT-II(log(mel filterbank @ |X|^2 + 1e-10))_k (orthonormal), k < n_mfcc."""
    import librosa
    from scipy.fft import dct

    mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    coef = dct(np.log(power @ mel.T + 1e-10), type=2, norm="ortho", axis=1)[:, :n_mfcc]
    return {f"mfcc_{k}": coef[:, k] for k in range(n_mfcc)}


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
               min_off_s: float, causal: bool) -> np.ndarray:
    """Binary activity: switch on above ``on``, off below ``off``; then short runs are handled.

    ``causal``: the decision at frame i uses frames up to i only: speech starts once the raw state
    has been on for ``min_on_s`` (declared at that frame, not back-dated) and ends once it has been
    off for ``min_off_s``, so blips and short pauses are ignored at the cost of that latency.
    Otherwise short runs are removed in hindsight (an onset keeps its true start; looks ahead).
    """
    state = np.zeros(prob.size, dtype=bool)
    cur = False
    for i, p in enumerate(prob):
        cur = p >= on if not cur else p > off
        state[i] = cur
    if causal:
        return debounce(state, min_on=int(round(min_on_s / hop_s)), min_off=int(round(min_off_s / hop_s)))
    state = _drop_short_runs(state, value=False, min_len=int(round(min_off_s / hop_s)))
    return _drop_short_runs(state, value=True, min_len=int(round(min_on_s / hop_s)))


def debounce(state: np.ndarray, *, min_on: int, min_off: int) -> np.ndarray:
    """Causal debouncing: the output switches on after ``min_on`` consecutive raw on-frames and off
    after ``min_off`` consecutive off-frames (frame i depends on frames <= i only)."""
    out = np.zeros(state.size, dtype=bool)
    cur, run = False, 0  # run: consecutive raw frames that disagree with the output
    for i, s in enumerate(state):
        run = run + 1 if bool(s) != cur else 0
        if run and run >= (min_off if cur else min_on):
            cur, run = not cur, 0
        out[i] = cur
    return out


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
                           vad: SileroVAD | None = None, egemaps: EGeMAPS | None = None,
                           speech: SpeechEncoder | None = None, lookahead: str = "none") -> AudioFeatures:
    """Stream the audio track and return the feature table (empty and unavailable if none).
    ``lookahead`` (``features.lookahead``): ``none`` for descriptors from the audio before each
    frame's time only, ``offline`` for the centred (look-ahead) ones (module docstring)."""
    causal = check_lookahead(lookahead) == "none"
    if causal and speech is not None:
        raise ValueError(f"{video_id}: a speech encoder attends to the whole audio chunk (future included) and "
                         "cannot run with features.lookahead: none; set audio.speech_model: none or "
                         "features.lookahead: offline")
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
    extra_t, extra_tables, emb_t, emb_parts = [], [], [], []
    for t0, core, padded in _overlapped(chunks, pad):
        if egemaps is not None:
            et, etab = egemaps.frames(core, sr, causal=causal)
            extra_t.append(et + total / sr)
            extra_tables.append(etab)
        if speech is not None:
            st, sv = speech.frames(core, sr)
            emb_t.append(st + total / sr)
            emb_parts.append(sv)
        audio_t0 = t0 if audio_t0 is None else audio_t0
        first = int(np.ceil(total / hop))
        centres = np.arange(first * hop, total + core.size, hop) - total
        d = frame_descriptors(x=padded, sr=sr, centres=centres, pad=pad, win=win, n_mfcc=cfg["n_mfcc"],
                              causal=causal)
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
                             available=False, duration_s=duration_s, lookahead=lookahead)
    table = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    vad_prob = np.concatenate(vad_parts) if vad_parts else np.zeros(0)
    samples = table.pop("sample").to_numpy()
    t_rel = samples / sr
    if causal:
        table["vad_prob"] = held_window_prob(prob=vad_prob, samples=samples, window=VAD_WIN)
    else:
        vad_t = (np.arange(vad_prob.size) + 0.5) * VAD_WIN / sr
        table["vad_prob"] = np.interp(t_rel, vad_t, vad_prob) if vad_prob.size else 0.0
    table["is_speaking"] = hysteresis(prob=table["vad_prob"].to_numpy(), on=cfg["vad_threshold_on"],
                                      off=cfg["vad_threshold_off"], hop_s=cfg["hop_s"],
                                      min_on_s=cfg["vad_min_speech_s"],
                                      min_off_s=cfg["vad_min_silence_s"], causal=causal).astype(np.int8)
    kinds = {**KINDS, **{c: "continuous" for c in table.columns if c.startswith("mfcc_")}}
    if extra_tables:
        et = np.concatenate(extra_t)
        etab = pd.concat(extra_tables, ignore_index=True)
        for c in etab.columns:
            v = etab[c].to_numpy(np.float64)
            held = hold_last(src_t=et, src_v=v, dst_t=t_rel) if causal else np.interp(t_rel, et, v)
            table[c] = held.astype(np.float32)
            kinds[c] = "continuous"
    speech_emb = None
    if emb_parts:
        from gazelib.core.normalize import l2_normalise

        et, ev = np.concatenate(emb_t), np.concatenate(emb_parts)
        speech_emb = l2_normalise(np.stack([np.interp(t_rel, et, ev[:, j]) for j in range(ev.shape[1])], 1))
    table.insert(0, "t", audio_t0 + t_rel)
    table = table.astype({c: np.float32 for c, k in kinds.items() if k == "continuous"})
    return AudioFeatures(table=table, available=True, duration_s=duration_s, speech_emb=speech_emb, kinds=kinds,
                         lookahead=lookahead)


def held_window_prob(*, prob: np.ndarray, samples: np.ndarray, window: int) -> np.ndarray:
    """Per sample index, the probability of the last ``window``-sample block that ended at or before
    it (block i covers ``[i * window, (i + 1) * window)``); 0 before the first block ended."""
    idx = np.asarray(samples) // window - 1
    out = np.zeros(idx.size, np.float64)
    ok = (idx >= 0) & (idx < prob.size)
    out[ok] = prob[idx[ok]]
    out[idx >= prob.size] = prob[-1] if prob.size else 0.0
    return out


def hold_last(*, src_t: np.ndarray, src_v: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """The value of the last source sample at or before each ``dst_t`` (0 before the first sample)."""
    if src_t.size == 0:
        return np.zeros(dst_t.size)
    idx = last_at_or_before(src_t, dst_t)
    return np.where(idx >= 0, src_v[np.clip(idx, 0, src_t.size - 1)], 0.0)


def write_audio_features(*, feats: AudioFeatures, out_dir: str | Path, video_id: str, cfg: dict,
                         models: dict | None = None) -> list[Path]:
    path = Path(out_dir) / f"{video_id}.parquet"
    kinds = {**feats.kinds, **({"speech_emb": "embedding"} if feats.speech_emb is not None else {})}
    meta = feature_meta(video_id=video_id, modality="audio", kinds=kinds, backend="pyav+numpy",
                        params=cfg, available=feats.available, models=models or {},
                        extra={"lookahead": feats.lookahead})
    write_table(path, feats.table, meta=meta)
    if feats.speech_emb is None:
        path.with_suffix(".npz").unlink(missing_ok=True)
        return [path]
    write_npz(path.with_suffix(".npz"), t=feats.table["t"].to_numpy(), speech_emb=feats.speech_emb)
    return [path, path.with_suffix(".npz")]


def make_audio_models(cfg: dict) -> dict:
    """The models a run needs, loaded once: VAD always, eGeMAPS and a speech encoder if asked."""
    import silero_vad

    out: dict = {"vad": SileroVAD(), "egemaps": EGeMAPS() if cfg["egemaps"] else None,
           "speech": SpeechEncoder(path=cfg["speech_model"]) if cfg["speech_model"] != "none" else None}
    out["names"] = {"vad": f"silero-vad {getattr(silero_vad, '__version__', '')}".strip(),
                    **({"egemaps": out["egemaps"].name} if out["egemaps"] else {}),
                    **({"speech": out["speech"].name} if out["speech"] else {})}
    return out


# ---------------------------------------------------------------- DVC stage
def audio_video(*, item: dict, cfg: dict, models: dict, out_dir: Path, lookahead: str) -> list[Path]:
    """One video's audio features, extracted and written into ``out_dir`` (the featurize step of
    audio: the extract_audio stage, ``gazelib predict`` and the bias inputs all run it;
    gazelib.pipeline.featurize). ``item``: video_id, video_path, duration_s; ``models``:
    :func:`make_audio_models`. Returns the files written."""
    feats = extract_audio_features(video_path=item["video_path"], video_id=item["video_id"],
                                   duration_s=item["duration_s"], cfg=cfg, vad=models["vad"],
                                   egemaps=models["egemaps"], speech=models["speech"], lookahead=lookahead)
    return write_audio_features(feats=feats, out_dir=out_dir, video_id=item["video_id"], cfg=cfg,
                                models=models["names"])


def audio_worker(*, cfg: dict, out: Path, lookahead: str = "none"):
    """The per-video work of extract_audio, its models loaded once (per worker: gazelib.core.compute)."""
    models = make_audio_models(cfg)

    def compute(item: dict) -> list[Path]:
        return audio_video(item=item, cfg=cfg, models=models, out_dir=out, lookahead=lookahead)
    return compute


def run_extract_audio(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.core.compute import WorkerSpec

    cfg, lookahead = params["audio"], lookahead_of(params)
    check_speech_model(cfg=cfg, lookahead=lookahead)  # before any model loads
    out = root / FEATURES / "audio"
    # torch threads 1 in every worker: what importing silero-vad sets (its VAD runs in onnxruntime, 1 thread)
    spec = WorkerSpec(audio_worker, {"cfg": cfg, "out": out, "lookahead": lookahead}, threads=1)
    run = run_per_video(cache=VideoCache(out, "extract_audio"), items=manifest_items(load_manifest(root)),
                        params={**cfg, "lookahead": lookahead}, code=stage_code(stage="extract_audio", cfg=cfg),
                        compute=spec, on_error=params["data"]["on_error"], backend=params.get("compute"),
                        record=feature_record(params["audio"], section="audio"))
    return run.as_dict()
