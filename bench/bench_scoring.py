"""The scoring stages (evaluate, horizons): their scoring jobs in ``evaluate.workers`` processes vs one.

Runs ``evaluate@<variant>`` and ``horizons`` on the finished pipeline in this folder (``dvc repro``
first) twice each in one run, alternating: with ``evaluate.workers`` 1 and with ``--workers`` (default
2), each in a scratch copy of ``reports/`` (``data/`` and ``models/`` linked, read only). Prints the
wall times, their ratio and whether every output file is the same bytes in both (it must be).

    python -m bench.bench_scoring [--variant multimodal] [--workers 2] [--repeat 1]
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path


def _scratch(work: Path, name: str) -> Path:
    root = work / name
    root.mkdir()
    for d in ("data", "models", "metrics"):
        if Path(d).exists():
            (root / d).symlink_to(Path(d).resolve())
    shutil.copytree("reports", root / "reports")
    return root


def _digests(root: Path) -> dict[str, str]:
    files = [f for d in ("reports/eval", "reports/metrics", "reports/calibration", "reports/curves")
             for f in sorted((root / d).rglob("*")) if f.is_file()]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def run(*, variant: str, workers: int, repeat: int = 1) -> dict:
    import gazelib  # noqa: F401  (pins the CPU path first)
    from gazelib.eval.evaluate import run_evaluate, run_score_floors
    from gazelib.eval.horizons import run_horizons
    from gazelib.core.params import load_params, setup_logging

    setup_logging("WARNING")
    base = load_params()
    work = Path(tempfile.mkdtemp(prefix="gazelib_bench_scoring_"))
    times: dict[str, dict[str, list]] = {"evaluate": {}, "horizons": {}}
    digests = {}
    try:
        for r in range(repeat):
            for w in ([1, workers] if r % 2 == 0 else [workers, 1]):
                params = copy.deepcopy(base)
                params["evaluate"]["workers"] = w
                root = _scratch(work, f"r{r}w{w}")
                t0 = time.perf_counter()
                run_score_floors(params=params, root=root)   # the floors' rows, once for every variant
                run_evaluate(params=params, variant=variant, root=root)
                t1 = time.perf_counter()
                run_horizons(params=params, root=root)
                t2 = time.perf_counter()
                times["evaluate"].setdefault(str(w), []).append(round(t1 - t0, 1))
                times["horizons"].setdefault(str(w), []).append(round(t2 - t1, 1))
                digests[w] = _digests(root)
                shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {s: {w: min(v) for w, v in t.items()} for s, t in times.items()}
    return {"variant": variant, "workers": workers, "rounds_s": times, "best_s": best,
            "speedup": {s: round(b["1"] / b[str(workers)], 2) for s, b in best.items()},
            "files_compared": len(digests[1]), "same_bytes": digests[1] == digests[workers]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="multimodal")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps(run(variant=args.variant, workers=args.workers, repeat=args.repeat), indent=2))


if __name__ == "__main__":
    main()
