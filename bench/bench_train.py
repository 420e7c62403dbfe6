"""Training time per variant and seed, windows per second, read from what the train stage
wrote (`reports/metrics/train/<v>.json`, `reports/timing/train_<v>.json`; run `dvc repro` first), plus
the sum against the 10-minute demo budget.

    python -m bench.bench_train
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml


def main() -> None:
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
    print(json.dumps({"variants": rows, "total_train_s": round(total, 1), "target_s": 600}, indent=2))


if __name__ == "__main__":
    main()
