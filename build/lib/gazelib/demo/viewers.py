"""Viewer model that turns the demo's events into gaze recordings.

Each viewer has a latency ``L`` ~ U(latency_s). Attention targets, highest priority first:

1. dark transition frames: with ``p_dark_out`` the viewer looks off-screen (out of frame);
2. a named colour at word time ``t_w``: from ``t_w + L`` the viewer pursues that ball for
   ``follow_s`` seconds;
3. a sentence starting at ``t_s``: from ``t_s + L`` to its end the viewer fixates the
   speaker's face (with ``p_speaker``);
4. otherwise free viewing: a new target (a face, a ball, or near the centre) every
   ``free_fixation_s`` seconds.

The eye moves to its target with a first-order saccade (time constant ``saccade_tau_s``),
drifts within fixations, and the tracker adds noise; blinks and dropped samples are
missing (``valid = 0``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SceneEvents:
    duration_s: float
    face_centres: list[tuple[float, float]]       # normalised
    face_sizes: list[tuple[float, float]]         # normalised (w, h)
    ball_position: list                            # callables t -> [..., 2]
    ball_colours: list[str]
    sentences: list[dict]                          # speaker, start, end, named, named_t
    dark: list[tuple[float, float]]


def _priority_targets(ev: SceneEvents, t: np.ndarray, rng: np.random.Generator, cfg: dict,
                      latency: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return target xy [N,2], an integer target id [N] (changes mark saccades), is_out [N]."""
    n = t.size
    xy = np.zeros((n, 2))
    tid = np.zeros(n, dtype=np.int64)
    out = np.zeros(n, dtype=bool)
    next_id = 1
    # 4. free viewing
    t0 = 0.0
    while t0 < ev.duration_s + 1:
        dur = rng.uniform(*cfg["free_fixation_s"])
        sel = (t >= t0) & (t < t0 + dur)
        r = rng.uniform()
        if r < 0.4 and ev.face_centres:
            k = rng.integers(len(ev.face_centres))
            c = np.array(ev.face_centres[k]) + rng.normal(0, 0.15, 2) * np.array(ev.face_sizes[k])
            xy[sel] = c
        elif r < 0.7 and ev.ball_position:
            k = rng.integers(len(ev.ball_position))
            xy[sel] = ev.ball_position[k](t[sel])
        else:
            xy[sel] = np.clip(rng.normal([0.5, 0.5], 0.15, 2), 0.05, 0.95)
        tid[sel] = next_id
        next_id += 1
        t0 += dur
    # 3. speaker faces
    for s in ev.sentences:
        if rng.uniform() >= cfg["p_speaker"]:
            continue
        sel = (t >= s["start"] + latency) & (t < s["end"])
        c = np.array(ev.face_centres[s["speaker"]])
        offset = rng.normal(0, 0.12, 2) * np.array(ev.face_sizes[s["speaker"]])
        xy[sel] = c + offset
        tid[sel] = next_id
        next_id += 1
    # 2. named objects
    for s in ev.sentences:
        if s.get("named") is None or rng.uniform() >= cfg["p_named"]:
            continue
        k = ev.ball_colours.index(s["named"])
        start = s["named_t"] + latency
        sel = (t >= start) & (t < start + rng.uniform(*cfg["follow_s"]))
        xy[sel] = ev.ball_position[k](t[sel])
        tid[sel] = next_id
        next_id += 1
    # 1. dark frames
    for d0, d1 in ev.dark:
        if rng.uniform() >= cfg["p_dark_out"]:
            continue
        sel = (t >= d0 + latency) & (t < d1 + latency)
        side = rng.integers(4)
        far = [(-0.25, 0.5), (1.25, 0.5), (0.5, -0.25), (0.5, 1.25)][side]
        xy[sel] = far
        out[sel] = True
        tid[sel] = next_id
        next_id += 1
    return xy, tid, out


def simulate_viewer(*, events: SceneEvents, rng: np.random.Generator, cfg: dict) -> dict:
    """Gaze samples for one viewer: ``t, x, y, valid`` arrays plus the drawn ``latency``."""
    hz = cfg["gaze_hz"]
    latency = float(rng.uniform(*cfg["latency_s"]))
    t = np.arange(0, events.duration_s, 1.0 / hz) + rng.uniform(0, 1.0 / hz)
    target, tid, _ = _priority_targets(events, t, rng, cfg, latency)
    alpha = 1.0 - np.exp(-1.0 / (hz * cfg["saccade_tau_s"]))
    eye = np.empty_like(target)
    eye[0] = target[0]
    drift = np.zeros(2)
    for i in range(1, t.size):
        if tid[i] != tid[i - 1]:
            drift[:] = 0.0
        drift += rng.normal(0, cfg["drift_sd"], 2)
        drift *= 0.95  # drift is pulled back by fixational corrections
        eye[i] = eye[i - 1] + alpha * (target[i] + drift - eye[i - 1])
    gaze = eye + rng.normal(0, cfg["tracker_noise_sd"], eye.shape)
    valid = np.ones(t.size, dtype=bool)
    tb = rng.exponential(1.0 / cfg["blink_rate_hz"])
    while tb < events.duration_s:
        valid[(t >= tb) & (t < tb + rng.uniform(*cfg["blink_s"]))] = False
        tb += rng.exponential(1.0 / cfg["blink_rate_hz"])
    valid &= rng.uniform(size=t.size) >= cfg["p_lost"]
    gaze[~valid] = np.nan
    return {"t": t, "x": gaze[:, 0], "y": gaze[:, 1], "valid": valid.astype(np.int8),
            "latency": latency}
