"""Training time per variant and seed, windows per second, read from the metrics the train
stage wrote (run `dvc repro` first), plus the sum against the 10-minute demo budget.

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
        m = json.loads(Path(f"metrics/train/{v}.json").read_text())
        rows[v] = {"wall_s": round(m["wall_s"], 1),
                   "seeds": [{k: (round(s[k], 1) if isinstance(s[k], float) else s[k])
                              for k in ("seed", "wall_s", "samples_per_s", "epochs_run", "train_windows")}
                             for s in m["seeds"].values()],
                   "n_params": next(iter(m["seeds"].values()))["n_params"],
                   "device": next(iter(m["seeds"].values()))["device"]}
    total = sum(r["wall_s"] for r in rows.values())
    print(json.dumps({"variants": rows, "total_train_s": round(total, 1), "target_s": 600}, indent=2))


if __name__ == "__main__":
    main()
