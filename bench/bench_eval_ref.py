"""Before / after on the finished demo: ``evaluate@<variant>`` (and ``horizons`` with ``--horizons``) run by
the code of a reference git revision and by this working tree, alternating, each run in a fresh process (its wall time, and the CPU seconds of it and its scoring workers: on a
shared machine the wall time follows the other load)
in a scratch root (``reports/`` copied, ``data/``, ``models/``, ``metrics/`` linked read only, as
:mod:`bench.bench_scoring`), with the stage's outputs removed first so every one is written again.
Every file under ``reports/`` (``reports/timing`` aside) is hashed (the pipeline's ``reports/`` is copied once, so
only what the stage writes can differ); the check fails on any difference
between the two codes (issue 24: a speed change leaves every byte as it was).

    python -m bench.bench_eval_ref [--ref HEAD] [--variants multimodal baseline] [--repeat 1] [--horizons]

Needs a finished pipeline (``dvc repro``): this folder, or ``--pipeline DIR``, never written to. JSON to stdout.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

_DRIVER = r"""
import os, sys, time
from pathlib import Path


def main(code: str, stage: str, variant: str) -> None:
    os.environ["PYTHONPATH"] = code   # the spawned scoring workers import the same code
    import gazelib
    assert gazelib.__file__.startswith(code), gazelib.__file__
    from gazelib.core.params import load_params, setup_logging
    setup_logging("WARNING")
    params = load_params(Path(code) / "params.yaml")
    t0 = time.perf_counter()
    if stage == "evaluate":
        from gazelib.eval.evaluate import run_evaluate
        run_evaluate(params=params, variant=variant, root=Path("."))
    else:
        from gazelib.eval.horizons import run_horizons
        run_horizons(params=params, root=Path("."))
    print("WALL", time.perf_counter() - t0, flush=True)


if __name__ == "__main__":   # the workers are spawned: they import this file
    sys.path.insert(0, sys.argv[1])
    main(*sys.argv[1:4])
"""


def _outputs(stage: str, variant: str) -> list[str]:
    """What the stage writes (removed before it runs, so a file it failed to write cannot pass)."""
    if stage == "horizons":
        return ["reports/metrics/horizons.json", "reports/horizons.md", "reports/horizons.png", "reports/curves/horizons"]
    return [f"reports/eval/{variant}", f"reports/metrics/eval/{variant}.json", f"reports/calibration/{variant}.md",
            f"reports/calibration/{variant}.png", f"reports/curves/calibration/{variant}.csv",
            f"reports/bias/{variant}.png", f"reports/viz/{variant}"]


def _scratch(work: Path, name: str, remove: list[str], pipeline: Path) -> Path:
    root = work / name
    root.mkdir()
    for d in ("data", "models", "metrics"):
        if (pipeline / d).exists():
            (root / d).symlink_to((pipeline / d).resolve())
    shutil.copytree(pipeline / "reports", root / "reports")
    for rel in remove:
        p = root / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    return root


def _digests(root: Path) -> dict[str, str]:
    files = [f for f in sorted((root / "reports").rglob("*")) if f.is_file() and "timing" not in f.parts]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _export(ref: str, dest: Path) -> Path:
    """The reference revision's gazelib and params.yaml (``git archive``)."""
    dest.mkdir()
    tar = dest / "ref.tar"
    subprocess.run(["git", "archive", "-o", str(tar), ref, "gazelib", "params.yaml"], check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    return dest


def run(*, ref: str, variants: list[str], repeat: int, horizons: bool, pipeline: Path = Path(".")) -> dict:
    work = Path(tempfile.mkdtemp(prefix="gazelib_bench_eval_ref_"))
    # one snapshot of the pipeline's reports for every run: a pipeline that another process is working in may
    # change under the bench, and a file the stage does not write must not differ between runs
    shutil.copytree(pipeline / "reports", work / "snapshot" / "reports")
    for d in ("data", "models", "metrics"):
        if (pipeline / d).exists():
            (work / "snapshot" / d).symlink_to((pipeline / d).resolve())
    pipeline = work / "snapshot"
    codes = {"ref": str(_export(ref, work / "code_ref")), "tree": str(Path.cwd())}
    driver = work / "driver.py"
    driver.write_text(_DRIVER)
    runs = [("evaluate", v) for v in variants] + ([("horizons", "")] if horizons else [])
    times: dict[str, dict[str, list]] = {}
    cpu_times: dict[str, dict[str, list]] = {}
    same: dict[str, bool] = {}
    n_files: dict[str, int] = {}
    try:
        for r in range(repeat):
            for stage, variant in runs:
                key = f"{stage}@{variant}" if variant else stage
                digests = {}
                for who in (("ref", "tree") if r % 2 == 0 else ("tree", "ref")):
                    root = _scratch(work, f"{key}-{who}-{r}", _outputs(stage, variant), pipeline)
                    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    out = subprocess.run([sys.executable, str(driver), codes[who], stage, variant or "-"], cwd=root,
                                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": codes[who]})
                    if out.returncode:
                        raise RuntimeError(f"{key} with {who}'s code failed:\n{out.stderr[-3000:]}")
                    wall = float(next(x.split()[1] for x in out.stdout.splitlines() if x.startswith("WALL")))
                    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)   # the driver and its joined workers
                    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                    times.setdefault(key, {}).setdefault(who, []).append(round(wall, 1))
                    cpu_times.setdefault(key, {}).setdefault(who, []).append(round(cpu, 1))
                    digests[who] = _digests(root)
                    missing = [p for p in _outputs(stage, variant) if not (root / p).exists()]
                    if missing:
                        raise RuntimeError(f"{key} with {who}'s code did not write {missing}")
                    shutil.rmtree(root)
                same[key] = same.get(key, True) and digests["ref"] == digests["tree"]
                n_files[key] = len(digests["tree"])
                if digests["ref"] != digests["tree"]:
                    diff = sorted(k for k in digests["ref"].keys() | digests["tree"].keys()
                                  if digests["ref"].get(k) != digests["tree"].get(k))
                    print(f"{key}: differing files: {diff}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {k: {w: min(v) for w, v in t.items()} for k, t in times.items()}
    return {"ref": ref, "rounds_s": times, "cpu_s": cpu_times, "best_s": best,
            "ratio_ref_over_tree": {k: round(b["ref"] / b["tree"], 2) for k, b in best.items()},
            "files_compared": n_files, "same_bytes": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="HEAD", help="git revision whose code is the reference")
    ap.add_argument("--variants", nargs="+", default=["multimodal", "baseline"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--horizons", action="store_true", help="also run the horizons stage")
    ap.add_argument("--pipeline", type=Path, default=Path("."),
                    help="folder of the finished pipeline (its reports/ is copied; data/, models/, metrics/ linked)")
    args = ap.parse_args()
    res = run(ref=args.ref, variants=args.variants, repeat=args.repeat, horizons=args.horizons,
              pipeline=args.pipeline)
    print(json.dumps(res, indent=2))
    sys.exit(0 if all(res["same_bytes"].values()) else 1)


if __name__ == "__main__":
    main()
