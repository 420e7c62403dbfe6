"""Training time per variant and samples per second, read from the metrics the train stage
wrote (run `dvc repro` first), plus their sum against the 10-minute target.

    python bench/bench_train.py
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
        rows[v] = {k: m[k] for k in ("wall_s", "samples_per_s", "epochs_run", "train_windows", "n_params", "device")}
    total = sum(r["wall_s"] for r in rows.values())
    print(json.dumps({"variants": rows, "total_train_s": round(total, 1), "target_s": 600}, indent=2))


if __name__ == "__main__":
    main()
