"""gazelib predict: end-to-end timing by part against a reference revision, the overlay writers side
by side, real clips, and model latency under PyTorch and ONNX Runtime.

1. A 60 s 1280x720 25 fps video with speech: a demo scene (characters talking, balls, espeak-ng
   speech) rendered at the demo's 320x180 and scaled up 4x (written once to bench/out/).
2. End to end, before / after in one run: ``predict_videos`` on it from an empty output folder
   (nothing cached), PyTorch runtime, overlay on, each in a fresh process (imports and model loading
   count), first with the code of ``--ref`` (``git archive``: the revision before issue 24's predict
   work), then with this tree. Wall time split by part (probe, model loading, audio, text = ASR +
   embedding, visual, align, model, outputs, overlay), the real-time factor (video seconds / wall
   seconds) of each and their ratio; the predicted tables and heatmaps of the two runs must be the same
   bytes (the bench exits 1 otherwise, unless ``--changed-by`` names a stated change of numbers: the
   tables that differ are then listed).
3. The overlay writers alone on this tree's predictions, in alternating order for ``--overlay-rounds``
   rounds: the reference's writer (``--ref``'s gazelib/viz/overlay.py, its default preset veryfast), this
   tree's at veryfast (the code path alone) and at its default preset (ultrafast): median seconds, real-
   time factor, file size, ratios, and this tree's parts (decode, layers, draw, write = blocked on the
   encoder, finish).
4. The real clips (``--real-clips``, a folder of videos; default the Lund 2013 clips of the shared
   fixtures, skipped when absent): with the reference's code, then with this tree's twice in one fresh
   process: cold (models loaded) and warm (the models the first run loaded are kept for the process);
   the tables must match the reference's too.
5. Model latency on the 60 s video's real windows (``train.window_s`` steps, batch 1 and batch of all
   windows), PyTorch vs ONNX Runtime at the same thread count: per window, and per step = per
   window / window steps (what one step of a whole-video run costs).

On a shared machine absolute seconds move with the other load (the load average is recorded at the
start and the end); the ratios measured in the same run are what hold.

Run from the repo root:  python -m bench.bench_predict [--model models/content_only] [--threads 2]
  [--ref REV] [--overlay-rounds 2] [--real-clips FOLDER]
A model folder from before model bundles (no bundle.json) is copied into the work folder and given a
bundle from ./params.yaml and data/aligned/norm_stats.json (the checkpoints' norm-stats hash is checked).
JSON goes to stdout and bench/out/predict.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gazelib  # noqa: F401  (before numpy: it pins the CPU path the libraries' kernels take)
import numpy as np

OUT = Path("bench/out")
# the revision before issue 24's predict work: BGR overlay writer at veryfast, models loaded per call
REF = "3c64eea"
TABLES = ("predictions.parquet", "predictions.csv", "heatmaps.npz")
REAL_CLIPS = Path("../shared/fixtures/real_video_gaze/lund2013/videos")

# run in a fresh interpreter with PYTHONPATH = the tree to time (-P: not the current folder first)
CHILD = """
import json, sys, time
t0 = time.perf_counter()
import gazelib
from gazelib.serve.predict import predict_videos
a = json.loads(sys.argv[1])
runs = []
for out in a["outs"]:
    res = predict_videos(inputs=a["inputs"], model_dir=a["model"], out_dir=out, threads=a["threads"], progress=False)
    runs.append({"wall_s": res.wall_s, "media_s": res.media_s, "timings": res.timings, "failed": res.failed,
                 "seed": res.seed})
