"""Shared fixtures: a tiny demo corpus generated once per session, and params for it."""
from __future__ import annotations

import gazelib  # noqa: F401  (first: pins one CPU instruction-set path before numpy / torch load, gazelib.cpu)

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(base: dict, **demo) -> dict:
    p = copy.deepcopy(base)
    p["demo"].update({"n_videos": 3, "duration_s": 10.0, "split_counts": {"val": 1, "test": 1}, **demo})
    p["train"].update({"epochs": 1, "seeds": [0]})
    return p


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, base_params) -> tuple[Path, dict]:
    """Three 10 s demo videos (4 viewers each), written once for the whole session."""
    from gazelib.demo.corpus import generate_corpus

    root = tmp_path_factory.mktemp("tiny_demo")
    params = tiny_params(base_params)
    generate_corpus(out_dir=root, cfg=params["demo"])
    return root, params


@pytest.fixture(scope="session")
def causal_corpus(tmp_path_factory, base_params) -> tuple[Path, dict]:
    """Four 30 s videos: enough sentences to test the viewer model's causal links."""
    from gazelib.demo.corpus import generate_corpus

    root = tmp_path_factory.mktemp("causal_demo")
    params = tiny_params(base_params, n_videos=4, duration_s=30.0, seed=7)
    generate_corpus(out_dir=root, cfg=params["demo"])
    return root, params
