"""Peak memory of training data loading and of evaluate's predict + score, 10- vs 60-minute video.

A synthetic aligned video of the real shapes (10 fps; audio 12 columns; text 2 + 2x384 embedding
columns; visual 10 + 1280 columns; grid [T, 48, 9, 16]; four viewers) is written the way align
writes it (:func:`gazelib.data.align.write_aligned`, the feature rows streamed, so making it is flat
too). Then, each in a fresh interpreter whose peak RSS is measured:

- ``train``: build :class:`gazelib.data.dataset.GazeWindows` with the params.yaml train settings and
  iterate every batch of one epoch in training order (:func:`gazelib.data.dataset.block_order`);
- ``evaluate``: evaluate's predict (:func:`gazelib.eval.evaluate.predict`, a model of the params.yaml
  size, untrained) over the video's non-overlapping windows, then :func:`gazelib.eval.evaluate.score_rows`
  on it with its labels (:func:`gazelib.core.layout.read_labels`), as ``run_evaluate`` does per video;
- ``leak_check_head``: evaluate's leak check on the first window only
  (:func:`gazelib.data.dataset.read_aligned` with ``stop`` = one window);
- at 10 minutes only, for comparison, what the whole-video paths cost: the video prepared whole
  (``prepare_arrays(read_npz(...))``, what every training/evaluate video cost before) and the leak
  check as ``run_evaluate`` calls it today (``read_npz`` of the whole file).

    python -m bench.bench_load            # JSON to stdout and bench/out/load.json

Timings are wall seconds on whatever machine runs it (shared CPUs make them noisy); memory is
peak RSS in MiB.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench._util import peak_rss_mb, synthetic_stream

OUT = Path("bench/out/load")
FPS = 10.0
GRID = (48, 9, 16)
WIDTHS = {"audio": 12, "text": 2 + 2 * 384, "visual": 10 + 1280}
N_VIEWERS = 4


def kinds(m: str) -> list[str]:
    if m == "audio":
        return ["continuous"] * 10 + ["binary"] * 2
    if m == "text":
        return ["binary", "continuous"] + ["embedding"] * 768
    return ["continuous"] * 10 + ["embedding"] * 1280


def make_aligned(path: Path, minutes: float) -> Path:
    """One aligned video of ``minutes`` (written once; reused)."""
    from gazelib.data.align import write_aligned

    if path.exists():
        return path
    n = int(minutes * 60 * FPS)
    rng = np.random.default_rng(0)
    t = np.arange(n) / FPS
    arrays = {"t": t, "mask": np.ones((n, 4), bool)}
    for i, m in enumerate(("audio", "text", "visual")):
        arrays[m] = synthetic_stream((n, WIDTHS[m]), i + 1)
        arrays[f"{m}_columns"] = np.array([f"{m}{j}" for j in range(WIDTHS[m])])
        arrays[f"{m}_kinds"] = np.array(kinds(m))
    arrays["grid"] = synthetic_stream((n,) + GRID, 9)
    arrays.update({"gaze": rng.uniform(0, 1, (N_VIEWERS, n, 2)).astype(np.float32),
                   "inout": np.ones((N_VIEWERS, n), np.int8), "valid": rng.uniform(size=(N_VIEWERS, n)) > 0.1,
                   "gaze_t": t[None] + rng.uniform(-0.04, 0.04, (N_VIEWERS, n)),
                   "viewers": np.array([f"v{i}" for i in range(N_VIEWERS)])})
    arrays["mask"][:, 3] = arrays["valid"].any(0)
    write_aligned(path, arrays)
    return path


def norm_stats() -> dict:
    stats = {m: {"columns": [f"{m}{j}" for j in range(WIDTHS[m])], "kinds": kinds(m),
                 "mean": [0.1] * WIDTHS[m], "std": [1.5] * WIDTHS[m]} for m in WIDTHS}
    stats["grid"] = {"mean": [0.1] * GRID[0], "std": [1.5] * GRID[0]}
    return stats


SETUP = """
import json, time, yaml
from pathlib import Path
import numpy as np
params = yaml.safe_load(Path("params.yaml").read_text())
cfg = {{k: v for k, v in params["train"].items() if k != "seeds"}}
stats = json.loads(Path({stats!r}).read_text())
path = Path({path!r})
vid = path.stem
n = {steps}
t0 = time.time()
"""

TRAIN = SETUP + """
from gazelib.data.dataset import GazeWindows, block_order
ds = GazeWindows(files=[path], stats=stats, cfg=cfg, grid_hw=(9, 16), fps=10.0, lengths={{vid: n}},
                 n_viewers={{vid: 4}}, cache_size=cfg.get("cache_videos", 64))
order = block_order(ds.index, block=cfg.get("cache_videos", 64), seed=0, epoch=0)
nb = 0
for b in ds.batches(order, cfg["batch_size"]):
    nb += 1
