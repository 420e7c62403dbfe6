"""Peak memory of align for a 10- and a 60-minute video (target: 60 minutes within 2 GB).

Feature files of the real shapes (audio table at 100 Hz; text table at 25 Hz with two 384-d
embeddings; visual table at 10 Hz with a [T, 48, 9, 16] grid and a 1280-d image embedding; four
viewers at 60 Hz) are written by the real feature writers from synthetic streams, then the
align stage's per-video work (align_video + the NPZ write + the norm statistics) runs in a fresh
interpreter whose peak RSS is measured.

    python -m bench.bench_align
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench._util import peak_rss_mb, synthetic_stream

OUT = Path("bench/out/align")
GRID = (48, 9, 16)


def make_features(root: Path, video_id: str, minutes: float) -> None:
    """Write audio, text and visual feature files and a gaze table for one synthetic video."""
    from gazelib.features.audio import KINDS as A_KINDS
    from gazelib.features.audio import AudioFeatures, write_audio_features
    from gazelib.features.text import EMB_KINDS, KINDS as T_KINDS
    from gazelib.features.visual import KINDS as V_KINDS
    from gazelib.features.visual import VisualFeatures, write_visual_features
    from gazelib.core.io import feature_meta, write_npz, write_table

    dur = minutes * 60.0
    feat = root / "features"
    if (feat / "visual" / f"{video_id}.npz").exists():
        return
    rng = np.random.default_rng(0)
    ta = np.arange(0, dur, 0.01)
    write_audio_features(feats=AudioFeatures(
        table=pd.DataFrame({"t": ta, **{k: (rng.uniform(size=ta.size) > 0.5).astype(np.float32) if v == "binary"
                                          else rng.normal(size=ta.size).astype(np.float32) for k, v in A_KINDS.items()}}),
        available=True, duration_s=dur, kinds=dict(A_KINDS)), out_dir=feat / "audio", video_id=video_id, cfg={})
    tt = np.arange(0, dur, 0.04)
    meta = feature_meta(video_id=video_id, modality="text", kinds={**T_KINDS, **EMB_KINDS}, backend="bench", params={})
    write_table(feat / "text" / f"{video_id}.parquet",
                pd.DataFrame({"t": tt, "text_active": (rng.uniform(size=tt.size) > 0.5).astype(np.float32),
                              "speaking_rate": rng.normal(size=tt.size).astype(np.float32)}), meta=meta)
    write_npz(feat / "text" / f"{video_id}.npz", t=tt, word_emb=synthetic_stream((tt.size, 384), 1),
              utt_emb=synthetic_stream((tt.size, 384), 2), kinds=np.array(["embedding", "embedding"]),
              names=np.array(["word_emb", "utt_emb"]))
    tv = np.arange(0, dur, 0.1)
    table = pd.DataFrame({"t": tv, **{k: rng.normal(size=tv.size).astype(np.float32) for k in V_KINDS}})
    write_visual_features(feats=VisualFeatures(
        table=table, grid_stream=synthetic_stream((tv.size,) + GRID, 3), faces=pd.DataFrame(
            columns=["t", "x0", "y0", "x1", "y1", "mouth_motion"]),
        channels=[f"c{i}" for i in range(GRID[0])], emb_stream=synthetic_stream((tv.size, 1280), 4), image_model="bench"),
        out_dir=feat / "visual", video_id=video_id, cfg={}, detector_name="bench")
    tg = np.arange(0, dur, 1 / 60)
    gaze = pd.concat([pd.DataFrame({"viewer_id": f"v{v}", "t": tg, "x": rng.uniform(size=tg.size),
                                    "y": rng.uniform(size=tg.size), "valid": True, "inout": np.int8(1)})
                      for v in range(4)], ignore_index=True)
    write_table(root / "gaze" / f"{video_id}.parquet", gaze)


CODE = """
import json, time
from pathlib import Path
from gazelib.data.align import align_video
from gazelib.core.normalize import NormAccumulator
from gazelib.core.io import iter_npz_rows, read_npz, read_table, write_npz
root, vid = Path({root!r}), {vid!r}
t0 = time.time()
arrays = align_video(video_id=vid, duration_s={dur}, feat_dir=root / "features",
                     gaze=read_table(root / "gaze" / (vid + ".parquet"))[0],
                     cfg={{"fps": 10, "max_gap_s": 0.5, "gaze_max_gap_s": 0.1}}, grid_shape={grid}, stream_grid=True)
out = root / "aligned" / (vid + ".npz")
write_npz(out, **arrays)
del arrays
acc = NormAccumulator()
keys = ("t", "gaze", "valid", "mask") + tuple(m + x for m in ("audio", "text", "visual") for x in ("", "_columns", "_kinds"))
a = read_npz(out, keys=keys)
acc.add_video(a)
i = 0
for g in iter_npz_rows(out, "grid")[1]:
    acc.add_grid(g[a["mask"][i:i + len(g), 2]]); i += len(g)
stats = acc.stats()
print("JSON " + json.dumps({{"align_s": round(time.time() - t0, 1), "steps": int(a["t"].size),
                            "aligned_mb": round(out.stat().st_size / 2**20, 1)}}))
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = {}
    for minutes in (10, 60):
        vid = f"long{minutes}"
        t0 = time.time()
        make_features(OUT, vid, minutes)
        made = time.time() - t0
        res = peak_rss_mb(CODE.format(root=str(OUT), vid=vid, dur=minutes * 60.0, grid=(GRID[0], GRID[1], GRID[2])))
        rows[f"{minutes}min"] = {**res, "inputs_mb": round(sum(p.stat().st_size for p in (OUT / "features").rglob(
            f"{vid}*")) / 2**20, 1), "make_inputs_s": round(made, 1)}
    print(json.dumps({"align": rows, "target_peak_rss_mb_60min": 2048,
                      "ratio_60_vs_10": round(rows["60min"]["peak_rss_mb"] / rows["10min"]["peak_rss_mb"], 2)},
                     indent=2))


if __name__ == "__main__":
    main()
