"""DVC's own views lead with the answer (docs/metrics.md): the files dvc.yaml declares as metrics
hold only headline numbers, `dvc exp show` starts with the answer, and `dvc plots show` renders
with no network."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from gazelib.eval.headline import answer_headline, rows_headline
from gazelib.core.layout import ANSWER, ASR, ATTRIBUTION, COMPARE, ROWS, VALIDATION
from tests.test_report_html import _browser

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
MAX_NUMBERS = 40


def declared_metrics(dvc_yaml: dict) -> set[str]:
    """Every file dvc.yaml declares as metrics (stage `metrics:` and the top-level list)."""
    out = set()
    for stage in dvc_yaml["stages"].values():
        body = stage.get("do", stage)
        for entry in body.get("metrics", []):
            out |= set(entry) if isinstance(entry, dict) else {entry}
    for entry in dvc_yaml.get("metrics", []):
        out |= set(entry) if isinstance(entry, dict) else {entry}
    return out


def count_numbers(obj) -> int:
    if isinstance(obj, (bool, int, float)):
        return 1
    if isinstance(obj, dict):
        return sum(count_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(count_numbers(v) for v in obj)
    return 0


def test_declared_metrics_are_the_headline_and_each_holds_few_numbers():
    declared = declared_metrics(yaml.safe_load((REPO / "dvc.yaml").read_text()))
    assert declared == {str(ANSWER), str(ROWS)}, declared
    for path in declared:
        n = count_numbers(json.loads((REPO / path).read_text()))
        assert 0 < n <= MAX_NUMBERS, (path, n)
    # nothing else under metrics/: the details live in reports/metrics
    assert sorted(p.name for p in (REPO / "metrics").iterdir()) == ["answer.json", "rows.json"]


def test_committed_headline_is_the_committed_details():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cmp, att = (json.loads((REPO / p).read_text()) for p in (COMPARE, ATTRIBUTION))
    full, primary = params["attribution"]["full"], params["compare"]["primary"]
    want_answer = answer_headline(att=att, content_gain={k: cmp["deltas"][full]["vs_baseline"][k] for k in primary},
                                  n_test_videos=att["n_test_videos"], n_seeds=len(att["seeds"]),
                                  asr=json.loads((REPO / ASR).read_text()),
                                  validation=json.loads((REPO / VALIDATION).read_text()))
    assert json.loads((REPO / ANSWER).read_text()) == want_answer
    assert json.loads((REPO / ROWS).read_text()) == rows_headline(cmp=cmp, primary=params["compare"]["primary"])
    gain = att["ablations"]["track_visual"]["gain"]["ig"]
    assert want_answer["gain_over_track_visual"]["ig"] == {"delta": gain["delta"], "lo": gain["ci95"][0],
                                                           "hi": gain["ci95"][1], "p_holm": gain["p_holm"]}


def test_exp_show_starts_with_the_answer():
    out = subprocess.run(["dvc", "exp", "show", "--no-pager", "--md"], cwd=REPO, env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    header = [c.strip() for c in out.stdout.splitlines()[0].strip("|").split("|")]
    assert header[:2] == ["Experiment", "Created"]
    assert header[2].startswith("gain_over_track_visual.auc_vat"), header[:6]


def test_plots_render_offline_in_chromium(tmp_path):
    """`dvc plots show` with the repo's template (.dvc/config) writes a page that loads nothing from
    the network, and headless Chromium with every connection refused draws each plot."""
    out_dir = tmp_path / "plots"
    proc = subprocess.run(["dvc", "plots", "show", "-o", str(out_dir)], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    page = out_dir / "index.html"
    html = page.read_text()
    assert not re.search(r"<script[^>]+src=", html) and "cdn.jsdelivr" not in html
    ids = re.findall(r"vegaEmbed\('#([^']+)'", html)
    # one loss plot per variant and seed, one calibration curve per variant
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    n_runs = len(params["variants"]) * len(params["train"]["seeds"])
    assert sum(i.startswith("reports_curves_train_") for i in ids) == n_runs, ids
    assert sum(i.startswith("reports_curves_calibration_") for i in ids) == len(params["variants"]), ids
    dom = _browser(["--proxy-server=127.0.0.1:9", "--virtual-time-budget=20000", "--dump-dom"], page, tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for plot_id in ids:  # vega-embed drew into every plot's div (canvas by default)
        block = dom.stdout.split(f'id="{plot_id}"', 1)[1].split("<script", 1)[0]
        assert "<canvas" in block or "<svg" in block, plot_id
