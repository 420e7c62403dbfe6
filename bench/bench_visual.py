"""extract_visual: real-time factor on the demo corpus beside decode-only time for the same
frames, and peak memory for 1- vs 10-minute videos, extraction and NPZ writing included with
the pretrained encoder, as the stage runs (the grid and embedding stream through a spool
file, so the output arrays are never held whole).

Run from the repo root after `dvc repro demo ingest`:  python bench/bench_visual.py
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from bench._util import make_long_video, peak_rss_mb
from gazelib.features.visual import FaceDetector, extract_visual_features, make_image_encoder
from gazelib.media import iter_frames
from gazelib.layout import load_manifest


def main() -> None:
    cfg = yaml.safe_load(Path("params.yaml").read_text())["visual"]
    manifest = load_manifest(Path("."))
    media_s = float(manifest["duration_s"].sum())
    t0 = time.perf_counter()
    n_frames = 0
    for row in manifest.itertuples():
        for _ in iter_frames(path=row.video_path, sample_fps=cfg["sample_fps"], width=cfg["work_width"],
                             height=cfg["work_height"]):
            n_frames += 1
    decode_s = time.perf_counter() - t0
    det = FaceDetector.from_params(cfg)
    enc = make_image_encoder(cfg)
    t0 = time.perf_counter()
    for row in manifest.itertuples():
        extract_visual_features(video_path=row.video_path, video_id=row.video_id, cfg=cfg, detector=det, encoder=enc)
    wall = time.perf_counter() - t0
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    mem = {}
    for minutes in (1, 10):
        path = make_long_video(out / f"long_{minutes}min_v.mp4", seconds=60 * minutes, fps=10, audio=False)
        code = (f"import yaml, json, numpy as np\n"
                f"from gazelib.features.visual import extract_visual_features, make_image_encoder, FaceDetector, "
                f"write_visual_features\n"
                f"cfg = yaml.safe_load(open('params.yaml'))['visual']\n"
                f"f = extract_visual_features(video_path='{path}', video_id='long', cfg=cfg, encoder=make_image_encoder(cfg))\n"
                f"write_visual_features(feats=f, out_dir='{out}/visual_out', video_id='long', cfg=cfg, detector_name='haar')\n"
                f"out_mb = sum(4 * np.prod(s.shape) for s in (f.grid_stream, f.emb_stream) if s is not None) / 2**20\n"
                f"print('JSON ' + json.dumps({{'frames': len(f.table), 'output_arrays_mb': round(float(out_mb), 1)}}))")
        mem[f"{minutes}min"] = peak_rss_mb(code)
    print(json.dumps({"demo_media_s": media_s, "frames": n_frames, "decode_only_s": round(decode_s, 2),
                      "decode_only_rtf": round(media_s / decode_s, 1), "extract_wall_s": round(wall, 2),
                      "realtime_factor": round(media_s / wall, 1), "target_rtf": 5, "peak_memory": mem,
                      "memory_ratio_10min_vs_1min": round(mem["10min"]["peak_rss_mb"] / mem["1min"]["peak_rss_mb"], 3)},
                     indent=2))


if __name__ == "__main__":
    main()
