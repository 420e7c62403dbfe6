"""The active speaker: the face whose mouth moves with the speech.

Per face track and sampled frame, ``mouth_motion`` is the mean absolute frame difference in the
lower third of its box (extract_visual measures it; :func:`gazelib.aoi.run.detect_faces` does the
same for a bare video). The speech envelope is the audio RMS averaged over the same frame
interval (t - 1/fps, t], and voice activity is silero-vad's ``is_speaking`` (extract_audio).

At each frame t where speech is active (VAD share >= 0.5), every track's score is its mean mouth
motion over the speech frames of a centred window of ``speaker_window_s``, minus the median
motion of that mouth in silence (a face that always moves is not a speaker), times 1 + its
Pearson correlation (if positive) with the envelope over those frames. Fewer than
``speaker_min_frames`` frames, or an excess below ``speaker_min_motion``, scores 0. The speaker is
the best-scoring track; with no speech, or every score 0, there is none. A mode filter over
``speaker_smooth_s`` removes one-frame flicker. This is the audio-visual synchrony idea of
SyncNet / TalkNet reduced to signals (no learnt model ships in the project's packages); the
correlation alone was right in only ~37 % of the demo's speech frames (docs/aoi.md).

The window is centred: the speaker AOI is a measurement of the video (like a hand-coded AOI), not
an input of any model, so it may look ahead (docs/aoi.md).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def envelope_at(*, audio: pd.DataFrame, times: np.ndarray, frame_dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean RMS over (t - frame_dt, t] and the share of that interval voice activity marks speech."""
    at = audio["t"].to_numpy(np.float64)
    if at.size == 0:
        return np.zeros(len(times)), np.zeros(len(times))
    cs = np.concatenate([[0.0], np.cumsum(audio["rms"].to_numpy(np.float64))])
    sp = np.concatenate([[0.0], np.cumsum(audio["is_speaking"].to_numpy(np.float64))])
    hi = np.searchsorted(at, times, side="right")
    lo = np.searchsorted(at, times - frame_dt, side="right")
    n = np.maximum(hi - lo, 1)
    env = np.where(hi > lo, (cs[hi] - cs[lo]) / n, 0.0)
    speaking = np.where(hi > lo, (sp[hi] - sp[lo]) / n, 0.0)
    return env, speaking


def active_speaker(*, tracks: pd.DataFrame, audio: pd.DataFrame | None, frame_times: np.ndarray, frame_dt: float,
                   window_s: float = 0.6, min_frames: int = 3, min_motion: float = 2e-3,
                   smooth_s: float = 0.3) -> pd.DataFrame:
    """Per frame: ``speaker`` (a track name or ""), ``score`` (its synchrony), ``speech`` (VAD share)."""
    times = np.asarray(frame_times, np.float64)
    names = list(dict.fromkeys(tracks["track"]))
    out = pd.DataFrame({"t": times, "speaker": "", "score": np.nan, "speech": 0.0})
    if audio is None or audio.empty or not names:
        return out
    env, speaking = envelope_at(audio=audio, times=times, frame_dt=frame_dt)
    out["speech"] = speaking
    pos = {t: i for i, t in enumerate(times)}
    m = np.full((len(names), len(times)), np.nan)
    for k, name in enumerate(names):
        g = tracks[(tracks["track"] == name) & tracks["detected"]]
        idx = np.array([pos[t] for t in g["t"] if t in pos], np.int64)
        m[k, idx] = g.loc[g["t"].isin(pos), "mouth_motion"].to_numpy(np.float64)
    half = window_s / 2
    lo = np.searchsorted(times, times - half, side="left")
    hi = np.searchsorted(times, times + half, side="right")
    talk = speaking >= 0.5
    # each mouth's own level in silence: a face that always moves (chewing, a noisy box) is not a speaker
    base = np.array([np.nanmedian(m[k, ~talk]) if np.isfinite(m[k, ~talk]).any() else 0.0
                     for k in range(len(names))])
    score = np.zeros((len(names), len(times)))
    for i in np.nonzero(talk)[0]:
        sel = np.arange(lo[i], hi[i])
        sel = sel[talk[sel]]
        e = env[sel]
        for k in range(len(names)):
            mm = m[k, sel]
            ok = np.isfinite(mm)
            if ok.sum() < min_frames:
                continue
            excess = float(mm[ok].mean() - base[k])
            if excess < min_motion:
                continue
            a, b = mm[ok], e[ok]
            corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
            # excess motion locked to voice activity, weighted up to x2 by its correlation with the envelope
            score[k, i] = excess * (1.0 + max(corr, 0.0))
    best = np.argmax(score, 0)
    top = score[best, np.arange(len(times))]
    spk = np.where(talk & (top > 0), best, -1)
    # present: the chosen track must exist at that frame (detected or bridged)
    present = np.zeros((len(names), len(times)), bool)
    for k, name in enumerate(names):
        ts = tracks.loc[tracks["track"] == name, "t"]
        present[k, [pos[t] for t in ts if t in pos]] = True
    spk = np.where((spk >= 0) & present[np.maximum(spk, 0), np.arange(len(times))], spk, -1)
    spk = mode_filter(spk, max(1, int(round(smooth_s / frame_dt))) | 1)
    out["speaker"] = [names[k] if k >= 0 else "" for k in spk]
    out["score"] = np.where(spk >= 0, score[np.maximum(spk, 0), np.arange(len(times))], np.nan)
    log.info("active speaker: %d of %d frames with speech, a speaker found in %d", int((speaking >= 0.5).sum()),
             len(times), int((spk >= 0).sum()))
    return out


def mode_filter(labels: np.ndarray, width: int) -> np.ndarray:
    """Most frequent label in a centred window of ``width`` (odd) frames; ties keep the centre's label."""
    if width <= 1 or labels.size == 0:
        return labels
    h = width // 2
    out = labels.copy()
    for i in range(labels.size):
        w = labels[max(0, i - h): i + h + 1]
        vals, counts = np.unique(w, return_counts=True)
        top = counts.max()
        if counts[vals == labels[i]][0] < top:
            out[i] = vals[np.argmax(counts)]
    return out


def speaker_aoi(*, speakers: pd.DataFrame, tracks: pd.DataFrame, frame_dt: float):
    """The "speaker" AOI: at each frame the box of the speaking track, off when nobody speaks.
    Each turn (a run of one speaker) is its own activation interval (``segment``)."""
    from gazelib.aoi.shapes import Aoi, box_verts

    boxes = tracks.set_index(["track", "t"])[["x0", "y0", "x1", "y1"]]
    t = speakers["t"].to_numpy(np.float64)
    who = speakers["speaker"].to_numpy(str)
    verts = np.zeros((len(t), 4, 2))
    vis = who != ""
    for i in np.nonzero(vis)[0]:
        verts[i] = box_verts(boxes.loc[(who[i], t[i])].to_numpy())[0]
    seg = np.cumsum(np.r_[True, who[1:] != who[:-1]]) - 1
    if len(t):
        t, verts = np.append(t, t[-1] + frame_dt), np.concatenate([verts, verts[-1:]])
        vis, seg = np.append(vis, False), np.append(seg, seg[-1] + 1)
    return Aoi(name="speaker", kind="speaker", t=t, verts=verts, visible=vis, is_box=True, interpolate=False,
               segment=seg)
