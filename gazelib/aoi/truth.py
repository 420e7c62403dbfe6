"""Face tracks and the speaker AOI against the demo corpus's truth (``truth/<video_id>.json``:
face boxes per character, sentences with their speaker and times).

- Matching: at each frame, truth faces and track boxes are paired by the Hungarian solver on
  1 - IoU, pairs with IoU >= ``iou_min`` (0.5, the MOT convention) count.
- ``id_switches``: for each character, the number of times its matched track changes from one
  matched frame to the next (CLEAR-MOT's IDSW); ``coverage``: share of (character, frame) pairs
  matched; ``n_tracks`` vs ``n_characters``.
- ``speaker_accuracy``: over frames inside a truth sentence, the share where the speaker AOI is
  the track matched to the speaking character; ``silence_accuracy``: over frames outside every
  sentence, the share with no speaker. ``frame_accuracy``: both together.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from gazelib.aoi.tracks import iou_matrix


def check_against_truth(*, truth: dict, tracks: pd.DataFrame, speakers: pd.DataFrame, iou_min: float = 0.5) -> dict:
    chars = [f["character"] for f in truth["faces"]]
    tboxes = np.array([f["box"] for f in truth["faces"]], np.float64)
    times = speakers["t"].to_numpy(np.float64)
    # the track boxes of each frame time, in table order (as groupby("t") gives them), as arrays:
    # pandas indexing per frame was most of this function's time
    order = np.argsort(tracks["t"].to_numpy(np.float64), kind="stable")
    t_sorted = tracks["t"].to_numpy(np.float64)[order]
    boxes = tracks[["x0", "y0", "x1", "y1"]].to_numpy()[order]
    ids = tracks["track"].to_numpy()[order]
    keys, starts = np.unique(t_sorted, return_index=True)
    ends = np.append(starts[1:], len(t_sorted))
    by_t = {t: (boxes[a:b], ids[a:b]) for t, a, b in zip(keys.tolist(), starts, ends)}
    matched = np.full((len(chars), len(times)), "", dtype=object)
    for i, t in enumerate(times):
        frame = by_t.get(t)
        if frame is None:
            continue
        iou = iou_matrix(tboxes, frame[0])
        r, c = linear_sum_assignment(-iou)
        for a, b in zip(r, c):
            if iou[a, b] >= iou_min:
                matched[a, i] = frame[1][b]
    switches = 0
    for a in range(len(chars)):
        seq = [m for m in matched[a] if m]
        switches += int(sum(x != y for x, y in zip(seq, seq[1:])))
    speaking = np.full(len(times), -1)
    for s in truth["sentences"]:
        speaking[(times >= s["start"]) & (times < s["end"])] = chars.index(s["speaker"])
    pred = speakers["speaker"].to_numpy(str)
    in_speech = speaking >= 0
    correct = np.where(in_speech, pred == matched[np.maximum(speaking, 0), np.arange(len(times))].astype(str),
                       pred == "")
    correct &= ~(in_speech & (pred == ""))
    return {"n_characters": len(chars), "n_tracks": int(tracks["track"].nunique()), "id_switches": switches,
            "coverage": float((matched != "").mean()) if matched.size else None,
            "speaker_accuracy": float(correct[in_speech].mean()) if in_speech.any() else None,
            "silence_accuracy": float(correct[~in_speech].mean()) if (~in_speech).any() else None,
            "frame_accuracy": float(correct.mean()) if len(times) else None,
            "n_speech_frames": int(in_speech.sum()), "n_frames": int(len(times))}
