"""extract_audio: real-time factor on the demo corpus (VAD model loaded once, as the stage
does), and peak memory for 1- vs 10-minute files.

Run from the repo root after `dvc repro demo ingest`:  python bench/bench_audio.py
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from bench._util import make_long_video, peak_rss_mb
from gazelib.features.audio import SileroVAD, extract_audio_features
from gazelib.core.layout import load_manifest


def main() -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    cfg = params["audio"]
    manifest = load_manifest(Path("."))
    vad = SileroVAD()
    media_s, t0 = 0.0, time.perf_counter()
    for row in manifest.itertuples():
        extract_audio_features(video_path=row.video_path, video_id=row.video_id, duration_s=row.duration_s, cfg=cfg,
                               vad=vad)
        media_s += row.duration_s
    wall = time.perf_counter() - t0
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    mem = {}
    for minutes in (1, 10):
        path = make_long_video(out / f"long_{minutes}min.mp4", seconds=60 * minutes, fps=2, width=64, height=36)
        code = (f"import yaml, json; from gazelib.features.audio import extract_audio_features\n"
                f"cfg = yaml.safe_load(open('params.yaml'))['audio']\n"
                f"f = extract_audio_features(video_path='{path}', video_id='long', duration_s={60 * minutes}, cfg=cfg)\n"
                f"print('JSON ' + json.dumps({{'rows': len(f.table)}}))")
        mem[f"{minutes}min"] = peak_rss_mb(code)
    result = {"demo_media_s": round(media_s, 1), "wall_s": round(wall, 2), "realtime_factor": round(media_s / wall, 1),
              "target_rtf": 50, "peak_memory": mem,
              "memory_ratio_10min_vs_1min": round(mem["10min"]["peak_rss_mb"] / mem["1min"]["peak_rss_mb"], 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
