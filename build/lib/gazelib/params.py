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
