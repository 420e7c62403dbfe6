"""Training speed.

Default: time per variant and seed, windows per second, read from what the train stage wrote
(`reports/metrics/train/<v>.json`, `reports/timing/train_<v>.json`; run `dvc repro` first), plus the sum
against the 10-minute demo budget.

``--live``: train one variant now on the aligned data in ``data/aligned`` (`dvc repro align floors`
first) for ``--epochs`` epochs of ``--seeds``, in a scratch folder, once per configuration in the
same run (so the ratios hold on a busy machine): the seeds one after another with
``train.num_threads`` threads (the default), side by side in processes with the same threads
(``train.seed_workers``: must give the same bytes), and side by side with 1 thread each (other
float sums: other bytes). Prints wall time, windows/s, the ratio to the default, whether the
checkpoints equal the default's byte for byte, and the best validation losses. ``--repeat N`` rounds
in alternating order; the fastest round of each configuration counts.

``--paths``: the training path of 0.3.0 (the last gaze's map in the cell keys, single-window batches:
``model.track_in_keys: true``, ``train.viewer_group: 1``) against today's (content-only keys computed
once per window, a window's viewers batched together; docs/model.md), for each of ``--variants``,
one seed at a time with one thread, rounds alternating: windows/s of each and their ratio. The two
train different models (other numbers, by design): the validation losses are printed beside.

    python -m bench.bench_train [--live [--variant multimodal] [--epochs 1] [--seeds 0 1] [--repeat 2]]
    python -m bench.bench_train --paths [--variants baseline multimodal content_only] [--epochs 1] [--seeds 0]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml


def from_stage_outputs() -> dict:
    variants = yaml.safe_load(Path("params.yaml").read_text())["variants"]
    rows = {}
    for v in variants:
        m = json.loads(Path(f"reports/metrics/train/{v}.json").read_text())
        timing = json.loads(Path(f"reports/timing/train_{v}.json").read_text())
        rows[v] = {"wall_s": round(timing["wall_s"], 1),
                   "seeds": [{"seed": s["seed"], "epochs_run": s["epochs_run"], "train_windows": s["train_windows"],
                              **{k: round(v, 1) for k, v in timing["seeds"][name].items()}}
                             for name, s in m["seeds"].items()],
                   "n_params": next(iter(m["seeds"].values()))["n_params"],
                   "device": next(iter(m["seeds"].values()))["device"]}
    total = sum(r["wall_s"] for r in rows.values())
    return {"variants": rows, "total_train_s": round(total, 1), "target_s": 600}


def live(*, variant: str, epochs: int, seeds: list[int], repeat: int = 1) -> dict:
    import gazelib  # noqa: F401  (pins the CPU path first)
    from gazelib.core.params import load_params, setup_logging
    from gazelib.model.train import run_train

    setup_logging("WARNING")
    base = load_params()
    threads = int(base["train"]["num_threads"])
    configs = {"serial": (1, threads), "seed_workers": (len(seeds), threads), "seed_workers_1_thread": (len(seeds), 1)}
    work = Path(tempfile.mkdtemp(prefix="gazelib_bench_train_"))
    (work / "data").symlink_to(Path("data").resolve())
    if Path("models/floors").is_dir():
        shutil.copytree("models/floors", work / "models" / "floors")
    rows: dict = {}
    # rounds in alternating order (A B C, C B A, ...): a load that changes during the run does not
    # favour the configuration that happens to run last; the fastest round of each is kept
    order = [list(configs) if r % 2 == 0 else list(configs)[::-1] for r in range(repeat)]
    try:
        for name in (n for round_ in order for n in round_):
            workers, n_threads = configs[name]
            params = load_params()
            params["train"].update({"seeds": seeds, "seed_workers": workers, "num_threads": n_threads})
            shutil.rmtree(work / "models" / variant, ignore_errors=True)
            t0 = time.perf_counter()
            summary = run_train(params=params, variant=variant, root=work, max_epochs=epochs)
            wall = time.perf_counter() - t0
            windows = sum(s["train_windows"] * s["epochs_run"] for s in summary["seeds"].values())
            rounds = rows.get(name, {}).get("rounds_s", []) + [round(wall, 1)]
            wall = min(wall, *(rows[name]["rounds_s"] if name in rows else [wall]))
            rows[name] = {"seed_workers": workers, "num_threads": n_threads, "wall_s": round(wall, 1),
                          "rounds_s": rounds, "windows_per_s": round(windows / wall, 1),
                          "best_val_loss": {k: s["best_val_loss"] for k, s in summary["seeds"].items()},
                          "checkpoints": {f"seed{s}": hashlib.sha256((work / "models" / variant / f"seed{s}" / "best.pt")
                                                                     .read_bytes()).hexdigest()[:16] for s in seeds}}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ref = rows["serial"]
    for row in rows.values():
        row["speedup_vs_serial"] = round(ref["wall_s"] / row["wall_s"], 2)
        row["same_bytes_as_serial"] = row["checkpoints"] == ref["checkpoints"]
    return {"variant": variant, "epochs": epochs, "seeds": seeds, "rounds": order, "configs": rows}


PATHS = {"0.3.0: keys per viewer": {"model": {"track_in_keys": True}, "train": {"viewer_group": 1}},
         "0.4.0: keys per window": {"model": {}, "train": {}}}


def model_paths(*, variants: list[str], epochs: int, seeds: list[int], repeat: int = 2) -> dict:
    import gazelib  # noqa: F401  (pins the CPU path first)
    from gazelib.core.params import load_params, setup_logging
    from gazelib.model.train import run_train

    setup_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="gazelib_bench_paths_"))
    (work / "data").symlink_to(Path("data").resolve())
    if Path("models/floors").is_dir():
        shutil.copytree("models/floors", work / "models" / "floors")
    out: dict = {}
    try:
        for variant in variants:
            rows: dict = {}
            for r in range(repeat):
                for name in (list(PATHS) if r % 2 == 0 else list(PATHS)[::-1]):
                    params = load_params()
                    params["train"].update({"seeds": seeds, "seed_workers": 1, "num_threads": 1, **PATHS[name]["train"]})
                    params["model"].update(PATHS[name]["model"])
                    shutil.rmtree(work / "models" / variant, ignore_errors=True)
                    t0 = time.perf_counter()
                    summary = run_train(params=params, variant=variant, root=work, max_epochs=epochs)
                    wall = time.perf_counter() - t0
                    windows = sum(s["train_windows"] * s["epochs_run"] for s in summary["seeds"].values())
                    row = rows.setdefault(name, {"rounds_s": [], "wall_s": float("inf")})
                    row["rounds_s"].append(round(wall, 1))
                    if wall < row["wall_s"]:
                        row.update(wall_s=round(wall, 1), windows_per_s=round(windows / wall, 1),
                                   best_val_loss={k: round(s["best_val_loss"], 4) for k, s in summary["seeds"].items()})
            old, new = (rows[n] for n in PATHS)
            out[variant] = {"paths": rows, "speedup": round(old["wall_s"] / new["wall_s"], 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"epochs": epochs, "seeds": seeds, "repeat": repeat, "variants": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live", action="store_true")
    ap.add_argument("--variant", default="multimodal")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the configurations, order alternating")
    ap.add_argument("--paths", action="store_true")
    ap.add_argument("--variants", nargs="+", default=["baseline", "multimodal", "content_only"])
    args = ap.parse_args()
    if args.paths:
        print(json.dumps(model_paths(variants=args.variants, epochs=args.epochs, seeds=args.seeds[:1],
                                     repeat=args.repeat), indent=2))
        return
    report = (live(variant=args.variant, epochs=args.epochs, seeds=args.seeds, repeat=args.repeat) if args.live
              else from_stage_outputs())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
