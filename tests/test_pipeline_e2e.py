"""The whole DVC pipeline on a tiny demo of 10 s clips, default params, in a temporary clone of this repo.

Covers: `dvc repro` end to end, a second `dvc repro` being a no-op, `dvc exp run -S`
and `dvc metrics diff` showing the change.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# slow tier (scripts/test.sh runs it under GAZELIB_TEST_TIER=all): dvc repro of the tiny demo in a git clone
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SECONDS = 10.0


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def clone_repo(dst: Path, edit_params) -> dict:
    """This repo's tracked and untracked (not ignored) files in ``dst`` as a fresh git repo, without
    dvc.lock, with ``edit_params(params)`` applied to params.yaml; returns the env to run dvc in
    (the clone's own code first on the path)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    (dst / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    edit_params(params)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(dst),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    _run(["git", "init", "-q"], dst, env)
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "clone"], dst, env)
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, dict]:
    def edit(params):
        # a world where sound and speech carry no information about gaze: viewers ignore who speaks and
        # what is named (they still react to the picture: dark transitions); 5 test videos, so the
        # attribution's significance is assessed and must find no gain
        # 10 s clips with every other param at its default (only corpus size, epochs and seeds cut for
        # time): the steps that cannot apply to so short a video say so instead of failing the stage
        params["demo"].update(n_videos=8, duration_s=SECONDS, split_counts={"val": 1, "test": 5}, p_speaker=0.0,
                              p_named=0.0)
        params["train"].update(epochs=1, seeds=[0, 1])

    dst = tmp_path_factory.mktemp("clone")
    return dst, clone_repo(dst, edit)