print("RESULT " + json.dumps({"process_s": time.perf_counter() - t0, "runs": runs}))
"""


def make_speech_video(path: Path, *, seconds: float = 60.0, width: int = 1280, height: int = 720, fps: int = 25,
                      seed: int = 3) -> Path:
    """A demo scene with speech, rendered at the demo size and scaled to ``width`` x ``height``."""
    import cv2
    import yaml

    from gazelib.demo.corpus import _frames, build_video
    from gazelib.demo.scene import make_background
    from gazelib.core.media import write_mp4

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

    from gazelib.model.bundle import BundleError, load_bundle, write_bundle

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

    from gazelib.data.dataset import GazeWindows
    from gazelib.model.onnx_export import parity
    from gazelib.serve.runtime import load_runtime_model

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


def run_tree(tree: Path, *, inputs: list[Path], model: Path, outs: list[Path], threads: int) -> dict:
    """``predict_videos`` with the code of ``tree`` in a fresh process, once per output folder (emptied
    first): the later runs find the models the first loaded."""
    for out in outs:
        if out.exists():
            shutil.rmtree(out)       # nothing cached: every part runs
    arg = json.dumps({"inputs": [str(p.resolve()) for p in inputs], "model": str(model.resolve()),
                      "outs": [str(o.resolve()) for o in outs], "threads": threads})
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run([sys.executable, "-P", "-c", CHILD, arg], env=env, capture_output=True, text=True)
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        raise SystemExit(f"predict with the code of {tree} failed:\n{res.stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    for r in out["runs"]:
        if r["failed"]:
            raise SystemExit(f"predict with the code of {tree} failed on {r['failed']}")
    return out


def summary(run: dict) -> dict:
    parts = run["timings"]
    return {"wall_s": round(run["wall_s"], 2), "x_realtime": round(run["media_s"] / run["wall_s"], 3),
            "parts_s": parts, "extraction_s": round(sum(parts[k] for k in ("audio", "text", "visual")), 2),
            "other_s": round(run["wall_s"] - sum(parts.values()), 2)}


def _same_file(a: Path, b: Path) -> bool:
    """The same bytes, or (Parquet) the same table and metadata but for the recorded gazelib version
    (a reference from another release)."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix != ".parquet":
        return False
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    ma, mb = (json.loads((t.schema.metadata or {}).get(b"gazelib", b"{}")) for t in (ta, tb))
    ma.pop("gazelib_version", None)
    mb.pop("gazelib_version", None)
    return ta.replace_schema_metadata().equals(tb.replace_schema_metadata()) and ma == mb


def same_tables(a: Path, b: Path) -> dict[str, bool]:
    return {f"{v.name}/{f}": _same_file(v / f, b / v.name / f)
            for v in sorted(p for p in a.iterdir() if p.is_dir() and not p.name.startswith("_")) for f in TABLES}


