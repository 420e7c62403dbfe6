"""Inference over windows: a model's heatmap probabilities and in-frame probabilities for every
step of every viewer of a :class:`gazelib.data.dataset.GazeWindows` set."""
from __future__ import annotations

import numpy as np
import torch

from gazelib.data.dataset import GazeWindows, window_major


@torch.no_grad()
def predict(*, model, ds: GazeWindows, batch_size: int = 32) -> dict[str, dict]:
    """Per video: ``prob`` [V,T,cells] heatmap probabilities and ``p_in`` [V,T]. Batches in window-major
    order (a window's viewers side by side: its content computed once)."""
    model.eval()
    out: dict[str, dict] = {}
    order = window_major(ds.index)
    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        batch = ds.batch(idx)
        pred = model(batch)
        prob = torch.softmax(pred["heatmap_logits"], -1).numpy()
        p_in = torch.sigmoid(pred["inout_logits"]).numpy()
        for j, i in enumerate(idx):
            vid, v, _ = ds.index[i]
            vt = ds.video(vid)
            rec = out.setdefault(vid, {"prob": np.zeros((len(vt.viewers), vt.t.size, prob.shape[-1]), np.float32),
                                       "p_in": np.zeros((len(vt.viewers), vt.t.size), np.float32)})
            steps = batch["step"][j].numpy()
            ok = steps >= 0
            rec["prob"][v, steps[ok]] = prob[j][ok]
            rec["p_in"][v, steps[ok]] = p_in[j][ok]
    return out

