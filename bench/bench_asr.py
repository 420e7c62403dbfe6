"""ASR: real-time factor of faster-whisper tiny.en int8 on the demo corpus, WER and word
boundary error against the demo subtitles.

Run from the repo root after `dvc repro demo ingest`:  python bench/bench_asr.py
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from gazelib.features.transcript import WhisperASR, asr_quality, read_cues, words_from_cues
from gazelib.core.media import read_audio
from gazelib.core.layout import load_manifest


def main() -> None:
    cfg = yaml.safe_load(Path("params.yaml").read_text())["text"]
    asr = WhisperASR(model=cfg["asr_model"], language=cfg["language"], compute_type=cfg["asr_compute_type"],
                     cpu_threads=cfg["asr_threads"], beam_size=cfg["asr_beam_size"], vad_filter=cfg["asr_vad_filter"])
    manifest = load_manifest(Path("."))
    media_s, wall, rows = 0.0, 0.0, []
    for row in manifest.itertuples():
        t0, audio = read_audio(path=row.video_path)
        start = time.perf_counter()
        hyp = asr.transcribe(audio, t0=t0)
        wall += time.perf_counter() - start
        media_s += audio.size / 16000
        ref = words_from_cues(read_cues(path=row.subtitle_path), "subtitles")
        rows.append(asr_quality(ref=ref, hyp=hyp))
    n_ref = sum(r["n_ref"] for r in rows)
    n_m = sum(r["n_matched"] for r in rows)
    print(json.dumps({"demo_media_s": round(media_s, 1), "asr_wall_s": round(wall, 2),
                      "realtime_factor": round(media_s / wall, 1), "target_rtf": 5,
                      "wer": round(sum(r["wer"] * r["n_ref"] for r in rows) / n_ref, 4),
                      "start_err_s": round(sum(r["start_err_s"] * r["n_matched"] for r in rows if r["n_matched"]) / n_m, 4),
                      "end_err_s": round(sum(r["end_err_s"] * r["n_matched"] for r in rows if r["n_matched"]) / n_m, 4)},
                     indent=2))


if __name__ == "__main__":
    main()