def test_repro_runs_end_to_end_and_is_then_a_noop(clone):
    dst, env = clone
    params = yaml.safe_load((dst / "params.yaml").read_text())
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    for group in ("features", "ingest", "align", "validate", "model", "evaluate", "report", "compare", "variants",
                  "attribution", "audio", "text", "visual"):
        assert params[group] == defaults[group], group  # the defaults, not params tuned for short clips
    assert {k: v for k, v in params["train"].items() if k not in ("epochs", "seeds")} == \
        {k: v for k, v in defaults["train"].items() if k not in ("epochs", "seeds")}
    assert params["train"]["window_s"] < SECONDS < max(params["evaluate"]["calibration_s"]) + params["train"]["horizon_s"]
    out = _run(["dvc", "repro"], dst, env)
    assert "| baseline |" in out and "| multimodal |" in out  # the table printed at the end
    cmp = json.loads((dst / "reports/metrics/compare.json").read_text())
    assert set(cmp["rows"]) == {"baseline", "multimodal", "content_only", "track_visual", "centre_prior",
                                "persistence", "inter_observer"}
    assert cmp["intervals"]["n_test_videos"] == 5 and cmp["intervals"]["seeds"]["multimodal"] == [0, 1]
    # the answer, on a world with no sound/speech effect: retrained ablation and both controls ran,
    # and no significant gain is claimed
    att = json.loads((dst / "reports/metrics/attribution.json").read_text())
    assert att["n_test_videos"] == 5 and att["significance_not_assessed"] is None
    gain = att["ablations"]["track_visual"]["gain"]
    assert gain["auc_vat"]["significant"] is False and gain["ig"]["significant"] is False, gain
    assert set(att["controls"]) == {"time_shift", "swap"}
    assert all("removed" in c and c["removed"]["auc_vat"]["delta"] is not None for c in att["controls"].values())
    assert att["answer"] in (dst / "reports/attribution.md").read_text()
    html = (dst / "reports/index.html").read_text()
    assert "what sound and speech add" in html
    assert "K=10s" in html and "shorter than" in html  # the report carries the calibration's reason
    # a model trained on the demo says so (bundle -> predict's warning and summary)
    bundle = json.loads((dst / "models/multimodal/bundle.json").read_text())
    assert bundle["synthetic_training_data"].startswith("gazelib demo corpus")
    assert bundle["feature_params"]["features"] == {"lookahead": "none"}
    for v in ("baseline", "multimodal", "content_only", "track_visual"):
        e = cmp["rows"][v]["metrics"]
        assert 0 <= e["auc_vat"] <= 1 and e["l2_vat"] >= 0 and 0 <= e["inout_ap"] <= 1
        for seed in (0, 1):
            assert (dst / "models" / v / f"seed{seed}" / "best.pt").exists()
        assert list((dst / "reports/viz" / v).glob("viz_*.png"))
        ev = json.loads((dst / "reports/metrics/eval" / f"{v}.json").read_text())
        for row in ("model", "centre_prior", "persistence", "inter_observer"):
            assert {"auc_vat", "l2_vat", "inout_ap", "out_ap", "nss", "cc", "sim", "kl", "auc_judd", "sauc",
                    "ig"} <= set(ev[row])
        assert ev["leak_check"]["max_abs_dlogit"] == 0.0  # the committed-model perturbation check
        cal = ev["calibration"]
        # K = 10 s would be scored from t >= 11 s: the 10 s clips have no such step, and the outputs say so
        assert cal["applicable"] and list(cal["not_scored"]) == ["K=10s"]
        assert "shorter than K + train.horizon_s = 11 s" in cal["not_scored"]["K=10s"]
        assert set(cal["rows"]) == {"K=0s", "K=2s", "K=5s"} and cal["rows"]["K=5s"]["scored_from_s"] == 6.0
        assert cal["rows"]["K=2s"]["n_samples"] < cal["rows"]["K=0s"]["n_samples"]
        assert cal["k0_max_abs_diff_vs_uncalibrated"] == 0.0 and len(cal["rows"]["K=5s"]["vs_K0"]["auc_vat"]["ci95"]) == 2
        assert "K=10s: the videos are shorter than K + train.horizon_s = 11 s" in \
            (dst / "reports/calibration" / f"{v}.md").read_text()
        assert 0 < ev["bias"]["entropy_share"] <= 1 and set(ev["bias"]["per_seed"]) == {"seed0", "seed1"}
        for fig in (f"reports/calibration/{v}.png", f"reports/calibration/{v}.md", f"reports/bias/{v}.png"):
            assert (dst / fig).exists(), fig
    for ref in ("vs_baseline", "vs_persistence"):
        d = cmp["deltas"]["multimodal"][ref]
        assert all(len(d[k]["ci95"]) == 2 for k in d) and "auc_vat" in d and "ig" in d
    assert "Δ vs persistence" in (dst / "reports/compare.md").read_text()
    # the horizon curve: persistence and every track variant at every evaluate.horizons, causal at each
    hz = json.loads((dst / "reports/metrics/horizons.json").read_text())
    assert hz["horizons_s"] == sorted(params["evaluate"]["horizons"])
    for h in hz["horizons_s"]:
        assert f"persistence@{h:g}s" in hz["rows"] and f"multimodal@{h:g}s" in hz["rows"]
    assert "content_only" in hz["crossover"] and all(v["max_abs_dlogit"] == 0.0 for v in hz["leak_check"].values())
    assert "Forecasting across horizons" in html
    # no artifact holds the clone's absolute path (manifest, features, reports, metrics)
    from tests.test_reproducible import files_mentioning

    for folder in ("data", "reports", "metrics"):
        assert files_mentioning(dst / folder, str(dst)) == [], folder
    assert json.loads((dst / "reports/metrics/validation.json").read_text())["passed"]
    assert (dst / "reports/validation.md").read_text().startswith("# Validation report")
    status = _run(["dvc", "status"], dst, env)
    assert "up to date" in status, status
    again = _run(["dvc", "repro"], dst, env)
    assert "Running stage" not in again, again
    # precise rebuilds (code deps are package folders, docs/architecture.md): an edited module makes
    # stale the stages that import from its folder, nothing upstream or beside them
    variants = ("baseline", "multimodal", "content_only", "track_visual")
    scoring = {"score_floors", "attribution", "compare", "report", "horizons"} | {f"evaluate@{v}" for v in variants}
    for code, want in (("gazelib/eval/evaluate.py", scoring),     # the protocol: the scoring stages only
                       # a metric's math: scoring, and training, whose floor guard scores val with auc_vat
                       ("gazelib/metrics.py", scoring | {f"train@{v}" for v in variants}),
                       ("gazelib/report/html.py", {"report"}),   # the report: itself only
                       ("gazelib/model/net.py", {f"{s}@{v}" for s in ("train", "evaluate") for v in variants}
                        | {"report", "horizons", "floors", "score_floors"})):  # the report loads models to draw its clips
        original = (dst / code).read_text()
        (dst / code).write_text(original + "\n# touched\n")
        try:
            assert _stale_stages(_run(["dvc", "status"], dst, env)) == want
        finally:
            (dst / code).write_text(original)


def _stale_stages(status: str) -> set[str]:
    """Stage names `dvc status` lists (lines 'name:' at the top level; descendants show as changed deps)."""
    return {line.strip().rstrip(":") for line in status.splitlines()
            if line.endswith(":") and not line.startswith((" ", "\t"))}


def test_exp_run_and_metrics_diff(clone):
    dst, env = clone
    if not (dst / "dvc.lock").exists():
        _run(["dvc", "repro"], dst, env)
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "baseline run"], dst, env)
    out = _run(["dvc", "exp", "run", "-S", "train.epochs=2"], dst, env)
    assert "train@baseline" in out
    diff = _run(["dvc", "metrics", "diff"], dst, env)
    # the headline moved, and fits on one screen (docs/metrics.md); nothing but the headline is listed
    rows = [line for line in diff.splitlines() if line.strip() and not line.startswith("Path")]
    assert {r.split()[0] for r in rows} == {"metrics/answer.json", "metrics/rows.json"}, diff
    assert any(r.split()[1].startswith("gain_over_track_visual.") for r in rows), diff
    assert len(rows) <= 45, len(rows)
    show = _run(["dvc", "exp", "show", "--no-pager", "--md", "--only-changed"], dst, env)
    assert "train.epochs" in show and "gain_over_track_visual" in show.splitlines()[0], show[:2000]