def ref_overlay_module(tree: Path):
    """The reference tree's overlay writer (gazelib/viz/overlay.py; gazelib/overlay.py before 0.3.0) as a
    module of its own (its imports: this tree's gazelib.core.io and gazelib.core.media, whose functions it
    calls are unchanged)."""
    path = next((p for p in (tree / "gazelib" / "viz" / "overlay.py", tree / "gazelib" / "overlay.py") if p.exists()),
                None)
    if path is None:
        raise FileNotFoundError(f"reference tree {tree} has no gazelib/viz/overlay.py nor gazelib/overlay.py")
    spec = importlib.util.spec_from_file_location("ref_overlay", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ref_overlay"] = mod
    spec.loader.exec_module(mod)
    return mod


def compare_overlays(*, tree: Path, video: Path, pred_dir: Path, work: Path, rounds: int, seconds: float) -> dict:
    """The reference writer (veryfast), this tree's at veryfast and at its default preset, alternating."""
    import pandas as pd

    from gazelib.viz import overlay
    from gazelib.serve.predict import OVERLAY_PRESET

    ref = ref_overlay_module(tree)
    heat, df = np.load(pred_dir / "heatmaps.npz"), pd.read_parquet(pred_dir / "predictions.parquet")
    kw = dict(video_path=video, t=heat["t"], prob=heat["prob"].astype(np.float32), p_in=heat["p_in"],
              point=df[["x", "y"]].to_numpy(np.float64), label="bench")
    writers = {"before: reference writer, veryfast": (ref.render_overlay, "veryfast"),
               "after: this writer, veryfast": (overlay.render_overlay, "veryfast"),
               f"after: this writer, {OVERLAY_PRESET} (default)": (overlay.render_overlay, OVERLAY_PRESET)}
    times: dict[str, list] = {k: [] for k in writers}
    info: dict[str, dict] = {}
    work.mkdir(parents=True, exist_ok=True)
    for r in range(rounds):
        for i, (name, (fn, preset)) in enumerate(writers.items() if r % 2 == 0 else reversed(writers.items())):
            path = work / f"overlay_{r}_{i}.mp4"
            t0 = time.perf_counter()
            res = fn(out_path=path, preset=preset, **kw)
            times[name].append(time.perf_counter() - t0)
            info[name] = {"bytes": path.stat().st_size, "frames": res.n_frames,
                          **({"parts_s": getattr(res, "parts")} if getattr(res, "parts", None) else {})}
            path.unlink()
    out = {}
    for name, ts in times.items():
        med = float(np.median(ts))
        out[name] = {"seconds": [round(x, 2) for x in ts], "median_s": round(med, 2),
                     "x_realtime": round(seconds / med, 2), **info[name]}
    names = list(writers)
    out["ratio_before_over_after_same_preset"] = round(out[names[0]]["median_s"] / out[names[1]]["median_s"], 2)
    out["ratio_before_over_after_default"] = round(out[names[0]]["median_s"] / out[names[2]]["median_s"], 2)
    out["rounds"] = rounds
    return out


def main() -> None:
    import torch

    from bench.bench_identity import export_tree
    from gazelib.model.bundle import load_bundle

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/content_only", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=OUT / "predict")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--ref", default=REF, help=f"git revision to compare with (default {REF}); 'none' skips it")
    ap.add_argument("--overlay-rounds", type=int, default=2)
    ap.add_argument("--real-clips", type=Path, default=REAL_CLIPS)
    ap.add_argument("--changed-by", default="", help="a stated change of numbers since --ref (CHANGELOG): tables "
                    "that differ are listed in the report instead of failing the bench")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    video = make_speech_video(OUT / f"speech_{int(args.seconds)}s_1280x720.mp4", seconds=args.seconds)
    make_s = time.perf_counter() - t0
    model = model_folder(args.model, args.work)
    bundle = load_bundle(model)
    here = Path(".")
    ref_tree = None
    if args.ref != "none":
        ref_tree = args.work / f"ref_{args.ref}"
        if ref_tree.exists():
            shutil.rmtree(ref_tree)
        export_tree(args.ref, ref_tree)

    e2e: dict = {}
    if ref_tree is not None:
        before = run_tree(ref_tree, inputs=[video], model=model, outs=[args.work / "run_ref"], threads=args.threads)
        e2e["before"] = {**summary(before["runs"][0]), "process_s": round(before["process_s"], 2)}
    after = run_tree(here, inputs=[video], model=model, outs=[args.work / "run"], threads=args.threads)
    run = after["runs"][0]
    e2e["after"] = {**summary(run), "process_s": round(after["process_s"], 2)}
    identical = None
    if ref_tree is not None:
        identical = same_tables(args.work / "run", args.work / "run_ref")
        e2e["ratio_wall_before_over_after"] = round(e2e["before"]["wall_s"] / e2e["after"]["wall_s"], 2)
        e2e["tables_identical_to_before"] = all(identical.values())
    overlays = (compare_overlays(tree=ref_tree, video=video, pred_dir=args.work / "run" / video.stem,
                                 work=args.work / "overlays", rounds=args.overlay_rounds, seconds=run["media_s"])
                if ref_tree is not None and args.overlay_rounds > 0 else None)

    real = None
    clips = sorted(p for p in args.real_clips.glob("*") if p.is_file()) if args.real_clips.is_dir() else []
    if clips:
        real = {"clips": [str(p) for p in clips]}
        if ref_tree is not None:
            rr = run_tree(ref_tree, inputs=clips, model=model, outs=[args.work / "real_ref"], threads=args.threads)
            real["before"] = summary(rr["runs"][0])
        rc = run_tree(here, inputs=clips, model=model, outs=[args.work / "real_cold", args.work / "real_warm"],
                      threads=args.threads)
        real.update({"after": summary(rc["runs"][0]),
                     "after, warm (models kept from the run before in the process)": summary(rc["runs"][1])})
        if ref_tree is not None:
            same = same_tables(args.work / "real_cold", args.work / "real_ref")
            identical = {**(identical or {}), **same}
            real["ratio_wall_before_over_after"] = round(real["before"]["wall_s"] / real["after"]["wall_s"], 2)
            real["tables_identical_to_before"] = all(same.values())
    else:
        print(f"no real clips in {args.real_clips}: skipped", file=sys.stderr)

    lat = latency(bundle=bundle, aligned=args.work / "run" / "_features" / "aligned" / f"{video.stem}.npz",
                  threads=args.threads, work=args.work / "onnx", repeat=30)
    report = {
        "video": {"path": str(video), "seconds": run["media_s"], "size": "1280x720", "fps": 25,
                  "made_in_s": round(make_s, 1)},
        "model": {"folder": str(args.model), "variant": bundle.variant, "modalities": bundle.modalities,
                  "seed": run["seed"], "features_lookahead": bundle.feature_params.get("features", {}).get("lookahead")},
        "machine": {"cpu_threads_torch": torch.get_num_threads(), "cores": os.cpu_count(),
                    "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "reference": args.ref,
        **({"tables_changed_by": args.changed_by,
            "tables_differing": [k for k, v in (identical or {}).items() if not v]} if args.changed_by else {}),
        "end_to_end": e2e,
        "overlay_writers": overlays,
        "real_clips": real,
        "latency": lat,
    }
    (OUT / "predict.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if identical is not None and not all(identical.values()) and not args.changed_by:
        raise SystemExit(f"predicted tables differ from {args.ref}'s: {[k for k, v in identical.items() if not v]}")


if __name__ == "__main__":
    main()
