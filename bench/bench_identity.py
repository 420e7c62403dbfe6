"""Before / after in one run: the pipeline's stages on a tiny demo corpus, run by the code of a
reference git revision and by this working tree, each stage timed as DVC runs it (a fresh
``python stages/<stage>.py`` process) and every output hashed. A speed change must leave every
byte as it was (issue 24), so the check fails on any differing file.

1. The tiny corpus (``--videos`` demo videos of ``--seconds`` s) is generated once by this tree's
   demo generator and copied into two run folders.
2. Each run folder gets its own tree's ``params.yaml`` with the same overrides (the corpus size,
   ``train.epochs``, ``train.seeds``), so a param the reference does not know is not passed to it;
   ``--workers N`` / ``--seed-workers N`` run this tree's parallel paths (``compute.workers``,
   ``train.seed_workers``), which must not change a byte either.
3. The stages run in order, reference first then this tree, stage by stage (so both see the same
   machine load): ingest, extract_audio, extract_text, extract_visual, align, bias_inputs, validate,
   floors, train of ``--variants``, aoi, score_floors and evaluate of ``--variants`` (a stage the
   reference does not have is skipped there).
4. Files under ``data/`` (the corpus aside), ``models/`` and ``metrics/`` are hashed; wall-clock
   files (``reports/timing``) are not outputs and are not compared.

Run from the repo root:  python -m bench.bench_identity [--ref main] [--videos 3] [--seconds 8]
JSON goes to stdout and bench/out/identity.json; the exit status is 1 when any file differs.
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
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

OUT = Path("bench/out")
STAGES = ("ingest", "extract_audio", "extract_text", "extract_visual", "align", "bias_inputs", "validate", "floors")
HASHED = ("data", "models", "metrics", "reports/metrics", "reports/curves")
NOT_OUTPUTS = ("data/raw/",)
NOT_OUTPUT_PARTS = ("/_cache/",)   # per-video cache records: they hold the code hashes, which differ by design


def export_tree(ref: str, dest: Path) -> Path:
    """The files of git revision ``ref`` in ``dest`` (``git archive``: the repo's worktrees untouched)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], check=True, capture_output=True).stdout
    tar = dest.parent / f"{dest.name}.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    return dest


def run_params(tree: Path, *, videos: int, seconds: float, seeds: list[int], epochs: int) -> dict:
    params = copy.deepcopy(yaml.safe_load((tree / "params.yaml").read_text()))
    params["demo"].update({"n_videos": videos, "duration_s": seconds, "split_counts": {"val": 1, "test": 1}})
    params["train"].update({"epochs": epochs, "seeds": seeds})
    return params


def digest(root: Path) -> dict[str, str]:
    out = {}
    for top in HASHED:
        for p in sorted((root / top).rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not rel.startswith(NOT_OUTPUTS) and not any(s in rel for s in NOT_OUTPUT_PARTS):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_stage(tree: Path, root: Path, stage: str, variant: str | None) -> float:
    script = tree / "stages" / f"{stage}.py"
    if not script.exists():   # a reference older than the stage
        print(f"{stage}: no {script.relative_to(tree)} in {tree.name}, not run", file=sys.stderr)
        return 0.0
    cmd = [sys.executable, str(script)] + (["--variant", variant] if variant else [])
    env = {**os.environ, "PYTHONPATH": str(tree), "DVC_NO_ANALYTICS": "1"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{tree.name}: stage {stage} {variant or ''} failed:\n{res.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="main", help="git revision of the code to compare with (default main)")
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["baseline", "multimodal"])
    ap.add_argument("--workers", type=int, default=None, help="compute.workers for this tree's run")
    ap.add_argument("--seed-workers", type=int, default=None, help="train.seed_workers for this tree's run")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = ap.parse_args()

    import gazelib  # noqa: F401  (pins the CPU path before numpy loads)
    from gazelib.demo.corpus import generate_corpus

    here = Path.cwd()
    work = Path(tempfile.mkdtemp(prefix="gazelib_identity_")) if args.keep is None else args.keep
    rev = subprocess.run(["git", "rev-parse", "--short", args.ref], check=True, capture_output=True,
                         text=True).stdout.strip()
    trees = {"before": export_tree(args.ref, work / "tree_before"), "after": here}
    corpus = work / "corpus"
    generate_corpus(out_dir=corpus, cfg=run_params(here, videos=args.videos, seconds=args.seconds, seeds=args.seeds,
                                                  epochs=args.epochs)["demo"])
    roots = {}
    for name, tree in trees.items():
        root = roots[name] = work / f"run_{name}"
        shutil.copytree(corpus, root / "data" / "raw" / "demo")
        params = run_params(tree, videos=args.videos, seconds=args.seconds, seeds=args.seeds, epochs=args.epochs)
        if name == "after" and args.workers is not None:
            params["compute"]["workers"] = args.workers
        if name == "after" and args.seed_workers is not None:
            params["train"]["seed_workers"] = args.seed_workers
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # evaluate reads the AOI samples and the floors' rows (stages aoi and score_floors)
    steps = [(s, None) for s in STAGES] + [("train", v) for v in args.variants] + \
            [("aoi", None), ("score_floors", None)] + [("evaluate", v) for v in args.variants]
    times: dict[str, dict[str, float]] = {}
    for stage, variant in steps:
        key = stage + (f"@{variant}" if variant else "")
        times[key] = {name: round(run_stage(trees[name], roots[name], stage, variant), 2) for name in trees}
        print(f"{key}: {times[key]}", file=sys.stderr, flush=True)
    hashes = {name: digest(roots[name]) for name in trees}
    differ = sorted(k for k in set(hashes["before"]) | set(hashes["after"])
                    if hashes["before"].get(k) != hashes["after"].get(k))
    total = {name: round(sum(t[name] for t in times.values()), 2) for name in trees}
    report = {"ref": f"{args.ref} ({rev})", "corpus": {"videos": args.videos, "seconds": args.seconds},
              "after_workers": args.workers, "after_seed_workers": args.seed_workers,
              "seeds": args.seeds, "epochs": args.epochs, "variants": args.variants,
              "stage_wall_s": times, "total_wall_s": total,
              "speedup": {k: round(t["before"] / t["after"], 2) for k, t in times.items() if t["after"] > 0}
              | {"total": round(total["before"] / total["after"], 2)},
              "files_compared": len(hashes["after"]), "files_differing": differ,
              "identical": not differ and hashes["before"].keys() == hashes["after"].keys()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "identity.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    raise SystemExit(0 if report["identical"] else 1)


if __name__ == "__main__":
    main()
