"""Scale benchmark of the per-video stages: wall time of extract_audio / extract_text /
extract_visual with 1 and 2 workers, ``compute.backend`` local vs ray, scaling efficiency
(t1 / (2 * t2)) and the peak memory of each worker; the outputs of every configuration are
checked byte for byte against local with 1 worker.

Run from the repo root:  python -m bench.bench_scale            (48 synthetic videos of 5 s)
                         python -m bench.bench_scale --n-videos 8   (a quick check)

The corpus (gazelib.demo, kept in bench/out/scale/ for reruns with the same settings) is
ingested once per configuration; each stage of each configuration runs in a fresh process, as a
DVC stage does, and its wall time includes everything the stage does: loading models in every
worker, and for ray starting (and stopping) the local Ray cluster. Writes bench/out/scale.json.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

OUT = Path("bench/out")
STAGES = ("extract_audio", "extract_text", "extract_visual")
RUNS = {"extract_audio": ("gazelib.features.audio", "run_extract_audio"),
        "extract_text": ("gazelib.features.text", "run_extract_text"),
        "extract_visual": ("gazelib.features.visual", "run_extract_visual")}


def bench_params(n_videos: int, duration_s: float) -> dict:
    p = yaml.safe_load(Path("params.yaml").read_text())
    p["demo"].update({"n_videos": n_videos, "duration_s": duration_s,
                      "split_counts": {"val": max(1, n_videos // 6), "test": max(1, n_videos // 6)}})
    p["data"].update({"corpus": "data/raw/demo", "on_error": "skip"})
    return p


def make_corpus(base: Path, params: dict) -> Path:
    """The synthetic corpus, regenerated only when the demo settings change."""
    from gazelib.demo.corpus import generate_corpus

    corpus, stamp = base / "corpus", base / "corpus.json"
    want = json.dumps(params["demo"], sort_keys=True)
    if not (corpus.exists() and stamp.exists() and stamp.read_text() == want):
        shutil.rmtree(corpus, ignore_errors=True)
        t0 = time.perf_counter()
        generate_corpus(out_dir=corpus, cfg=params["demo"])
        print(f"corpus: {params['demo']['n_videos']} videos of {params['demo']['duration_s']} s "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
        stamp.write_text(want)
    return corpus


def run_child(spec: dict) -> None:
    """One stage of one configuration, in this (fresh) process; prints a JSON line."""
    import importlib

    from gazelib.core.params import setup_logging

    setup_logging("WARNING")
    params, root = spec["params"], Path(spec["root"])
    module, fn = RUNS[spec["stage"]]
    run = getattr(importlib.import_module(module), fn)
    t0 = time.perf_counter()
    res = run(params=params, root=root)
    wall = time.perf_counter() - t0
    print("RESULT " + json.dumps({"wall_s": wall, "computed": len(res["computed"]), "failed": res["failed"],
                                  "workers": res["workers"]}), flush=True)


def stage_in_child(*, stage: str, params: dict, root: Path) -> dict:
    spec = json.dumps({"stage": stage, "params": params, "root": str(root)})
    proc = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--child", spec], capture_output=True,
                          text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"{stage} failed (exit {proc.returncode})")
    return json.loads(line[len("RESULT "):])


def digest(root: Path) -> dict[str, str]:
    files = [f for f in sorted((root / "data/features").rglob("*")) if f.is_file()]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def run_config(*, base: Path, corpus: Path, params: dict, backend: str, workers: int) -> dict:
    from gazelib.gaze.ingest import run_ingest

    name = f"{backend}_{workers}"
    root = base / "runs" / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "data/raw").mkdir(parents=True)
    (root / "data/raw/demo").symlink_to(corpus.resolve(), target_is_directory=True)
    p = copy.deepcopy(params)
    p["compute"] = {"backend": backend, "workers": workers, "ray": {"address": "local"}}
    run_ingest(params=p, root=root)
    stages = {}
    for stage in STAGES:
        r = stage_in_child(stage=stage, params=p, root=root)
        stages[stage] = {"wall_s": round(r["wall_s"], 2), "computed": r["computed"], "failed": len(r["failed"]),
                         "workers": len(r["workers"]),
                         "peak_rss_mb_per_worker": [round(w["peak_rss_mb"], 1) for w in r["workers"]],
                         "videos_per_worker": [w["videos"] for w in r["workers"]]}
        print(f"  {name:8s} {stage:15s} {r['wall_s']:7.1f} s  workers {len(r['workers'])}  peak RSS/worker "
              f"{max((w['peak_rss_mb'] for w in r['workers']), default=0):.0f} MB", flush=True)
    return {"backend": backend, "workers": workers, "stages": stages,
            "total_s": round(sum(s["wall_s"] for s in stages.values()), 2), "root": root}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-videos", type=int, default=48)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per synthetic video")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child(json.loads(args.child))
    from tabulate import tabulate

    t_start = time.perf_counter()
    base = OUT / "scale"
    base.mkdir(parents=True, exist_ok=True)
    params = bench_params(args.n_videos, args.duration)
    corpus = make_corpus(base, params)
    configs = [(b, w) for b in args.backends for w in sorted(args.workers)]
    results = []
    for backend, workers in configs:
        results.append(run_config(base=base, corpus=corpus, params=params, backend=backend, workers=workers))

    ref = digest(results[0]["root"])
    for r in results:
        d = digest(r["root"])
        r["identical_to"] = f"{results[0]['backend']}_{results[0]['workers']}"
        r["identical"] = d == ref
        r["differing_files"] = sorted(k for k in d.keys() | ref.keys() if d.get(k) != ref.get(k))[:10]
        r["root"] = str(r["root"])

    rows, scaling = [], {}
    by = {(r["backend"], r["workers"]): r for r in results}
    for r in results:
        for stage in (*STAGES, "total"):
            t = r["total_s"] if stage == "total" else r["stages"][stage]["wall_s"]
            t1 = by.get((r["backend"], 1))
            eff = None
            if t1 is not None and r["workers"] > 1:
                base_t = t1["total_s"] if stage == "total" else t1["stages"][stage]["wall_s"]
                eff = base_t / (r["workers"] * t)
                scaling[f"{r['backend']}:{stage}:{r['workers']}"] = round(eff, 3)
            rss = "" if stage == "total" else max(r["stages"][stage]["peak_rss_mb_per_worker"], default=0)
            rows.append([r["backend"], r["workers"], stage, f"{t:.1f}",
                         "" if eff is None else f"{eff:.2f}", rss,
                         "" if stage != "total" else ("yes" if r["identical"] else "NO")])
    print()
    print(tabulate(rows, headers=["backend", "workers", "stage", "wall s", "efficiency t1/(n*tn)",
                                  "peak RSS/worker MB", "bytes = local/1"]))
    out = {"n_videos": args.n_videos, "duration_s": args.duration, "cpu_count": os.cpu_count(),
           "results": results, "scaling_efficiency": scaling,
           "all_identical": all(r["identical"] for r in results),
           "bench_wall_s": round(time.perf_counter() - t_start, 1)}
    (OUT / "scale.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nall outputs identical to local/1: {out['all_identical']}; wrote {OUT / 'scale.json'} "
          f"({out['bench_wall_s']:.0f} s)")
    if not out["all_identical"]:
        raise SystemExit("outputs differ between backends")


if __name__ == "__main__":
    main()
