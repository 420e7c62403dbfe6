"""gazelib predict: model latency under PyTorch and ONNX Runtime, and end-to-end timing by part.

1. A 60 s 1280x720 25 fps video with speech: a demo scene (characters talking, balls, espeak-ng
   speech) rendered at the demo's 320x180 and scaled up 4x (written once to bench/out/).
2. ``predict_videos`` on it from an empty output folder (nothing cached), PyTorch runtime, overlay
   on: wall time split by part (probe, model loading, audio, text = ASR + embedding, visual,
   align, model, outputs, overlay encoding) and the real-time factor (video seconds / wall seconds).
3. Model latency on that video's real windows (``train.window_s`` steps, batch 1 and batch of all
   windows), PyTorch vs ONNX Runtime at the same thread count: per window, and per step = per
   window / window steps (what one step of a whole-video run costs).

Run from the repo root:  python -m bench.bench_predict [--model models/content_only] [--threads 2]
A model folder from before model bundles (no bundle.json) is copied into the work folder and given a
bundle from ./params.yaml and data/aligned/norm_stats.json (the checkpoints' norm-stats hash is checked).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

OUT = Path("bench/out")


def make_speech_video(path: Path, *, seconds: float = 60.0, width: int = 1280, height: int = 720, fps: int = 25,
                      seed: int = 3) -> Path:
    """A demo scene with speech, rendered at the demo size and scaled to ``width`` x ``height``."""
    import cv2
    import yaml

    from gazelib.demo.corpus import _frames, build_video
    from gazelib.demo.scene import make_background
    from gazelib.media import write_mp4

    if path.exists():
        return path
    cfg = yaml.safe_load(Path("params.yaml").read_text())["demo"]
    cfg = {**cfg, "duration_s": seconds, "fps": fps}
    rng = np.random.default_rng([seed, 0])
    video = build_video(video_id="bench", rng=rng, cfg=cfg)
    background = make_background(rng, cfg["width"], cfg["height"])
    frames = (cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)
              for f in _frames(video, background, fps, {"t": [], "balls": []}))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path=path, frames=frames, width=width, height=height, fps=fps, audio=video.audio,
              sample_rate=video.sample_rate, crf=23)
    return path


def model_folder(model: Path, work: Path) -> Path:
    """``model`` if it has a bundle; else a copy with a bundle from the repo's params and norm stats."""
    import yaml

    from gazelib.bundle import BundleError, load_bundle, write_bundle

    try:
        load_bundle(model)
        return model
    except BundleError as exc:
        if "no bundle.json" not in str(exc):
            raise
    params = yaml.safe_load(Path("params.yaml").read_text())
    stats = json.loads(Path("data/aligned/norm_stats.json").read_text())
    variant = model.name
    dst = work / "models" / variant
    if dst.exists():
        shutil.rmtree(dst)
    seeds = sorted(int(p.name[4:]) for p in model.glob("seed*") if (p / "best.pt").exists())
    for s in seeds:
        (dst / f"seed{s}").mkdir(parents=True)
        shutil.copy(model / f"seed{s}" / "best.pt", dst / f"seed{s}" / "best.pt")
    params["train"]["seeds"] = seeds
    write_bundle(out_dir=dst, params=params, stats=stats, variant=variant,
                 modalities=params["variants"][variant]["modalities"])
    return dst


def _timeit(fn, *, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def latency(*, bundle, aligned: Path, threads: int, work: Path, repeat: int = 30) -> dict:
    """Median latency per window (batch 1) and per batch of all windows, torch vs onnx."""
    import torch

    from gazelib.dataset import GazeWindows
    from gazelib.onnx_export import parity
    from gazelib.predict import load_runtime_model

    out, models = {}, {}
    with torch.no_grad():
        for runtime in ("torch", "onnx"):  # one after the other: the first's threads never compete with the second
            m, meta = load_runtime_model(bundle=bundle, checkpoint=bundle.checkpoint(), runtime=runtime,
                                         onnx_path=None, work=work, threads=threads)
            models[runtime] = m
            cfg, cm = meta["train_cfg"], meta["model_config"]
            n = int(np.load(aligned)["t"].size)
            ds = GazeWindows(files=[aligned], stats=bundle.stats, cfg=cfg, grid_hw=(cm["grid_h"], cm["grid_w"]),
                             fps=meta["fps"], lengths={aligned.stem: n}, n_viewers={aligned.stem: 1},
                             stride_s=cfg["window_s"])
            one, every = ds.batch([0]), ds.batch(range(len(ds)))
            steps = int(one["pad"].shape[1])
            w = _timeit(lambda: m(one), repeat=repeat)
            b = _timeit(lambda: m(every), repeat=max(5, repeat // 3))
            out[runtime] = {"per_window_ms": round(1e3 * w, 3), "per_step_ms": round(1e3 * w / steps, 4),
                            f"batch_of_{len(ds)}_windows_ms": round(1e3 * b, 3),
                            "per_step_in_batch_ms": round(1e3 * b / (len(ds) * steps), 4)}
        out["parity_on_video_windows"] = parity(model=models["torch"], onnx_model=models["onnx"], batches=[every])
    out.update(window_steps=steps, windows=len(ds), threads=threads)
    return out


def main() -> None:
    import torch

    from gazelib.bundle import load_bundle
    from gazelib.predict import predict_videos

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/content_only", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=OUT / "predict")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    video = make_speech_video(OUT / f"speech_{int(args.seconds)}s_1280x720.mp4", seconds=args.seconds)
    make_s = time.perf_counter() - t0
    model = model_folder(args.model, args.work)
    bundle = load_bundle(model)
    pred_out = args.work / "run"
    if pred_out.exists():
        shutil.rmtree(pred_out)       # nothing cached: every part runs
    res = predict_videos(inputs=[video], model_dir=model, out_dir=pred_out, threads=args.threads, progress=False)
    if not res.ok:
        raise SystemExit(f"predict failed: {res.failed}")
    parts = dict(res.timings)
    extraction = {k: parts[k] for k in ("audio", "text", "visual")}
    lat = latency(bundle=bundle, aligned=pred_out / "_features" / "aligned" / f"{video.stem}.npz",
                  threads=args.threads, work=args.work / "onnx", repeat=30)
    report = {
        "video": {"path": str(video), "seconds": res.media_s, "size": "1280x720", "fps": 25, "made_in_s": round(make_s, 1)},
        "model": {"folder": str(args.model), "variant": bundle.variant, "modalities": bundle.modalities,
                  "seed": res.seed},
        "machine": {"cpu_threads_torch": torch.get_num_threads(), "cores": __import__("os").cpu_count()},
        "end_to_end": {"wall_s": round(res.wall_s, 2), "x_realtime": round(res.media_s / res.wall_s, 3),
                       "parts_s": parts, "extraction_s": round(sum(extraction.values()), 2),
                       "other_s": round(res.wall_s - sum(parts.values()), 2)},
        "latency": lat,
    }
    (OUT / "predict.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
