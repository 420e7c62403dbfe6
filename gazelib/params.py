"""params.yaml loading and logging set-up shared by the stage scripts."""
from __future__ import annotations

import logging
from pathlib import Path

import yaml


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file {path} not found (run from the repo root)")
    return yaml.safe_load(path.read_text())


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def check_benchmark_params(cfg, where: str = "params.yaml evaluate.benchmark") -> dict:
    """Validate ``evaluate.benchmark`` (docs/benchmark.md); the error names the key and what is wrong."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{where} must be a mapping with sigma_deg, sigma_frame, ceiling_splits, ceiling_k_points; "
                         f"got {cfg!r}")
    missing = [k for k in ("sigma_deg", "sigma_frame", "ceiling_splits", "ceiling_k_points") if k not in cfg]
    if missing:
        raise ValueError(f"{where} is missing {missing}")
    for k in ("sigma_deg", "sigma_frame"):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v:
            raise ValueError(f"{where}.{k} must be a positive number, got {v!r}")
    if cfg["sigma_frame"] >= 1:
        raise ValueError(f"{where}.sigma_frame is a fraction of the frame width and must be < 1, got {cfg['sigma_frame']!r}")
    for k, least in (("ceiling_splits", 1), ("ceiling_k_points", 2)):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"{where}.{k} must be an integer >= {least}, got {v!r}")
    return cfg