print("JSON " + json.dumps({{"windows": len(ds), "batches": nb, "seconds": round(time.time() - t0, 1)}}))
"""

EVALUATE = SETUP + """
import torch
from gazelib.data.dataset import GazeWindows
from gazelib.eval.evaluate import eval_map_shape, predict, sauc_negatives, score_rows
from gazelib.core.layout import read_labels
from gazelib.metrics import resize_bilinear
from gazelib.model.net import build_model
from gazelib.model.train import make_model_config
torch.manual_seed(0)
torch.set_num_threads(cfg.get("num_threads", 2))
model = build_model(make_model_config(variant="multimodal", modalities=["track", "audio", "text", "visual"],
                                      stats=stats, grid_shape=(48, 9, 16), model_cfg=params["model"]))
ds = GazeWindows(files=[path], stats=stats, cfg=cfg, grid_hw=(9, 16), fps=10.0, lengths={{vid: n}},
                 n_viewers={{vid: 4}}, stride_s=cfg["window_s"])
preds = predict(model=model, ds=ds)
t_pred = time.time() - t0
labels = read_labels([path])
hw = eval_map_shape(width=320, height=180, saliency_width=params["evaluate"]["saliency_width"])
prior = np.full((1, 9, 16), 1 / 144)
df = score_rows(prob=preds[vid]["prob"], p_in=preds[vid]["p_in"], lab=labels[vid], gh=9, gw=16, eval_hw=hw,
                prior_eval=resize_bilinear(maps=prior, out_hw=hw)[0],
                other_xy=sauc_negatives(labels=labels, video_id=vid, max_n=params["evaluate"]["sauc_negatives"],
                                        seed=0),
                fixation_sigma=params["evaluate"]["fixation_map_sigma"], video_id=vid, frame_wh=(320, 180))
print("JSON " + json.dumps({{"windows": len(ds), "scored_rows": len(df), "predict_s": round(t_pred, 1),
                            "seconds": round(time.time() - t0, 1)}}))
"""

LEAK = SETUP + """
import torch
from gazelib.data.dataset import read_aligned
from gazelib.eval.evaluate import leak_check
from gazelib.core.io import read_npz
from gazelib.model.net import build_model
from gazelib.model.train import make_model_config
torch.manual_seed(0)
model = build_model(make_model_config(variant="multimodal", modalities=["track", "audio", "text", "visual"],
                                      stats=stats, grid_shape=(48, 9, 16), model_cfg=params["model"]))
window = max(1, int(round(cfg["window_s"] * 10.0)))
arrays = {arrays}
res = leak_check(model=model, arrays=arrays, video_id=vid, stats=stats, cfg=cfg, fps=10.0, grid_hw=(9, 16), seed=0)
print("JSON " + json.dumps({{"max_abs_dlogit": res["max_abs_dlogit"], "seconds": round(time.time() - t0, 1)}}))
"""

WHOLE = SETUP + """
from gazelib.data.dataset import prepare_arrays
from gazelib.core.io import read_npz
vt = prepare_arrays(arrays=read_npz(path), video_id=vid, stats=stats, fps=10.0, horizon_s=cfg["horizon_s"],
                    sigma=cfg["heatmap_sigma"], grid_hw=(9, 16))
print("JSON " + json.dumps({{"seconds": round(time.time() - t0, 1)}}))
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    stats_path = OUT / "norm_stats.json"
    stats_path.write_text(json.dumps(norm_stats()))
    rows: dict = {}
    for minutes in (10, 60):
        t0 = time.time()
        path = make_aligned(OUT / f"long{minutes}.npz", minutes)
        fmt = {"stats": str(stats_path), "path": str(path), "steps": int(minutes * 60 * FPS)}
        row = {"aligned_mb": round(path.stat().st_size / 2**20, 1), "make_s": round(time.time() - t0, 1),
               "train": peak_rss_mb(TRAIN.format(**fmt)), "evaluate": peak_rss_mb(EVALUATE.format(**fmt)),
               "leak_check_head": peak_rss_mb(LEAK.format(**fmt, arrays="read_aligned(path=path, stop=window)"))}
        if minutes == 10:
            row["before_prepare_whole"] = peak_rss_mb(WHOLE.format(**fmt))
            row["before_leak_check_whole_file"] = peak_rss_mb(LEAK.format(**fmt, arrays="read_npz(path)"))
        rows[f"{minutes}min"] = row
        print(json.dumps({f"{minutes}min": row}), flush=True)
    ratio = {k: round(rows["60min"][k]["peak_rss_mb"] / rows["10min"][k]["peak_rss_mb"], 2)
             for k in ("train", "evaluate", "leak_check_head")}
    result = {"load": rows, "ratio_60_vs_10": ratio, "note": "peak RSS in MiB; seconds on a shared CPU"}
    (OUT.parent / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
