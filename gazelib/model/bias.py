"""The model's own bias: what it predicts when there is nothing to see, hear, read or follow.

Content-free inputs are built through the real extractors, so they are exactly what the
model would receive from such a video: for each grey level ``g`` in ``evaluate.bias_grey_levels``
a clip of uniform RGB frames ``round(255 g)`` with a silent audio track is written, then
``extract_visual_features``, ``extract_audio_features`` and ``extract_text_video`` (with no
transcript source, so text is unavailable) run on it and ``align_video`` puts them on the model's
timeline with one viewer whose gaze is missing throughout (no track). The ``bias_inputs`` stage
writes one aligned NPZ per grey level (:mod:`gazelib.pipeline.bias_inputs`, kept apart so that training and
evaluation do not depend on the extractors' code); evaluate and the entropy regulariser of training
read them.

The bias map of a model is the average of its predicted heatmaps over every step of every
content-free clip,

    b_c = mean_{clip, t} softmax(s_t)_c,

and its entropy (Shannon, bits) is ``H(b) = -sum_c b_c log2 b_c``, at most ``log2(n_cells)`` (the
uniform map). A low ``H(b) / log2(n_cells)`` means a strong built-in centre (or any other) bias.
The regulariser (``train.lambda_entropy`` > 0) adds ``-lambda * H(b)`` (in nats) to the loss every
``train.entropy_every`` batches, pushing the content-free prediction towards uniform, as in the
entropy-regularisation study of DeepGaze-style saliency models.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from gazelib.core.io import read_npz
from gazelib.core.layout import BIAS_INPUTS

log = logging.getLogger(__name__)


def entropy_bits(*, p: np.ndarray) -> float:
    """Shannon entropy in bits of a non-negative map (normalised to sum 1 first; 0 log 0 = 0)."""
    p = np.asarray(p, np.float64).ravel()
    if p.size == 0 or not np.all(np.isfinite(p)) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"entropy of a map needs finite non-negative values with a positive sum; got {p[:5]}...")
    p = p / p.sum()
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def bias_files(root: Path) -> list[Path]:
    path = root / BIAS_INPUTS
    files = sorted(path.glob("grey_*.npz")) if path.exists() else []
    if not files:
        raise FileNotFoundError(f"no content-free inputs in {path}; run `dvc repro bias_inputs`")
    return files


def content_free_batch(*, files: list[Path], stats: dict, cfg: dict, fps: float, grid_hw: tuple[int, int]) -> dict:
    """One batch: each content-free clip as one window (its only, missing, viewer)."""
    from gazelib.data.dataset import max_track_age, prepare_arrays, window_batch

    vts = [prepare_arrays(arrays=read_npz(f), video_id=f.stem, stats=stats, fps=fps, horizon_s=cfg["horizon_s"],
                          sigma=cfg["heatmap_sigma"], grid_hw=grid_hw, max_age_s=max_track_age(cfg)) for f in files]
    window = max(vt.t.size for vt in vts)
    return window_batch([(vt, 0, 0) for vt in vts], window)


def bias_map_torch(*, model, batch: dict) -> torch.Tensor:
    """[cells] mean predicted heatmap over every non-padded step of the batch (differentiable)."""
    out = model(batch)
    prob = torch.softmax(out["heatmap_logits"], -1)
    keep = (~batch["pad"]).float().unsqueeze(-1)
    return (prob * keep).sum((0, 1)) / keep.sum().clamp(min=1.0)


def entropy_penalty(*, model, batch: dict) -> tuple[torch.Tensor, float]:
    """``-H(b)`` in nats (add ``lambda *`` this to the loss) and ``H(b)`` in bits for logging."""
    b = bias_map_torch(model=model, batch=batch)
    h = -(b * torch.log(b.clamp(min=1e-12))).sum()
    return -h, float(h.detach()) / math.log(2)


@torch.no_grad()
def bias_diagnostic(*, model, batch: dict, gh: int, gw: int, names: list[str]) -> dict:
    """Bias map, its entropy (bits, share of the uniform maximum) overall and per clip."""
    model.eval()
    out = model(batch)
    prob = torch.softmax(out["heatmap_logits"], -1).double().numpy()
    keep = ~batch["pad"].numpy()
    per_clip = {n: prob[i][keep[i]].mean(0) for i, n in enumerate(names)}
    overall = np.mean(list(per_clip.values()), 0)
    h_max = math.log2(gh * gw)

    def summary(p: np.ndarray) -> dict:
        h = entropy_bits(p=p)
        peak = int(np.argmax(p))
        return {"entropy_bits": h, "entropy_share": h / h_max,
                "peak_xy": [(peak % gw + 0.5) / gw, (peak // gw + 0.5) / gh], "peak_mass": float(p.max())}

    return {"map": overall.reshape(gh, gw), "max_entropy_bits": h_max, **summary(overall),
            "per_clip": {n: summary(p) for n, p in per_clip.items()}}
