"""ASR: real-time factor of faster-whisper tiny.en int8 on the demo corpus, WER and word
boundary error against the demo subtitles.

Run from the repo root after `dvc repro demo ingest`:

    python -m bench.bench_asr              # offline: each video in 30 s windows (features.lookahead: offline)
    python -m bench.bench_asr --causal     # the streaming recogniser (lookahead none) with each chunk decoded
                                           # in one pass against faster-whisper's long-form loop, alternating
                                           # video by video in one run: wall time, encoder runs, WER of each
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gazelib  # noqa: F401  (pins the CPU path first)
from gazelib.core.layout import load_manifest
from gazelib.core.media import read_audio
from gazelib.core.params import load_params
from gazelib.features.text import text_config
from gazelib.features.transcript import WhisperASR, asr_quality, make_asr, read_cues, transcribe_causal, words_from_cues


def _pooled(rows: list[dict]) -> dict:
    n_ref = sum(r["n_ref"] for r in rows)
    n_m = sum(r["n_matched"] for r in rows)
    return {"wer": round(sum(r["wer"] * r["n_ref"] for r in rows) / n_ref, 4),
            "n_hyp_words": sum(r["n_hyp"] for r in rows),
            "start_err_s": round(sum(r["start_err_s"] * r["n_matched"] for r in rows if r["n_matched"]) / n_m, 4),
            "end_err_s": round(sum(r["end_err_s"] * r["n_matched"] for r in rows if r["n_matched"]) / n_m, 4)}


def offline() -> dict:
    cfg = text_config(load_params())
    asr = WhisperASR(model=cfg["asr_model"], language=cfg["language"], compute_type=cfg["asr_compute_type"],
                     cpu_threads=cfg["asr_threads"], beam_size=cfg["asr_beam_size"], vad_filter=cfg["asr_vad_filter"])
    media_s, wall, rows = 0.0, 0.0, []
    for row in load_manifest(Path(".")).itertuples():
        t0, audio = read_audio(path=row.video_path)
        start = time.perf_counter()
        hyp = asr.transcribe(audio, t0=t0)
        wall += time.perf_counter() - start
        media_s += audio.size / 16000
        rows.append(asr_quality(ref=words_from_cues(read_cues(path=row.subtitle_path), "subtitles"), hyp=hyp))
    return {"demo_media_s": round(media_s, 1), "asr_wall_s": round(wall, 2),
            "realtime_factor": round(media_s / wall, 1), **_pooled(rows)}


def causal() -> dict:
    """One-pass chunks against the long-form loop, the same recogniser, alternating order per video."""
    from faster_whisper import WhisperModel

    cfg = text_config(load_params())
    asr = make_asr(cfg)
    runs = {"n": 0}
    encode = WhisperModel.encode

    def counted(self, features):
        runs["n"] += 1
        return encode(self, features)

    WhisperModel.encode = counted
    decode = asr.transcribe
    out = {m: {"wall_s": 0.0, "encoder_runs": 0, "rows": []} for m in ("loop", "one_pass")}
    media_s = 0.0
    for i, row in enumerate(load_manifest(Path(".")).itertuples()):
        t0, audio = read_audio(path=row.video_path)
        media_s += audio.size / 16000
        ref = words_from_cues(read_cues(path=row.subtitle_path), "subtitles")
        for mode in (("loop", "one_pass") if i % 2 == 0 else ("one_pass", "loop")):
            asr.transcribe = (lambda a, _one=(mode == "one_pass"), **kw: decode(a, **{**kw, "one_pass": _one}))
            runs["n"] = 0
            start = time.perf_counter()
            hyp = transcribe_causal(asr=asr, audio=audio, t0=t0, cfg=cfg)
            out[mode]["wall_s"] += time.perf_counter() - start
            out[mode]["encoder_runs"] += runs["n"]
            out[mode]["rows"].append(asr_quality(ref=ref, hyp=hyp))
    report = {"demo_media_s": round(media_s, 1), "asr_threads": cfg["asr_threads"]}
    for mode, r in out.items():
        report[mode] = {"wall_s": round(r["wall_s"], 1), "realtime_factor": round(media_s / r["wall_s"], 2),
                        "encoder_runs": r["encoder_runs"], **_pooled(r["rows"])}
    report["speedup_one_pass"] = round(out["loop"]["wall_s"] / out["one_pass"]["wall_s"], 2)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--causal", action="store_true", help="the streaming recogniser: one pass against the loop")
    args = ap.parse_args()
    print(json.dumps(causal() if args.causal else offline(), indent=2))


if __name__ == "__main__":
    main()
