"""One small run of the pipeline's CPU-heavy steps, for tests/test_cpu_paths.py and
docs/reproducibility.md: demo -> ingest -> extract audio, text, visual -> align -> a short training.

    python tests/cpu_paths_run.py OUT_DIR [--epochs N] [--corpus-from RUN_DIR]

Run it in a fresh process with ``GAZELIB_CPU_ISA`` / ``GAZELIB_CPU_HIDE_AVX512`` set as wanted (the
pin happens when gazelib is imported, before numpy and torch load). Prints one JSON line: the
sha256 of every file under OUT_DIR/data, models and metrics (minus timing fields), seconds per
step, and what each library runs (gazelib.core.cpu.describe).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import gazelib.core.cpu  # noqa: E402  (first: pins the CPU path before numpy / torch load)

# files whose bytes hold wall-clock times or per-run reports, not results
VOLATILE = ("reports/", "_report", "timing", ".cache", "cache.json", "records")


def tiny_params(epochs: int) -> dict:
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"].update(n_videos=3, duration_s=6.0, split_counts={"val": 1, "test": 1})
    params["train"].update(epochs=epochs, seeds=[0], patience=epochs)
    return params


def digests(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and not any(v in rel for v in VOLATILE):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--corpus-from", type=Path, default=None,
                    help="copy data/raw/demo from this earlier run instead of generating it (saves time)")
    ap.add_argument("--train-only", type=Path, default=None,
                    help="copy data/ from this earlier run and only train (the training kernels alone)")
    args = ap.parse_args()

    from gazelib.data.align import run_align
    from gazelib.demo.corpus import run_demo
    from gazelib.features.audio import run_extract_audio
    from gazelib.features.text import run_extract_text
    from gazelib.features.visual import run_extract_visual
    from gazelib.gaze.ingest import run_ingest
    from gazelib.model.train import run_train

    root = args.out
    root.mkdir(parents=True, exist_ok=True)
    params = tiny_params(args.epochs)
    def demo() -> None:
        if args.corpus_from is None:
            run_demo(params=params, root=root)
        else:
            shutil.copytree(args.corpus_from / "data/raw/demo", root / "data/raw/demo")

    steps = [("demo", demo),
             ("ingest", lambda: run_ingest(params=params, root=root)),
             ("extract_audio", lambda: run_extract_audio(params=params, root=root)),
             ("extract_text", lambda: run_extract_text(params=params, root=root)),
             ("extract_visual", lambda: run_extract_visual(params=params, root=root)),
             ("align", lambda: run_align(params=params, root=root)),
             ("train", lambda: run_train(params=params, variant="multimodal", root=root))]
    if args.train_only is not None:
        shutil.copytree(args.train_only / "data", root / "data")
        steps = steps[-1:]
    seconds = {}
    for name, fn in steps:
        t0 = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - t0, 3)
    files = {}
    for sub in ("data", "models"):
        files.update({f"{sub}/{k}": v for k, v in digests(root / sub).items()})
    print(json.dumps({"files": files, "seconds": seconds, "cpu": gazelib.core.cpu.describe()}))


if __name__ == "__main__":
    main()


def max_differences(a: Path, b: Path, files: list[str]) -> dict[str, dict[str, float]]:
    """For each file (relative path) that differs between runs ``a`` and ``b``: the largest absolute
    difference per numeric column / array, or what differs otherwise (row counts, words)."""
    import numpy as np
    import pandas as pd
    import torch

    def arrays(path: Path) -> dict:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            return {c: df[c].to_numpy() for c in df.columns}
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if path.suffix == ".pt":
            state = torch.load(path, weights_only=True, map_location="cpu")
            state = state.get("model", state) if isinstance(state, dict) else state
            return {k: v.numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}
        if path.suffix == ".json":
            flat = pd.json_normalize(json.loads(path.read_text()), sep=".")
            return {c: np.asarray(flat[c].iloc[0]) for c in flat.columns}
        return {}

    out = {}
    for rel in files:
        xa, xb = arrays(a / rel), arrays(b / rel)
        diffs = {}
        for key in sorted(set(xa) | set(xb)):
            u, v = xa.get(key), xb.get(key)
            if u is None or v is None or u.shape != v.shape:
                diffs[key] = f"shape {getattr(u, 'shape', None)} vs {getattr(v, 'shape', None)}"
            elif u.dtype.kind in "fiub" and v.dtype.kind in "fiub":
                d = float(np.nanmax(np.abs(u.astype(np.float64) - v.astype(np.float64)), initial=0.0))
                if d > 0 or not np.array_equal(np.isnan(u.astype(float)), np.isnan(v.astype(float))):
                    diffs[key] = d
            elif not np.array_equal(u.astype(str), v.astype(str)):
                diffs[key] = f"{int(np.sum(u.astype(str) != v.astype(str)))} values differ"
        out[rel] = diffs
    return out
