"""Short clips end to end (issue 19): a demo corpus of 10 s clips runs every DVC stage with the
default params (only the corpus size, the seeds and the epochs are cut for time), and the steps that
cannot apply to so short a video (viewer calibration with K = 10 s needs t >= 11 s) say so in their
outputs instead of failing the stage."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.test_pipeline_e2e import REPO, _run, clone_repo

N_VIDEOS, SECONDS = 4, 10.0


@pytest.fixture(scope="module")
def short_clone(tmp_path_factory):
    def edit(params):
        params["demo"].update(n_videos=N_VIDEOS, duration_s=SECONDS, n_viewers=2, split_counts={"val": 1, "test": 2})
        params["train"].update(epochs=1, seeds=[0])

    dst = tmp_path_factory.mktemp("short_clips")
    return dst, clone_repo(dst, edit)


def test_10s_clips_run_every_stage_with_the_default_params(short_clone):
    dst, env = short_clone
    params = yaml.safe_load((dst / "params.yaml").read_text())
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    for group in ("ingest", "align", "validate", "model", "evaluate", "report", "compare", "variants"):
        assert params[group] == defaults[group], group  # the defaults, not params tuned for short clips
    assert {k: v for k, v in params["train"].items() if k not in ("epochs", "seeds")} == \
        {k: v for k, v in defaults["train"].items() if k not in ("epochs", "seeds")}
    assert params["train"]["window_s"] < SECONDS < max(params["evaluate"]["calibration_s"]) + params["train"]["horizon_s"]

    _run(["dvc", "repro"], dst, env)
    assert "up to date" in _run(["dvc", "status"], dst, env)
    variants = list(params["variants"])
    for v in variants:
        cal = json.loads((dst / "metrics/eval" / f"{v}.json").read_text())["calibration"]
        # K = 10 s would be scored from t >= 11 s: the 10 s clips have no such step, and the outputs say so
        assert cal["applicable"] and list(cal["not_scored"]) == ["K=10s"]
        assert "shorter than K + train.horizon_s = 11 s" in cal["not_scored"]["K=10s"]
        assert set(cal["rows"]) == {"K=0s", "K=2s", "K=5s"} and cal["rows"]["K=5s"]["scored_from_s"] == 6.0
        assert cal["rows"]["K=2s"]["n_samples"] < cal["rows"]["K=0s"]["n_samples"]
        assert len(cal["rows"]["K=5s"]["vs_K0"]["auc_vat"]["ci95"]) == 2 and cal["k0_max_abs_diff_vs_uncalibrated"] == 0.0
        md = (dst / "reports/calibration" / f"{v}.md").read_text()
        assert "K=10s: the videos are shorter than K + train.horizon_s = 11 s" in md
        assert (dst / "reports/calibration" / f"{v}.png").stat().st_size > 0
    cmp = json.loads((dst / "metrics/compare.json").read_text())
    assert set(variants) <= set(cmp["rows"]) and all(cmp["rows"][v]["metrics"]["auc_vat"] is not None for v in variants)
    assert json.loads((dst / "metrics/validation.json").read_text())["passed"]
    html = (dst / "reports/index.html").read_text()
    assert "K=10s" in html and "shorter than" in html  # the report carries the reason
