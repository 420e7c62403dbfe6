"""Processes for the per-video stages, before / after in one run: the demo generator (videos in
forked vs spawned processes) and extract_text / extract_visual / extract_audio with several
(``compute.workers``, threads) pairs, rounds in alternating order, on this checkout's demo corpus
(``dvc repro ingest`` first). Each configuration writes into its own scratch root; the outputs are
compared file by file: equal bytes, or (Parquet) equal data with only the recorded speed-only
params differing (``gazelib.core.params.RUNTIME_KEYS``, which the bundle record leaves out).

    python -m bench.bench_workers [--stages demo text visual audio] [--repeat 2]

JSON to stdout and bench/out/workers.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

OUT = Path("bench/out")
# stage -> {configuration: params overrides}; the first is the reference
CONFIGS = {
    "text": {"1 worker x 2 ASR threads": {"compute": {"workers": 1}, "text": {"asr_threads": 2}},
             "2 workers x 1 ASR thread": {"compute": {"workers": 2}, "text": {"asr_threads": 1}}},
    "visual": {"1 worker": {"compute": {"workers": 1}}, "2 workers": {"compute": {"workers": 2}}},
    "audio": {"1 worker": {"compute": {"workers": 1}}, "2 workers": {"compute": {"workers": 2}}},
    "demo": {"spawn": {}, "fork": {}},
}


def _root(base: Path, name: str) -> Path:
    root = base / name.replace(" ", "_")
    shutil.rmtree(root, ignore_errors=True)
    (root / "data" / "interim").mkdir(parents=True)
    (root / "data" / "raw").mkdir(parents=True)
    os.symlink(Path("data/raw/demo").resolve(), root / "data" / "raw" / "demo")
    shutil.copy("data/interim/manifest.parquet", root / "data" / "interim" / "manifest.parquet")
    return root


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*"))
            if p.is_file() and "_cache" not in p.parts and p.name != "_report.json"}


def _same(a: Path, b: Path) -> str:
    """'bytes', 'data' (a Parquet file whose table and metadata agree but for the recorded params),
    or 'differs'."""
    if a.read_bytes() == b.read_bytes():
        return "bytes"
    if a.suffix != ".parquet":
        return "differs"
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    if not ta.equals(tb):
        return "differs"
    ma, mb = (json.loads(t.schema.metadata[b"gazelib"]) for t in (ta, tb))
    ma.pop("params", None)
    mb.pop("params", None)
    return "data" if ma == mb else "differs"


def run_stage(stage: str, base: Path, repeat: int) -> dict:
    import gazelib  # noqa: F401  (pins the CPU path first)
    from gazelib.core.params import load_params

    configs = CONFIGS[stage]
    rows: dict = {name: {"rounds_s": []} for name in configs}
    outs: dict[str, Path] = {}
    for r in range(repeat):
        for name in (list(configs) if r % 2 == 0 else list(configs)[::-1]):
            params = load_params()
            for section, over in configs[name].items():
                params[section].update(over)
            root = _root(base, f"{stage}_{name}")
            t0 = time.perf_counter()
            if stage == "demo":
                from gazelib.demo.corpus import generate_corpus

                outs[name] = root / "demo"
                generate_corpus(out_dir=outs[name], cfg=params["demo"], start_method=name)
            else:
                import importlib

                mod = importlib.import_module(f"gazelib.features.{stage}")
                getattr(mod, f"run_extract_{stage}")(params=params, root=root)
                outs[name] = root / "data" / "features" / stage
            rows[name]["rounds_s"].append(round(time.perf_counter() - t0, 1))
    ref_name = next(iter(configs))
    ref = _files(outs[ref_name])
    for name, row in rows.items():
        row["best_s"] = min(row["rounds_s"])
        row["speedup_vs_first"] = round(rows[ref_name]["best_s"] / row["best_s"], 2) if name != ref_name else 1.0
        got = _files(outs[name])
        verdicts = [_same(ref[k], got[k]) if k in got else "missing" for k in ref]
        row["files"] = len(ref)
        row["same_bytes"] = verdicts.count("bytes")
        row["same_data_other_runtime_params"] = verdicts.count("data")
        row["differ"] = len(verdicts) - row["same_bytes"] - row["same_data_other_runtime_params"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", nargs="+", default=["demo", "text", "visual", "audio"], choices=list(CONFIGS))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gazelib_bench_workers_"))
    try:
        report = {stage: run_stage(stage, base, args.repeat) for stage in args.stages}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "workers.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    bad = {s: n for s, rows in report.items() for n, r in rows.items() if r["differ"]}
    if bad:
        raise SystemExit(f"outputs differ: {bad}")


if __name__ == "__main__":
    main()
